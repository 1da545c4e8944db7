"""``RedisStore``: the state store on Redis, one Lua call per commit.

Key schema (``P`` is the key prefix, ``sk`` by default; ``{sid}`` is a hash tag
so one session's keys share a Redis Cluster slot):

* ``P:{sid}``          hash: ``s`` state JSON, ``v`` version, ``e`` history epoch
* ``P:{sid}:history``  stream of changes, entry id ``<version>-0`` (RECONNECT replay)
* ``P:{sid}:updates``  pub/sub channel of the session
* ``P:deadlines``      sorted set of running timers' deadlines (score: epoch ms)
* ``P:outbox``         stream of audit events awaiting PostgreSQL (bounded)
* ``P:outbox:dropped`` counter of audit events trimmed unread
* ``P:active``         set of unfinished sessions

The scripts are the ``.lua`` files beside this module, read once at import and
registered per client; redis-py runs them by EVALSHA and reloads on NOSCRIPT.
Driver errors become ``StoreUnavailable`` here, at the boundary.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from synckairos.config import Settings
from synckairos.exceptions import Conflict, SessionExists, SessionNotFound, StoreUnavailable
from synckairos.store import Change, CommitResult, HistorySlice, StoredSession, StoreStats

__all__ = ["RedisStore", "SessionKeys", "connect"]

_SCRIPTS = {path.stem: path.read_text() for path in (Path(__file__).parent / "lua").glob("*.lua")}

_DRIVER_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


def connect(url: str, *, max_connections: int = 256, wait_s: float = 5.0) -> aioredis.Redis:
    """A client for the store whose pool *waits* for a free connection.

    redis-py's default pool raises "Too many connections" once its limit is
    reached; a burst (thousands of sockets syncing at once) would then fail
    requests that a moment's wait serves. Here a request waits up to
    ``wait_s`` for a connection, then fails with a connection error (503).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_s,
        socket_connect_timeout=2,
        socket_timeout=5,
        socket_keepalive=True,
    )
    return aioredis.Redis(connection_pool=pool)


class SessionKeys:
    """Names of the Redis keys and channel of one session."""

    __slots__ = ("channel", "history", "state")

    def __init__(self, prefix: str, session_id: str) -> None:
        base = f"{prefix}:{{{session_id}}}"
        self.state = base
        """Hash holding the state JSON, version and epoch."""
        self.history = f"{base}:history"
        """Stream of the session's recent changes."""
        self.channel = f"{base}:updates"
        """Pub/sub channel of the session's changes."""


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
    ) -> None:
        self.client = client
        """The redis-py asyncio client (``decode_responses=False``)."""
        self.prefix = prefix
        self.history_maxlen = history_maxlen
        self.outbox_maxlen = outbox_maxlen
        self.finished_ttl_ms = finished_ttl_ms
        self.deadlines_key = f"{prefix}:deadlines"
        self.outbox_key = f"{prefix}:outbox"
        self.dropped_key = f"{prefix}:outbox:dropped"
        self.active_key = f"{prefix}:active"
        self._commit = client.register_script(_SCRIPTS["session_commit"])
        self._delete = client.register_script(_SCRIPTS["session_delete"])
        self._claim = client.register_script(_SCRIPTS["deadline_claim"])

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """A store on ``settings``' Redis, with its prefix, bounds and pool size."""
        return cls(
            connect(settings.redis_target(), max_connections=settings.redis_max_connections),
            prefix=settings.key_prefix,
            history_maxlen=settings.history_maxlen,
            outbox_maxlen=settings.outbox_maxlen,
            finished_ttl_ms=settings.finished_ttl_s * 1000,
        )

    def keys(self, session_id: str) -> SessionKeys:
        """Return the key names of ``session_id``."""
        return SessionKeys(self.prefix, session_id)

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

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except _DRIVER_ERRORS as exc:
            raise StoreUnavailable(f"state store unreachable: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise StoreUnavailable(f"state store error: {exc}") from exc

    async def load(self, session_id: str) -> StoredSession | None:
        """Return the session's state JSON and epoch, or None when absent."""
        state, epoch = await self._call(self.client.hmget(self.keys(session_id).state, ["s", "e"]))
        if state is None:
            return None
        return StoredSession(state_json=state, epoch=(epoch or b"").decode())

    async def commit(self, change: Change) -> CommitResult:
        """Commit ``change`` atomically if the stored version matches.

        Raises:
            SessionExists: ``expected_version`` is 0 and the session exists.
            SessionNotFound: the session does not exist (any other version).
            StoreUnavailable: Redis cannot be reached or failed.
        """
        keys = self.keys(change.session_id)
        result = await self._call(
            self._commit(
                keys=self._script_keys(keys),
                args=[
                    change.expected_version,
                    change.state_json,
                    change.change_json,
                    "" if change.deadline_ms is None else change.deadline_ms,
                    change.session_id,
                    secrets.token_hex(8),
                    self.history_maxlen,
                    self.outbox_maxlen,
                    uuid.uuid4().hex,
                    self.finished_ttl_ms if change.finished else 0,
                    keys.channel,
                    change.event_type,
                    "" if change.new_version is None else change.new_version,
                ],
            )
        )
        status = int(result[0])
        if status == 1:
            epoch = result[1]
            return CommitResult(
                committed=True, epoch=epoch.decode() if isinstance(epoch, bytes) else str(epoch)
            )
        if status == 0:
            return CommitResult(committed=False, actual_version=int(result[1]))
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
    ) -> bool:
        """Delete the session's keys, audit and publish the deletion.

        Returns:
            False when the session did not exist.

        Raises:
            Conflict: ``expected_version`` is given and differs; nothing deleted.
        """
        keys = self.keys(session_id)
        version = await self._call(
            self._delete(
                keys=self._script_keys(keys),
                args=[
                    session_id,
                    uuid.uuid4().hex,
                    self.outbox_maxlen,
                    keys.channel,
                    deletion_json,
                    "" if expected_version is None else expected_version,
                ],
            )
        )
        if int(version) < 0:
            raise Conflict(
                "the session is not at the expected version",
                {"expected_version": expected_version, "actual_version": -int(version)},
            )
        return int(version) > 0

    async def read_since(self, session_id: str, since: int) -> HistorySlice:
        """Read the state, version, epoch and the changes after ``since`` in one MULTI.

        The history holds the last ``history_maxlen`` changes; when ``since`` is
        older than that, ``changes`` starts later than ``since + 1`` and the
        caller must fall back to a full state sync.
        """
        keys = self.keys(session_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.state, ["s", "v", "e"])
            pipe.xrange(keys.history, min=f"{since + 1}-0", max="+")
            (state, version, epoch), entries = await self._call(pipe.execute())
        if state is None:
            return HistorySlice(b"", 0, "", [])
        changes = [(int(entry_id.split(b"-")[0]), fields[b"c"]) for entry_id, fields in entries]
        return HistorySlice(state, int(version), epoch.decode(), changes)

    async def claim_due(
        self, now: int, limit: int, lease_ms: int
    ) -> tuple[list[tuple[str, int]], int | None]:
        """Claim up to ``limit`` deadlines due at ``now`` for ``lease_ms``.

        Returns:
            The claimed ``(session_id, deadline)`` pairs, and the earliest
            deadline still pending (None when there is none).
        """
        reply = await self._call(
            self._claim(keys=[self.deadlines_key], args=[now, limit, lease_ms])
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
            f"{self.prefix}:audit:{name}" for name in ("persisted", "retries", "dead_lettered")
        ]
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.scard(self.active_key)
            pipe.xlen(self.outbox_key)
            pipe.get(self.dropped_key)
            pipe.zcard(self.deadlines_key)
            pipe.xrange(self.outbox_key, count=1)
            pipe.mget(audit)
            replies = await self._call(pipe.execute())
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
