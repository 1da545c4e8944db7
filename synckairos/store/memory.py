"""``MemoryStore``: the ``Store`` contract in one process's memory (a test double).

It keeps what ``RedisStore`` keeps (state, version, epoch, a bounded history
per session, tombstones, deadlines, the audit outbox, the live-session set,
per-session rate limiters) with the same checks and replies, so node, hub,
scheduler and socket logic can be unit-tested without a server. Every
behaviour it claims is pinned by ``tests/store/test_store_contract.py``, which
runs the same tests against ``RedisStore``.

Time comes from ``clock`` (epoch ms; Redis uses its own ``TIME``), so TTLs and
rate limits can be driven by a fake clock. Publishing goes to ``publish``
(``MemoryBroker.publish`` of ``synckairos.pubsub.memory``) with the payload
Redis publishes. Not for production: one process, nothing survives it.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from collections.abc import Callable

from synckairos.change import publish_payload
from synckairos.config import Rate
from synckairos.exceptions import (
    Conflict,
    RateLimited,
    SessionExists,
    SessionLimitReached,
    SessionNotFound,
)
from synckairos.ratelimit import Verdict, gcra
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

__all__ = ["MemoryStore", "OutboxEntry"]

#: ``(commit time ms, fields)``: fields as the commit script writes them
#: (``id``, ``sid``, ``v``, ``t``, ``e``, ``c``).
OutboxEntry = tuple[int, dict[str, str | bytes]]


def _wall_clock_ms() -> float:
    return time.time() * 1000


class _Record:
    """One session's hash (``s``, ``v``, ``e``; ``d`` a tombstone) and history."""

    __slots__ = ("deleted", "epoch", "expires_at", "history", "state", "version")

    def __init__(self) -> None:
        self.state = b""
        self.version = 0
        self.epoch = ""
        self.deleted = False
        self.expires_at: float | None = None
        self.history: list[tuple[int, bytes, str]] = []
        """``(version, change_json, commit token)`` in version order."""


class MemoryStore:
    """State store in memory; same contract and replies as ``RedisStore``."""

    def __init__(
        self,
        *,
        history_maxlen: int = 200,
        outbox_maxlen: int = 1_000_000,
        finished_ttl_ms: int = 86_400_000,
        history_max_bytes: int | None = None,
        max_live_sessions: int = 0,
        clock: Callable[[], float] = _wall_clock_ms,
        publish: Callable[[str, bytes], object] | None = None,
    ) -> None:
        self.history_maxlen = history_maxlen
        self.history_max_bytes = history_max_bytes
        self.max_live_sessions = max_live_sessions
        self.outbox_maxlen = outbox_maxlen
        self.finished_ttl_ms = finished_ttl_ms
        self.clock = clock
        """Epoch ms, as Redis's ``TIME`` (TTLs, rate limits, outbox entry times)."""
        self.publish = publish
        """Receives ``(session_id, payload)`` of every commit and delete (None: dropped)."""
        self._records: dict[str, _Record] = {}
        self._deadlines: dict[str, int] = {}
        self._active: set[str] = set()
        self._limiters: dict[str, tuple[float, float]] = {}
        """Session id → (GCRA TAT, expiry), both ms."""
        self.outbox: list[OutboxEntry] = []
        """The audit outbox, oldest first (bounded by ``outbox_maxlen``)."""
        self.outbox_dropped = 0
        self.closed = False

    # ------------------------------------------------------------ helpers

    def _record(self, session_id: str) -> _Record | None:
        """The session's record unless absent or expired (expired ones are dropped)."""
        record = self._records.get(session_id)
        expired = record is not None and record.expires_at is not None
        if expired and record is not None and self.clock() >= (record.expires_at or 0.0):
            del self._records[session_id]
            return None
        return record

    def _append_outbox(self, fields: dict[str, str | bytes]) -> None:
        if len(self.outbox) >= self.outbox_maxlen:
            self.outbox_dropped += 1
        self.outbox.append((int(self.clock()), fields))
        del self.outbox[: max(0, len(self.outbox) - self.outbox_maxlen)]

    def _send(self, session_id: str, payload: bytes) -> None:
        if self.publish is not None:
            self.publish(session_id, payload)

    def _hit(self, session_id: str, rate: Rate) -> Verdict:
        """One hit on the session's limiter (``ratelimit.gcra``, the rule of ``gcra.lua``)."""
        now = float(int(self.clock()))
        tat, expires = self._limiters.get(session_id, (0.0, 0.0))
        verdict, new_tat = gcra(tat if expires > now else 0.0, now, rate)
        if new_tat is not None:
            self._limiters[session_id] = (new_tat, now + math.ceil(new_tat - now))
        return verdict

    def history_length(self, change_bytes: int) -> int:
        """Entries the history keeps after a commit of ``change_bytes`` bytes (as Redis)."""
        return history_length(self.history_maxlen, self.history_max_bytes, change_bytes)

    # ------------------------------------------------------------ the contract

    async def load(self, session_id: str) -> StoredSession | None:
        """Return the session's state JSON and epoch, or None when absent."""
        record = self._record(session_id)
        if record is None:
            return None
        if record.deleted:
            return StoredSession(b"", "", deleted=True)
        return StoredSession(state_json=record.state, epoch=record.epoch)

    async def commit(self, change: Change) -> CommitResult:
        """Commit ``change`` if the stored version (and epoch) match; see ``Store.commit``."""
        session_id = change.session_id
        record = self._record(session_id)
        current = record if record is not None and not record.deleted else None
        expected = change.expected_version
        version = expected + 1 if change.new_version is None else change.new_version
        if expected == 0:
            if current is not None:
                raise SessionExists(
                    f"session {session_id} already exists", {"session_id": session_id}
                )
            cap = self.max_live_sessions if change.new_version is None else 0
            if cap > 0 and len(self._active) >= cap:
                raise SessionLimitReached(
                    f"the server holds its maximum of {self.max_live_sessions} live sessions; "
                    "retry later",
                    {"limit": self.max_live_sessions},
                )
        else:
            if current is None:
                raise SessionNotFound(f"session {session_id} not found")
            if current.version != expected or (
                change.expected_epoch and current.epoch != change.expected_epoch
            ):
                return CommitResult(
                    committed=False,
                    actual_version=current.version,
                    state_json=current.state,
                    epoch=current.epoch,
                )
        rate = change.rate
        if rate is not None:
            verdict = self._hit(session_id, rate)
            if not verdict.allowed:
                raise RateLimited(
                    f"rate limit of {rate.limit} commands per {rate.period_ms / 1000:g} s "
                    "on this session exceeded",
                    {"limit": "switch", "retry_after_ms": verdict.retry_after_ms},
                    verdict.headers(),
                )
        if current is None:
            current = _Record()
            current.epoch = change.expected_epoch or secrets.token_hex(8)
            self._records[session_id] = current
        current.state = change.state_json
        current.version = version
        current.history.append((version, change.change_json, secrets.token_hex(8)))
        del current.history[
            : max(0, len(current.history) - self.history_length(len(change.change_json)))
        ]
        if change.deadline_ms is None:
            self._deadlines.pop(session_id, None)
        else:
            self._deadlines[session_id] = change.deadline_ms
        self._append_outbox(
            {
                "id": change.event_id or uuid.uuid4().hex,
                "sid": session_id,
                "v": str(version),
                "t": change.event_type,
                "e": current.epoch,
                "c": change.change_json,
            }
        )
        if change.finished:
            self._active.discard(session_id)
            current.expires_at = self.clock() + self.finished_ttl_ms
        else:
            self._active.add(session_id)
        self._send(session_id, publish_payload(change.change_json, current.epoch))
        return CommitResult(committed=True, epoch=current.epoch)

    async def delete(
        self,
        session_id: str,
        deletion_json: bytes = b'{"deleted":true}',
        expected_version: int | None = None,
        *,
        expected_epoch: str = "",
        event_id: str = "",
    ) -> Deleted | None:
        """Delete the session, leave a tombstone, audit and publish; see ``Store.delete``."""
        record = self._record(session_id)
        if record is None or record.deleted:
            return None
        if expected_epoch and expected_epoch != record.epoch:
            return None
        if expected_version is not None and expected_version != record.version:
            raise Conflict(
                "the session is not at the expected version",
                {"expected_version": expected_version, "actual_version": record.version},
            )
        tombstone = _Record()
        tombstone.deleted = True
        tombstone.expires_at = self.clock() + self.finished_ttl_ms
        self._records[session_id] = tombstone
        self._deadlines.pop(session_id, None)
        self._active.discard(session_id)
        self._append_outbox(
            {
                "id": event_id or uuid.uuid4().hex,
                "sid": session_id,
                "v": str(record.version),
                "t": "session_deleted",
                "e": record.epoch,
                "c": deletion_json,
            }
        )
        self._send(session_id, deletion_json)
        return Deleted(record.version, record.epoch)

    async def read_since(
        self, session_id: str, since: int, max_bytes: int | None = None
    ) -> HistorySlice:
        """Read the state, version, epoch and the changes after ``since``; see ``Store``."""
        record = self._record(session_id)
        if record is None or record.deleted:
            return HistorySlice(b"", 0, "", [])
        if max_bytes is not None and (
            since <= 0
            or since >= record.version
            or not replay_fits(since, record.version, len(record.state), max_bytes)
        ):
            return HistorySlice(record.state, record.version, record.epoch, [])
        changes = [
            (version, change)
            for version, change, _ in record.history
            if since < version <= record.version
        ]
        return HistorySlice(record.state, record.version, record.epoch, changes)

    async def claim_due(
        self, now: int, limit: int, lease_ms: int
    ) -> tuple[list[tuple[str, int]], int | None]:
        """Claim up to ``limit`` deadlines due at ``now`` for ``lease_ms``; see ``Store``."""
        due = sorted(
            (score, session_id) for session_id, score in self._deadlines.items() if score <= now
        )[: max(0, limit)]
        for _, session_id in due:
            self._deadlines[session_id] = now + lease_ms
        upcoming = min(self._deadlines.values(), default=None)
        return [(session_id, score) for score, session_id in due], upcoming

    async def ping(self) -> bool:
        """Always True: memory answers."""
        return not self.closed

    async def stats(self) -> StoreStats:
        """The figures ``/metrics`` reports (audit counters stay 0: no worker here)."""
        return StoreStats(
            active_sessions=len(self._active),
            outbox_length=len(self.outbox),
            outbox_dropped=self.outbox_dropped,
            deadlines=len(self._deadlines),
            oldest_outbox_ms=self.outbox[0][0] if self.outbox else None,
        )

    async def close(self) -> None:
        """Nothing to release; ``ping`` answers False afterwards."""
        self.closed = True
