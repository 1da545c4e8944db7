"""Server-side deadlines end to end (invariant 3), on real processes and Redis.

After ``start`` no client calls anything: the server alone must fire each
timeout at its deadline, exactly once (one STATE_UPDATE, one audit event),
across two nodes, and even when a node dies holding claims.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from synckairos.core import iso_ms
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.redis.store import RedisStore
from tests.conftest import ServerProcess
from tests.helpers import new_id, session_body

#: Lenient bound for CI noise; the deadlines benchmark measures the real lag.
MAX_LAG_MS = 250

TIMEOUT_EVENTS = {"participant_timeout", "session_expired", "session_completed"}


async def _recv(ws: ClientConnection, wait_s: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
    return message


async def _subscribe(base: str, sid: str) -> ClientConnection:
    ws = await connect(base.replace("http://", "ws://") + f"/ws?sessionId={sid}")
    assert (await _recv(ws))["type"] == "CONNECTED"
    return ws


async def _start(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    assert (await http.post("/v1/sessions", json=body)).status_code == 201
    response = await http.post(f"/v1/sessions/{body['session_id']}/start")
    assert response.status_code == 200
    started: dict[str, Any] = response.json()["data"]
    return started


async def _next_timeout(ws: ClientConnection, wait_s: float = 5.0) -> dict[str, Any]:
    while True:
        message = await _recv(ws, wait_s)
        if message["type"] == "STATE_UPDATE" and message["event"]["type"] in TIMEOUT_EVENTS:
            return message


async def _audit_types(redis_url: str, sid: str, prefix: str = "sk") -> Counter[str]:
    client = aioredis.Redis.from_url(redis_url)
    entries: Any = await client.xrange(f"{prefix}:outbox")
    await client.aclose()
    return Counter(f[b"t"].decode() for _, f in entries if f[b"sid"].decode() == sid)


async def _no_more_updates(ws: ClientConnection, wait_s: float) -> bool:
    try:
        message = await _recv(ws, wait_s)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message: {message}")


async def _run_mode(base: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ws = await _subscribe(base, body["session_id"])
    async with httpx.AsyncClient(base_url=base) as http:
        started = await _start(http, body)
    update = await _next_timeout(ws)
    await ws.close()
    return started, update


async def test_each_mode_times_out_on_its_own_at_the_deadline(
    live_server, live_server_b, redis_server: EmbeddedRedis
):
    cases = {
        "per_participant": session_body(budget_ms=1_000),
        "per_group": session_body("per_group", participants=2, budget_ms=1_000),
        "global": session_body("global", budget_ms=1_000),
        "count_up": session_body("count_up", budget_ms=60_000, max_time_ms=1_000),
        "notify": session_body(budget_ms=1_000, action_on_timeout={"type": "notify"}),
    }
    results = await asyncio.gather(*(_run_mode(live_server, body) for body in cases.values()))
    outcome = dict(zip(cases, results, strict=True))
    for name, (started, update) in outcome.items():
        deadline = started["deadline_ms"]
        state = update["state"]
        assert deadline == started["cycle_started_ms"] + 1_000, name
        assert 0 <= update["ts"] - deadline <= MAX_LAG_MS, (name, update["ts"] - deadline)
        first = state["participants"][0]
        assert first["has_expired"], name
        assert first["time_used_ms"] == 1_000, name
        assert state["deadline_ms"] is None, name
        if name == "notify":
            assert update["event"] == {
                "type": "participant_timeout",
                "participant_id": first["participant_id"],
                "reason": "notify",
            }
            assert state["status"] == "running"
        elif name == "count_up":
            assert update["event"]["type"] == "session_completed"
            assert update["event"]["reason"] == "timeout"
            assert state["status"] == "completed"
        else:
            assert update["event"]["type"] == "session_expired", name
            assert state["status"] == "expired", name
            assert state["session_completed_at"] == iso_ms(deadline), name
    for name, body in cases.items():
        audit = await _audit_types(redis_server.url, body["session_id"])
        timeouts = sum(audit[t] for t in TIMEOUT_EVENTS)
        assert timeouts == 1, (name, audit)


async def test_per_cycle_turns_advance_on_their_own_each_from_the_previous_deadline(live_server):
    body = session_body("per_cycle", participants=2, time_per_cycle_ms=1_000)
    ws = await _subscribe(live_server, body["session_id"])
    async with httpx.AsyncClient(base_url=live_server) as http:
        started = await _start(http, body)
    first = await _next_timeout(ws)
    second = await _next_timeout(ws)
    await ws.close()
    ids = [p["participant_id"] for p in body["participants"]]
    assert first["event"] == {
        "type": "participant_timeout",
        "participant_id": ids[0],
        "next_participant_id": ids[1],
        "reason": "skip_cycle",
    }
    assert second["event"]["participant_id"] == ids[1]
    assert first["state"]["cycle_started_ms"] == started["deadline_ms"]
    assert second["state"]["cycle_started_ms"] == first["state"]["deadline_ms"]
    assert second["version"] == first["version"] + 1
    assert first["state"]["status"] == second["state"]["status"] == "running"


async def test_a_switch_before_the_deadline_wins_and_moves_the_deadline(live_server):
    body = session_body(participants=2, budget_ms=1_000)
    ws = await _subscribe(live_server, body["session_id"])
    async with httpx.AsyncClient(base_url=live_server) as http:
        started = await _start(http, body)
        await asyncio.sleep(0.6)
        switched = (await http.post(f"/v1/sessions/{body['session_id']}/switch")).json()["data"]
    update = await _next_timeout(ws)
    await ws.close()
    assert switched["deadline_ms"] > started["deadline_ms"]
    assert update["event"]["participant_id"] == body["participants"][1]["participant_id"]
    assert 0 <= update["ts"] - switched["deadline_ms"] <= MAX_LAG_MS
    assert update["state"]["participants"][0]["has_expired"] is False


async def test_with_two_nodes_every_timeout_fires_exactly_once(
    live_server, live_server_b, redis_server: EmbeddedRedis
):
    bodies = [session_body(budget_ms=1_000) for _ in range(40)]
    sockets = [
        await _subscribe(live_server if i % 2 else live_server_b, b["session_id"])
        for i, b in enumerate(bodies)
    ]
    async with httpx.AsyncClient(base_url=live_server) as http:
        await asyncio.gather(*(_start(http, b) for b in bodies))
    updates = await asyncio.gather(*(_next_timeout(ws) for ws in sockets))
    assert all(u["event"]["type"] == "session_expired" for u in updates)
    # Nothing more arrives: no second firing.
    await asyncio.gather(*(_no_more_updates(ws, 1.5) for ws in sockets))
    for ws in sockets:
        await ws.close()
    for body in bodies:
        audit = await _audit_types(redis_server.url, body["session_id"])
        assert audit["session_expired"] == 1, audit


async def test_a_claim_whose_node_died_is_fired_by_another_after_the_lease(
    redis_server: EmbeddedRedis,
):
    prefix = f"lease{new_id()[:6]}"
    server = ServerProcess(
        redis_server.url, SYNCKAIROS_KEY_PREFIX=prefix, SYNCKAIROS_DEADLINE_LEASE_MS="1500"
    )
    client = aioredis.Redis.from_url(redis_server.url)
    dead_node = RedisStore(client, prefix=prefix)
    try:
        body = session_body(budget_ms=1_000)
        ws = await _subscribe(server.url, body["session_id"])
        async with httpx.AsyncClient(base_url=server.url) as http:
            started = await _start(http, body)
        deadline = started["deadline_ms"]
        # Another "node" claims the deadline (as the scheduler does at the
        # deadline; here ahead of it, so the live node cannot claim it first:
        # its lease runs from the deadline), then dies without firing it.
        claimed, _ = await dead_node.claim_due(deadline, 10, 1_500)
        assert claimed == [(body["session_id"], deadline)]
        update = await _next_timeout(ws, wait_s=5)
        lag = update["ts"] - deadline
        assert 1_400 <= lag <= 1_500 + MAX_LAG_MS, lag
        # Computed as of the deadline, however late it fired.
        assert update["state"]["session_completed_at"] == iso_ms(deadline)
        assert update["state"]["participants"][0]["time_used_ms"] == 1_000
        await ws.close()
    finally:
        await client.aclose()
        server.stop()


async def test_a_node_killed_with_sigkill_loses_no_timeout(redis_server: EmbeddedRedis):
    prefix = f"kill{new_id()[:6]}"
    env = {"SYNCKAIROS_KEY_PREFIX": prefix, "SYNCKAIROS_DEADLINE_LEASE_MS": "1000"}
    victim = ServerProcess(redis_server.url, **env)
    survivor = ServerProcess(redis_server.url, **env)
    try:
        # 60 timers expiring over ~1.5 s; the victim dies in the middle.
        bodies = [session_body(budget_ms=1_000 + 25 * i) for i in range(60)]
        sockets = [await _subscribe(survivor.url, b["session_id"]) for b in bodies]
        async with httpx.AsyncClient(base_url=victim.url) as http:
            await asyncio.gather(*(_start(http, b) for b in bodies))
        await asyncio.sleep(1.7)
        os.kill(victim.process.pid, signal.SIGKILL)
        updates = await asyncio.gather(*(_next_timeout(ws, wait_s=6) for ws in sockets))
        assert all(u["event"]["type"] == "session_expired" for u in updates)
        await asyncio.gather(*(_no_more_updates(ws, 1.2) for ws in sockets))
        for ws in sockets:
            await ws.close()
        for body in bodies:
            audit = await _audit_types(redis_server.url, body["session_id"], prefix)
            assert audit["session_expired"] == 1, audit
    finally:
        victim.stop()
        survivor.stop()


async def test_deadlines_that_passed_while_no_node_ran_fire_once_as_of_their_deadline(
    redis_server: EmbeddedRedis,
):
    prefix = f"down{new_id()[:6]}"
    quiet = ServerProcess(
        redis_server.url, SYNCKAIROS_KEY_PREFIX=prefix, SYNCKAIROS_SCHEDULER="off"
    )
    try:
        expiring = session_body(budget_ms=1_000)
        cycling = session_body("per_cycle", participants=2, time_per_cycle_ms=1_000)
        async with httpx.AsyncClient(base_url=quiet.url) as http:
            expiring_started = await _start(http, expiring)
            cycling_started = await _start(http, cycling)
        await asyncio.sleep(3.4)  # nobody fires: the cluster is "down"
    finally:
        quiet.stop()
    node = ServerProcess(redis_server.url, SYNCKAIROS_KEY_PREFIX=prefix)
    try:
        async with httpx.AsyncClient(base_url=node.url) as http:
            for _ in range(50):
                state = (await http.get(f"/v1/sessions/{expiring['session_id']}")).json()["data"]
                if state["status"] == "expired":
                    break
                await asyncio.sleep(0.05)
            cycled = (await http.get(f"/v1/sessions/{cycling['session_id']}")).json()["data"]
        assert state["status"] == "expired"
        assert state["session_completed_at"] == iso_ms(expiring_started["deadline_ms"])
        assert state["participants"][0]["time_used_ms"] == 1_000
        # At least three 1 s turns ran out while down (more if the restart was
        # slow): one timeout each, every turn starting at the previous deadline.
        fired = cycled["version"] - cycling_started["version"]
        assert fired >= 3
        assert cycled["cycle_started_ms"] == cycling_started["cycle_started_ms"] + 1_000 * fired
        assert sum(p["time_used_ms"] for p in cycled["participants"]) == 1_000 * fired
        audit = await _audit_types(redis_server.url, cycling["session_id"], prefix)
        assert audit["participant_timeout"] >= fired
    finally:
        node.stop()
