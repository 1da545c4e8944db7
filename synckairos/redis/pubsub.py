"""``RedisPubSub``: one Redis pub/sub connection per node, feeding the hub.

The ``synckairos.pubsub.PubSub`` contract on Redis.

A session's channel is subscribed when its first local socket joins and
unsubscribed after the last leaves (reference counted by the hub). ``join``
returns only once Redis has *confirmed* the subscription, so a state read
after ``join`` can miss nothing: every later commit is delivered.

Pub/sub is lossy across reconnects; the history is not. When the connection
drops, the listener reconnects with backoff, re-subscribes every channel, and
when Redis confirms a re-subscription it asks that session's sockets to catch
up from the history (``Hub.resync``). ``alive`` is False while disconnected,
and ``/ready`` reports it.

After a Redis switch-over the connection may survive on the old primary (a
manual failover demotes it to a replica without closing clients), so
``reconnect(full=True)`` drops it on purpose; the sockets then get a full
STATE_SYNC, since a change the old primary accepted but never replicated may
have been published and then lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from synckairos import metrics
from synckairos.hub import Hub, Subscriber
from synckairos.pubsub import SubscribeTimeout
from synckairos.redis.keys import Keys, session_channel, session_of_channel
from synckairos.ws_messages import decode_delivery

__all__ = ["RedisPubSub"]

logger = logging.getLogger(__name__)


class RedisPubSub:
    """Feeds ``hub`` from Redis pub/sub; run ``run()`` as a task for the node's life."""

    def __init__(
        self,
        client: aioredis.Redis,
        hub: Hub,
        clock: Callable[[], int],
        *,
        prefix: str = "sk",
        subscribe_timeout: float = 10.0,
    ) -> None:
        self.client = client
        """A client dedicated to pub/sub (no socket timeout; health checks on)."""
        self.hub = hub
        self.clock = clock
        self.prefix = prefix
        self.subscribe_timeout = subscribe_timeout
        self._control = Keys(prefix).nodes.encode()
        self.alive = False
        """True while the pub/sub connection is up and its control channel confirmed."""
        self._pubsub: PubSub | None = None
        self._confirmed: set[bytes] = set()
        self._previously_confirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._stopping = False
        self._wanted = 0
        """Bumped by ``reconnect()``; a connection made before the bump is dropped."""
        self._wake = asyncio.Event()
        self._full_resync = False

    def channel(self, session_id: str) -> bytes:
        """Pub/sub channel of ``session_id``."""
        return session_channel(self.prefix, session_id)

    @property
    def control_channel(self) -> bytes:
        """A channel the listener always holds, so the connection stays subscribed."""
        return self._control

    async def join(self, subscriber: Subscriber) -> None:
        """Register ``subscriber`` and wait until its channel is confirmed.

        Raises:
            SubscribeTimeout: Redis did not confirm within ``subscribe_timeout``;
                the subscriber is unregistered again.
        """
        first = self.hub.add(subscriber)
        channel = self.channel(subscriber.session_id)
        if channel in self._confirmed:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        if first:
            await self._send("subscribe", channel)
        try:
            await asyncio.wait_for(waiter, self.subscribe_timeout)
        except TimeoutError:
            await self.leave(subscriber)
            raise SubscribeTimeout(f"pub/sub subscription to {channel!r} not confirmed") from None

    async def leave(self, subscriber: Subscriber) -> None:
        """Unregister ``subscriber``; unsubscribe when it was the last local one."""
        if self.hub.remove(subscriber):
            channel = self.channel(subscriber.session_id)
            self._confirmed.discard(channel)
            self._previously_confirmed.discard(channel)
            await self._send("unsubscribe", channel)

    async def _send(self, command: str, channel: bytes) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reconnect loop subscribes every hub session
        try:
            if command == "subscribe":
                await pubsub.subscribe(channel)
            else:
                await pubsub.unsubscribe(channel)
        except (redis_errors.RedisError, OSError) as exc:
            logger.warning(
                "pub/sub %s %r failed (%s); the listener will retry", command, channel, exc
            )

    def _confirm(self, channel: bytes) -> None:
        if channel == self.control_channel:
            self.alive = True
            return
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)
        if channel in self._previously_confirmed:
            self._previously_confirmed.discard(channel)
            session_id = session_of_channel(channel)
            if session_id is not None:
                metrics.PUBSUB_RESUBSCRIBES.inc()
                self.hub.resync(session_id, full=self._full_resync)

    def _dispatch(self, channel: bytes, payload: bytes) -> None:
        session_id = session_of_channel(channel)
        if session_id is None:
            return
        if not self.hub.has(session_id):
            return
        try:
            delivery = decode_delivery(session_id, payload, self.clock())
        except ValueError:
            logger.warning("skipped malformed pub/sub payload on %r", channel)
            return
        self.hub.broadcast(session_id, delivery)

    async def run(self) -> None:
        """Listen until ``stop()``; reconnect with backoff after any connection loss."""
        backoff = 0.05
        while not self._stopping:
            generation = self._wanted  # this connection follows every earlier request
            self._wake.clear()
            pubsub = self.client.pubsub()
            try:
                self._previously_confirmed |= self._confirmed
                self._confirmed = set()
                self._pubsub = pubsub
                channels = [self.control_channel] + [
                    self.channel(sid) for sid in self.hub.session_ids()
                ]
                await pubsub.subscribe(*channels)
                while not self._stopping:
                    if self._wanted != generation:
                        raise redis_errors.ConnectionError("reconnect requested (primary moved)")
                    message = await pubsub.get_message(timeout=0.25)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        self._dispatch(message["channel"], message["data"])
                    elif kind == "subscribe":
                        self._confirm(message["channel"])
                        if not self._previously_confirmed:
                            self._full_resync = False
                    backoff = 0.05
            except (redis_errors.RedisError, OSError) as exc:
                if self._stopping:
                    break
                if self.alive:
                    logger.warning("pub/sub connection lost (%s); reconnecting", exc)
                self.alive = False
                with contextlib.suppress(TimeoutError):  # reconnect() cuts the wait short
                    await asyncio.wait_for(self._wake.wait(), backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self._pubsub = None
                self.alive = False
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def reconnect(self, *, full: bool = True) -> None:
        """Drop the pub/sub connection and subscribe anew (within 250 ms).

        Every session's sockets then catch up; with ``full`` they get a full
        STATE_SYNC even when their version looks current.
        """
        self._full_resync = self._full_resync or full
        self._wanted += 1
        self._wake.set()

    def stop(self) -> None:
        """Ask ``run()`` to finish (within about a second)."""
        self._stopping = True
