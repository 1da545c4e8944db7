"""Bulk recovery and reconciliation between Redis and PostgreSQL.

* ``recover_all``: after a total Redis loss, restore every session whose
  newest persisted event leaves it unfinished (create-if-absent).
* ``reconcile``: compare each session's Redis version with its newest
  persisted version, and repair the ones where PostgreSQL is newer: what a
  failover that lost acknowledged Redis writes leaves behind.

Versions are compared only within one incarnation (epoch): a session deleted
and created again restarts at version 1, so Redis holding another epoch than
PostgreSQL's newest event is a newer incarnation whose events are on their
way, never a reason to overwrite it. Versions are plain Python ints: a
restored session's are ~1.8e15 (``Node.restore``).

Recovery sits below the node: it needs only a ``Restorer`` (what it asks of
one: the store, the archive, ``restore``), which ``synckairos.node.Node``
satisfies; it never imports the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from synckairos.audit.contract import Archive
from synckairos.store import StoredSession

__all__ = ["Progress", "ReconcileReport", "Restorer", "SessionReader", "reconcile", "recover_all"]

Progress = Callable[[int, int], None]
"""Called with (sessions done, sessions in all) after each session."""


class SessionReader(Protocol):
    """What recovery reads of the state store (``synckairos.store.Store`` is one)."""

    async def load(self, session_id: str) -> StoredSession | None:
        """The session as stored, a tombstone, or None when absent."""
        ...


class Restorer(Protocol):
    """What recovery needs of a node: ``synckairos.node.Node`` is one."""

    @property
    def store(self) -> SessionReader:
        """The state store sessions are restored into."""
        ...

    @property
    def archive(self) -> Archive | None:
        """The audit store sessions are restored from (recovery needs one)."""
        ...

    async def restore(self, session_id: str, *, over_version: int = 0) -> bool:
        """Restore one session from its latest snapshot (``Node.restore``'s contract)."""
        ...


class ReconcileReport(msgspec.Struct):
    """Outcome of ``reconcile``: session ids by what was found."""

    checked: int = 0
    in_step: int = 0
    redis_newer: list[str] = msgspec.field(default_factory=list)
    """Redis ahead of PostgreSQL (or on a newer incarnation): normal while the
    pipeline drains."""
    postgres_newer: list[str] = msgspec.field(default_factory=list)
    """PostgreSQL ahead of Redis: Redis lost acknowledged writes."""
    missing_in_redis: list[str] = msgspec.field(default_factory=list)
    """Unfinished in PostgreSQL, absent from Redis."""
    repaired: list[str] = msgspec.field(default_factory=list)


async def recover_all(node: Restorer, progress: Progress | None = None) -> list[str]:
    """Restore every unfinished session Redis lacks; returns the ids restored.

    Raises:
        StoreUnavailable: Redis or the archive cannot be reached.
    """
    assert node.archive is not None, "recover_all needs an audit store"
    candidates = [e.session_id for e in await node.archive.latest_events() if e.unfinished]
    restored: list[str] = []
    for done, session_id in enumerate(candidates, 1):
        if await node.store.load(session_id) is None and await node.restore(session_id):
            restored.append(session_id)
        if progress is not None:
            progress(done, len(candidates))
    return restored


async def reconcile(
    node: Restorer, *, repair: bool = True, progress: Progress | None = None
) -> ReconcileReport:
    """Compare Redis and PostgreSQL versions; repair where PostgreSQL is newer.

    Raises:
        StoreUnavailable: Redis or the archive cannot be reached.
    """
    assert node.archive is not None, "reconcile needs an audit store"
    report = ReconcileReport()
    events = [e for e in await node.archive.latest_events() if not e.deleted]
    for done, event in enumerate(events, 1):
        report.checked += 1
        stored = await node.store.load(event.session_id)
        if stored is not None and stored.deleted:
            report.in_step += 1  # deleted; the deletion is on its way to PostgreSQL
        elif stored is None:
            if event.unfinished:
                report.missing_in_redis.append(event.session_id)
                if repair and await node.restore(event.session_id):
                    report.repaired.append(event.session_id)
            else:
                report.in_step += 1  # finished and expired from Redis: expected
        else:
            redis_version = int(msgspec.json.decode(stored.state_json)["version"])
            if event.epoch and stored.epoch and stored.epoch != event.epoch:
                report.redis_newer.append(event.session_id)  # another incarnation
            elif redis_version == event.version:
                report.in_step += 1
            elif redis_version > event.version:
                report.redis_newer.append(event.session_id)
            else:
                report.postgres_newer.append(event.session_id)
                if repair and await node.restore(event.session_id, over_version=redis_version):
                    report.repaired.append(event.session_id)
        if progress is not None:
            progress(done, len(events))
    return report
