"""``DeadlineScheduler`` on ``MemoryStore``: deadlines claimed and fired without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from synckairos.core import CreateSession, Start
from synckairos.core.model import Status
from synckairos.node import Node
from synckairos.scheduler import DeadlineScheduler
from synckairos.store.memory import MemoryStore
from tests.backends import until
from tests.helpers import FakeClock, session_body


def _spec(**extra: Any) -> CreateSession:
    return msgspec.convert(session_body(**extra), CreateSession)


async def _status(node: Node, session_id: str) -> Status:
    state, _ = await node.load(session_id)
    return state.status


async def test_a_due_deadline_is_fired_by_the_scheduler():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    node = Node(store, clock=clock)
    scheduler = DeadlineScheduler(node, store, max_idle_s=0.01)
    spec = _spec(participants=1, budget_ms=1_000)
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler.alive)
    await asyncio.sleep(0.03)
    assert await _status(node, spec.session_id) == Status.RUNNING  # not due yet
    clock.advance(1_000)
    await until(lambda: store.outbox[-1][1]["t"] != "session_started")
    assert await _status(node, spec.session_id) != Status.RUNNING
    await scheduler.stop()
    await asyncio.wait_for(task, 5)


async def test_two_schedulers_fire_each_deadline_once():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    node = Node(store, clock=clock)
    schedulers = [DeadlineScheduler(node, store, max_idle_s=0.01) for _ in range(2)]
    sessions = [_spec(participants=1, budget_ms=1_000) for _ in range(5)]
    for spec in sessions:
        await node.create(spec)
        await node.execute(spec.session_id, Start())
    clock.advance(1_000)
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    await until(lambda: len(store.outbox) >= 3 * len(sessions))
    await asyncio.sleep(0.05)
    fired = [fields for _, fields in store.outbox[2 * len(sessions) :]]
    assert sorted(str(f["sid"]) for f in fired) == sorted(s.session_id for s in sessions)
    for scheduler in schedulers:
        await scheduler.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
