"""The audit trail and recovery end to end (invariants 4 and 5).

Real Redis, real PostgreSQL, real server and worker processes. Under a steady
stream of switches a worker is SIGKILLed, PostgreSQL is stopped for 20 s, and
the server is SIGKILLed; after each, once drained, PostgreSQL holds every
committed version of every session exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import LIVE_ENV, ServerProcess
from tests.helpers import new_id, session_body

SESSIONS = 4


class Worker:
    """A real ``synckairos worker`` process; its stderr (JSON log lines) goes to ``log``."""

    def __init__(self, env: dict[str, str], log: Path | None = None) -> None:
        self.log = log
        self._file = log.open("ab") if log is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "worker"],
            env={**os.environ, **LIVE_ENV, **env},
            stdout=subprocess.DEVNULL,
            stderr=self._file if self._file is not None else subprocess.DEVNULL,
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._close_log()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def text(self) -> str:
        """What the worker has logged so far."""
        assert self.log is not None, "started without a log file"
        return self.log.read_text(errors="replace")


class Stack:
    """Server + worker sharing a key prefix on the test Redis and PostgreSQL."""

    def __init__(self, redis_url: str, database_url: str) -> None:
        self.env = {
            "SYNCKAIROS_REDIS_URL": redis_url,
            "SYNCKAIROS_DATABASE_URL": database_url,
            "SYNCKAIROS_KEY_PREFIX": f"audit{new_id()[:8]}",
            "SYNCKAIROS_WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
        }
        self.redis_url = redis_url
        self.database_url = database_url
        self.server = ServerProcess(redis_url, **self.env)
        self.worker = Worker(self.env)

    @property
    def prefix(self) -> str:
        return self.env["SYNCKAIROS_KEY_PREFIX"]

    def restart_server(self) -> None:
        self.server = ServerProcess(self.redis_url, **self.env)

    def stop(self) -> None:
        self.worker.stop()
        self.server.stop()


@pytest.fixture
def stack(redis_server: EmbeddedRedis, postgres_server: EmbeddedPostgres) -> Iterator[Stack]:
    running = Stack(redis_server.url, postgres_server.url)
    yield running
    running.stop()


async def _stream(stack: Stack, sids: list[str], stop: asyncio.Event) -> int:
    """Switch the sessions round robin until ``stop``; tolerate a dead server."""
    ok = 0
    while not stop.is_set():
        try:
            async with httpx.AsyncClient(base_url=stack.server.url, timeout=2) as http:
                while not stop.is_set():
                    for sid in sids:
                        response = await http.post(f"/v1/sessions/{sid}/switch")
                        ok += response.status_code == 200
                    await asyncio.sleep(0.005)
        except httpx.HTTPError:
            await asyncio.sleep(0.05)  # server being killed / restarted
    return ok


async def _final_versions(stack: Stack, sids: list[str]) -> dict[str, int]:
    client = aioredis.Redis.from_url(stack.redis_url)
    versions = {sid: int(await client.hget(f"{stack.prefix}:{{{sid}}}", "v") or 0) for sid in sids}
    await client.aclose()
    return versions


async def _wait_for_drain(stack: Stack, expected: dict[str, int], wait_s: float = 60) -> None:
    """Wait until PostgreSQL holds versions 1..n of every session; assert no duplicate."""
    conn = await asyncpg.connect(stack.database_url)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            rows = await conn.fetch(
                "SELECT session_id::text AS sid, count(*) AS n, count(DISTINCT version) AS d,"
                " min(version) AS lo, max(version) AS hi FROM sync_events"
                " WHERE session_id = ANY($1::text[]::uuid[]) GROUP BY session_id",
                list(expected),
            )
            found = {r["sid"]: r for r in rows}
            for sid, row in found.items():
                assert row["n"] == row["d"], f"duplicate versions persisted for {sid}"
            done = all(
                sid in found and found[sid]["n"] == n and found[sid]["hi"] == n
                for sid, n in expected.items()
            )
            if done:
                for sid in expected:
                    assert found[sid]["lo"] == 1
                return
            if time.monotonic() > deadline:
                summary = {
                    s: (dict(found[s]) if s in found else None, n) for s, n in expected.items()
                }
                raise AssertionError(f"not drained in {wait_s} s: {summary}")
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _steady_stream(stack: Stack) -> AsyncIterator[list[str]]:
    sids = []
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        for _ in range(SESSIONS):
            body = session_body(budget_ms=3_600_000)
            assert (await http.post("/v1/sessions", json=body)).status_code == 201
            assert (await http.post(f"/v1/sessions/{body['session_id']}/start")).status_code == 200
            sids.append(body["session_id"])
    stop = asyncio.Event()
    streaming = asyncio.create_task(_stream(stack, sids, stop))
    await asyncio.sleep(1.0)
    try:
        yield sids
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        ok = await streaming
    assert ok > 50, f"the stream committed only {ok} switches"


async def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(stack: Stack):
    async with _steady_stream(stack) as sids:
        for _ in range(2):
            await asyncio.sleep(0.7)
            stack.worker.kill()
            await asyncio.sleep(1.0)
            stack.worker = Worker(stack.env)
    await _wait_for_drain(stack, await _final_versions(stack, sids))


async def test_postgres_down_for_20_seconds_loses_and_doubles_nothing(
    stack: Stack, postgres_server: EmbeddedPostgres
):
    async with _steady_stream(stack) as sids:
        postgres_server.stop()
        try:
            await asyncio.sleep(20)
            async with httpx.AsyncClient(base_url=stack.server.url) as http:
                ready = (await http.get("/ready")).json()
            assert ready["status"] == "ready" and ready["audit"] == "down"
        finally:
            postgres_server.start_again()
    await _wait_for_drain(stack, await _final_versions(stack, sids), wait_s=90)


async def test_a_server_killed_with_sigkill_loses_and_doubles_nothing(stack: Stack):
    async with _steady_stream(stack) as sids:
        os.kill(stack.server.process.pid, signal.SIGKILL)
        stack.server.process.wait()
        await asyncio.sleep(0.5)
        stack.restart_server()
    await _wait_for_drain(stack, await _final_versions(stack, sids))


async def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``synckairos`` command with the stack's settings (off the event loop)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "synckairos", *args],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _persisted_version(database_url: str, sid: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        version: int | None = await conn.fetchval(
            "SELECT max(version) FROM sync_events WHERE session_id = $1::text::uuid", sid
        )
    finally:
        await conn.close()
    return version or 0


async def _wait_persisted(database_url: str, sid: str, version: int) -> None:
    for _ in range(200):
        if await _persisted_version(database_url, sid) >= version:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sid} v{version} never reached PostgreSQL")


async def test_a_running_session_whose_keys_vanished_comes_back_from_postgres(stack: Stack):
    body = session_body(participants=2, budget_ms=60_000, increment_ms=1_000)
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        await http.post("/v1/sessions", json=body)
        await http.post(f"/v1/sessions/{sid}/start")
        await asyncio.sleep(0.3)
        switched: dict[str, Any] = (await http.post(f"/v1/sessions/{sid}/switch")).json()["data"]
        await _wait_persisted(stack.database_url, sid, switched["version"])
        client = aioredis.Redis.from_url(stack.redis_url)
        await client.delete(f"{stack.prefix}:{{{sid}}}", f"{stack.prefix}:{{{sid}}}:history")
        await client.aclose()
        await asyncio.sleep(0.4)  # the restored clock must have kept running
        got = await http.get(f"/v1/sessions/{sid}")
        assert got.status_code == 200
        state = got.json()["data"]
    assert state["recovered"] is True
    # The version jumps to the restoring node's clock in µs (never reusing one
    # Redis may have given after the persisted version): no earlier than the
    # switch's commit, no later than now, exact for JavaScript clients.
    assert switched["server_time_ms"] * 1000 <= state["version"] <= time.time_ns() // 1000
    assert state["version"] < 2**53
    assert state["cycle_started_ms"] == switched["cycle_started_ms"]
    assert state["deadline_ms"] == switched["deadline_ms"]
    assert state["participants"] == switched["participants"]
    assert state["active_participant_id"] == switched["active_participant_id"]
    await _wait_persisted(stack.database_url, sid, state["version"])


async def test_a_deleted_session_is_never_resurrected(stack: Stack):
    body = session_body()
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        await http.post("/v1/sessions", json=body)
        await http.delete(f"/v1/sessions/{sid}")
        await _wait_persisted(stack.database_url, sid, 1)
        conn = await asyncpg.connect(stack.database_url)
        for _ in range(100):
            types = await conn.fetch(
                "SELECT event_type FROM sync_events WHERE session_id = $1::text::uuid", sid
            )
            if len(types) == 2:
                break
            await asyncio.sleep(0.05)
        await conn.close()
        assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404


async def test_after_flushall_get_and_recover_all_bring_back_unfinished_sessions(
    postgres_server: EmbeddedPostgres,
):
    with EmbeddedRedis() as private_redis:
        stack = Stack(private_redis.url, postgres_server.url)
        try:
            running, paused, finished = session_body(), session_body(), session_body()
            async with httpx.AsyncClient(base_url=stack.server.url) as http:
                for body in (running, paused, finished):
                    await http.post("/v1/sessions", json=body)
                    await http.post(f"/v1/sessions/{body['session_id']}/start")
                await http.post(f"/v1/sessions/{paused['session_id']}/pause")
                done = await http.post(f"/v1/sessions/{finished['session_id']}/complete")
                versions = {running["session_id"]: 2, paused["session_id"]: 3}
                versions[finished["session_id"]] = done.json()["data"]["version"]
                for sid, version in versions.items():
                    await _wait_persisted(stack.database_url, sid, version)
                client = aioredis.Redis.from_url(private_redis.url)
                await client.flushall()
                # GET alone restores a session.
                got = (await http.get(f"/v1/sessions/{running['session_id']}")).json()["data"]
                assert got["recovered"] is True and got["status"] == "running"
                await client.flushall()
                result = await _cli(stack, "recover", "--all")
                assert result.returncode == 0, result.stderr
                for sid in (running["session_id"], paused["session_id"]):
                    assert sid in result.stdout
                    assert await client.exists(f"{stack.prefix}:{{{sid}}}")
                assert finished["session_id"] not in result.stdout
                assert not await client.exists(f"{stack.prefix}:{{{finished['session_id']}}}")
                await client.aclose()
                restored = (await http.get(f"/v1/sessions/{paused['session_id']}")).json()["data"]
                assert restored["status"] == "paused" and restored["recovered"] is True
        finally:
            stack.stop()


async def test_reconcile_repairs_sessions_where_postgres_is_newer(stack: Stack):
    body = session_body()
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        await http.post("/v1/sessions", json=body)
        await http.post(f"/v1/sessions/{sid}/start")
        latest = (await http.post(f"/v1/sessions/{sid}/switch")).json()["data"]
        await _wait_persisted(stack.database_url, sid, latest["version"])
    # Simulate a failover that lost Redis writes: put version 1's state back.
    conn = await asyncpg.connect(stack.database_url)
    old = await conn.fetchval(
        "SELECT state_snapshot::text FROM sync_events WHERE session_id = $1::text::uuid"
        " AND version = 1",
        sid,
    )
    await conn.close()
    client = aioredis.Redis.from_url(stack.redis_url)
    await client.hset(f"{stack.prefix}:{{{sid}}}", mapping={"s": old, "v": 1})
    before_ms = time.time_ns() // 1_000_000
    result = await _cli(stack, "reconcile")
    assert result.returncode == 0, result.stderr
    assert sid in result.stdout
    repaired = await client.hget(f"{stack.prefix}:{{{sid}}}", "v")
    # Above the persisted version and every version Redis gave: the clock in µs.
    assert repaired is not None and before_ms * 1000 <= int(repaired) <= time.time_ns() // 1000
    assert int(repaired) > latest["version"]
    await client.aclose()


async def test_a_batch_that_keeps_failing_is_dead_lettered_then_requeued(stack: Stack):
    from synckairos.dev.embedded import free_port

    stack.worker.stop()
    broken = {
        **stack.env,
        "SYNCKAIROS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        "SYNCKAIROS_AUDIT_MAX_RETRIES": "1",
    }
    stack.worker = Worker(broken)
    body = session_body()
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        await http.post("/v1/sessions", json=body)
        for _ in range(200):
            text = (await http.get("/metrics")).text
            if "synckairos_audit_dead_lettered 0.0" not in text:
                break
            await asyncio.sleep(0.1)
        assert "synckairos_audit_dead_lettered 1.0" in text
        assert await _persisted_version(stack.database_url, sid) == 0
        stack.worker.stop()
        stack.worker = Worker(stack.env)
        result = await _cli(stack, "audit", "requeue")
        assert result.returncode == 0, result.stderr
        assert "requeued 1" in result.stdout
        await _wait_persisted(stack.database_url, sid, 1)


async def test_a_get_right_after_delete_is_404_before_the_deletion_reaches_postgres(
    stack: Stack,
):
    body = session_body()
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        await _wait_persisted(stack.database_url, sid, 1)
        stack.worker.kill()  # the deletion cannot reach PostgreSQL now
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
        # PostgreSQL still has the live snapshot; the tombstone keeps it there.
        assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404
        assert (await http.post(f"/v1/sessions/{sid}/start")).status_code == 404
        # The id may be used again, and the new session does not inherit the
        # tombstone's expiry.
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        client = aioredis.Redis.from_url(stack.redis_url)
        assert await client.pttl(f"{stack.prefix}:{{{sid}}}") == -1
        await client.aclose()
