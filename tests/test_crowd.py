"""Issue 15: the default rate limits let a crowd behind one address in and hold a flood.

A real ``synckairos serve`` on **default settings** (rate limits on): 500
WebSocket clients from 127.0.0.1 open at once (an exam hall behind one NAT
address, all joining as the exam starts) and are all accepted; then one client
behind that same address opening 50 sockets a second is refused (1008, "retry
after") once the address's burst is spent, while the 500 stay open and served.
The numbers behind the defaults are checked with the limiter's own rule on a
simulated clock (no timing in the live part). Figures: ``python -m
benchmarks.crowd`` (docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.crowd import (
    ACCEPTED,
    close_all,
    flood,
    new_session,
    open_crowd,
    ping_all,
)
from synckairos.admission import Limits
from synckairos.config import Settings
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.ratelimit import LocalLimiter
from tests.conftest import ServerProcess
from tests.helpers import new_id

CROWD = 500


@pytest.fixture
def default_server(redis_server: EmbeddedRedis) -> Iterator[ServerProcess]:
    defaults = Settings()
    server = ServerProcess(
        redis_server.url,
        # LIVE_ENV turns rate limits off and shrinks two queues: undo all of it.
        SYNCKAIROS_RATE_LIMITS="on",
        SYNCKAIROS_HISTORY_MAXLEN=str(defaults.history_maxlen),
        SYNCKAIROS_WS_SEND_QUEUE=str(defaults.ws_send_queue),
        SYNCKAIROS_KEY_PREFIX=f"crowd{new_id()[:8]}",
    )
    yield server
    server.stop()


def test_500_sockets_from_one_address_are_accepted_and_a_flood_is_throttled(
    default_server: ServerProcess,
):
    asyncio.run(_crowd_then_flood(default_server))


async def _crowd_then_flood(server: ServerProcess) -> None:
    session_ids = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for _ in range(10):
            body = new_session()
            assert (await http.post("/v1/sessions", json=body)).status_code == 201
            session_ids.append(body["session_id"])
    outcomes, sockets, _ = await open_crowd(server.ws_url, session_ids, CROWD)
    try:
        assert outcomes.count(ACCEPTED) == CROWD, {o: outcomes.count(o) for o in set(outcomes)}
        # One client behind the same address opens 50 sockets a second: refused
        # once the address's burst is spent (bounded: at most 60 s of it).
        result = await flood(server.ws_url, session_ids[0], 50, 60, stop_when_refused=True)
        assert result.first_refusal() is not None, f"never refused in {len(result.outcomes)}"
        assert "retry after" in result.first_refusal_reason
        assert result.count(ACCEPTED) >= 1  # the burst left by the crowd was usable
        # The crowd's sockets were never touched by it.
        assert await ping_all(sockets) == CROWD
    finally:
        await close_all(sockets)


def test_the_default_numbers_fit_crowds_and_backends_and_hold_floods():
    """The GCRA rule of the defaults on a simulated clock (ms)."""
    limits = Limits.from_settings(Settings())
    # 500 sockets from one address at once, and again 30 s later (a second
    # reconnect wave); spread over a minute they never come near the limit.
    connect = LocalLimiter(limits.ws_connect)
    assert all(connect.hit(0) for _ in range(CROWD))
    assert all(connect.hit(30_000) for _ in range(CROWD))
    spread = LocalLimiter(limits.ws_connect)
    assert all(spread.hit(i * 60_000 / CROWD) for i in range(CROWD))
    # One client opening 50 a second is refused within seconds and held to 20/s.
    flooded = LocalLimiter(limits.ws_connect)
    outcomes = [flooded.hit(i * 20) for i in range(50 * 60)]  # a minute at 50/s
    first_refusal = outcomes.index(False)
    assert first_refusal < 50 * 30  # within 30 s
    assert sum(outcomes[50 * 30 :]) <= 20 * 30 + 1  # then 20/s
    # A backend creating a session per game at 50/s for an hour: never refused;
    # one creating 200/s is held to 100/s after a burst of 1,000.
    create = LocalLimiter(limits.create)
    assert all(create.hit(i * 20) for i in range(50 * 3_600))
    greedy = LocalLimiter(limits.create)
    granted = sum(greedy.hit(i * 5) for i in range(200 * 60))
    assert granted <= 1_000 + 100 * 60 + 1
    # 500 clients each taking 8 /v1/time samples at once (the JS client's clock sync).
    time_limit = LocalLimiter(limits.time)
    assert all(time_limit.hit(0) for _ in range(8 * CROWD))
