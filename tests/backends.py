"""Store and pub/sub backends for contract tests: memory and a real Redis.

Like dramatiq's ``stub_broker``/``redis_broker`` fixtures: a test that takes
``make_store`` (or ``backend``) runs once per backend with the same asserts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from synckairos.embedded import EmbeddedRedis
from synckairos.redis.store import RedisStore
from synckairos.store import Store
from synckairos.store.memory import MemoryStore
from tests.helpers import new_id

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
