"""Store and pub/sub backends for contract tests: memory and a real Redis.

Like dramatiq's ``stub_broker``/``redis_broker`` fixtures: a test that takes
``make_store`` (or ``backend``) runs once per backend with the same asserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from synckairos.dev.embedded import EmbeddedRedis
from synckairos.hub import Hub
from synckairos.pubsub import PubSub
from synckairos.pubsub.memory import MemoryBroker, MemoryPubSub
from synckairos.redis.pubsub import RedisPubSub
from synckairos.redis.store import RedisStore
from synckairos.store import Store
from synckairos.store.memory import MemoryStore
from synckairos.ws_messages import Delivery
from tests.helpers import FakeClock, new_id

BACKENDS = ["memory", "redis"]

StoreFactory = Callable[..., Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "memory" or "redis"."""
    return str(request.param)


@pytest.fixture
async def make_store(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Builds stores of ``backend`` (keyword options as ``RedisStore``'s), closed afterwards."""
    made: list[Any] = []
    server: EmbeddedRedis | None = (
        request.getfixturevalue("redis_server") if backend == "redis" else None
    )

    def make(**options: Any) -> Store:
        store: Any
        if server is None:
            store = MemoryStore(**options)
        else:
            client = aioredis.Redis.from_url(server.url)
            store = RedisStore(client, prefix=f"c{new_id()[:8]}", **options)
        made.append(store)
        return store  # type: ignore[no-any-return]

    yield make
    for store in made:
        await store.close()


class RecordingSubscriber:
    """A ``hub.Subscriber`` that records what it is offered and asked."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.deliveries: list[Delivery] = []
        self.resyncs: list[bool] = []
        """``full`` of each ``resync`` call."""

    def offer(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)

    def resync(self, *, full: bool = False) -> None:
        self.resyncs.append(full)


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds (fails the test after ``within_s``)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Fanout:
    """A store, a pub/sub feeding ``hub`` from it, and the pub/sub's running task."""

    def __init__(self, store: Store, pubsub: PubSub, hub: Hub) -> None:
        self.store = store
        self.pubsub = pubsub
        self.hub = hub
        self.task: asyncio.Task[None] | None = None


@pytest.fixture
async def fanout(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Fanout]:
    """A running pub/sub of ``backend`` on a store of the same backend."""
    hub = Hub()
    clock = FakeClock()
    store: Any
    pubsub: PubSub
    if backend == "memory":
        broker = MemoryBroker()
        store = MemoryStore(publish=broker.publish)
        pubsub = MemoryPubSub(broker, hub, clock)
    else:
        server: EmbeddedRedis = request.getfixturevalue("redis_server")
        prefix = f"c{new_id()[:8]}"
        store = RedisStore(aioredis.Redis.from_url(server.url), prefix=prefix)
        pubsub = RedisPubSub(
            aioredis.Redis.from_url(server.url, health_check_interval=5),
            hub,
            clock,
            prefix=prefix,
            subscribe_timeout=2.0,
        )
    setup = Fanout(store, pubsub, hub)
    setup.task = asyncio.create_task(pubsub.run())
    await until(lambda: pubsub.alive)
    yield setup
    pubsub.stop()
    await asyncio.wait_for(setup.task, 5)
    await store.close()
