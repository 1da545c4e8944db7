"""Scenario ``switch``: throughput and latency of ``POST /v1/sessions/{id}/switch``.

1. Setup: create ``sessions`` per_participant sessions of ``participants``
   participants (one-hour banks, no increment) and start them; every response
   must be 201 / 200 or :class:`SetupError` is raised.
2. Load: ``clients`` coroutines, each on its own keep-alive connection, switch
   back to back (closed loop). Client k owns sessions k, k+C, k+2C, ... and
   cycles through them, so clients never share a session when sessions >=
   clients (otherwise client k uses session k mod N). The first ``warmup``
   seconds are not recorded; the measured window opens after them and closes
   when the last request started within ``duration`` completes.
3. Cleanup (always, also after a failure): delete every session created.

Only requests started inside the window count. Latency is measured around
each request with :func:`time.perf_counter_ns`, for 2xx responses only; any
other status or transport error is counted by status code or exception name.
:func:`closed_loop` is shared with the ``audit`` scenario.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks import progress
from benchmarks.context import RunContext
from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, encode_request
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import JSON, create_sessions, delete_sessions
from benchmarks.stats import LatencyRecorder

__all__ = ["SCENARIO", "SwitchOptions", "SwitchResult", "closed_loop", "run_switch"]

#: Pause of a client after a transport error, so a dead server is not spun on.
ERROR_BACKOFF_S = 0.01

_NEVER = sys.maxsize


@dataclass(frozen=True, slots=True)
class SwitchOptions:
    """Options of ``switch`` (and of the load of ``audit``)."""

    sessions: int = option(200, "sessions created and switched", low=1)
    clients: int = option(1, "concurrent clients, one keep-alive connection each", low=1)
    duration: float = option(10.0, "measured seconds", low=0.001)
    warmup: float = option(2.0, "seconds of load before measuring (not recorded)", low=0)
    participants: int = option(2, "participants per session", low=1, high=1000)


class SwitchResult(ScenarioResult, kw_only=True):
    """Result of ``switch``: the shared fields plus the load's shape."""

    sessions: int
    clients: int
    participants: int


class _Window:
    """When recording happens (shared by the clients; one thread, no locks)."""

    def __init__(self) -> None:
        self.record_from_ns = _NEVER
        """perf_counter_ns at which the measured window opened (_NEVER during warm-up)."""
        self.stop_at_ns = _NEVER
        """No request starts at or after this perf_counter_ns."""
        self.completed = 0
        """Requests completed so far, warm-up included (for the live line)."""


def _client_sessions(client: int, clients: int, session_ids: Sequence[str]) -> list[str]:
    """Sessions client ``client`` cycles through (see the module docstring)."""
    if len(session_ids) >= clients:
        return list(session_ids[client::clients])
    return [session_ids[client % len(session_ids)]]


async def _client(
    connection: HttpConnection, requests: list[bytes], window: _Window, recorder: LatencyRecorder
) -> None:
    """Send ``requests`` round robin until ``window.stop_at_ns``; record outcomes."""
    clock = time.perf_counter_ns
    for request in itertools.cycle(requests):
        start = clock()
        if start >= window.stop_at_ns:
            return
        try:
            status = (await connection.roundtrip(request)).status
        except (HttpError, OSError) as exc:
            window.completed += 1
            if start >= window.record_from_ns:
                recorder.error(type(exc).__name__, start)
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        end = clock()
        window.completed += 1
        if start >= window.record_from_ns:
            if 200 <= status < 300:
                recorder.record(start, end - start)
            else:
                recorder.error(str(status), start)


async def closed_loop(
    ctx: RunContext,
    session_ids: Sequence[str],
    clients: int,
    warmup_s: float,
    duration_s: float,
) -> None:
    """Switch ``session_ids`` with ``clients`` closed-loop clients; measure after warm-up.

    Records into ``ctx.recorder("switch")`` and opens ``ctx.measure()`` for
    the measured part.
    """
    base: BaseUrl = ctx.base
    recorder = ctx.recorder("switch")
    window = _Window()
    connections = [HttpConnection(base) for _ in range(clients)]
    if len(session_ids) < clients:
        ctx.warn("fewer sessions than clients: clients share sessions")
    tasks = []
    began = time.perf_counter()
    rate = _Rate(window)
    text = lambda: progress.rate_text(recorder.ok, len(recorder.error_starts), rate())  # noqa: E731
    try:
        async with progress.live(
            ctx.console, "warm-up", warmup_s + duration_s, lambda: time.perf_counter() - began, text
        ) as live:
            for k, connection in enumerate(connections):
                requests = [
                    encode_request(
                        "POST",
                        f"{base.prefix}/v1/sessions/{sid}/switch",
                        base.authority,
                        b"{}",
                        JSON,
                    )
                    for sid in _client_sessions(k, clients, session_ids)
                ]
                tasks.append(asyncio.create_task(_client(connection, requests, window, recorder)))
            await asyncio.sleep(warmup_s)
            async with ctx.measure() as measured:
                window.record_from_ns = measured.origin_ns
                window.stop_at_ns = measured.origin_ns + round(duration_s * 1e9)
                live.describe("measuring")
                await asyncio.gather(*tasks)
            live.describe("done")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in connections:
            connection.close()


class _Rate:
    """Requests per second since the previous call (for the live line)."""

    def __init__(self, window: _Window) -> None:
        self.window = window
        self.last = time.perf_counter()
        self.last_completed = 0

    def __call__(self) -> float:
        now = time.perf_counter()
        done = self.window.completed
        rate = (done - self.last_completed) / max(now - self.last, 1e-9)
        self.last, self.last_completed = now, done
        return rate


async def run_switch(options: SwitchOptions, ctx: RunContext) -> SwitchResult:
    """Run the scenario against ``ctx.target`` and return its result.

    Raises:
        SetupError: a session could not be created or started.
        OSError, HttpError: the server could not be reached during setup.
    """
    session_ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
    created: list[str] = []
    try:
        await create_sessions(ctx.base, session_ids, created, options.participants, ctx.console)
        await closed_loop(ctx, session_ids, options.clients, options.warmup, options.duration)
    finally:
        await delete_sessions(ctx.base, created, ctx.console)
    return SwitchResult(
        **ctx.common("switch", "switch"),
        sessions=options.sessions,
        clients=options.clients,
        participants=options.participants,
    )


SCENARIO = Scenario(
    name="switch",
    help="closed-loop switch throughput and latency (C clients over N sessions)",
    options_type=SwitchOptions,
    run=run_switch,
    description=__doc__ or "",
)
