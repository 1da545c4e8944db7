"""Issue 14, items 6 and 8: bounded memory, the live-session cap, idle TTLs.

On real server processes (or the real ASGI app) and the real Redis; the idle
TTL also through the audit worker into PostgreSQL. RSS figures are printed by
``python -m benchmarks.memory_burst``, never asserted here.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from synckairos import heap
from synckairos.app import create_app
from synckairos.config import ConfigError, Settings, load_settings
from synckairos.core import CreateSession, Start, Status
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.exceptions import PayloadTooLarge
from synckairos.node import Node
from synckairos.redis.store import RedisStore
from synckairos.ws_api import SocketConnection
from synckairos.ws_messages import Delivery
from tests.conftest import ServerProcess
from tests.helpers import FakeClock, new_id, session_body
from tests.test_audit_e2e import Worker

#: Settings of the bounded server: small byte limits a test can reach, and a
#: send queue bounded by bytes only (its message count is out of reach).
BOUNDED_ENV = {
    "SYNCKAIROS_HISTORY_MAX_BYTES": "100000",
    "SYNCKAIROS_MAX_STATE_BYTES": "60000",
    "SYNCKAIROS_WS_REPLAY_MAX_BYTES": "50000",
    "SYNCKAIROS_WS_SEND_QUEUE_BYTES": "200000",
    "SYNCKAIROS_WS_SEND_QUEUE": "10000",
}


class Bounded:
    """A server process with ``BOUNDED_ENV`` on a key prefix of its own."""

    def __init__(self, redis_url: str) -> None:
        self.prefix = f"bm{new_id()[:8]}"
        self.redis_url = redis_url
        self.server = ServerProcess(redis_url, SYNCKAIROS_KEY_PREFIX=self.prefix, **BOUNDED_ENV)
        self.url = self.server.url


@pytest.fixture(scope="module")
def bounded(redis_server: EmbeddedRedis) -> Iterator[Bounded]:
    running = Bounded(redis_server.url)
    yield running
    running.server.stop()


def _ws(base: str, sid: str) -> str:
    return base.replace("http://", "ws://") + f"/ws?sessionId={sid}"


async def _recv(ws: ClientConnection, wait_s: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
    return message


async def _open(base: str, sid: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(_ws(base, sid), max_size=None, **kwargs)
    assert (await _recv(ws))["type"] == "CONNECTED"
    sync = await _recv(ws)
    assert sync["type"] == "STATE_SYNC"
    return ws, sync


async def _started(http: httpx.AsyncClient, **body_args: Any) -> str:
    body = session_body(budget_ms=3_600_000, **body_args)
    created = await http.post("/v1/sessions", json=body)
    assert created.status_code == 201, created.text
    assert (await http.post(f"/v1/sessions/{body['session_id']}/start")).status_code == 200
    sid: str = body["session_id"]
    return sid


async def _switch(http: httpx.AsyncClient, sid: str, times: int) -> int:
    version = 0
    for _ in range(times):
        response = await http.post(f"/v1/sessions/{sid}/switch")
        assert response.status_code == 200, response.text
        version = response.json()["data"]["version"]
    return version


async def _reconnect(ws: ClientConnection, since: int, epoch: str) -> list[dict[str, Any]]:
    """Send RECONNECT; return every message up to and including the RECONNECT_ACK."""
    await ws.send(json.dumps({"type": "RECONNECT", "last_known_version": since, "epoch": epoch}))
    messages = [await _recv(ws)]
    while messages[-1]["type"] != "RECONNECT_ACK":
        messages.append(await _recv(ws))
    return messages


def _pad(size: int) -> dict[str, str]:
    """Metadata of ``size`` bytes as JSON."""
    return {"pad": "x" * (size - 10)}


# ---------------------------------------------------------------- byte limits


async def test_the_history_of_a_session_is_bounded_in_bytes(bounded: Bounded):
    async with httpx.AsyncClient(base_url=bounded.url) as http:
        sid = await _started(http, metadata=_pad(9_000))
        await _switch(http, sid, 30)
    client = aioredis.Redis.from_url(bounded.redis_url)
    entries: Any = await client.xrange(f"{bounded.prefix}:{{{sid}}}:history")
    await client.aclose()
    sizes = [len(fields[b"c"]) for _, fields in entries]
    # 32 changes of ~9.5 KB were committed; 100,000 bytes hold 10 of them.
    assert 1 <= len(entries) == 100_000 // sizes[-1]
    assert sum(sizes) <= 100_000


async def test_a_create_over_the_state_limit_answers_413_and_creates_nothing(bounded: Bounded):
    body = session_body(participants=300, metadata=_pad(9_000))
    async with httpx.AsyncClient(base_url=bounded.url) as http:
        refused = await http.post("/v1/sessions", json=body)
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert error["code"] == "PAYLOAD_TOO_LARGE"
        assert error["details"]["limit"] == 60_000 and error["details"]["size"] > 60_000
        assert (await http.get(f"/v1/sessions/{body['session_id']}")).status_code == 404
        # Smaller sessions are unaffected.
        assert (
            await http.post("/v1/sessions", json=session_body(participants=100))
        ).status_code == 201


async def test_a_reconnect_whose_replay_exceeds_the_byte_budget_gets_a_state_sync(bounded: Bounded):
    async with httpx.AsyncClient(base_url=bounded.url) as http:
        sid = await _started(http, metadata=_pad(9_000))
        ws, sync = await _open(bounded.url, sid)
        await ws.close()
        # Within the budget (3 x ~9.5 KB <= 50,000): replayed.
        first = await _switch(http, sid, 3)
        ws, _ = await _open(bounded.url, sid)
        got = await _reconnect(ws, sync["version"], sync["epoch"])
        assert [m["type"] for m in got] == ["STATE_UPDATE"] * 3 + ["RECONNECT_ACK"]
        assert got[-1]["recovered"] is True and got[-1]["version"] == first
        await ws.close()
        # 8 missed changes are all still in the history (it keeps 10), but
        # weigh ~76 KB: one STATE_SYNC instead.
        last = await _switch(http, sid, 8)
        ws, _ = await _open(bounded.url, sid)
        got = await _reconnect(ws, first, sync["epoch"])
        assert [m["type"] for m in got] == ["STATE_SYNC", "RECONNECT_ACK"]
        assert got[0]["version"] == last
        assert got[-1]["recovered"] is False and got[-1]["version"] == last
        # Versions keep flowing gap-free after it.
        after = await _switch(http, sid, 1)
        update = await _recv(ws)
        assert update["type"] == "STATE_UPDATE" and update["version"] == after == last + 1
        await ws.close()


def _slow_closes(metrics_text: str) -> float:
    match = re.search(r"^synckairos_ws_slow_consumer_closes_total (\S+)$", metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_a_socket_over_its_send_queue_bytes_is_closed_with_1013(bounded: Bounded):
    async with httpx.AsyncClient(base_url=bounded.url, timeout=30) as http:
        sid = await _started(http, participants=100, metadata=_pad(9_000))
        before = _slow_closes((await http.get("/metrics")).text)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = bounded.url.removeprefix("http://").split(":")
        raw.connect((host, int(port)))
        stalled, _ = await _open(bounded.url, sid, sock=raw, max_queue=1)
        # ~42 KB changes; the queue's message bound (10,000) is never reached,
        # its byte bound (200,000) is once the kernel's buffers are full.
        for _ in range(300):
            await _switch(http, sid, 1)
            if _slow_closes((await http.get("/metrics")).text) > before:
                break
        assert _slow_closes((await http.get("/metrics")).text) == before + 1
        with pytest.raises(ConnectionClosed):
            while True:
                await _recv(stalled, wait_s=20)
        assert stalled.close_code == 1013


async def test_the_default_limits_admit_the_largest_session_and_its_reconnect_is_a_state_sync(
    live_server: str,
):
    """1,000 participants and 10 KB of metadata (~350 KB): accepted, played, never replayed.

    On the old code a RECONNECT from version 1 replayed the whole history
    (here 50 x 350 KB; with the default history, 200 x 350 KB = 70 MB).
    """
    body = session_body(participants=1_000, budget_ms=3_600_000, metadata=_pad(10_240))
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        created = await http.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        assert len(created.content) > 300_000
        assert (await http.post(f"/v1/sessions/{sid}/start")).status_code == 200
        last = await _switch(http, sid, 12)
        ws, sync = await _open(live_server, sid)
        assert sync["version"] == last
        got = await _reconnect(ws, 1, sync["epoch"])
        assert [m["type"] for m in got] == ["STATE_SYNC", "RECONNECT_ACK"]
        assert got[-1]["recovered"] is False and got[-1]["version"] == last
        await ws.close()
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204


async def test_a_command_that_would_grow_the_state_over_the_limit_changes_nothing(
    store: RedisStore,
):
    clock = FakeClock()
    node = Node(store, clock=clock)
    spec = msgspec.json.decode(msgspec.json.encode(session_body()), type=CreateSession)
    created = await node.create(spec)
    # Exactly the created state's size: a start (which stamps the start time,
    # the active participant and the deadline) would exceed it.
    node.max_state_bytes = len(created.state_json)
    with pytest.raises(PayloadTooLarge) as refused:
        await node.execute(spec.session_id, Start())
    assert refused.value.details["limit"] == len(created.state_json)
    state, _ = await node.load(spec.session_id)
    assert state.version == 1 and state.status == "pending"
    # Server-side transitions are never refused: an idle cancellation commits.
    node.idle_ttl_ms[Status.PENDING] = 1_000
    clock.advance(1_000)
    fired = await node.fire_timeouts(spec.session_id)
    assert [t.event.reason for t, _ in fired] == ["pending_ttl"]


async def test_changes_held_during_a_repair_are_bounded_in_bytes(store: RedisStore):
    """While a socket catches up, the changes that arrive are held; not beyond the byte bound."""
    connection = SocketConnection(
        cast(Any, None),
        new_id(),
        store=store,
        clock=FakeClock(),
        max_queue=256,
        max_queue_bytes=100_000,
    )
    assert connection._buffering  # a new socket holds changes until its first sync
    text = "x" * 30_000
    for version in (1, 2, 3):
        connection.offer(Delivery(version, "e", False, 0, text))
    assert len(connection._pending) == 3 and connection.last_version == 0
    connection.offer(Delivery(4, "e", False, 0, text))  # 120,000 > 100,000 bytes
    # Forgotten: the repair will send one STATE_SYNC instead.
    assert connection._pending == [] and connection.last_version == -1


def test_the_send_queue_must_hold_a_replay_and_two_states():
    with pytest.raises(ConfigError, match="SYNCKAIROS_WS_SEND_QUEUE_BYTES"):
        load_settings({"SYNCKAIROS_WS_SEND_QUEUE_BYTES": "1000000"})
    with pytest.raises(ConfigError, match="SYNCKAIROS_MAX_LIVE_SESSIONS"):
        load_settings({"SYNCKAIROS_MAX_LIVE_SESSIONS": "-1"})
    settings = load_settings({})
    assert settings.ws_send_queue_bytes >= 2 * settings.max_state_bytes
    assert settings.pending_ttl_s == settings.paused_ttl_s == 86_400


def test_freed_heap_memory_can_be_trimmed():
    """glibc's ``malloc_trim`` is reachable (the server calls it every 10 s)."""
    blocks = [bytes(1_000_000) for _ in range(50)]
    del blocks
    assert heap.trim() in (True, False)
    assert heap._malloc_trim() is not None


# ---------------------------------------------------------------- cap and TTLs


def _app(settings: Settings, clock: FakeClock, **overrides: Any) -> TestClient:
    return TestClient(create_app(msgspec.structs.replace(settings, **overrides), clock=clock))


def test_a_create_beyond_the_live_session_cap_answers_503_and_creates_nothing(
    settings: Settings, clock: FakeClock
):
    with _app(settings, clock, max_live_sessions=3) as client:
        live = [session_body() for _ in range(3)]
        for body in live:
            assert client.post("/v1/sessions", json=body).status_code == 201
        extra = session_body()
        refused = client.post("/v1/sessions", json=extra)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "SESSION_LIMIT_REACHED"
        assert refused.json()["error"]["details"] == {"limit": 3}
        assert refused.headers["Retry-After"] == "60"
        assert client.get(f"/v1/sessions/{extra['session_id']}").status_code == 404
        # A finished session frees its place; commands on live ones still work.
        assert client.post(f"/v1/sessions/{live[0]['session_id']}/start").status_code == 200
        assert client.post(f"/v1/sessions/{live[1]['session_id']}/cancel").status_code == 200
        assert client.post("/v1/sessions", json=extra).status_code == 201
        assert client.post("/v1/sessions", json=session_body()).status_code == 503


def _wait_status(client: TestClient, sid: str, status: str) -> dict[str, Any]:
    for _ in range(200):
        state: dict[str, Any] = client.get(f"/v1/sessions/{sid}").json()["data"]
        if state["status"] == status:
            return state
        time.sleep(0.05)
    raise AssertionError(f"{sid} never became {status}")


def _last_change(settings: Settings, sid: str) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.redis_target())
    entries: Any = client.xrevrange(f"{settings.key_prefix}:{{{sid}}}:history", count=1)
    client.close()
    change: dict[str, Any] = json.loads(entries[0][1][b"c"])
    return change


def _score(settings: Settings, sid: str) -> float | None:
    client = redis.Redis.from_url(settings.redis_target())
    score = client.zscore(f"{settings.key_prefix}:deadlines", sid)
    client.close()
    return score


def test_pending_and_paused_sessions_idle_for_their_ttl_are_cancelled_by_the_server(
    settings: Settings, clock: FakeClock
):
    with _app(settings, clock, pending_ttl_s=60, paused_ttl_s=120) as client:
        pending, paused = session_body(), session_body()
        running = session_body(budget_ms=3_600_000)
        for body in (pending, paused, running):
            assert client.post("/v1/sessions", json=body).status_code == 201
        created_at = clock.now
        for body in (paused, running):
            client.post(f"/v1/sessions/{body['session_id']}/start")
        clock.advance(10_000)
        state = client.post(f"/v1/sessions/{paused['session_id']}/pause").json()["data"]
        # Clients see no deadline for a session that is not running; the
        # scheduler holds the idle expiry.
        assert state["deadline_ms"] is None
        assert (
            client.get(f"/v1/sessions/{pending['session_id']}").json()["data"]["deadline_ms"]
            is None
        )
        assert _score(settings, pending["session_id"]) == created_at + 60_000
        assert _score(settings, paused["session_id"]) == clock.now + 120_000

        clock.advance(61_000)
        cancelled = _wait_status(client, pending["session_id"], "cancelled")
        assert cancelled["session_completed_at"] is not None
        assert _last_change(settings, pending["session_id"])["event"] == {
            "type": "session_cancelled",
            "reason": "pending_ttl",
        }
        assert (
            client.get(f"/v1/sessions/{paused['session_id']}").json()["data"]["status"] == "paused"
        )

        clock.advance(60_000)
        before = state["participants"]
        cancelled = _wait_status(client, paused["session_id"], "cancelled")
        # A paused clock charges nothing.
        assert [p["time_remaining_ms"] for p in cancelled["participants"]] == [
            p["time_remaining_ms"] for p in before
        ]
        assert _last_change(settings, paused["session_id"])["event"]["reason"] == "paused_ttl"
        assert _score(settings, paused["session_id"]) is None
        # A running session has a real deadline (one hour) and is not touched.
        assert (
            client.get(f"/v1/sessions/{running['session_id']}").json()["data"]["status"]
            == "running"
        )


def test_a_ttl_of_zero_never_expires(settings: Settings, clock: FakeClock):
    with _app(settings, clock, pending_ttl_s=0) as client:
        body = session_body()
        assert client.post("/v1/sessions", json=body).status_code == 201
        assert _score(settings, body["session_id"]) is None


async def test_an_idle_cancellation_reaches_postgres_and_a_restore_keeps_it_cancelled(
    redis_server: EmbeddedRedis, audit_dsn: str
):
    env = {
        "SYNCKAIROS_REDIS_URL": redis_server.url,
        "SYNCKAIROS_DATABASE_URL": audit_dsn,
        "SYNCKAIROS_KEY_PREFIX": f"ttl{new_id()[:8]}",
        "SYNCKAIROS_PENDING_TTL_S": "1",
    }
    server = ServerProcess(redis_server.url, **env)
    worker = Worker(env)
    try:
        body = session_body()
        sid = body["session_id"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.post("/v1/sessions", json=body)).status_code == 201
            for _ in range(200):
                state = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
                if state["status"] == "cancelled":
                    break
                await asyncio.sleep(0.05)
            assert state["status"] == "cancelled" and state["version"] == 2
            row = None
            conn = await asyncpg.connect(audit_dsn)
            try:
                for _ in range(200):
                    row = await conn.fetchrow(
                        "SELECT event_type, version FROM sync_events "
                        "WHERE session_id = $1::text::uuid ORDER BY version DESC LIMIT 1",
                        sid,
                    )
                    if row is not None and row["version"] == 2:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await conn.close()
            assert row is not None and row["event_type"] == "session_cancelled"
            # Redis loses the session: it comes back cancelled, not pending.
            client = aioredis.Redis.from_url(redis_server.url)
            prefix = env["SYNCKAIROS_KEY_PREFIX"]
            await client.delete(f"{prefix}:{{{sid}}}", f"{prefix}:{{{sid}}}:history")
            await client.aclose()
            restored = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
            assert restored["status"] == "cancelled" and restored["recovered"] is True
    finally:
        worker.stop()
        server.stop()
