"""Fixtures: a real private Redis and PostgreSQL for the whole run (never mocked, never skipped)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from synckairos.app import create_app
from synckairos.audit.migrate import migrate
from synckairos.config import Settings
from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from synckairos.redis.store import RedisStore
from tests.helpers import FakeClock, new_id


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A private redis-server for the whole test run."""
    with EmbeddedRedis() as server:
        yield server


T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a loop of its own, in another thread.

    For sync fixtures: safe whether or not this thread runs an event loop.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """A private PostgreSQL 15 for the whole test run; its ``url`` database is migrated."""
    with EmbeddedPostgres() as server:
        run_coroutine(migrate(server.url))
        yield server


@pytest.fixture
def audit_dsn(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database of its own on the shared PostgreSQL; yields its URL."""
    name = f"t{new_id()[:8]}"
    postgres_server.create_database(name)
    run_coroutine(migrate(postgres_server.dsn(name)))
    yield postgres_server.dsn(name)
    if postgres_server.running:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(redis_server: EmbeddedRedis) -> Settings:
    return Settings(redis_url=redis_server.url, key_prefix=f"t{new_id()[:8]}", rate_limits=False)


@pytest.fixture
def client(settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    """The ASGI app on the real Redis, with a controllable clock."""
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


@pytest.fixture
def wall_client(settings: Settings) -> Iterator[TestClient]:
    """The ASGI app on the real Redis, with the real clock."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def store(redis_server: EmbeddedRedis) -> AsyncIterator[RedisStore]:
    """A RedisStore with a key prefix of its own (isolated global keys)."""
    client = aioredis.Redis.from_url(redis_server.url)
    store = RedisStore(client, prefix=f"t{new_id()[:8]}", history_maxlen=5, outbox_maxlen=1000)
    yield store
    await store.close()


#: Settings of the live server processes: a short history and send queue, so
#: the tests can outrun them.
LIVE_ENV = {
    "SYNCKAIROS_LOG_LEVEL": "warning",
    "SYNCKAIROS_RATE_LIMITS": "off",
    "SYNCKAIROS_HISTORY_MAXLEN": "50",
    "SYNCKAIROS_WS_SEND_QUEUE": "64",
}


class ServerProcess:
    """A real ``synckairos serve`` process (uvicorn, uvloop, httptools)."""

    def __init__(self, redis_url: str, *extra_args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "serve", "--port", str(self.port), *extra_args],
            env={**os.environ, **LIVE_ENV, "SYNCKAIROS_REDIS_URL": redis_url, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"server did not start: {err}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def live_server(redis_server: EmbeddedRedis) -> Iterator[str]:
    """Node A: a real server process on the shared Redis; yields its base URL."""
    server = ServerProcess(redis_server.url)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def live_server_b(redis_server: EmbeddedRedis) -> Iterator[str]:
    """Node B: a second, independent server process on the same Redis."""
    server = ServerProcess(redis_server.url)
    yield server.url
    server.stop()
