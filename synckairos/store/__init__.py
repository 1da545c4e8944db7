"""The state-store contract: where committed sessions live (Redis in production).

This package owns the contract and its value types: ``Store`` is what the
service layer (node, scheduler, sockets) relies on; ``StoredSession``,
``Change``, ``CommitResult``, ``Deleted``, ``HistorySlice`` and ``StoreStats``
are what goes in and out. Implementations: ``RedisStore``
(``synckairos.redis.store``, production) and ``MemoryStore``
(``synckairos.store.memory``, the in-process test double); one set of
contract tests runs against both (``tests/store/test_store_contract.py``).

A commit is atomic: the version check, the new state, the session history
entry, the deadline, the audit outbox entry and the publish happen together
or not at all.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from synckairos.config import Rate

__all__ = [
    "Change",
    "CommitResult",
    "Deleted",
    "HistorySlice",
    "Store",
    "StoreStats",
    "StoredSession",
    "history_length",
    "replay_fits",
]


def history_length(maxlen: int, max_bytes: int | None, change_bytes: int) -> int:
    """Entries a session's history keeps after a commit of ``change_bytes`` bytes.

    min(``maxlen``, ``max_bytes`` // ``change_bytes``), at least 1: one
    session's changes all weigh about the same (each carries the whole state),
    so this bounds the history's bytes. ``max_bytes`` None: ``maxlen`` only.
    """
    if max_bytes is None:
        return maxlen
    return max(1, min(maxlen, max_bytes // max(1, change_bytes)))


def replay_fits(since: int, version: int, state_size: int, max_bytes: int | None) -> bool:
    """True when replaying the versions after ``since`` up to ``version`` fits ``max_bytes``.

    Each change carries the whole state, so the replay is estimated as
    (missed versions) x ``state_size``, from the state alone (a store reads
    the history only when this holds). ``max_bytes`` None: no bound.
    """
    if max_bytes is None:
        return True
    return max(version - since, 0) * state_size <= max_bytes


class StoredSession(msgspec.Struct, frozen=True):
    """A session as read from the store: its state JSON and history epoch."""

    state_json: bytes
    epoch: str
    deleted: bool = False
    """A tombstone: the session was deleted recently (``state_json`` is empty);
    it must not be restored from the audit trail."""


class HistorySlice(msgspec.Struct, frozen=True):
    """A consistent read of a session's state and the history after a version.

    ``changes`` are ``(version, change_json)`` in version order, all newer
    than the version asked for and none newer than ``version``. An empty
    ``state_json`` means the session does not exist.
    """

    state_json: bytes
    version: int
    epoch: str
    changes: list[tuple[int, bytes]]


class Change(msgspec.Struct, frozen=True):
    """Everything one commit writes, already encoded."""

    session_id: str
    expected_version: int
    """Version the change was computed from; 0 creates the session if absent."""
    state_json: bytes
    change_json: bytes
    """``{"version", "event", "state", "ts"}``: history entry, audit row, publish payload."""
    event_type: str
    deadline_ms: int | None
    finished: bool
    """True when the new status is terminal (the session then expires after a TTL)."""
    new_version: int | None = None
    """Version to write instead of ``expected_version + 1`` (restores only: above
    every version the incarnation was given, see ``Node.restore``; < 2**53)."""
    rate: Rate | None = None
    """The session's command rate limit this commit counts against (None: not limited)."""
    expected_epoch: str = ""
    """Epoch of the state the change was computed from ("": not checked). On a
    create (``expected_version`` 0) the epoch to give the session instead: a
    restore keeps its incarnation's; "" makes a new one (a new incarnation)."""
    event_id: str = ""
    """Id of the change's audit event (its outbox entry and ``sync_events.id``),
    chosen by the caller so it can write the same row itself (durability level
    postgres); "": the store picks a random one."""


class Deleted(msgspec.Struct, frozen=True):
    """A deletion that happened: the session's last version and epoch (its audit row)."""

    version: int
    epoch: str


class CommitResult(msgspec.Struct, frozen=True):
    """Outcome of ``Store.commit``: ``committed`` or the version found instead."""

    committed: bool
    epoch: str = ""
    """The history epoch: of the commit, or of the current state on a mismatch."""
    actual_version: int = 0
    state_json: bytes = b""
    """On a version mismatch, the current state (b"": not provided)."""


class StoreStats(msgspec.Struct, frozen=True):
    """Figures for ``/metrics``, read from the store on scrape."""

    active_sessions: int
    outbox_length: int
    outbox_dropped: int
    deadlines: int
    oldest_outbox_ms: int | None = None
    """Commit time of the oldest audit event not yet relayed (None: outbox empty)."""
    audit_persisted: int = 0
    audit_retries: int = 0
    audit_dead_lettered: int = 0


class Store(Protocol):
    """What the service layer needs from a state store."""

    async def load(self, session_id: str) -> StoredSession | None:
        """Return the session, or None when it does not exist."""
        ...

    async def commit(self, change: Change) -> CommitResult:
        """Commit ``change`` if the stored version is ``change.expected_version``.

        Raises:
            SessionExists: creating (expected version 0) a session that exists.
            SessionNotFound: the session vanished (deleted) meanwhile.
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def delete(
        self,
        session_id: str,
        deletion_json: bytes = ...,
        expected_version: int | None = None,
        *,
        expected_epoch: str = "",
        event_id: str = "",
    ) -> Deleted | None:
        """Delete every key of the session and publish ``deletion_json``.

        ``event_id`` is the deletion's audit event id ("": a random one).

        Returns:
            The deleted session's version and epoch; None when it did not exist
            (or, with ``expected_epoch``, is another incarnation; nothing is
            deleted then).

        Raises:
            Conflict: ``expected_version`` is given and differs; nothing deleted.
        """
        ...

    async def read_since(
        self, session_id: str, since: int, max_bytes: int | None = None
    ) -> HistorySlice:
        """Read, atomically, the session's state and its changes after ``since``.

        With ``max_bytes``, changes that would weigh more are not read
        (``changes`` is empty: the caller sends the state instead).
        """
        ...

    async def claim_due(
        self, now: int, limit: int, lease_ms: int
    ) -> tuple[list[tuple[str, int]], int | None]:
        """Claim due deadlines for a lease; returns them and the next pending one."""
        ...

    async def ping(self) -> bool:
        """True when the store answers."""
        ...

    async def stats(self) -> StoreStats:
        """Return figures for the metrics endpoint."""
        ...
