"""Invariant 1 (no lost update), on a real server process and a real Redis.

16 clients switch ONE session as fast as they can for a few seconds. Every 2xx
answer must be a distinct committed version, and the time accounting of the
participants must add up to the time the session ran.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx

from tests.helpers import session_body

CLIENTS = 16
SECONDS = 3.0
#: Switches the run needs to mean something: on a loaded machine the clients go
#: on past ``SECONDS`` until they have made them (at most ``MAX_SECONDS``).
MIN_SWITCHES = 100
MAX_SECONDS = 60.0


async def _hammer(
    url: str, sid: str, done: list[int], body: dict[str, Any] | None = None
) -> tuple[Counter[int], list[int]]:
    """Switch until ``SECONDS`` passed and ``done`` (shared) reached ``MIN_SWITCHES``."""
    statuses: Counter[int] = Counter()
    versions: list[int] = []
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= MAX_SECONDS or (elapsed >= SECONDS and done[0] >= MIN_SWITCHES):
                break
            response = await client.post(f"/v1/sessions/{sid}/switch", json=body or {})
            statuses[response.status_code] += 1
            done[0] += 1
            if response.status_code == 200:
                versions.append(response.json()["data"]["version"])
    return statuses, versions


async def _run(url: str, sid: str, make_body: Any = None) -> tuple[Counter[int], list[int]]:
    done = [0]
    results = await asyncio.gather(*(_hammer(url, sid, done, make_body) for _ in range(CLIENTS)))
    statuses: Counter[int] = Counter()
    versions: list[int] = []
    for counts, seen in results:
        statuses.update(counts)
        versions.extend(seen)
    return statuses, versions


def _assert_accounting_adds_up(state: dict[str, Any], ok: int, started_ms: int) -> None:
    participants = state["participants"]
    assert sum(p["cycle_count"] for p in participants) == ok
    used = 0
    for p in participants:
        bank = state["banks"][p["participant_id"]]
        assert bank["used_ms"] == p["time_used_ms"]
        assert bank["used_ms"] + bank["remaining_ms"] == bank["budget_ms"] + bank["increments_ms"]
        assert p["time_remaining_ms"] == bank["remaining_ms"]
        used += p["time_used_ms"]
    # Each switch charges exactly the time since the previous one: the charges
    # add up to the time between the start and the last switch, to the ms.
    assert used == state["cycle_started_ms"] - started_ms


async def test_sixteen_clients_switching_one_session_lose_no_update(live_server: str):
    body = session_body(participants=4, budget_ms=3_600_000, increment_ms=1_000)
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        assert (await client.post("/v1/sessions", json=body)).status_code == 201
        started = await client.post(f"/v1/sessions/{sid}/start")
        version_after_start = started.json()["data"]["version"]
        started_ms = started.json()["data"]["cycle_started_ms"]
        statuses, versions = await _run(live_server, sid)
        state = (await client.get(f"/v1/sessions/{sid}")).json()["data"]
    ok = statuses[200]
    assert set(statuses) == {200}, statuses
    assert ok >= MIN_SWITCHES, f"only {ok} switches in {MAX_SECONDS} s"
    assert state["version"] == version_after_start + ok
    assert sorted(versions) == list(range(version_after_start + 1, state["version"] + 1))
    _assert_accounting_adds_up(state, ok, started_ms)
    increments = sum(b["increments_ms"] for b in state["banks"].values())
    assert increments == ok * 1_000


async def test_racing_clients_with_preconditions_get_409_never_a_double_switch(live_server: str):
    body = session_body(participants=2, budget_ms=3_600_000)
    sid = body["session_id"]
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        await client.post("/v1/sessions", json=body)
        await client.post(f"/v1/sessions/{sid}/start")

        async def one_switch(expected: int) -> int:
            response = await client.post(
                f"/v1/sessions/{sid}/switch", json={"expected_version": expected}
            )
            return response.status_code

        codes = await asyncio.gather(*(one_switch(2) for _ in range(CLIENTS)))
        state = (await client.get(f"/v1/sessions/{sid}")).json()["data"]
    assert sorted(codes) == [200] + [409] * (CLIENTS - 1)
    assert state["version"] == 3
