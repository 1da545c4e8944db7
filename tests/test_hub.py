"""``Hub`` and its feeding by a pub/sub, on the memory backends (no server)."""

from __future__ import annotations

from typing import Any

import msgspec

from synckairos.core import CreateSession, Start, Switch
from synckairos.hub import Hub
from synckairos.node import Node
from synckairos.pubsub.memory import MemoryBroker, MemoryPubSub
from synckairos.store.memory import MemoryStore
from synckairos.ws_messages import Delivery
from tests.backends import RecordingSubscriber
from tests.helpers import FakeClock, new_id, session_body


def _delivery(version: int) -> Delivery:
    return Delivery(version, "e", False, 0, "{}")


def _spec(**extra: Any) -> CreateSession:
    return msgspec.convert(session_body(**extra), CreateSession)


class _Broken(RecordingSubscriber):
    def offer(self, delivery: Delivery) -> None:
        raise RuntimeError("socket gone")


def test_the_first_and_last_subscriber_of_a_session_are_reported():
    hub = Hub()
    sid = new_id()
    first, second = RecordingSubscriber(sid), RecordingSubscriber(sid)
    assert hub.add(first) and not hub.add(second)
    assert hub.has(sid) and len(hub) == 2 and hub.session_ids() == [sid]
    assert not hub.remove(first) and hub.remove(second)
    assert not hub.has(sid) and not hub.remove(second)


def test_a_broadcast_reaches_the_sessions_subscribers_only():
    hub = Hub()
    sid, other = new_id(), new_id()
    mine, theirs = RecordingSubscriber(sid), RecordingSubscriber(other)
    hub.add(mine)
    hub.add(theirs)
    assert hub.broadcast(sid, _delivery(2)) == 1
    assert mine.deliveries == [_delivery(2)] and theirs.deliveries == []


def test_a_failing_subscriber_is_skipped_and_never_raises():
    hub = Hub()
    sid = new_id()
    broken, fine = _Broken(sid), RecordingSubscriber(sid)
    hub.add(broken)
    hub.add(fine)
    assert hub.broadcast(sid, _delivery(3)) == 2
    assert fine.deliveries == [_delivery(3)]


def test_a_resync_reaches_every_subscriber_of_the_session():
    hub = Hub()
    sid = new_id()
    subscribers = [RecordingSubscriber(sid) for _ in range(3)]
    for subscriber in subscribers:
        hub.add(subscriber)
    hub.resync(sid, full=True)
    assert [s.resyncs for s in subscribers] == [[True]] * 3


async def test_commits_reach_the_hub_of_every_node_through_the_pubsub():
    clock = FakeClock()
    broker = MemoryBroker()
    store = MemoryStore(clock=clock, publish=broker.publish)
    hubs = [Hub(), Hub()]
    pubsubs = [MemoryPubSub(broker, hub, clock) for hub in hubs]
    node = Node(store, clock=clock)
    spec = _spec()
    created = await node.create(spec)
    watchers = [RecordingSubscriber(spec.session_id) for _ in hubs]
    for pubsub, watcher in zip(pubsubs, watchers, strict=True):
        await pubsub.join(watcher)
    await node.execute(spec.session_id, Start())
    await node.execute(spec.session_id, Switch())
    for watcher in watchers:
        assert [d.version for d in watcher.deliveries] == [2, 3]
        assert {d.epoch for d in watcher.deliveries} == {created.epoch}
        assert '"type":"STATE_UPDATE"' in watcher.deliveries[0].text


async def test_changes_during_a_lost_connection_are_caught_up_by_a_resync():
    clock = FakeClock()
    broker = MemoryBroker()
    store = MemoryStore(clock=clock, publish=broker.publish)
    hub = Hub()
    pubsub = MemoryPubSub(broker, hub, clock)
    node = Node(store, clock=clock)
    spec = _spec()
    await node.create(spec)
    watcher = RecordingSubscriber(spec.session_id)
    await pubsub.join(watcher)
    pubsub.lose_connection()
    await node.execute(spec.session_id, Start())
    assert watcher.deliveries == []
    pubsub.reconnect(full=False)
    assert watcher.resyncs == [False]
    await node.execute(spec.session_id, Switch())
    assert [d.version for d in watcher.deliveries] == [3]
