"""The ``Store`` contract, run against ``MemoryStore`` and ``RedisStore`` alike.

Every test runs once per backend (``make_store`` of ``tests/backends.py``):
what the memory double claims is what Redis does.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from synckairos.config import Rate
from synckairos.exceptions import (
    Conflict,
    RateLimited,
    SessionExists,
    SessionLimitReached,
    SessionNotFound,
)
from synckairos.store import Change, Store, StoredSession
from tests.backends import StoreFactory
from tests.helpers import new_id


def _change(
    sid: str, expected: int, *, deadline: int | None = None, finished: bool = False, **extra: Any
) -> Change:
    version = expected + 1
    state = msgspec.json.encode({"session_id": sid, "version": version})
    change = msgspec.json.encode(
        {"version": version, "event": {"type": "x"}, "state": {"version": version}, "ts": 1}
    )
    return msgspec.convert(
        {
            "session_id": sid,
            "expected_version": expected,
            "state_json": state,
            "change_json": change,
            "event_type": "x",
            "deadline_ms": deadline,
            "finished": finished,
            **extra,
        },
        Change,
        from_attributes=True,
    )


async def _created(store: Store, versions: int = 1, **extra: Any) -> tuple[str, str]:
    sid = new_id()
    result = await store.commit(_change(sid, 0, **extra))
    for version in range(1, versions):
        result = await store.commit(_change(sid, version))
    assert result.committed
    return sid, result.epoch


async def test_an_unknown_session_loads_as_none(make_store: StoreFactory):
    store = make_store()
    assert await store.load(new_id()) is None
    assert (await store.read_since(new_id(), 0)).state_json == b""


async def test_a_create_is_loaded_back_with_its_epoch(make_store: StoreFactory):
    store = make_store()
    sid, epoch = await _created(store)
    loaded = await store.load(sid)
    assert loaded == StoredSession(_change(sid, 0).state_json, epoch)
    assert len(epoch) == 16


async def test_a_create_of_an_existing_session_raises_session_exists(make_store: StoreFactory):
    store = make_store()
    sid, _ = await _created(store)
    with pytest.raises(SessionExists):
        await store.commit(_change(sid, 0))


async def test_a_commit_to_a_missing_session_raises_session_not_found(make_store: StoreFactory):
    store = make_store()
    with pytest.raises(SessionNotFound):
        await store.commit(_change(new_id(), 3))


async def test_a_stale_version_is_refused_with_the_current_state(make_store: StoreFactory):
    store = make_store()
    sid, epoch = await _created(store, versions=3)
    result = await store.commit(_change(sid, 1))
    assert not result.committed
    assert result.actual_version == 3
    assert result.epoch == epoch
    assert result.state_json == _change(sid, 2).state_json
    assert (await store.read_since(sid, 0)).version == 3


async def test_another_incarnations_epoch_is_refused(make_store: StoreFactory):
    store = make_store()
    sid, epoch = await _created(store)
    stale = await store.commit(_change(sid, 1, expected_epoch="0" * 16))
    assert not stale.committed and stale.actual_version == 1
    fresh = await store.commit(_change(sid, 1, expected_epoch=epoch))
    assert fresh.committed and fresh.epoch == epoch


async def test_a_restore_keeps_its_epoch_and_writes_the_given_version(make_store: StoreFactory):
    store = make_store()
    sid = new_id()
    result = await store.commit(_change(sid, 0, expected_epoch="ab" * 8, new_version=10**15))
    assert result.committed and result.epoch == "ab" * 8
    history = await store.read_since(sid, 0)
    assert history.version == 10**15 and [v for v, _ in history.changes] == [10**15]


async def test_history_holds_the_changes_after_a_version_and_is_bounded(
    make_store: StoreFactory,
):
    store = make_store(history_maxlen=5)
    sid, epoch = await _created(store, versions=8)
    history = await store.read_since(sid, 5)
    assert [version for version, _ in history.changes] == [6, 7, 8]
    assert msgspec.json.decode(history.changes[0][1])["version"] == 6
    assert (history.version, history.epoch) == (8, epoch)
    full = await store.read_since(sid, 0)
    assert [version for version, _ in full.changes] == [4, 5, 6, 7, 8]
    assert (await store.read_since(sid, 8)).changes == []


async def test_a_bounded_read_sends_the_state_instead_of_heavy_history(
    make_store: StoreFactory,
):
    store = make_store()
    sid, _ = await _created(store, versions=4)
    light = await store.read_since(sid, 2, max_bytes=10_000)
    assert [version for version, _ in light.changes] == [3, 4]
    heavy = await store.read_since(sid, 1, max_bytes=10)
    assert heavy.changes == [] and heavy.version == 4
    assert (await store.read_since(sid, 0, max_bytes=10_000)).changes == []


async def test_a_delete_leaves_a_tombstone(make_store: StoreFactory):
    store = make_store()
    sid, epoch = await _created(store, versions=2)
    deleted = await store.delete(sid)
    assert deleted is not None and (deleted.version, deleted.epoch) == (2, epoch)
    assert await store.load(sid) == StoredSession(b"", "", deleted=True)
    assert (await store.read_since(sid, 0)).state_json == b""
    assert await store.delete(sid) is None
    with pytest.raises(SessionNotFound):
        await store.commit(_change(sid, 2))
    again = await store.commit(_change(sid, 0))
    assert again.committed and again.epoch != epoch
    assert [version for version, _ in (await store.read_since(sid, 0)).changes] == [1]


async def test_a_delete_checks_version_and_incarnation(make_store: StoreFactory):
    store = make_store()
    sid, epoch = await _created(store, versions=2)
    with pytest.raises(Conflict):
        await store.delete(sid, expected_version=1)
    assert await store.delete(sid, expected_epoch="0" * 16) is None
    assert (await store.load(sid)) is not None
    assert await store.delete(sid, expected_version=2, expected_epoch=epoch) is not None


async def test_due_deadlines_are_claimed_once_for_a_lease(make_store: StoreFactory):
    store = make_store()
    early, _ = await _created(store, deadline=1_000)
    late, _ = await _created(store, deadline=5_000)
    claimed, upcoming = await store.claim_due(2_000, 10, 500)
    assert claimed == [(early, 1_000)] and upcoming == 2_500
    assert await store.claim_due(2_400, 10, 500) == ([], 2_500)
    claimed, upcoming = await store.claim_due(6_000, 1, 500)
    assert claimed == [(early, 2_500)] and upcoming == 5_000
    await store.commit(_change(late, 1))  # no timer runs any more
    assert await store.claim_due(6_000, 10, 500) == ([], 6_500)


async def test_the_session_rate_limit_counts_commits(make_store: StoreFactory):
    store = make_store()
    rate = Rate(2, 60_000)
    sid, _ = await _created(store, rate=rate)
    await store.commit(_change(sid, 1, rate=rate))
    with pytest.raises(RateLimited) as refused:
        await store.commit(_change(sid, 2, rate=rate))
    assert refused.value.details["limit"] == "switch"
    assert 0 < refused.value.details["retry_after_ms"] <= 30_000
    assert (await store.read_since(sid, 0)).version == 2  # nothing written
    await store.commit(_change(sid, 2))  # unlimited commands still go through


async def test_creates_beyond_the_live_session_cap_are_refused(make_store: StoreFactory):
    store = make_store(max_live_sessions=1)
    first, _ = await _created(store)
    with pytest.raises(SessionLimitReached):
        await _created(store)
    assert (await store.commit(_change(first, 1, finished=True))).committed
    await _created(store)


async def test_the_outbox_is_bounded_and_counts_what_it_drops(make_store: StoreFactory):
    store = make_store(outbox_maxlen=3)
    await _created(store, versions=5)
    stats = await store.stats()
    assert (stats.outbox_length, stats.outbox_dropped) == (3, 2)
    assert stats.oldest_outbox_ms is not None


async def test_stats_count_live_sessions_and_deadlines(make_store: StoreFactory):
    store = make_store()
    await _created(store, deadline=1_000)
    sid, _ = await _created(store)
    await store.commit(_change(sid, 1, finished=True))
    stats = await store.stats()
    assert (stats.active_sessions, stats.deadlines, stats.outbox_length) == (1, 1, 3)
    assert await store.ping()
