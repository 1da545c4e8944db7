"""Retries, idempotent commits and durability mode of RedisStore, on real Redis servers.

A commit may reach Redis and lose its reply (connection reset, failover); the
store then retries it with the same commit token, and the script recognises
the change instead of applying it twice. Durability mode (``WAIT``) is checked
against a real replica, and against a primary without one.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from synckairos.app import create_app
from synckairos.config import Settings
from synckairos.core import CreateSession, Start, Switch
from synckairos.dev.embedded import EmbeddedRedis, free_port
from synckairos.exceptions import StoreUnavailable
from synckairos.node import Node
from synckairos.redis.connection import store_client
from synckairos.redis.store import RedisStore
from synckairos.store import Change
from tests.helpers import FakeClock, new_id, session_body


def _spec() -> CreateSession:
    return msgspec.convert(session_body(), CreateSession)


async def _started(store: RedisStore) -> tuple[Node, str]:
    node = Node(store, clock=FakeClock())
    spec = _spec()
    await node.create(spec)
    await node.execute(spec.session_id, Start())
    return node, spec.session_id


def _script_args(store: RedisStore, sid: str, expected: int, token: str) -> list[object]:
    keys = store.keys(sid)
    state = msgspec.json.encode({"version": expected + 1, "note": token})
    change = msgspec.json.encode({"version": expected + 1, "event": "x", "ts": 1})
    return [
        expected, state, change, "", sid, "e0", 50, 1000, new_id(), 0, keys.channel, "x", "", token
    ]  # fmt: skip


async def _commit_raw(store: RedisStore, sid: str, expected: int, token: str) -> list[Any]:
    """One attempt of the commit script (what a retry after a lost reply sends again)."""
    reply: list[Any] = await store._run_commit(
        store._script_keys(store.keys(sid)), _script_args(store, sid, expected, token)
    )
    return reply


async def test_a_retried_commit_is_recognised_not_applied_twice(store: RedisStore):
    _, sid = await _started(store)
    first = await _commit_raw(store, sid, 2, "token-a")
    again = await _commit_raw(store, sid, 2, "token-a")  # the reply of `first` was "lost"
    assert int(first[0]) == 1
    assert int(again[0]) == 2  # already committed: nothing written
    assert await store.client.hget(store.keys(sid).state, "v") == b"3"
    assert [e for e, _ in await store.client.xrange(store.keys(sid).history)][-1] == b"3-0"
    outbox: Any = await store.client.xrange(store.outbox_key)
    assert sum(1 for _, f in outbox if f[b"sid"] == sid.encode() and f[b"v"] == b"3") == 1


async def test_a_retry_after_later_commits_is_still_recognised(store: RedisStore):
    _, sid = await _started(store)
    await _commit_raw(store, sid, 2, "token-a")
    await _commit_raw(store, sid, 3, "token-b")  # another writer went on
    again = await _commit_raw(store, sid, 2, "token-a")
    assert int(again[0]) == 2
    assert await store.client.hget(store.keys(sid).state, "v") == b"4"


async def test_another_change_at_the_same_version_is_a_mismatch(store: RedisStore):
    _, sid = await _started(store)
    await _commit_raw(store, sid, 2, "token-a")
    other = await _commit_raw(store, sid, 2, "token-other")
    assert [int(x) for x in other[:2]] == [0, 3]
    # The current state comes back with the mismatch (the caller retries on it).
    assert msgspec.json.decode(other[2])["note"] == "token-a"


async def test_a_retried_create_is_recognised(store: RedisStore):
    sid = new_id()
    first = await _commit_raw(store, sid, 0, "create-token")
    again = await _commit_raw(store, sid, 0, "create-token")
    assert (int(first[0]), int(again[0])) == (1, 2)
    assert int((await _commit_raw(store, sid, 0, "someone-else"))[0]) == -1


class _Redis:
    """A redis-server on a fixed port that the test can kill and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def restartable() -> Iterator[_Redis]:
    server = _Redis()
    server.start()
    yield server
    server.kill()


async def test_an_operation_rides_out_a_redis_restart(restartable: _Redis):
    settings = Settings(redis_url=restartable.url, redis_failover_budget_ms=10_000)
    store = RedisStore.from_settings(settings)
    node = Node(store, clock=FakeClock())
    deadline = time.monotonic() + 5
    while not await store.ping():
        assert time.monotonic() < deadline, "redis-server did not start"
        await asyncio.sleep(0.02)
    spec = _spec()
    await node.create(spec)
    restartable.kill()
    loop = asyncio.get_running_loop()
    loop.call_later(0.8, restartable.start)  # Redis is back 0.8 s later, empty
    started = time.monotonic()
    created = await node.create(_spec())  # retried until the server answers
    assert created.transition.state.version == 1
    assert time.monotonic() - started >= 0.7
    await store.close()


async def test_the_budget_bounds_the_wait_and_a_commit_reports_an_unknown_outcome():
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_failover_budget_ms=400
    )
    store = RedisStore.from_settings(settings)
    change = Change(new_id(), 0, b"{}", b"{}", "session_created", None, False)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        await store.commit(change)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert raised.value.details == {"outcome": "unknown"}
    with pytest.raises(StoreUnavailable) as read_failure:
        await store.load(new_id())
    assert read_failure.value.details is None  # a read changes nothing
    await store.close()


def test_http_answers_503_with_retry_after_when_redis_is_gone():
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_failover_budget_ms=300,
        scheduler=False,
        gc_unfreeze_s=0,
    )
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        created = client.post("/v1/sessions", json=session_body())
        got = client.get(f"/v1/sessions/{new_id()}")
    assert time.monotonic() - started < 5
    assert created.status_code == 503
    assert created.headers["retry-after"] == "1"
    assert created.json()["error"]["code"] == "UNAVAILABLE"
    assert created.json()["error"]["details"] == {"outcome": "unknown"}
    assert got.status_code == 503


@pytest.fixture
async def replicated() -> AsyncIterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    with EmbeddedRedis() as primary, EmbeddedRedis() as replica:
        on_primary = aioredis.Redis.from_url(primary.url)
        await on_primary.config_set("repl-diskless-sync-delay", 0)  # default: wait 5 s
        await on_primary.aclose()
        client = aioredis.Redis.from_url(replica.url)
        await client.replicaof("127.0.0.1", primary.port)
        deadline = time.monotonic() + 10
        while (await client.info("replication")).get("master_link_status") != "up":
            assert time.monotonic() < deadline, "replica did not sync"
            await asyncio.sleep(0.05)
        await client.aclose()
        yield primary, replica


async def test_durability_mode_acknowledges_once_a_replica_has_the_change(
    replicated: tuple[EmbeddedRedis, EmbeddedRedis],
):
    primary, replica = replicated
    settings = Settings(redis_url=primary.url, redis_min_replica_acks=1)
    store = RedisStore.from_settings(settings)
    node, sid = await _started(store)
    result = await node.execute(sid, Switch())
    on_replica = aioredis.Redis.from_url(replica.url)
    # Acknowledged means on the replica already: no waiting needed here.
    assert (
        await on_replica.hget(store.keys(sid).state, "v")
        == str(result.transition.state.version).encode()
    )
    await on_replica.aclose()
    await store.close()


async def test_durability_mode_never_acknowledges_an_unreplicated_commit(
    replicated: tuple[EmbeddedRedis, EmbeddedRedis],
):
    primary, _ = replicated
    store = RedisStore(
        store_client(Settings(redis_url=primary.url)),
        prefix=f"t{new_id()[:8]}",
        failover_budget_s=0.8,
        min_replica_acks=2,  # only one replica exists
        replica_ack_timeout_ms=100,
    )
    node = Node(store, clock=FakeClock())
    with pytest.raises(StoreUnavailable) as raised:
        await node.create(_spec())
    assert raised.value.details == {"outcome": "unknown"}
    # The retries recognised the change each time: it is in Redis exactly once.
    outbox: Any = await store.client.xrange(store.outbox_key)
    assert len(outbox) == 1
    await store.close()
