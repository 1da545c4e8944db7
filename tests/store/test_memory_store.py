"""``MemoryStore`` beyond the shared contract: what its injected clock drives."""

from __future__ import annotations

import pytest

from synckairos.config import Rate
from synckairos.exceptions import RateLimited
from synckairos.pubsub.memory import MemoryBroker
from synckairos.store.memory import MemoryStore
from tests.helpers import FakeClock, new_id
from tests.store.test_store_contract import _change


async def test_finished_sessions_expire_after_their_ttl():
    clock = FakeClock()
    store = MemoryStore(clock=clock, finished_ttl_ms=1_000)
    sid = new_id()
    await store.commit(_change(sid, 0))
    await store.commit(_change(sid, 1, finished=True))
    clock.advance(999)
    assert await store.load(sid) is not None
    clock.advance(1)
    assert await store.load(sid) is None


async def test_tombstones_expire_after_the_finished_ttl():
    clock = FakeClock()
    store = MemoryStore(clock=clock, finished_ttl_ms=1_000)
    sid = new_id()
    await store.commit(_change(sid, 0))
    await store.delete(sid)
    assert (await store.load(sid)) is not None
    clock.advance(1_000)
    assert await store.load(sid) is None


async def test_the_session_rate_limit_refills_with_the_clock():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    rate = Rate(1, 1_000)
    sid = new_id()
    await store.commit(_change(sid, 0, rate=rate))
    with pytest.raises(RateLimited) as refused:
        await store.commit(_change(sid, 1, rate=rate))
    assert refused.value.details["retry_after_ms"] == 1_000
    clock.advance(1_000)
    assert (await store.commit(_change(sid, 1, rate=rate))).committed


async def test_commits_and_deletes_are_published_as_redis_publishes_them():
    broker = MemoryBroker()
    published: list[tuple[str, bytes]] = []
    store = MemoryStore(publish=lambda sid, payload: published.append((sid, payload)))
    sid = new_id()
    result = await store.commit(_change(sid, 0))
    await store.delete(sid, b'{"deleted":true,"ts":5}')
    assert published[0][1].startswith(b'{"epoch":"' + result.epoch.encode() + b'","version":1,')
    assert published[1] == (sid, b'{"deleted":true,"ts":5}')
    assert broker.publish(sid, b"{}") == 0  # nobody attached
