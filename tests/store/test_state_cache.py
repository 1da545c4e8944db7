"""The node's state cache: one round trip per command, and never a stale write.

Two ``Node`` objects on one real Redis stand for two server processes: each
caches the states it read or committed, and the other's commits make those
caches stale.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from synckairos.core import CreateSession, Start, Switch
from synckairos.exceptions import Conflict
from synckairos.node import Node, Preconditions
from synckairos.redis.store import RedisStore
from tests.helpers import FakeClock, session_body


def _spec(**extra: Any) -> CreateSession:
    return msgspec.convert(session_body(**extra), CreateSession)


async def _calls(store: RedisStore, command: str) -> int:
    stats = await store.client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_a_command_on_a_warm_cache_is_one_round_trip(store: RedisStore):
    node = Node(store, clock=FakeClock())
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    reads, scripts = await _calls(store, "hmget"), await _calls(store, "evalsha")
    await node.execute(spec.session_id, Switch())
    assert await _calls(store, "hmget") == reads  # no read: the state was cached
    assert await _calls(store, "evalsha") == scripts + 1


async def test_two_nodes_interleaving_lose_no_update(store: RedisStore):
    clock = FakeClock()
    a, b = Node(store, clock=clock), Node(store, clock=clock)
    spec = _spec()
    await a.create(spec)
    await a.execute(spec.session_id, Start())
    for i in range(20):
        clock.advance(10)
        node = a if i % 2 == 0 else b
        result = await node.execute(spec.session_id, Switch())
        assert result.transition.state.version == 3 + i  # exactly one switch each
    state, _ = await b.load(spec.session_id)
    assert sum(p.cycle_count for p in state.participants) == 20


async def test_a_precondition_is_checked_on_a_fresh_state_before_a_409(store: RedisStore):
    clock = FakeClock()
    a, b = Node(store, clock=clock), Node(store, clock=clock)
    spec = _spec()
    await a.create(spec)
    await a.execute(spec.session_id, Start())  # a caches version 2
    await b.execute(spec.session_id, Switch())  # version 3, a's cache is stale
    result = await a.execute(spec.session_id, Switch(), Preconditions(expected_version=3))
    assert result.transition.state.version == 4
    with pytest.raises(Conflict):
        await a.execute(spec.session_id, Switch(), Preconditions(expected_version=3))


async def test_a_session_recreated_under_the_same_id_is_never_written_from_the_old_cache(
    store: RedisStore,
):
    clock = FakeClock()
    a, b = Node(store, clock=clock), Node(store, clock=clock)
    old = _spec()
    await a.create(old)
    await a.execute(old.session_id, Start())  # a caches the old incarnation at v2
    await b.delete(old.session_id)
    new = _spec(session_id=old.session_id)  # same id, new participants, new epoch
    await b.create(new)
    await b.execute(new.session_id, Start())  # v2 again
    result = await a.execute(new.session_id, Switch())
    new_ids = {p.participant_id for p in new.participants}
    assert {p.participant_id for p in result.transition.state.participants} == new_ids
    assert result.transition.state.version == 3


async def test_a_session_deleted_elsewhere_is_not_found(store: RedisStore):
    clock = FakeClock()
    a, b = Node(store, clock=clock), Node(store, clock=clock)
    spec = _spec()
    await a.create(spec)
    await a.execute(spec.session_id, Start())
    await b.delete(spec.session_id)
    from synckairos.exceptions import SessionNotFound

    with pytest.raises(SessionNotFound):
        await a.execute(spec.session_id, Switch())


async def test_concurrent_commands_on_one_session_queue_instead_of_racing(store: RedisStore):
    import asyncio

    node = Node(store, clock=FakeClock())
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    scripts = await _calls(store, "evalsha")
    results = await asyncio.gather(*(node.execute(spec.session_id, Switch()) for _ in range(30)))
    assert sorted(r.transition.state.version for r in results) == list(range(3, 33))
    # One commit each: no compare-and-set race among them (it would be O(n²)).
    assert await _calls(store, "evalsha") == scripts + 30
    assert node._locks == {}  # released once idle
