"""Total Redis loss under switch load, in each durability level (issue 14, acceptance).

Real processes: a Redis primary without persistence (plus a replica started
with ``--replicaof`` in the ``replica`` level), a ``synckairos serve`` in the
level under test, a ``synckairos worker`` and a PostgreSQL database of the
test's own. Sessions are switched back to back; the worker is stalled
(SIGSTOP: whatever it holds stays in its memory) and then Redis loses every key,
by ``FLUSHALL`` or by a SIGKILL and a restart without persistence. The load
goes on through the fault (sessions come back from PostgreSQL on demand; in
the ``postgres`` level a change whose rows the stalled worker holds locked in
its open transaction cannot be made durable and is answered 503), then the
worker is resumed (SIGCONT), every session is read (restored) and the worker
drains.

Recorded: every acknowledged change (2xx: the version and the state the client
was given) and every row PostgreSQL holds for the sessions. Asserted:

* in every level, PostgreSQL holds at most one row per (session, epoch,
  version) and per (session, version): no version is duplicated;
* in the ``postgres`` level, every acknowledged version is in PostgreSQL with
  the very state that was acknowledged (nothing acknowledged is lost).

In the ``redis`` and ``replica`` levels the acknowledged versions a total loss
costs are printed (``-s``), not asserted: that is their documented recovery
point (docs/audit.md, "Durability levels").
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from synckairos.dev.embedded import free_port
from tests.conftest import ServerProcess
from tests.helpers import new_id, session_body
from tests.test_audit_e2e import Worker

SESSIONS = 4
LOAD_BEFORE_STALL_S = 1.0
STALLED_BEFORE_FAULT_S = 0.5
LOAD_AFTER_FAULT_S = 1.5


class RedisNode:
    """A ``redis-server`` without persistence on a fixed port (restartable empty)."""

    def __init__(self, replica_of: int | None = None) -> None:
        self.port = free_port()
        self.replica_of = replica_of
        self.dir = tempfile.mkdtemp(prefix="synckairos-durability-")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", self.dir, "--save", "", "--appendonly", "no"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        if self.replica_of is not None:
            # A replica acknowledges WAIT only once its first sync is done: until
            # then every commit of the replica level waits out its budget.
            while (
                b"master_link_status:up"
                not in subprocess.run(
                    ["redis-cli", "-p", str(self.port), "info", "replication"],
                    capture_output=True,
                    check=False,
                ).stdout
            ):
                assert time.monotonic() < deadline + 20, "the replica never synced"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Acked:
    """What the clients were told: (session, version, state) of each 2xx answer.

    A list, not a map: a version acknowledged twice with two states (reused
    after a restore) must count twice.
    """

    def __init__(self) -> None:
        self.states: list[tuple[str, int, dict[str, Any]]] = []
        self.failed = 0

    def add(self, response: httpx.Response) -> None:
        if 200 <= response.status_code < 300:
            state = response.json()["data"]
            self.states.append((state["session_id"], state["version"], state))
        else:
            self.failed += 1


async def _switching(url: str, sid: str, acked: Acked, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while not stop.is_set():
            try:
                acked.add(await http.post(f"/v1/sessions/{sid}/switch"))
            except httpx.HTTPError:
                acked.failed += 1
                await asyncio.sleep(0.05)


async def _rows(database_url: str, sids: list[str]) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT session_id::text AS sid, epoch, version, event_type,"
            " state_snapshot::text AS state FROM sync_events"
            " WHERE session_id = ANY($1::text[]::uuid[])",
            sids,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def _redis_versions(url: str, prefix: str, sids: list[str]) -> dict[str, int]:
    client = aioredis.Redis.from_url(url)
    try:
        return {sid: int(await client.hget(f"{prefix}:{{{sid}}}", "v") or 0) for sid in sids}
    finally:
        await client.aclose()


async def _wait_drained(url: str, prefix: str, database_url: str, sids: list[str]) -> None:
    """Until PostgreSQL holds every session's current Redis version and stops growing."""
    deadline = time.monotonic() + 60
    stable, last = 0, -1
    while True:
        current = await _redis_versions(url, prefix, sids)
        rows = await _rows(database_url, sids)
        held = {(r["sid"], r["version"]) for r in rows}
        if all((sid, v) in held for sid, v in current.items()) and len(rows) == last:
            stable += 1
            if stable >= 6:  # 1.5 s without a new row: the resumed worker is done
                return
        else:
            stable = 0
        last = len(rows)
        assert time.monotonic() < deadline, f"not drained: redis {current}, {len(rows)} rows"
        await asyncio.sleep(0.25)


@pytest.fixture
def redis_pair(request: pytest.FixtureRequest) -> Iterator[tuple[RedisNode, RedisNode | None]]:
    """The primary, and a replica of it in the ``replica`` level."""
    primary = RedisNode()
    replica = RedisNode(replica_of=primary.port) if request.param == "replica" else None
    yield primary, replica
    for node in (replica, primary):
        if node is not None:
            node.stop()


_LEVELS = [(level, level) for level in ("redis", "replica", "postgres")]


@pytest.mark.parametrize("fault", ["flushall", "restart"])
@pytest.mark.parametrize(("level", "redis_pair"), _LEVELS, indirect=["redis_pair"])
async def test_total_redis_loss_under_load_with_the_worker_stalled(
    level: str, fault: str, redis_pair: tuple[RedisNode, RedisNode | None], audit_dsn: str
) -> None:
    primary, _ = redis_pair
    env = {
        "SYNCKAIROS_REDIS_URL": primary.url,
        "SYNCKAIROS_DATABASE_URL": audit_dsn,
        "SYNCKAIROS_KEY_PREFIX": f"dur{new_id()[:8]}",
        "SYNCKAIROS_DURABILITY": level,
        "SYNCKAIROS_REDIS_FAILOVER_BUDGET_MS": "5000",
        "SYNCKAIROS_WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
    }
    server = ServerProcess(primary.url, **env)
    worker = Worker(env)
    acked = Acked()
    stop = asyncio.Event()
    try:
        sids: list[str] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for _ in range(SESSIONS):
                body = session_body(budget_ms=3_600_000)
                sid = body["session_id"]
                created = await http.post("/v1/sessions", json=body)
                assert created.status_code == 201, created.text
                acked.add(created)
                acked.add(await http.post(f"/v1/sessions/{sid}/start"))
                sids.append(sid)
        # The worker is up and has persisted the sessions' creation and start.
        deadline = time.monotonic() + 60
        while len(await _rows(audit_dsn, sids)) < 2 * SESSIONS:
            assert time.monotonic() < deadline, "the worker never persisted the sessions"
            await asyncio.sleep(0.1)
        load = [asyncio.create_task(_switching(server.url, s, acked, stop)) for s in sids]
        await asyncio.sleep(LOAD_BEFORE_STALL_S)
        os.kill(worker.process.pid, signal.SIGSTOP)
        await asyncio.sleep(STALLED_BEFORE_FAULT_S)
        before = len(acked.states)
        if fault == "flushall":
            client = aioredis.Redis.from_url(primary.url)
            await client.flushall()
            await client.aclose()
        else:
            primary.kill()
            primary.start()
        await asyncio.sleep(LOAD_AFTER_FAULT_S)
        stop.set()
        await asyncio.gather(*load)
        os.kill(worker.process.pid, signal.SIGCONT)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for sid in sids:  # every session comes back (restore on read)
                assert (await http.get(f"/v1/sessions/{sid}")).status_code == 200
        await _wait_drained(primary.url, env["SYNCKAIROS_KEY_PREFIX"], audit_dsn, sids)
    finally:
        stop.set()
        if worker.process.poll() is None:
            os.kill(worker.process.pid, signal.SIGCONT)
        worker.stop()
        server.stop()

    rows = [r for r in await _rows(audit_dsn, sids) if r["event_type"] != "session_deleted"]
    persisted: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        persisted.setdefault((r["sid"], r["version"]), []).append(json.loads(r["state"]))
    # Lost: the acknowledged state is not in PostgreSQL under its version, either
    # because the version is missing or because it holds other states only.
    lost = [(sid, v) for sid, v, state in acked.states if state not in persisted.get((sid, v), [])]
    overwritten = [key for key in lost if key in persisted]
    reused = {(sid, v) for sid, v, _ in acked.states}
    reused_versions = len(acked.states) - len(reused)
    by_epoch: dict[tuple[str, str, int], int] = {}
    by_version: dict[tuple[str, int], int] = {}
    for r in rows:
        by_epoch[(r["sid"], r["epoch"], r["version"])] = (
            by_epoch.get((r["sid"], r["epoch"], r["version"]), 0) + 1
        )
        by_version[(r["sid"], r["version"])] = by_version.get((r["sid"], r["version"]), 0) + 1
    print(
        f"\n[durability={level} fault={fault}] acknowledged {len(acked.states)} changes "
        f"({before} before the fault, {acked.failed} requests failed); PostgreSQL holds "
        f"{len(rows)} rows; acknowledged and lost: {len(lost)}; acknowledged version "
        f"holding another state: {len(overwritten)}; duplicated (session, version): "
        f"{sum(1 for n in by_version.values() if n > 1)}; versions acknowledged twice "
        f"(reused after the restore): {reused_versions}"
    )
    if os.environ.get("DURABILITY_DEBUG"):
        for sid in sids:
            a = sorted(v for (s2, v, _) in acked.states if s2 == sid)
            p = sorted(r["version"] for r in rows if r["sid"] == sid)
            print(sid[:8], "acked", a[:3], "..", a[-3:], len(a), "pg", p[:3], "..", p[-3:], len(p))
            print("  lost", sorted(v for (s2, v) in lost if s2 == sid)[:10])
            print("  over", sorted(v for (s2, v) in overwritten if s2 == sid)[:10])
    assert all(n == 1 for n in by_epoch.values()), "a (session, epoch, version) is duplicated"
    assert all(n == 1 for n in by_version.values()), "a (session, version) is duplicated"
    assert reused_versions == 0, "a version was acknowledged with two different states"
    if level == "postgres":
        assert lost == [], f"acknowledged versions lost: {sorted(lost)[:5]}"
        assert overwritten == [], f"acknowledged versions overwritten: {sorted(overwritten)[:5]}"
