"""``Node`` on ``MemoryStore``: the command path without a server, in milliseconds.

Two ``Node`` objects on one store stand for two server processes (each with
its own state cache). The real-Redis behaviour is pinned by the store
contract tests and ``tests/store/``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from synckairos.core import Complete, CreateSession, Pause, Start, Switch
from synckairos.core.model import Status
from synckairos.exceptions import Conflict, SessionExists, SessionNotFound
from synckairos.node import Node, Preconditions
from synckairos.store.memory import MemoryStore
from tests.helpers import FakeClock, session_body


def _spec(**extra: Any) -> CreateSession:
    return msgspec.convert(session_body(**extra), CreateSession)


def _setup() -> tuple[MemoryStore, FakeClock, Node]:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    return store, clock, Node(store, clock=clock)


async def test_create_start_switch_commit_one_version_each():
    store, clock, node = _setup()
    spec = _spec()
    created = await node.create(spec)
    assert created.transition.state.version == 1
    clock.advance(10)
    await node.execute(spec.session_id, Start())
    clock.advance(10)
    switched = await node.execute(spec.session_id, Switch())
    assert switched.transition.state.version == 3
    assert switched.epoch == created.epoch
    history = await store.read_since(spec.session_id, 0)
    assert [version for version, _ in history.changes] == [1, 2, 3]
    assert [fields["t"] for _, fields in store.outbox] == [
        "session_created",
        "session_started",
        "cycle_switched",
    ]


async def test_a_second_create_of_the_same_id_raises_session_exists():
    _, _, node = _setup()
    spec = _spec()
    await node.create(spec)
    with pytest.raises(SessionExists):
        await node.create(spec)


async def test_a_running_timer_is_registered_and_a_pause_clears_it():
    store, clock, node = _setup()
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    assert await store.claim_due(clock.now + 60_000, 10, 1) == (
        [(spec.session_id, clock.now + 60_000)],
        clock.now + 60_001,
    )
    await node.execute(spec.session_id, Pause())
    assert (await store.stats()).deadlines == 0


async def test_two_nodes_interleaving_lose_no_update():
    store, clock, a = _setup()
    b = Node(store, clock=clock)
    spec = _spec()
    await a.create(spec)
    await a.execute(spec.session_id, Start())
    for i in range(20):
        clock.advance(10)
        result = await (a if i % 2 == 0 else b).execute(spec.session_id, Switch())
        assert result.transition.state.version == 3 + i


async def test_concurrent_commands_on_one_node_each_commit_a_version():
    _, _, node = _setup()
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    results = await asyncio.gather(*(node.execute(spec.session_id, Switch()) for _ in range(10)))
    assert sorted(r.transition.state.version for r in results) == list(range(3, 13))


async def test_a_stale_expected_version_answers_conflict_and_changes_nothing():
    store, _, node = _setup()
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    with pytest.raises(Conflict):
        await node.execute(spec.session_id, Switch(), Preconditions(expected_version=1))
    assert (await store.read_since(spec.session_id, 0)).version == 2


async def test_a_due_timeout_is_committed_as_of_its_deadline():
    _, clock, node = _setup()
    spec = _spec(budget_ms=1_000)
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    clock.advance(1_500)
    fired = await node.fire_timeouts(spec.session_id)
    assert len(fired) == 1
    transition, lag_ms = fired[0]
    assert lag_ms == 500
    assert transition.event.type in {"participant_timeout", "session_expired"}


async def test_a_deleted_session_is_gone_and_a_second_delete_is_harmless():
    store, _, node = _setup()
    spec = _spec()
    await node.create(spec)
    await node.delete(spec.session_id)
    with pytest.raises(SessionNotFound):
        await node.get(spec.session_id)
    await node.delete(spec.session_id)
    assert (await store.stats()).active_sessions == 0


async def test_a_completed_session_leaves_the_live_set():
    store, _, node = _setup()
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    result = await node.execute(spec.session_id, Complete())
    assert result.transition.state.status == Status.COMPLETED
    assert (await store.stats()).active_sessions == 0
