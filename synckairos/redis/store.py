"""``RedisStore``: the state store on Redis, one Lua call per commit.

The key schema is ``synckairos.redis.keys``. The scripts are ``lua/*.lua``
beside this module (``synckairos.redis.scripts``), read once at import and
registered per client; redis-py runs them by EVALSHA and reloads on NOSCRIPT.
Driver errors become ``StoreUnavailable`` here, at the boundary.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from synckairos import metrics
from synckairos.config import Settings
from synckairos.exceptions import (
    Conflict,
    RateLimited,
    SessionExists,
    SessionLimitReached,
    SessionNotFound,
    StoreUnavailable,
)
from synckairos.ratelimit import Verdict
from synckairos.redis.connection import PrimaryView, primary_view, store_client
from synckairos.redis.keys import Keys, SessionKeys
from synckairos.redis.scripts import SCRIPTS
from synckairos.store import (
    Change,
    CommitResult,
    Deleted,
    HistorySlice,
    StoredSession,
    StoreStats,
    history_length,
    replay_fits,
)

__all__ = ["RedisStore"]

#: Errors after which the same operation may succeed on a (new) primary:
#: connection loss or refusal, timeouts, a primary still loading its data, a
#: node demoted to replica. ``MasterNotFoundError`` is a ``ConnectionError``.
_TRANSIENT_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)

T = TypeVar("T")


class _NotReplicated(Exception):
    """A commit reached a primary but may not survive (too few replica acks, failover)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class RedisStore:
    """State store on one Redis (or a Sentinel-managed primary)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sk",
        history_maxlen: int = 200,
        outbox_maxlen: int = 1_000_000,
        finished_ttl_ms: int = 86_400_000,
        failover_budget_s: float = 10.0,
        min_replica_acks: int = 0,
        replica_ack_timeout_ms: int = 500,
        view: PrimaryView | None = None,
        history_max_bytes: int | None = None,
        max_live_sessions: int = 0,
    ) -> None:
        self.client = client
        """The redis-py asyncio client (``decode_responses=False``)."""
        self.prefix = prefix
        self.history_maxlen = history_maxlen
        self.history_max_bytes = history_max_bytes
        """Bytes of history kept per session (None: only ``history_maxlen`` bounds it)."""
        self.max_live_sessions = max_live_sessions
        """Cap on unfinished sessions checked by every create (0: no cap)."""
        self.outbox_maxlen = outbox_maxlen
        self.finished_ttl_ms = finished_ttl_ms
        self.failover_budget_s = failover_budget_s
        """How long an operation retries transient Redis errors before giving up."""
        self.min_replica_acks = min_replica_acks
        """Durability mode: replicas that must have a commit before it is acknowledged."""
        self.replica_ack_timeout_ms = replica_ack_timeout_ms
        self.view = view
        """Sentinel mode: the failover fence durable commits respect."""
        self.names = Keys(prefix)
        """The key names under ``prefix``."""
        self.deadlines_key = self.names.deadlines
        self.outbox_key = self.names.outbox
        self.dropped_key = self.names.dropped
        self.active_key = self.names.active
        self._commit = client.register_script(SCRIPTS["session_commit"])
        self._delete = client.register_script(SCRIPTS["session_delete"])
        self._claim = client.register_script(SCRIPTS["deadline_claim"])

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """A store on ``settings``' Redis, with its prefix, bounds and pool size."""
        return cls(
            store_client(settings),
            prefix=settings.key_prefix,
            history_maxlen=settings.history_maxlen,
            outbox_maxlen=settings.outbox_maxlen,
            finished_ttl_ms=settings.finished_ttl_s * 1000,
            failover_budget_s=settings.redis_failover_budget_ms / 1000,
            min_replica_acks=settings.replica_acks(),
            replica_ack_timeout_ms=settings.redis_replica_ack_timeout_ms,
            view=primary_view if settings.redis_sentinels else None,
            history_max_bytes=settings.history_max_bytes,
            max_live_sessions=settings.max_live_sessions,
        )

    def keys(self, session_id: str) -> SessionKeys:
        """Return the key names of ``session_id``."""
        return self.names.session(session_id)

    def _script_keys(self, keys: SessionKeys) -> list[str]:
        """KEYS of session_commit.lua and session_delete.lua, in their order."""
        return [
            keys.state,
            keys.history,
            self.deadlines_key,
            self.outbox_key,
            self.dropped_key,
            self.active_key,
        ]

    async def _call(
        self, op: str, operation: Callable[[], Awaitable[T]], *, outcome_unknown: bool = False
    ) -> T:
        """Run ``operation`` (a fresh awaitable per attempt), retrying transient errors.

        Connection errors are retried with jittered exponential backoff (25 ms
        doubling to 500 ms) for ``failover_budget_s``: long enough for Sentinel
        to promote a replica. Only idempotent operations are given here (reads,
        and commits carrying a commit token).

        ``op`` names the operation in ``synckairos_redis_op_duration_seconds``
        (the time includes retries).

        Raises:
            StoreUnavailable: the budget ran out, or Redis answered an error.
                With ``outcome_unknown`` its details say the change may or may
                not have been committed.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self.failover_budget_s
        delay = 0.025
        while True:
            try:
                result = await operation()
                metrics.REDIS_OP_LATENCY.labels(op).observe(time.perf_counter() - started)
                return result
            except (*_TRANSIENT_ERRORS, _NotReplicated) as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    metrics.REDIS_UNAVAILABLE.inc()
                    raise StoreUnavailable(
                        f"state store unavailable: {exc}",
                        {"outcome": "unknown"} if outcome_unknown else None,
                    ) from exc
                metrics.REDIS_RETRIES.inc()
                await asyncio.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 0.5)
            except redis_errors.RedisError as exc:
                raise StoreUnavailable(
                    f"state store error: {exc}",
                    {"outcome": "unknown"} if outcome_unknown else None,
                ) from exc

    async def _run_commit(self, keys: list[str], args: list[Any]) -> Any:
        """One attempt of session_commit.lua; in durability mode, followed by WAIT.

        The script and the WAIT go down the same connection in one round trip,
        so the WAIT covers exactly this commit. In Sentinel mode the failover
        fence applies in both modes: a commit made while a failover is under
        way may have reached the old primary, whose late writes are discarded.

        Raises:
            _NotReplicated: committed (or found committed) on the primary, but
                not acknowledged by ``min_replica_acks`` replicas in time, or a
                failover started around it. The caller retries (idempotently).
        """
        generation = self.view.generation if self.view is not None else 0
        if self.min_replica_acks == 0:
            reply = await self._commit(keys=keys, args=args)
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._commit.sha, len(keys), *keys, *args)
                pipe.wait(self.min_replica_acks, self.replica_ack_timeout_ms)
                reply, acks = await pipe.execute(raise_on_error=False)
            if isinstance(reply, redis_errors.NoScriptError):
                await self.client.script_load(SCRIPTS["session_commit"])
                return await self._run_commit(keys, args)
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acks, Exception):
                raise acks
            if int(reply[0]) in (1, 2) and int(acks) < self.min_replica_acks:
                raise _NotReplicated(f"only {acks} replica(s) acknowledged the commit in time")
        if self.view is not None and int(reply[0]) in (1, 2) and self.view.blocks(generation):
            raise _NotReplicated("a failover is under way")
        return reply

    async def load(self, session_id: str) -> StoredSession | None:
        """Return the session's state JSON and epoch, or None when absent."""
        key = self.keys(session_id).state
        reply: list[Any] = await self._call("load", lambda: self.client.hmget(key, ["s", "e", "d"]))
        state, epoch, tombstone = reply
        if state is None:
            return StoredSession(b"", "", deleted=True) if tombstone else None
        return StoredSession(state_json=state, epoch=(epoch or b"").decode())

    def history_length(self, change_bytes: int) -> int:
        """Entries the history keeps after a commit of ``change_bytes`` bytes.

        min(``history_maxlen``, ``history_max_bytes`` // ``change_bytes``), at
        least 1: one session's changes all weigh about the same (each carries
        the whole state), so this bounds the history's bytes.
        """
        return history_length(self.history_maxlen, self.history_max_bytes, change_bytes)

    async def commit(self, change: Change) -> CommitResult:
        """Commit ``change`` atomically if the stored version matches.

        Every attempt carries the same commit token, so a retry after a lost
        reply (or a failover) applies the change at most once. In durability
        mode the change is acknowledged only once ``min_replica_acks``
        replicas have it. The history is trimmed to ``history_length`` of
        this change. A create (``expected_version`` 0, no ``new_version``:
        not a restore) is refused when ``max_live_sessions`` unfinished
        sessions exist, checked in the same script.

        Raises:
            SessionLimitReached: a create beyond ``max_live_sessions``; nothing written.
            SessionExists: ``expected_version`` is 0 and the session exists.
            SessionNotFound: the session does not exist (any other version).
            StoreUnavailable: Redis cannot be reached or failed, or the change
                was not replicated in time; ``details["outcome"]`` is
                ``"unknown"``: the change may or may not have been committed.
        """
        keys = self.keys(change.session_id)
        script_keys = [*self._script_keys(keys), keys.rate]
        rate = change.rate
        args = [
            change.expected_version,
            change.state_json,
            change.change_json,
            "" if change.deadline_ms is None else change.deadline_ms,
            change.session_id,
            # A create's epoch: the caller's (a restore keeps its incarnation) or a new one.
            (change.expected_version == 0 and change.expected_epoch) or secrets.token_hex(8),
            self.history_length(len(change.change_json)),
            self.outbox_maxlen,
            change.event_id or uuid.uuid4().hex,
            self.finished_ttl_ms if change.finished else 0,
            keys.channel,
            change.event_type,
            "" if change.new_version is None else change.new_version,
            secrets.token_hex(8),
            "" if rate is None else rate.limit,
            "" if rate is None else rate.period_ms,
            change.expected_epoch,
            self.max_live_sessions
            if change.expected_version == 0 and change.new_version is None
            else "",
        ]
        result = await self._call(
            "commit", lambda: self._run_commit(script_keys, args), outcome_unknown=True
        )
        status = int(result[0])
        if status in (1, 2):
            epoch = result[1]
            return CommitResult(
                committed=True, epoch=epoch.decode() if isinstance(epoch, bytes) else str(epoch)
            )
        if status == 0:
            current = result[2] if len(result) > 3 else b""
            epoch = result[3] if len(result) > 3 else b""
            return CommitResult(
                committed=False,
                actual_version=int(result[1]),
                state_json=current or b"",
                epoch=epoch.decode() if isinstance(epoch, bytes) else str(epoch or ""),
            )
        if status == -3 and rate is not None:
            metrics.RATE_LIMITED.labels("switch").inc()
            verdict = Verdict(False, rate.limit, 0, int(result[1]), int(result[2]))
            raise RateLimited(
                f"rate limit of {rate.limit} commands per {rate.period_ms / 1000:g} s "
                "on this session exceeded",
                {"limit": "switch", "retry_after_ms": verdict.retry_after_ms},
                verdict.headers(),
            )
        if status == -4:
            raise SessionLimitReached(
                f"the server holds its maximum of {self.max_live_sessions} live sessions; "
                "retry later",
                {"limit": self.max_live_sessions},
            )
        if status == -1:
            raise SessionExists(
                f"session {change.session_id} already exists", {"session_id": change.session_id}
            )
        raise SessionNotFound(f"session {change.session_id} not found")

    async def delete(
        self,
        session_id: str,
        deletion_json: bytes = b'{"deleted":true}',
        expected_version: int | None = None,
        *,
        expected_epoch: str = "",
        event_id: str = "",
    ) -> Deleted | None:
        """Delete the session's keys, audit and publish the deletion.

        ``event_id`` is the deletion's audit event id ("": a random one).

        Returns:
            The deleted session's version and epoch; None when it did not exist
            (or, with ``expected_epoch``, exists as another incarnation: nothing
            is deleted then).

        Raises:
            Conflict: ``expected_version`` is given and differs; nothing deleted.
        """
        keys = self.keys(session_id)
        script_keys = self._script_keys(keys)
        args: list[Any] = [
            session_id,
            event_id or uuid.uuid4().hex,
            self.outbox_maxlen,
            keys.channel,
            deletion_json,
            "" if expected_version is None else expected_version,
            self.finished_ttl_ms,
            expected_epoch,
        ]
        reply = await self._call(
            "delete", lambda: self._delete(keys=script_keys, args=args), outcome_unknown=True
        )
        version, epoch = (int(reply[0]), reply[1]) if isinstance(reply, list) else (int(reply), b"")
        if version < 0:
            raise Conflict(
                "the session is not at the expected version",
                {"expected_version": expected_version, "actual_version": -version},
            )
        if version == 0:
            return None
        return Deleted(version, epoch.decode() if isinstance(epoch, bytes) else str(epoch))

    async def read_since(
        self, session_id: str, since: int, max_bytes: int | None = None
    ) -> HistorySlice:
        """Read the state, version, epoch and the changes after ``since``.

        The history holds the last ``history_length`` changes; when ``since`` is
        older than that, ``changes`` starts later than ``since + 1`` and the
        caller must fall back to a full state sync.

        Without ``max_bytes`` everything is read in one MULTI. With it, the
        state is read first; the history is read (one MULTI with the epoch,
        only up to that state's version) only when ``since`` is between 1 and
        the version and the missed changes, estimated as their count times the
        state's size (each change carries the whole state), weigh at most
        ``max_bytes``. Otherwise, or when the epoch changed in between,
        ``changes`` is empty: the caller sends a STATE_SYNC, and never more
        than about ``max_bytes`` of history is held in memory for one call.
        """
        keys = self.keys(session_id)
        if max_bytes is not None:
            return await self._read_bounded(keys, since, max_bytes)

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hmget(keys.state, ["s", "v", "e"])
                pipe.xrange(keys.history, min=f"{since + 1}-0", max="+")
                replies: list[Any] = await pipe.execute()
                return replies

        (state, version, epoch), entries = await self._call("read_since", read)
        if state is None:
            return HistorySlice(b"", 0, "", [])
        changes = [(int(entry_id.split(b"-")[0]), fields[b"c"]) for entry_id, fields in entries]
        return HistorySlice(state, int(version), epoch.decode(), changes)

    async def _read_bounded(self, keys: SessionKeys, since: int, max_bytes: int) -> HistorySlice:
        reply: list[Any] = await self._call(
            "read_since", lambda: self.client.hmget(keys.state, ["s", "v", "e"])
        )
        state, version, epoch = reply
        if state is None:
            return HistorySlice(b"", 0, "", [])
        current = HistorySlice(state, int(version), epoch.decode(), [])
        if since <= 0 or since >= current.version:
            return current
        if not replay_fits(since, current.version, len(state), max_bytes):
            return current

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hget(keys.state, "e")
                pipe.xrange(keys.history, min=f"{since + 1}-0", max=f"{current.version}-0")
                replies: list[Any] = await pipe.execute()
                return replies

        now_epoch, entries = await self._call("read_since", read)
        if now_epoch != epoch:
            return current
        changes = [(int(entry_id.split(b"-")[0]), fields[b"c"]) for entry_id, fields in entries]
        return HistorySlice(state, current.version, current.epoch, changes)

    async def claim_due(
        self, now: int, limit: int, lease_ms: int
    ) -> tuple[list[tuple[str, int]], int | None]:
        """Claim up to ``limit`` deadlines due at ``now`` for ``lease_ms``.

        Returns:
            The claimed ``(session_id, deadline)`` pairs, and the earliest
            deadline still pending (None when there is none).
        """
        reply = await self._call(
            "claim_due", lambda: self._claim(keys=[self.deadlines_key], args=[now, limit, lease_ms])
        )
        upcoming = int(float(reply[0])) if reply[0] not in (b"", "") else None
        claimed = [(reply[i].decode(), int(float(reply[i + 1]))) for i in range(1, len(reply), 2)]
        return claimed, upcoming

    async def ping(self) -> bool:
        """True when Redis answers PING."""
        try:
            return bool(await self.client.ping())
        except (redis_errors.RedisError, OSError):
            return False

    async def stats(self) -> StoreStats:
        """Read the figures ``/metrics`` reports (one pipelined round trip)."""
        audit = [
            self.names.audit_counter(name) for name in ("persisted", "retries", "dead_lettered")
        ]

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.scard(self.active_key)
                pipe.xlen(self.outbox_key)
                pipe.get(self.dropped_key)
                pipe.zcard(self.deadlines_key)
                pipe.xrange(self.outbox_key, count=1)
                pipe.mget(audit)
                replies: list[Any] = await pipe.execute()
                return replies

        replies = await self._call("stats", read)
        active, outbox, dropped, deadlines, oldest, (persisted, retries, dead) = replies
        return StoreStats(
            active_sessions=int(active),
            outbox_length=int(outbox),
            outbox_dropped=int(dropped or 0),
            deadlines=int(deadlines),
            oldest_outbox_ms=int(oldest[0][0].split(b"-")[0]) if oldest else None,
            audit_persisted=int(persisted or 0),
            audit_retries=int(retries or 0),
            audit_dead_lettered=int(dead or 0),
        )

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
