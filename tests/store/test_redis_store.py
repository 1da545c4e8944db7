"""RedisStore on a real Redis: the one-call commit and everything it writes."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from synckairos.core import CreateSession, Start, Switch
from synckairos.exceptions import Conflict, SessionExists
from synckairos.node import Node
from synckairos.redis.store import RedisStore
from synckairos.store import Change, StoredSession
from tests.helpers import FakeClock, session_body


def _spec(**extra: Any) -> CreateSession:
    return msgspec.convert(session_body(**extra), CreateSession)


async def _started(store: RedisStore, clock: FakeClock) -> tuple[Node, str]:
    node = Node(store, clock=clock)
    spec = _spec()
    await node.create(spec)
    clock.advance(10)
    await node.execute(spec.session_id, Start())
    return node, spec.session_id


async def test_commit_writes_state_history_deadline_outbox_and_active_set(store: RedisStore):
    clock = FakeClock()
    node, sid = await _started(store, clock)
    keys = store.keys(sid)
    client = store.client
    assert await client.hget(keys.state, "v") == b"2"
    history = await client.xrange(keys.history)
    assert [entry_id for entry_id, _ in history] == [b"1-0", b"2-0"]
    change = msgspec.json.decode(history[1][1][b"c"])
    assert change["version"] == 2 and change["event"]["type"] == "session_started"
    deadline = await client.zscore(store.deadlines_key, sid)
    state, _ = await node.load(sid)
    assert deadline == state.deadline_ms == clock.now + 60_000
    outbox = await client.xrange(store.outbox_key)
    assert [fields[b"t"] for _, fields in outbox] == [b"session_created", b"session_started"]
    assert len({fields[b"id"] for _, fields in outbox}) == 2
    assert await client.sismember(store.active_key, sid)


async def test_commit_with_a_stale_version_changes_nothing(store: RedisStore):
    clock = FakeClock()
    _, sid = await _started(store, clock)
    before = await store.load(sid)
    assert before is not None
    result = await store.commit(
        Change(sid, 1, b'{"bogus":true}', b'{"version":2}', "x", None, False)
    )
    assert not result.committed and result.actual_version == 2
    assert await store.load(sid) == before
    assert await store.client.xlen(store.keys(sid).history) == 2


async def test_create_is_create_if_absent(store: RedisStore):
    node = Node(store, clock=FakeClock())
    spec = _spec()
    await node.create(spec)
    before = await store.load(spec.session_id)
    other = msgspec.structs.replace(_spec(), session_id=spec.session_id)
    with pytest.raises(SessionExists):
        await node.create(other)
    assert await store.load(spec.session_id) == before


async def test_history_is_bounded_and_keyed_by_version(store: RedisStore):
    clock = FakeClock()
    node, sid = await _started(store, clock)
    for _ in range(10):
        clock.advance(100)
        await node.execute(sid, Switch())
    ids = [entry_id for entry_id, _ in await store.client.xrange(store.keys(sid).history)]
    assert ids == [f"{v}-0".encode() for v in range(8, 13)]


async def test_epoch_is_set_at_creation_and_kept(store: RedisStore):
    clock = FakeClock()
    node = Node(store, clock=clock)
    spec = _spec()
    created = await node.create(spec)
    started = await node.execute(spec.session_id, Start())
    assert created.epoch and created.epoch == started.epoch
    await node.delete(spec.session_id)
    recreated = await node.create(spec)
    assert recreated.epoch != created.epoch


async def test_deadline_is_cleared_when_no_timer_runs(store: RedisStore):
    clock = FakeClock()
    node, sid = await _started(store, clock)
    from synckairos.core import Pause

    await node.execute(sid, Pause())
    assert await store.client.zscore(store.deadlines_key, sid) is None


async def test_commit_publishes_the_change_with_its_epoch(store: RedisStore):
    clock = FakeClock()
    node = Node(store, clock=clock)
    spec = _spec()
    pubsub = store.client.pubsub()
    await pubsub.subscribe(store.keys(spec.session_id).channel)
    await pubsub.get_message(timeout=1)  # subscribe confirmation
    created = await node.create(spec)
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None
    payload = msgspec.json.decode(message["data"])
    assert payload["epoch"] == created.epoch
    assert payload["version"] == 1
    assert payload["event"]["type"] == "session_created"
    assert payload["state"]["session_id"] == spec.session_id
    await node.delete(spec.session_id)
    deleted = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert deleted is not None and msgspec.json.decode(deleted["data"])["deleted"] is True
    await pubsub.aclose()


async def test_delete_leaves_only_a_tombstone_and_audits_it(store: RedisStore):
    clock = FakeClock()
    node, sid = await _started(store, clock)
    await node.delete(sid)
    keys = store.keys(sid)
    assert await store.client.exists(keys.history) == 0
    assert await store.client.hgetall(keys.state) == {b"d": b"1"}  # the tombstone
    assert 0 < await store.client.pttl(keys.state) <= store.finished_ttl_ms
    assert (await store.load(sid)) == StoredSession(b"", "", deleted=True)
    assert await store.client.zscore(store.deadlines_key, sid) is None
    assert not await store.client.sismember(store.active_key, sid)
    last = (await store.client.xrevrange(store.outbox_key, count=1))[0][1]
    assert last[b"t"] == b"session_deleted" and last[b"v"] == b"2"
    assert await store.delete(sid) is None


async def test_delete_with_a_stale_expected_version_deletes_nothing(store: RedisStore):
    clock = FakeClock()
    _, sid = await _started(store, clock)
    with pytest.raises(Conflict):
        await store.delete(sid, expected_version=1)
    assert await store.load(sid) is not None


async def test_finished_sessions_expire_and_running_ones_do_not(store: RedisStore):
    clock = FakeClock()
    node, sid = await _started(store, clock)
    keys = store.keys(sid)
    assert await store.client.pttl(keys.state) == -1
    from synckairos.core import Complete

    await node.execute(sid, Complete())
    ttl = await store.client.pttl(keys.state)
    assert 0 < ttl <= store.finished_ttl_ms
    assert 0 < await store.client.pttl(keys.history) <= store.finished_ttl_ms
    assert not await store.client.sismember(store.active_key, sid)


async def test_outbox_is_bounded_and_counts_what_it_drops(redis_server):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url)
    store = RedisStore(client, prefix="bounded", outbox_maxlen=3)
    await client.delete(store.outbox_key, store.dropped_key)
    clock = FakeClock()
    node = Node(store, clock=clock)
    for _ in range(5):
        await node.create(_spec())
    stats = await store.stats()
    assert stats.outbox_length == 3
    assert stats.outbox_dropped == 2
    await store.close()


async def test_scripts_are_reloaded_after_script_flush(store: RedisStore):
    clock = FakeClock()
    node, sid = await _started(store, clock)
    await store.client.script_flush()
    clock.advance(5)
    result = await node.execute(sid, Switch())
    assert result.transition.state.version == 3


async def test_unreachable_redis_raises_store_unavailable():
    import redis.asyncio as aioredis

    from synckairos.dev.embedded import free_port
    from synckairos.exceptions import StoreUnavailable

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    store = RedisStore(client, failover_budget_s=0.5)
    with pytest.raises(StoreUnavailable):
        await store.load("00000000-0000-0000-0000-000000000000")
    assert await store.ping() is False
    await store.close()


async def test_concurrent_commands_on_one_session_lose_no_update(store: RedisStore):
    node, sid = await _started(store, FakeClock())
    results = await asyncio.gather(*(node.execute(sid, Switch()) for _ in range(40)))
    versions = sorted(r.transition.state.version for r in results)
    assert versions == list(range(3, 43))
    state, _ = await node.load(sid)
    assert state.version == 42
    assert sum(p.cycle_count for p in state.participants) == 40


async def test_a_burst_larger_than_the_pool_waits_for_connections(redis_server):
    from synckairos.config import Settings
    from synckairos.redis.connection import store_client

    settings = Settings(redis_url=redis_server.url, redis_max_connections=2)
    store = RedisStore(store_client(settings), prefix="burst")
    node = Node(store, clock=FakeClock())
    spec = _spec()
    await node.create(spec)
    loads = await asyncio.gather(*(store.read_since(spec.session_id, 0) for _ in range(200)))
    assert all(h.version == 1 for h in loads)
    await store.close()
