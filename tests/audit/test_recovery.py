"""``recover_all`` and ``reconcile`` on a ``Restorer`` (no node, no server)."""

from __future__ import annotations

import msgspec

from synckairos.audit.contract import Archive, LatestEvent, Snapshot
from synckairos.audit.recovery import reconcile, recover_all
from synckairos.store import StoredSession


class MemoryArchive:
    """An ``Archive`` holding the latest events given."""

    def __init__(self, events: list[LatestEvent]) -> None:
        self.events = events

    async def latest_snapshot(self, session_id: str) -> Snapshot | None:
        return None

    async def latest_events(self) -> list[LatestEvent]:
        return self.events

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class MemorySessions:
    """The store side of a ``Restorer``: ``load`` only."""

    def __init__(self, stored: dict[str, StoredSession]) -> None:
        self.stored = stored

    async def load(self, session_id: str) -> StoredSession | None:
        return self.stored.get(session_id)


class FakeRestorer:
    """A ``Restorer`` recording what it was asked to restore."""

    def __init__(self, archive: Archive, stored: dict[str, StoredSession]) -> None:
        self.store = MemorySessions(stored)
        self.archive = archive
        self.restored: list[tuple[str, int]] = []

    async def restore(self, session_id: str, *, over_version: int = 0) -> bool:
        self.restored.append((session_id, over_version))
        return True


def _stored(version: int, epoch: str = "e") -> StoredSession:
    return StoredSession(msgspec.json.encode({"version": version}), epoch)


async def test_recover_all_restores_only_unfinished_sessions_redis_lacks():
    events = [
        LatestEvent("lost", "cycle_switched", 3, "running", "e"),
        LatestEvent("here", "cycle_switched", 3, "running", "e"),
        LatestEvent("done", "session_completed", 4, "completed", "e"),
        LatestEvent("gone", "session_deleted", 5, None, "e"),
    ]
    restorer = FakeRestorer(MemoryArchive(events), {"here": _stored(3)})
    assert await recover_all(restorer) == ["lost"]
    assert restorer.restored == [("lost", 0)]


async def test_reconcile_repairs_where_postgres_is_newer_in_the_same_incarnation():
    events = [
        LatestEvent("behind", "cycle_switched", 9, "running", "e"),
        LatestEvent("ahead", "cycle_switched", 2, "running", "e"),
        LatestEvent("same", "cycle_switched", 4, "running", "e"),
        LatestEvent("reborn", "cycle_switched", 9, "running", "old"),
    ]
    stored = {"behind": _stored(5), "ahead": _stored(7), "same": _stored(4), "reborn": _stored(1)}
    restorer = FakeRestorer(MemoryArchive(events), stored)
    report = await reconcile(restorer)
    assert report.postgres_newer == ["behind"] and report.repaired == ["behind"]
    assert sorted(report.redis_newer) == ["ahead", "reborn"] and report.in_step == 1
    assert restorer.restored == [("behind", 5)]
