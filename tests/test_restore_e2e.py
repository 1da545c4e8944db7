"""Redis loses a session: the restore never reuses a version, a create never overwrites.

Real server and worker processes, a private Redis (FLUSHALL is the fault) and
PostgreSQL. The audit trail is held back by a table lock: the worker's INSERT
of the newest changes waits on it (the worker holds that batch in hand), while
the restore's SELECT goes through. When the lock is released after the
restore, those "lost" changes still reach PostgreSQL: the worst case for a
version that was reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from synckairos.dev.embedded import EmbeddedRedis, free_port
from tests.conftest import ServerProcess
from tests.helpers import session_body
from tests.test_audit_e2e import Stack, _cli, _persisted_version


@pytest.fixture
def private_stack(audit_dsn: str) -> Iterator[Stack]:
    """Server + worker on a Redis of their own (FLUSHALL hurts nobody else)."""
    with EmbeddedRedis() as redis_server:
        running = Stack(redis_server.url, audit_dsn)
        try:
            yield running
        finally:
            running.stop()


@contextlib.asynccontextmanager
async def _audit_held_back(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold an EXCLUSIVE lock on sync_events: INSERTs wait, SELECTs pass."""
    conn = await asyncpg.connect(database_url)
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("LOCK TABLE sync_events IN EXCLUSIVE MODE")
    try:
        yield conn
    finally:
        await transaction.rollback()
        await conn.close()


async def _wait_worker_blocked(conn: asyncpg.Connection) -> None:
    """Wait until the worker's INSERT into sync_events waits on the lock."""
    for _ in range(1200):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    activity = await conn.fetch(
        "SELECT datname, state, wait_event_type, wait_event, left(query, 60) AS q"
        " FROM pg_stat_activity"
    )
    raise AssertionError(
        f"the worker never tried to insert the held-back changes: {[dict(a) for a in activity]}"
    )


async def _follow(ws_url: str, sid: str, seen: list[dict[str, Any]]) -> None:
    """Record every STATE_SYNC / STATE_UPDATE a subscriber of ``sid`` receives."""
    async with connect(f"{ws_url}/ws?sessionId={sid}") as socket:
        async for raw in socket:
            message = msgspec.json.decode(raw)
            if message.get("type") in ("STATE_SYNC", "STATE_UPDATE"):
                seen.append(message)


async def _wait_seen(seen: list[dict[str, Any]], version: int) -> None:
    for _ in range(1200):
        if seen and seen[-1]["version"] >= version:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"the subscriber never saw version {version}: {seen[-3:]}")


async def _recv(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = msgspec.json.decode(await asyncio.wait_for(socket.recv(), 30))
    return message


async def _rows(database_url: str, sid: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT epoch, version, event_type, state_snapshot->>'active_participant_id' AS active"
            " FROM sync_events WHERE session_id = $1::text::uuid ORDER BY committed_at_ms, version",
            sid,
        )
        return rows
    finally:
        await conn.close()


async def _wait_rows(database_url: str, sid: str, version: int) -> list[asyncpg.Record]:
    deadline = time.monotonic() + 60
    while True:
        rows = await _rows(database_url, sid)
        if any(r["version"] == version for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"v{version} never reached PostgreSQL: {rows}")
        await asyncio.sleep(0.1)


async def _wait_persisted(database_url: str, sid: str, version: int) -> None:
    """Wait until PostgreSQL holds ``version`` of ``sid`` (a cold worker starts slowly)."""
    deadline = time.monotonic() + 60
    while await _persisted_version(database_url, sid) < version:
        if time.monotonic() > deadline:
            raise AssertionError(f"{sid} v{version} never reached PostgreSQL")
        await asyncio.sleep(0.05)


async def _redis(stack: Stack) -> aioredis.Redis:
    return aioredis.Redis.from_url(stack.redis_url)


async def test_a_lost_version_is_never_reused_after_a_restore(private_stack: Stack):
    stack = private_stack
    body = session_body(participants=2, budget_ms=600_000)
    sid = body["session_id"]
    first, second = (p["participant_id"] for p in body["participants"])
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=10) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        started = (await http.post(f"/v1/sessions/{sid}/start")).json()["data"]
        assert started["version"] == 2 and started["active_participant_id"] == first
        await _wait_persisted(stack.database_url, sid, 2)
        following = asyncio.create_task(_follow(stack.server.ws_url, sid, seen))
        try:
            await _wait_seen(seen, 2)
            async with _audit_held_back(stack.database_url) as lock:
                # Acknowledged, published, seen by the subscriber; held back
                # from PostgreSQL (in the worker's hands).
                lost = []
                for _ in range(3):
                    switched = await http.post(f"/v1/sessions/{sid}/switch")
                    assert switched.status_code == 200
                    lost.append(switched.json()["data"])
                assert [s["version"] for s in lost] == [3, 4, 5]
                assert lost[0]["active_participant_id"] == second
                await _wait_seen(seen, 5)
                await _wait_worker_blocked(lock)
                client = await _redis(stack)
                await client.flushall()
                await client.aclose()
                # A read restores the session from PostgreSQL (as of version 2).
                got = await http.get(f"/v1/sessions/{sid}")
                assert got.status_code == 200
                restored = got.json()["data"]
                assert restored["recovered"] is True
                assert restored["active_participant_id"] == first
                # A client that saw a lost version must not act on the restored state:
                # with version 3 it believes it is ending the second player's turn.
                for stale in lost:
                    refused = await http.post(
                        f"/v1/sessions/{sid}/switch",
                        json={"expected_version": stale["version"]},
                    )
                    assert refused.status_code == 409, refused.text
                    assert refused.json()["error"]["code"] == "CONFLICT"
                    refused = await http.post(
                        f"/v1/sessions/{sid}/switch",
                        headers={"If-Match": f'"{stale["version"]}"'},
                    )
                    assert refused.status_code == 409, refused.text
                assert restored["version"] > 5
                current = await http.post(
                    f"/v1/sessions/{sid}/switch", json={"expected_version": restored["version"]}
                )
                assert current.status_code == 200
                after = current.json()["data"]
                assert after["version"] == restored["version"] + 1
                assert after["active_participant_id"] == second
                # Forever: the session moves on, and a lost version still never matches.
                for _ in range(3):
                    assert (await http.post(f"/v1/sessions/{sid}/switch")).status_code == 200
                for stale in lost:
                    refused = await http.post(
                        f"/v1/sessions/{sid}/switch",
                        json={"expected_version": stale["version"]},
                    )
                    assert refused.status_code == 409
                final = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
                await _wait_seen(seen, final["version"])
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await following
    # The subscriber's versions never went backwards, all in one epoch.
    versions = [m["version"] for m in seen]
    assert versions == sorted(versions), versions
    assert versions[-1] == final["version"]
    assert len({m["epoch"] for m in seen}) == 1
    # The held-back changes reach PostgreSQL now; still one row per version.
    await _wait_rows(stack.database_url, sid, final["version"])
    rows = await _wait_rows(stack.database_url, sid, 3)  # the batch the worker held
    keys = [(r["epoch"], r["version"]) for r in rows]
    assert len(keys) == len(set(keys)), keys
    assert len({r["version"] for r in rows}) == len(rows)
    assert len({r["epoch"] for r in rows}) == 1
    recovered = [r for r in rows if r["event_type"] == "session_recovered"]
    assert [r["version"] for r in recovered] == [restored["version"]]


async def test_a_create_after_a_redis_loss_does_not_overwrite_the_session(
    private_stack: Stack,
):
    stack = private_stack
    body = session_body(participants=2, budget_ms=600_000)
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=10) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        await http.post(f"/v1/sessions/{sid}/start")
        switched = (await http.post(f"/v1/sessions/{sid}/switch")).json()["data"]
        await _wait_persisted(stack.database_url, sid, switched["version"])
        client = await _redis(stack)
        epoch = await client.hget(f"{stack.prefix}:{{{sid}}}", "e")
        await client.flushall()
        again = await http.post("/v1/sessions", json=body)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "SESSION_EXISTS"
        # The session kept its state (and its incarnation).
        state = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
        assert state["status"] == "running" and state["recovered"] is True
        assert state["active_participant_id"] == switched["active_participant_id"]
        assert state["participants"] == switched["participants"]
        assert state["version"] > switched["version"]
        assert await client.hget(f"{stack.prefix}:{{{sid}}}", "e") == epoch
        await client.aclose()


async def test_a_create_after_a_persisted_deletion_is_a_new_incarnation(private_stack: Stack):
    stack = private_stack
    body = session_body()
    sid = body["session_id"]
    key = f"{stack.prefix}:{{{sid}}}"
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=10) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        await http.post(f"/v1/sessions/{sid}/start")
        client = await _redis(stack)
        old_epoch = await client.hget(key, "e")
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
        rows: list[asyncpg.Record] = []
        for _ in range(1200):
            rows = await _rows(stack.database_url, sid)
            if any(r["event_type"] == "session_deleted" for r in rows):
                break
            await asyncio.sleep(0.05)
        assert rows and rows[-1]["event_type"] == "session_deleted"
        await client.flushall()  # the tombstone is gone too: only PostgreSQL knows
        created = await http.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["data"]["version"] == 1
        assert created.json()["data"]["status"] == "pending"
        new_epoch = await client.hget(key, "e")
        assert new_epoch and new_epoch != old_epoch
        # A later loss restores this incarnation: its epoch, never the deleted one.
        conn = await asyncpg.connect(stack.database_url)
        for _ in range(1200):
            if await conn.fetchval(
                "SELECT count(*) FROM sync_events WHERE session_id = $1::text::uuid AND epoch = $2",
                sid,
                new_epoch.decode() if isinstance(new_epoch, bytes) else new_epoch,
            ):
                break
            await asyncio.sleep(0.05)
        await conn.close()
        await client.flushall()
        got = await http.get(f"/v1/sessions/{sid}")
        assert got.status_code == 200
        assert got.json()["data"]["status"] == "pending"
        assert got.json()["data"]["recovered"] is True
        assert await client.hget(key, "e") == new_epoch
        await client.aclose()


async def test_reconcile_never_overwrites_a_newer_incarnation(private_stack: Stack):
    stack = private_stack
    body = session_body()
    sid = body["session_id"]
    key = f"{stack.prefix}:{{{sid}}}"
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=10) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        await http.post(f"/v1/sessions/{sid}/start")
        await http.post(f"/v1/sessions/{sid}/switch")
        await _wait_persisted(stack.database_url, sid, 3)
    # Redis holds another incarnation (deleted and created again; neither
    # event in PostgreSQL yet): its version 1 is not "older" than version 3.
    client = await _redis(stack)
    await client.hset(key, mapping={"v": 1, "e": "0123456789abcdef"})
    result = await _cli(stack, "reconcile")
    assert result.returncode == 0, result.stderr
    report = msgspec.json.decode(result.stdout)
    assert sid in report["redis_newer"] and sid not in report["repaired"]
    assert await client.hget(key, "v") == b"1"
    assert await client.hget(key, "e") == b"0123456789abcdef"
    await client.aclose()


async def test_a_create_that_cannot_check_the_archive_creates_nothing(
    redis_server: EmbeddedRedis,
):
    # An audit store nobody listens on: the check cannot be made, so no 201.
    prefix = f"nopg{uuid.uuid4().hex[:8]}"
    server = ServerProcess(
        redis_server.url,
        SYNCKAIROS_KEY_PREFIX=prefix,
        SYNCKAIROS_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
    )
    try:
        body = session_body()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            refused = await http.post("/v1/sessions", json=body)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "UNAVAILABLE"
        client = aioredis.Redis.from_url(redis_server.url)
        assert not await client.exists(f"{prefix}:{{{body['session_id']}}}")
        await client.aclose()
    finally:
        server.stop()


async def test_a_delete_after_a_redis_loss_deletes_the_session_for_good(private_stack: Stack):
    stack = private_stack
    body = session_body()
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=10) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        started = (await http.post(f"/v1/sessions/{sid}/start")).json()["data"]
        await _wait_persisted(stack.database_url, sid, started["version"])
        client = await _redis(stack)
        await client.flushall()
        await client.aclose()
        # A stale If-Match is checked against the restored session: refused.
        stale = await http.delete(f"/v1/sessions/{sid}", headers={"If-Match": "2"})
        assert stale.status_code == 409, stale.text
        client = await _redis(stack)
        await client.flushall()
        await client.aclose()
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
        assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404


async def test_reconnect_after_a_restore_replays_from_the_jumped_versions(private_stack: Stack):
    stack = private_stack
    body = session_body(participants=2, budget_ms=600_000)
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=10) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        started = (await http.post(f"/v1/sessions/{sid}/start")).json()["data"]
        await _wait_persisted(stack.database_url, sid, started["version"])
        client = await _redis(stack)
        await client.flushall()
        await client.aclose()
        restored = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
        jumped = restored["version"]
        assert jumped > 2**31
        for _ in range(3):
            assert (await http.post(f"/v1/sessions/{sid}/switch")).status_code == 200
        async with connect(f"{stack.server.ws_url}/ws?sessionId={sid}") as socket:
            messages = [await _recv(socket) for _ in range(2)]
            assert [m["type"] for m in messages] == ["CONNECTED", "STATE_SYNC"]
            epoch = messages[1]["epoch"]
            assert messages[1]["version"] == jumped + 3
            # From the restore's version: the three switches, replayed exactly.
            await socket.send(
                msgspec.json.encode(
                    {"type": "RECONNECT", "last_known_version": jumped, "epoch": epoch}
                ).decode()
            )
            replay = [await _recv(socket) for _ in range(4)]
            assert [m["type"] for m in replay] == ["STATE_UPDATE"] * 3 + ["RECONNECT_ACK"]
            assert [m["version"] for m in replay[:3]] == [jumped + 1, jumped + 2, jumped + 3]
            assert replay[3]["recovered"] is True and replay[3]["replayed"] == 3
            # From a version before the loss: a full state, never a replay.
            await socket.send(
                msgspec.json.encode(
                    {"type": "RECONNECT", "last_known_version": 3, "epoch": epoch}
                ).decode()
            )
            full = [await _recv(socket) for _ in range(2)]
            assert [m["type"] for m in full] == ["STATE_SYNC", "RECONNECT_ACK"]
            assert full[0]["version"] == jumped + 3 and full[1]["recovered"] is False
