"""``Node.restore`` on a real Redis and PostgreSQL, with a pinned clock.

The archive rows are written directly (what the worker would have stored), so
each test states exactly what PostgreSQL holds; the restore then goes through
``AuditArchive`` and the commit script as in production. The fake clock reads
1.8e12 ms, so the clock's microseconds are 1.8e15.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from synckairos.audit.archive import AuditArchive
from synckairos.core import CreateSession, SessionState, Start, Switch
from synckairos.exceptions import Conflict, SessionExists
from synckairos.node import Node, Preconditions, restore_version
from synckairos.redis.store import RedisStore
from tests.helpers import FakeClock, session_body


@pytest.fixture
async def archive(audit_dsn: str) -> AsyncIterator[AuditArchive]:
    opened = AuditArchive(audit_dsn)
    yield opened
    await opened.close()


async def _persist(
    dsn: str, state: SessionState, epoch: str, committed_at_ms: int, event_type: str = "x"
) -> None:
    """Store ``state`` as a row of ``sync_events`` (as the worker would)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO sync_events (id, session_id, event_type, state_snapshot, version,"
            " epoch, committed_at_ms) VALUES ($1::text::uuid, $2::text::uuid, $3,"
            " $4::text::jsonb, $5, $6, $7)",
            str(uuid.uuid4()),
            state.session_id,
            event_type,
            msgspec.json.encode(state).decode() if event_type != "session_deleted" else None,
            state.version,
            epoch,
            committed_at_ms,
        )
    finally:
        await conn.close()


async def _started(store: RedisStore, clock: FakeClock) -> tuple[SessionState, str]:
    """A started session in Redis; returns its state and epoch."""
    node = Node(store, clock=clock)
    spec = msgspec.convert(session_body(), CreateSession)
    await node.create(spec)
    clock.advance(10)
    result = await node.execute(spec.session_id, Start())
    return result.transition.state, result.epoch


async def _lose(store: RedisStore, session_id: str) -> None:
    keys = store.keys(session_id)
    await store.client.delete(keys.state, keys.history)


def _restoring(store: RedisStore, clock: FakeClock, archive: AuditArchive) -> Node:
    return Node(store, clock=clock, archive=archive)


def test_restore_version_is_above_the_persisted_version_and_the_clock_in_us():
    assert restore_version(7, 1_800_000_000_000) == 1_800_000_000_000_000
    assert restore_version(2_000_000_000_000_000, 1_800_000_000_000) == 2_000_000_000_000_001
    assert restore_version(0, 0) == 1
    assert restore_version(7, 1_800_000_000_000) < 2**53


async def test_a_restore_keeps_the_epoch_and_jumps_to_the_clock_in_us(
    store: RedisStore, archive: AuditArchive, audit_dsn: str
):
    clock = FakeClock()
    state, epoch = await _started(store, clock)
    await _persist(audit_dsn, state, epoch, clock.now)
    await _lose(store, state.session_id)
    clock.advance(5)
    node = _restoring(store, clock, archive)
    restored, restored_epoch = await node.load(state.session_id)
    assert restored_epoch == epoch
    assert restored.version == clock.now * 1000
    assert restored.recovered is True
    assert restored.participants == state.participants
    assert restored.cycle_started_ms == state.cycle_started_ms
    history = await store.read_since(state.session_id, 0)
    assert [v for v, _ in history.changes] == [clock.now * 1000]
    change: dict[str, Any] = msgspec.json.decode(history.changes[0][1])
    assert change["event"] == {"type": "session_recovered"}
    outbox: Any = await store.client.xrevrange(store.outbox_key, count=1)
    assert outbox[0][1][b"v"] == str(clock.now * 1000).encode()
    assert outbox[0][1][b"e"] == epoch.encode()


async def test_a_persisted_version_above_the_clock_wins(
    store: RedisStore, archive: AuditArchive, audit_dsn: str
):
    clock = FakeClock()
    state, epoch = await _started(store, clock)
    ahead = msgspec.structs.replace(state, version=clock.now * 1000 + 500)
    await _persist(audit_dsn, ahead, epoch, clock.now)
    await _lose(store, state.session_id)
    restored, _ = await _restoring(store, clock, archive).load(state.session_id)
    assert restored.version == ahead.version + 1


async def test_a_second_loss_never_reuses_a_version_of_the_first_restore(
    store: RedisStore, archive: AuditArchive, audit_dsn: str
):
    clock = FakeClock()
    state, epoch = await _started(store, clock)
    await _persist(audit_dsn, state, epoch, clock.now)
    await _lose(store, state.session_id)
    node = _restoring(store, clock, archive)
    first, _ = await node.load(state.session_id)
    lost = []
    for _ in range(5):  # acknowledged, never persisted
        clock.advance(1)
        lost.append((await node.execute(state.session_id, Switch())).transition.state.version)
    assert lost == [first.version + i for i in range(1, 6)]
    await _lose(store, state.session_id)
    clock.advance(1)
    again = _restoring(store, clock, archive)
    second, second_epoch = await again.load(state.session_id)
    assert second_epoch == epoch
    assert second.version > max(lost)
    for version in lost:
        with pytest.raises(Conflict):
            await again.execute(state.session_id, Switch(), Preconditions(expected_version=version))


async def test_the_snapshot_is_the_highest_version_of_the_newest_incarnation(
    store: RedisStore, archive: AuditArchive, audit_dsn: str
):
    clock = FakeClock()
    state, epoch = await _started(store, clock)
    v5 = msgspec.structs.replace(state, version=5, turn_used_ms=5)
    v6 = msgspec.structs.replace(state, version=6, turn_used_ms=6)
    # v6 was committed by a node whose clock is 10 ms behind: by time, v5 is newer.
    await _persist(audit_dsn, v5, epoch, clock.now)
    await _persist(audit_dsn, v6, epoch, clock.now - 10)
    snapshot = await archive.latest_snapshot(state.session_id)
    assert snapshot is not None and (snapshot.version, snapshot.epoch) == (6, epoch)
    # A newer incarnation (deleted, created again) wins whatever its version.
    newer = msgspec.structs.replace(state, version=1, turn_used_ms=1)
    await _persist(audit_dsn, v6, epoch, clock.now + 1, "session_deleted")
    await _persist(audit_dsn, newer, "0123456789abcdef", clock.now + 2)
    snapshot = await archive.latest_snapshot(state.session_id)
    assert snapshot is not None and (snapshot.version, snapshot.epoch) == (1, "0123456789abcdef")
    # Its deletion, repeating its last version, hides it.
    await _persist(audit_dsn, newer, "0123456789abcdef", clock.now + 3, "session_deleted")
    assert await archive.latest_snapshot(state.session_id) is None


async def test_a_create_finds_a_live_archived_incarnation_and_restores_it(
    store: RedisStore, archive: AuditArchive, audit_dsn: str
):
    clock = FakeClock()
    state, epoch = await _started(store, clock)
    await _persist(audit_dsn, state, epoch, clock.now)
    await _lose(store, state.session_id)
    node = _restoring(store, clock, archive)
    spec = msgspec.convert(session_body(session_id=state.session_id), CreateSession)
    with pytest.raises(SessionExists):
        await node.create(spec)
    stored = await store.load(state.session_id)
    assert stored is not None and stored.epoch == epoch
    assert msgspec.json.decode(stored.state_json, type=SessionState).status == "running"
