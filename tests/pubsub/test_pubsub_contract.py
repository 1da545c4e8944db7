"""The ``PubSub`` contract, run against ``MemoryPubSub`` and ``RedisPubSub`` alike.

Each test runs once per backend, the store committing and the pub/sub feeding
a hub (``fanout`` of ``tests/backends.py``).
"""

from __future__ import annotations

import asyncio

from synckairos.store import Store
from tests.backends import Fanout, RecordingSubscriber, until
from tests.helpers import new_id
from tests.store.test_store_contract import _change


async def _create(store: Store, sid: str) -> str:
    return (await store.commit(_change(sid, 0))).epoch


async def test_a_joined_subscriber_receives_every_later_commit(fanout: Fanout):
    sid = new_id()
    epoch = await _create(fanout.store, sid)
    subscriber = RecordingSubscriber(sid)
    await fanout.pubsub.join(subscriber)
    await fanout.store.commit(_change(sid, 1))
    await fanout.store.commit(_change(sid, 2))
    await until(lambda: len(subscriber.deliveries) == 2)
    assert [d.version for d in subscriber.deliveries] == [2, 3]
    assert {d.epoch for d in subscriber.deliveries} == {epoch}
    assert '"type":"STATE_UPDATE"' in subscriber.deliveries[0].text


async def test_every_local_subscriber_of_the_session_and_no_other_receives(fanout: Fanout):
    sid, other = new_id(), new_id()
    await _create(fanout.store, sid)
    await _create(fanout.store, other)
    first, second, bystander = (
        RecordingSubscriber(sid),
        RecordingSubscriber(sid),
        RecordingSubscriber(other),
    )
    for subscriber in (first, second, bystander):
        await fanout.pubsub.join(subscriber)
    await fanout.store.commit(_change(sid, 1))
    await until(lambda: len(first.deliveries) == len(second.deliveries) == 1)
    await asyncio.sleep(0.05)
    assert bystander.deliveries == []


async def test_a_subscriber_that_left_receives_nothing_more(fanout: Fanout):
    sid, other = new_id(), new_id()
    await _create(fanout.store, sid)
    await _create(fanout.store, other)
    leaving, staying = RecordingSubscriber(sid), RecordingSubscriber(other)
    await fanout.pubsub.join(leaving)
    await fanout.pubsub.join(staying)
    await fanout.pubsub.leave(leaving)
    assert not fanout.hub.has(sid)
    await fanout.store.commit(_change(sid, 1))
    await fanout.store.commit(_change(other, 1))
    await until(lambda: len(staying.deliveries) == 1)
    await asyncio.sleep(0.05)
    assert leaving.deliveries == []


async def test_a_delete_is_delivered_as_a_deletion(fanout: Fanout):
    sid = new_id()
    await _create(fanout.store, sid)
    subscriber = RecordingSubscriber(sid)
    await fanout.pubsub.join(subscriber)
    await fanout.store.delete(sid, b'{"deleted":true,"ts":7}')
    await until(lambda: len(subscriber.deliveries) == 1)
    assert subscriber.deliveries[0].deleted and subscriber.deliveries[0].ts == 7


async def test_a_reconnect_asks_every_subscriber_to_catch_up(fanout: Fanout):
    sid = new_id()
    await _create(fanout.store, sid)
    subscriber = RecordingSubscriber(sid)
    await fanout.pubsub.join(subscriber)
    fanout.pubsub.reconnect(full=True)
    await until(lambda: subscriber.resyncs == [True])
    await until(lambda: fanout.pubsub.alive)
    await fanout.store.commit(_change(sid, 1))
    await until(lambda: len(subscriber.deliveries) == 1)


async def test_the_pubsub_is_not_alive_once_stopped(fanout: Fanout):
    assert fanout.pubsub.alive
    fanout.pubsub.stop()
    assert fanout.task is not None
    await asyncio.wait_for(fanout.task, 5)
    assert not fanout.pubsub.alive
