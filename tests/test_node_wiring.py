"""``Node``'s collaborators: given at construction, deadlines by explicit subscription."""

from __future__ import annotations

import msgspec
import pytest

from synckairos.core import CreateSession, Start, Switch
from synckairos.node import Node
from synckairos.redis.store import RedisStore
from tests.helpers import FakeClock, session_body


async def test_a_deadline_watcher_hears_each_committed_deadline_until_it_unsubscribes(
    store: RedisStore,
):
    heard: list[int] = []
    node = Node(store, clock=FakeClock())
    unsubscribe = node.watch_deadlines(heard.append)
    spec = msgspec.convert(session_body(), CreateSession)
    await node.create(spec)
    started = await node.execute(spec.session_id, Start())
    assert heard == [started.transition.state.deadline_ms]
    unsubscribe()
    unsubscribe()  # twice is harmless
    switched = await node.execute(spec.session_id, Switch())
    assert switched.transition.state.deadline_ms is not None and len(heard) == 1


def test_the_archive_is_fixed_at_construction(store: RedisStore):
    node = Node(store)
    assert node.archive is None
    with pytest.raises(AttributeError):
        node.archive = None  # type: ignore[misc]
