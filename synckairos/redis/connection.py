"""Redis clients of one process: a plain URL, or the primary Redis Sentinel names.

Every component asks this module for its client, so ``SYNCKAIROS_REDIS_SENTINELS``
moves all of them (store, pub/sub listener, outbox relay, dramatiq broker) to
Sentinel mode at once:

* ``store_client``   asyncio, a pool that *waits* for a free connection
* ``pubsub_client``  asyncio, no read timeout (pub/sub connections idle), health checks
* ``async_client``   asyncio, plain pool (the outbox relay)
* ``sync_client``    blocking redis-py (dramatiq's broker and its middleware)

None of them retries by itself (``retries=0``): a retried write must be
idempotent, and the callers own that (the store retries with a budget and a
commit token; the listener and the relay reconnect with backoff).

``PrimaryWatcher`` asks the Sentinels every ``poll`` seconds which node is
primary. Sentinel-managed pools only look the primary up when they open a new
connection, so after a switch-over idle connections to the old primary would
go on serving (and, after a manual failover, accepting writes on) the old node;
the watcher makes the pools drop them and tells its listeners (the pub/sub
listener resubscribes and fully resyncs its sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from synckairos import metrics
from synckairos.config import Settings

__all__ = [
    "PrimaryView",
    "PrimaryWatcher",
    "async_client",
    "describe_redis",
    "primary_view",
    "pubsub_client",
    "store_client",
    "sync_client",
]

logger = logging.getLogger(__name__)

#: Timeouts of the short-lived connections to the Sentinels themselves.
_SENTINEL_KWARGS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection instead of failing.

    The method resolution order gives Sentinel's primary lookup on connect and
    ownership check on release, with the blocking pool's ``get_connection``.
    """


def _credentials(settings: Settings) -> dict[str, Any]:
    """Database number and credentials of ``redis_url`` (used in Sentinel mode)."""
    if not settings.redis_url:
        return {}
    parsed = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    return {key: parsed[key] for key in ("db", "username", "password") if key in parsed}


def describe_redis(settings: Settings) -> str:
    """Where this process's Redis is, for logs (no credentials)."""
    if settings.redis_sentinels:
        return f"Sentinel master {settings.redis_sentinel_master!r} via {settings.redis_sentinels}"
    parsed = parse_url(settings.redis_target())  # type: ignore[no-untyped-call]
    return f"{parsed.get('host', '?')}:{parsed.get('port', 6379)}/{parsed.get('db', 0)}"


class _FollowingAsyncSentinel(AsyncSentinel):
    """Resolves the primary from ``primary_view`` once the watcher knows it."""

    async def discover_master(self, service_name: str) -> Any:
        if primary_view.address is not None:
            return primary_view.address
        return await super().discover_master(service_name)


class _FollowingSentinel(Sentinel):
    """Blocking twin of ``_FollowingAsyncSentinel`` (dramatiq's threads)."""

    def discover_master(self, service_name: str) -> Any:
        if primary_view.address is not None:
            return primary_view.address
        return super().discover_master(service_name)  # type: ignore[no-untyped-call]


def _async_sentinel(settings: Settings) -> AsyncSentinel:
    return _FollowingAsyncSentinel(  # type: ignore[no-untyped-call]
        settings.sentinel_addresses(),
        sentinel_kwargs=dict(_SENTINEL_KWARGS),
        **_credentials(settings),
    )


def _no_retry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 0)


def store_client(settings: Settings, *, wait_s: float = 5.0) -> aioredis.Redis:
    """The state store's client; a request beyond the pool's size waits ``wait_s``.

    redis-py's default pool raises "Too many connections" at its limit; a burst
    (thousands of sockets syncing at once) would then fail requests that a
    moment's wait serves.
    """
    options: dict[str, Any] = {
        "max_connections": settings.redis_max_connections,
        "timeout": wait_s,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "socket_keepalive": True,
        "retry": _no_retry(),
    }
    if settings.redis_sentinels:
        client: aioredis.Redis = _async_sentinel(settings).master_for(
            settings.redis_sentinel_master, connection_pool_class=BlockingSentinelPool, **options
        )
        return client
    pool = BlockingConnectionPool.from_url(settings.redis_target(), **options)
    return aioredis.Redis(connection_pool=pool)


def _plain_async_client(settings: Settings, **extra: Any) -> aioredis.Redis:
    """An asyncio client with redis-py's own pool (plus ``extra`` options)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 2,
        "socket_keepalive": True,
        "retry": _no_retry(),
        **extra,
    }
    if settings.redis_sentinels:
        client: aioredis.Redis = _async_sentinel(settings).master_for(
            settings.redis_sentinel_master, **options
        )
        return client
    return aioredis.Redis.from_url(settings.redis_target(), **options)


def pubsub_client(settings: Settings) -> aioredis.Redis:
    """A client for one long-lived pub/sub connection (no read timeout, health checks)."""
    return _plain_async_client(settings, health_check_interval=5)


def async_client(settings: Settings) -> aioredis.Redis:
    """A general asyncio client (the outbox relay)."""
    return _plain_async_client(settings)


def sync_client(settings: Settings) -> redis.Redis:
    """A blocking client (dramatiq's broker runs in threads)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 2,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_sentinels:
        sentinel = _FollowingSentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses(),
            sentinel_kwargs=dict(_SENTINEL_KWARGS),
            **_credentials(settings),
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master, **options
        )
        return client
    return redis.Redis.from_url(settings.redis_target(), **options)


Listener = Callable[[], Awaitable[None] | None]


class PrimaryView:
    """This process's belief about the primary, and the failover fence.

    Set by ``PrimaryWatcher``; read by every Sentinel-managed pool of the
    process when it opens a connection (instead of asking whichever Sentinel
    answers first, which may lag a switch-over by seconds), and by the store in
    durability mode: while the fence is up (a failover is under way) or if it
    went up during a commit, the commit is not acknowledged, since a write the
    old primary takes after the promoted replica detached is lost later even
    when another replica acknowledged it.
    """

    def __init__(self) -> None:
        self.address: tuple[str, int] | None = None
        """The primary (None: not known yet; pools then ask the Sentinels)."""
        self.generation = 0
        """Incremented each time the fence goes up."""
        self.fenced_until = 0.0
        """``time.monotonic()`` until which the fence is up (0: down)."""

    def raise_fence(self, max_s: float) -> None:
        """A failover started: stop acknowledging durable commits for at most ``max_s``."""
        self.generation += 1
        self.fenced_until = time.monotonic() + max_s

    def lower_fence(self) -> None:
        """The failover ended (switched or aborted) and the pools follow the new primary."""
        self.fenced_until = 0.0

    def blocks(self, generation: int) -> bool:
        """True when a commit started at ``generation`` must not be acknowledged now."""
        return generation != self.generation or time.monotonic() < self.fenced_until


#: The process's view (one Redis deployment per process).
primary_view = PrimaryView()


class PrimaryWatcher:
    """Follows the Sentinels' primary; on a change, refreshes pools and tells listeners.

    Two sources, both feeding ``primary_view``:

    * the Sentinels' event channels (``+try-failover`` raises the fence,
      ``+switch-master`` names the new primary at once, the end or abort of a
      failover lowers the fence), on every Sentinel;
    * a poll every ``poll_s`` of all Sentinels, adopting a primary named by a
      majority (a fallback when an event was missed); it never moves back
      within ``grace_s`` of an event-driven switch, while lagging Sentinels
      still name the old primary.

    ``clients`` are Sentinel-managed asyncio clients and ``sync_clients``
    blocking ones; all their connections are closed on a switch, busy ones
    included, so nothing reaches the old primary afterwards. Run ``run()`` as
    a task; ``stop()`` ends it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clients: list[aioredis.Redis] | None = None,
        sync_clients: list[redis.Redis] | None = None,
        poll_s: float | None = None,
        view: PrimaryView = primary_view,
        grace_s: float = 5.0,
    ) -> None:
        self.addresses = settings.sentinel_addresses()
        self.master = settings.redis_sentinel_master
        self.clients = list(clients or [])
        self.sync_clients = list(sync_clients or [])
        self.poll_s = poll_s if poll_s is not None else settings.redis_sentinel_poll_ms / 1000
        self.view = view
        self.grace_s = grace_s
        self.fence_max_s = settings.redis_failover_budget_ms / 1000
        self.listeners: list[Listener] = []
        """Called (and awaited when they return an awaitable) after each switch-over."""
        self._sentinels = [
            aioredis.Redis(host=host, port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
            for host, port in self.addresses
        ]
        self._switched_at = 0.0
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------ switching

    async def _adopt(self, address: tuple[str, int], source: str) -> bool:
        """Make ``address`` the primary; refresh pools and listeners on a change."""
        async with self._lock:
            previous = self.view.address
            if previous == address:
                return False
            self.view.address = address
            if previous is None:
                return False
            logger.warning(
                "Redis primary of %r moved from %s:%d to %s:%d (%s)",
                self.master,
                *previous,
                *address,
                source,
            )
            metrics.REDIS_FAILOVERS.inc()
            await self._refresh()
            return True

    async def _refresh(self) -> None:
        for client in self.clients:
            pool = client.connection_pool
            if isinstance(pool, SentinelConnectionPool):
                # Record the new primary, then close every connection, busy ones
                # too: redis-py's asyncio pool would hand a busy connection to
                # the old primary out again after its command (it does not check
                # ownership on release), and after a manual failover the old
                # primary accepts writes for ~10 s. A command cut off here is
                # retried by its caller (idempotently, with its commit token).
                await _best_effort(pool.get_master_address())  # type: ignore[no-untyped-call]
                await _best_effort(pool.disconnect(inuse_connections=True))
        for sync in self.sync_clients:
            get_master_address = getattr(sync.connection_pool, "get_master_address", None)
            if get_master_address is not None:
                await _best_effort(asyncio.to_thread(get_master_address))
                await _best_effort(asyncio.to_thread(sync.connection_pool.disconnect))
        for listener in list(self.listeners):
            try:
                result = listener()
                if result is not None:
                    await result
            except Exception:
                logger.exception("a primary-change listener failed")

    # ------------------------------------------------------------ polling

    async def _ask(self, sentinel: aioredis.Redis) -> tuple[str, int] | None:
        try:
            reply: Any = await sentinel.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master
            )
        except (redis_errors.RedisError, OSError):
            return None
        if not reply:
            return None
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else str(host), int(port))

    async def check(self) -> bool:
        """Poll every Sentinel once; adopt a majority's primary. True on a switch."""
        answers = await asyncio.gather(*(self._ask(s) for s in self._sentinels))
        votes: dict[tuple[str, int], int] = {}
        for answer in answers:
            if answer is not None:
                votes[answer] = votes.get(answer, 0) + 1
        if not votes:
            return False
        address, count = max(votes.items(), key=lambda item: item[1])
        if count <= len(self._sentinels) // 2:
            return False
        recently_switched = time.monotonic() - self._switched_at < self.grace_s
        if self.view.address is not None and recently_switched:
            return False
        switched = await self._adopt(address, "poll")
        if switched and time.monotonic() >= self.view.fenced_until:
            self.view.lower_fence()
        return switched

    # ------------------------------------------------------------ events

    async def _on_event(self, channel: str, data: str) -> None:
        words = data.split()
        if channel == "+switch-master" and len(words) == 5 and words[0] == self.master:
            self._switched_at = time.monotonic()
            await self._adopt((words[3], int(words[4])), "+switch-master")
            self.view.lower_fence()
            return
        if len(words) < 2 or words[0] != "master" or words[1] != self.master:
            return
        if channel == "+try-failover":
            logger.warning("Redis failover of %r started: fencing durable commits", self.master)
            self.view.raise_fence(self.fence_max_s)
        elif channel.startswith("-failover-abort") or channel.startswith("+failover-end"):
            self.view.lower_fence()

    async def _follow(self, sentinel: aioredis.Redis) -> None:
        """Listen to one Sentinel's events until ``stop()``; reconnect with backoff."""
        backoff = 0.1
        while not self._stopping.is_set():
            # A connection of its own without a read timeout: events are rare.
            listener = aioredis.Redis(**_address_of(sentinel), socket_connect_timeout=0.5)
            pubsub = listener.pubsub()
            try:
                await pubsub.subscribe(*_SENTINEL_EVENTS)
                while not self._stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None:
                        channel, data = message["channel"], message["data"]
                        await self._on_event(
                            channel.decode() if isinstance(channel, bytes) else str(channel),
                            data.decode() if isinstance(data, bytes) else str(data),
                        )
                    backoff = 0.1
            except (redis_errors.RedisError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await listener.aclose()

    async def run(self) -> None:
        """Follow the Sentinels' events and poll them until ``stop()``."""
        followers = [asyncio.create_task(self._follow(s)) for s in self._sentinels]
        try:
            while not self._stopping.is_set():
                await self.check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_s)
        finally:
            self._stopping.set()
            await asyncio.gather(*followers, return_exceptions=True)

    def stop(self) -> None:
        """Finish ``run()`` promptly."""
        self._stopping.set()

    async def close(self) -> None:
        """Close the connections to the Sentinels."""
        for sentinel in self._sentinels:
            await sentinel.aclose()


def _address_of(client: aioredis.Redis) -> dict[str, Any]:
    kwargs = client.connection_pool.connection_kwargs
    return {"host": kwargs["host"], "port": kwargs["port"]}


#: Sentinel event channels the watcher follows.
_SENTINEL_EVENTS = (
    "+try-failover",
    "+switch-master",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
)


async def _best_effort(refresh: Awaitable[Any]) -> None:
    """Await ``refresh``, logging instead of raising a Redis or OS error."""
    try:
        await refresh
    except (redis_errors.RedisError, OSError) as exc:
        logger.warning("refreshing a Redis pool after a switch-over failed: %s", exc)
