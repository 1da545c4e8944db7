"""What the command path needs from the audit store: the ``Archive`` and ``DurableSink`` contracts.

The node (``synckairos.node``) and recovery (``synckairos.audit.recovery``)
depend on these protocols only, never on PostgreSQL: ``AuditArchive``
(``audit/archive.py``) and ``DurableWriter`` (``audit/durable.py``) are the
implementations a node is handed at construction (``app.create_app``,
``cli``); a test may hand any object of the same shape. This module imports
nothing of the audit pipeline, so the dependency runs one way: node → contract
← archive, durable.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["Archive", "DurableSink", "LatestEvent", "OutboxEvent", "Snapshot"]

OutboxEvent = tuple[str, str, int, str, str, str]
"""``(event_id, session_id, version, event_type, epoch, change_json)``."""

_TERMINAL = ("expired", "completed", "cancelled")


class Snapshot(msgspec.Struct, frozen=True):
    """A live session's newest persisted state: what a restore starts from."""

    state_json: bytes
    version: int
    """The persisted version (``sync_events.version``)."""
    epoch: str
    """The incarnation it belongs to (``sync_events.epoch``; "" in rows older than epochs)."""


class LatestEvent(msgspec.Struct, frozen=True):
    """The newest persisted event of a session."""

    session_id: str
    event_type: str
    version: int
    status: str | None
    epoch: str = ""
    """The incarnation the event belongs to."""

    @property
    def deleted(self) -> bool:
        """True when the session's last event is its deletion."""
        return self.event_type == "session_deleted"

    @property
    def unfinished(self) -> bool:
        """True when the session exists and is not expired, completed or cancelled."""
        return not self.deleted and self.status not in _TERMINAL


class Archive(Protocol):
    """Where sessions Redis lost are restored from (the audit trail).

    A session's *latest* event is the one committed last; a latest event
    ``session_deleted`` means the session is gone for good and is never
    restored. Every method may raise ``StoreUnavailable`` (the archive cannot
    be reached) except ``ping`` and ``close``.
    """

    async def latest_snapshot(self, session_id: str) -> Snapshot | None:
        """The newest state of the session's newest incarnation; None if none or deleted."""
        ...

    async def latest_events(self) -> list[LatestEvent]:
        """The newest event of every session in the archive."""
        ...

    async def ping(self) -> bool:
        """True when the archive answers (never raises)."""
        ...

    async def close(self) -> None:
        """Release the archive's connections; it may be used again afterwards (reopens)."""
        ...


class DurableSink(Protocol):
    """Durability level ``postgres``: writes changes to the audit store before the answer."""

    async def write(self, events: list[OutboxEvent]) -> None:
        """Write ``events`` (as the outbox relay would, same event ids) durably.

        Raises:
            StoreUnavailable: the write did not succeed within its budget; the
                change is in Redis, its persistence unknown.
        """
        ...

    async def close(self) -> None:
        """Flush nothing more and release the connections."""
        ...
