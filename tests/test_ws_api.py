"""``/ws`` on real server processes and a real Redis (invariant 2).

Node A and node B are separate ``synckairos serve`` processes sharing one
Redis: changes committed through one must reach sockets on the other, in
order, without gaps or duplicates, and a socket that was away must get
exactly what it missed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from synckairos.dev.embedded import EmbeddedRedis
from tests.conftest import ServerProcess
from tests.helpers import session_body


def _ws(base: str, sid: str) -> str:
    return base.replace("http://", "ws://") + f"/ws?sessionId={sid}"


async def _recv(ws: ClientConnection, wait_s: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
    return message


async def _open(base: str, sid: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and read CONNECTED + STATE_SYNC; returns the socket and the sync."""
    ws = await connect(_ws(base, sid), **kwargs)
    assert (await _recv(ws))["type"] == "CONNECTED"
    sync = await _recv(ws)
    assert sync["type"] == "STATE_SYNC"
    return ws, sync


async def _session(http: httpx.AsyncClient, **extra: Any) -> str:
    body = session_body(participants=2, budget_ms=3_600_000, **extra)
    assert (await http.post("/v1/sessions", json=body)).status_code == 201
    assert (await http.post(f"/v1/sessions/{body['session_id']}/start")).status_code == 200
    sid: str = body["session_id"]
    return sid


async def _switch(http: httpx.AsyncClient, sid: str, times: int) -> list[int]:
    versions = []
    for _ in range(times):
        response = await http.post(f"/v1/sessions/{sid}/switch")
        assert response.status_code == 200, response.text
        versions.append(response.json()["data"]["version"])
    return versions


async def _updates_until(ws: ClientConnection, last: int, wait_s: float = 10.0) -> list[int]:
    """Read STATE_UPDATEs until version ``last``; returns the versions seen in order."""
    seen: list[int] = []
    while not seen or seen[-1] < last:
        message = await _recv(ws, wait_s)
        assert message["type"] == "STATE_UPDATE", message
        assert message["state"]["version"] == message["version"]
        seen.append(message["version"])
    return seen


async def test_connect_sends_connected_then_a_state_sync_with_version_and_epoch(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        assert sync["sessionId"] == sid
        assert sync["version"] == 2 and sync["state"]["status"] == "running"
        assert len(sync["epoch"]) == 16
        await ws.close()


async def test_a_socket_on_node_a_gets_every_version_committed_through_node_b_in_order(
    live_server, live_server_b
):
    async with (
        httpx.AsyncClient(base_url=live_server_b) as http_b,
        httpx.AsyncClient(base_url=live_server) as http_a,
    ):
        sid = await _session(http_b)
        ws, sync = await _open(live_server, sid)
        # 4 concurrent writers on node B, 20 switches each.
        batches = await asyncio.gather(*(_switch(http_b, sid, 20) for _ in range(4)))
        # and a few through node A too.
        batches.append(await _switch(http_a, sid, 5))
        last = max(max(batch) for batch in batches)
        seen = await _updates_until(ws, last)
        assert seen == list(range(sync["version"] + 1, last + 1))
        assert last == sync["version"] + 85
        await ws.close()


async def test_sockets_connecting_during_a_storm_of_commits_miss_nothing_and_see_no_duplicate(
    live_server, live_server_b
):
    async with httpx.AsyncClient(base_url=live_server_b) as http_b:
        sid = await _session(http_b)
        storm = asyncio.create_task(_switch(http_b, sid, 150))
        sockets = []
        for _ in range(10):
            sockets.append(await _open(live_server, sid))
            await asyncio.sleep(0.01)
        last = max(await storm)
        for ws, sync in sockets:
            seen = [] if sync["version"] == last else await _updates_until(ws, last)
            assert seen == list(range(sync["version"] + 1, last + 1))
            await ws.close()


async def test_reconnect_replays_exactly_the_missed_versions(live_server, live_server_b):
    async with httpx.AsyncClient(base_url=live_server_b) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        await ws.close()
        missed = await _switch(http, sid, 7)
        ws2, _ = await _open(live_server, sid)
        await ws2.send(
            json.dumps(
                {"type": "RECONNECT", "last_known_version": sync["version"], "epoch": sync["epoch"]}
            )
        )
        replayed = [await _recv(ws2) for _ in range(7)]
        assert [m["type"] for m in replayed] == ["STATE_UPDATE"] * 7
        assert [m["version"] for m in replayed] == missed
        assert all(m["event"]["type"] == "cycle_switched" for m in replayed)
        ack = await _recv(ws2)
        assert ack == {
            "type": "RECONNECT_ACK",
            "success": True,
            "recovered": True,
            "replayed": 7,
            "version": missed[-1],
            "epoch": sync["epoch"],
        }
        await ws2.close()


async def test_reconnect_when_already_current_replays_nothing(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        await ws.send(
            json.dumps(
                {"type": "RECONNECT", "last_known_version": sync["version"], "epoch": sync["epoch"]}
            )
        )
        ack = await _recv(ws)
        assert ack["type"] == "RECONNECT_ACK" and ack["recovered"] is True
        assert ack["replayed"] == 0
        await ws.close()


async def test_reconnect_with_a_gap_longer_than_the_history_gets_a_state_sync(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        await ws.close()
        versions = await _switch(http, sid, 60)  # the live servers keep 50
        ws2, _ = await _open(live_server, sid)
        await ws2.send(
            json.dumps(
                {"type": "RECONNECT", "last_known_version": sync["version"], "epoch": sync["epoch"]}
            )
        )
        full = await _recv(ws2)
        assert full["type"] == "STATE_SYNC" and full["version"] == versions[-1]
        ack = await _recv(ws2)
        assert ack["type"] == "RECONNECT_ACK" and ack["recovered"] is False
        assert ack["version"] == versions[-1]
        await ws2.close()


async def test_reconnect_with_a_wrong_epoch_gets_a_state_sync(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        await _switch(http, sid, 2)
        await _updates_until(ws, sync["version"] + 2)
        await ws.send(
            json.dumps({"type": "RECONNECT", "last_known_version": 1, "epoch": "0000000000000000"})
        )
        full = await _recv(ws)
        assert full["type"] == "STATE_SYNC" and full["version"] == sync["version"] + 2
        assert (await _recv(ws))["recovered"] is False
        await ws.close()


async def test_reconnect_without_a_version_behaves_like_the_reference(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        await ws.send(json.dumps({"type": "RECONNECT"}))
        full = await _recv(ws)
        assert full["type"] == "STATE_SYNC" and full["version"] == sync["version"]
        await ws.send(json.dumps({"type": "PING"}))
        assert (await _recv(ws))["type"] == "PONG"  # no RECONNECT_ACK in between
        await ws.close()


async def test_a_deleted_session_sends_session_deleted_and_closes_with_1000(
    live_server, live_server_b
):
    async with httpx.AsyncClient(base_url=live_server_b) as http:
        sid = await _session(http)
        ws, _ = await _open(live_server, sid)
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
        deleted = await _recv(ws)
        assert deleted["type"] == "SESSION_DELETED" and deleted["sessionId"] == sid
        with pytest.raises(ConnectionClosed):
            await _recv(ws)
        assert ws.close_code == 1000


async def test_a_stalled_reader_is_closed_with_1013_and_the_others_keep_receiving(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http, metadata={"pad": "x" * 9_000})
        healthy, sync = await _open(live_server, sid)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = live_server.removeprefix("http://").split(":")
        raw.connect((host, int(port)))
        stalled, _ = await _open(live_server, sid, sock=raw, max_queue=1)
        # The healthy client keeps reading; the stalled one stops. Commit ~10 KB
        # changes until the stalled one's queue overflows.
        last = sync["version"] + 600
        reading = asyncio.create_task(_updates_until(healthy, last, wait_s=20))
        switches = await _switch(http, sid, 600)
        assert switches[-1] == last
        assert await reading == list(range(sync["version"] + 1, last + 1))
        metrics = (await http.get("/metrics")).text
        assert "synckairos_ws_slow_consumer_closes_total 1.0" in metrics
        # Once it reads again it finds the close, with 1013, after what was sent.
        with pytest.raises(ConnectionClosed):
            while True:
                await _recv(stalled, wait_s=20)
        assert stalled.close_code == 1013
        await healthy.close()


async def test_ping_time_sync_and_bad_messages(live_server):
    async with httpx.AsyncClient(base_url=live_server) as http:
        sid = await _session(http)
        ws, _ = await _open(live_server, sid)
        await ws.send(json.dumps({"type": "PING", "t0": 1234.5}))
        pong = await _recv(ws)
        assert pong["type"] == "PONG" and pong["t0"] == 1234.5 and pong["timestamp"] > 0
        await ws.send(json.dumps({"type": "TIME_SYNC", "t0": 99}))
        sync = await _recv(ws)
        assert sync["type"] == "TIME_SYNC" and sync["t0"] == 99
        assert 0 < sync["t1"] <= sync["t2"]
        for bad in ("not json", json.dumps({"no": "type"}), json.dumps({"type": "DANCE"})):
            await ws.send(bad)
            error = await _recv(ws)
            assert error["type"] == "ERROR" and error["code"] and error["message"]
        await ws.send(b"\x00\x01binary")
        assert (await _recv(ws))["type"] == "ERROR"
        await ws.send(json.dumps({"type": "PING"}))
        assert (await _recv(ws))["type"] == "PONG"  # still open after all that
        await ws.close()


@pytest.mark.parametrize("query", ["sessionId=not-a-uuid", "", "sessionId="])
async def test_an_invalid_session_id_is_closed_with_1008(live_server, query):
    ws = await connect(live_server.replace("http://", "ws://") + f"/ws?{query}")
    with pytest.raises(ConnectionClosed):
        await _recv(ws)
    assert ws.close_code == 1008


async def test_a_socket_may_subscribe_before_the_session_exists(live_server):
    body = session_body()
    sid = body["session_id"]
    ws = await connect(_ws(live_server, sid))
    assert (await _recv(ws))["type"] == "CONNECTED"
    async with httpx.AsyncClient(base_url=live_server) as http:
        await http.post("/v1/sessions", json=body)
        created = await _recv(ws)
        assert created["type"] == "STATE_UPDATE" and created["version"] == 1
        assert created["event"]["type"] == "session_created"
    await ws.close()


async def test_after_the_pubsub_connection_is_killed_sockets_are_brought_up_to_date(
    live_server, live_server_b, redis_server: EmbeddedRedis
):
    client = aioredis.Redis.from_url(redis_server.url)
    async with httpx.AsyncClient(base_url=live_server_b) as http:
        sid = await _session(http)
        ws, sync = await _open(live_server, sid)
        await client.client_kill_filter(_type="pubsub")
        versions = await _switch(http, sid, 10)  # committed while the listeners reconnect
        seen = await _updates_until(ws, versions[-1], wait_s=15)
        assert seen == list(range(sync["version"] + 1, versions[-1] + 1))
        async with httpx.AsyncClient(base_url=live_server) as http_a:
            for _ in range(100):
                if (await http_a.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await http_a.get("/ready")).json()["pubsub"] == "listening"
        await ws.close()
    await client.aclose()


async def test_sigterm_closes_sockets_with_1001(redis_server: EmbeddedRedis):
    server = ServerProcess(redis_server.url)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            sid = await _session(http)
        ws, _ = await _open(server.url, sid)
        os.kill(server.process.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await _recv(ws, wait_s=10)
        assert ws.close_code == 1001
        assert server.process.wait(timeout=10) == 0
    finally:
        server.stop()


async def test_workers_share_one_redis(redis_server: EmbeddedRedis):
    server = ServerProcess(redis_server.url, "--workers", "2")
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            sid = await _session(http)
            sockets = [await _open(server.url, sid) for _ in range(6)]
            versions = await _switch(http, sid, 5)
            for ws, _ in sockets:
                assert await _updates_until(ws, versions[-1]) == versions
                await ws.close()
    finally:
        server.stop()


async def test_a_socket_that_never_answers_pings_is_dropped(redis_server: EmbeddedRedis):
    server = ServerProcess(
        redis_server.url, SYNCKAIROS_WS_PING_INTERVAL_S="1", SYNCKAIROS_WS_PING_TIMEOUT_S="1"
    )
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            sid = await _session(http)
            host, port = server.url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                (
                    f"GET /ws?sessionId={sid} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 101")
            gauge = "synckairos_ws_open_sockets 1.0"
            assert gauge in (await http.get("/metrics")).text

            # Read (so TCP flows) but never answer the server's pings.
            async def drain() -> None:
                while await reader.read(65536):
                    pass

            await asyncio.wait_for(drain(), 10)  # returns when the server hangs up
            for _ in range(50):
                if "synckairos_ws_open_sockets 0.0" in (await http.get("/metrics")).text:
                    break
                await asyncio.sleep(0.1)
            assert "synckairos_ws_open_sockets 0.0" in (await http.get("/metrics")).text
            writer.close()
    finally:
        server.stop()
