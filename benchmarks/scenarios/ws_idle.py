"""Scenario "ws-idle": memory and CPU cost of idle WebSocket connections.

1. Setup: create ``sessions`` per_participant sessions (2 participants,
   one-hour banks) and start them. Wait :data:`SETTLE_S`, then read the
   server's resident memory: ``rss_before``.
2. Open ``sockets`` WebSocket subscribers, socket j on session
   ``j mod sessions``, ``concurrency`` handshakes at a time; a socket counts as
   open once its ``STATE_SYNC`` arrived. Failures are counted, not fatal.
3. Wait :data:`SETTLE_S`, then hold the sockets idle for ``hold`` seconds
   (nothing is sent by either side unless the server pings), sampling the
   server's resident memory every :data:`SAMPLE_S` and its CPU over the whole
   hold. ``rss_with_sockets`` is the median of the samples.
4. Cleanup (always): close the sockets, then delete the sessions.

The server's memory is the summed ``VmRSS`` of :func:`procstat.server_pids`:
the server tree without its ``redis-server``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import procstat, progress
from benchmarks.context import RunContext
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import create_sessions, delete_sessions
from benchmarks.wsclient import (
    Subscriber,
    close_subscribers,
    open_subscribers,
    ws_url,
)

__all__ = ["SCENARIO", "WsIdleOptions", "WsIdleResult", "run_ws_idle"]

#: Seconds waited before each memory reading that follows a burst of activity.
SETTLE_S = 1.0

#: Seconds between memory samples during the hold.
SAMPLE_S = 0.5

#: Participants of every session.
PARTICIPANTS = 2


@dataclass(frozen=True, slots=True)
class WsIdleOptions:
    """Options of ``ws-idle``."""

    sockets: int = option(10_000, "WebSocket connections to open", low=1)
    sessions: int = option(100, "sessions the sockets are spread over", low=1)
    hold: float = option(10.0, "seconds the sockets stay idle while memory is sampled", low=0.001)
    concurrency: int = option(100, "WebSocket handshakes in flight while opening", low=1)
    compression: bool = option(False, "offer permessage-deflate to the server")


class WsIdleResult(ScenarioResult, kw_only=True):
    """Result of ``ws-idle`` (its measured window is the hold)."""

    sessions: int
    sockets_requested: int
    sockets_open: int
    sockets_open_after_hold: int
    open_failures: dict[str, int]
    open_duration_s: float
    compression: bool
    server_pids: list[int]
    rss_before_mb: float | None
    rss_with_sockets_mb: float | None
    kb_per_socket: float | None
    client_rss_mb: float | None


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


async def run_ws_idle(options: WsIdleOptions, ctx: RunContext) -> WsIdleResult:
    """Run the scenario against ``ctx.target`` and return its result.

    Raises:
        SetupError: a session could not be created or started.
        OSError, HttpError: the server could not be reached during setup.
    """
    console = ctx.console
    root = ctx.target.server_pid
    pids = [] if root is None else procstat.server_pids(root)
    if root is not None and not pids:
        ctx.warn(f"no server process found under pid {root}")

    def rss() -> int | None:
        return procstat.total_rss_kb(pids) if pids else None

    session_ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
    created: list[str] = []
    subscribers: list[Subscriber] = []
    warnings: list[str] = []
    try:
        await create_sessions(ctx.base, session_ids, created, PARTICIPANTS, console)
        await asyncio.sleep(SETTLE_S)
        rss_before = rss()
        targets = [
            (j, ws_url(ctx.base, session_ids[j % options.sessions])) for j in range(options.sockets)
        ]
        opened_at = time.perf_counter()
        failures = await open_subscribers(
            targets,
            subscribers,
            concurrency=options.concurrency,
            compression=options.compression,
            console=console,
            stop_on_error=False,
        )
        open_duration_s = time.perf_counter() - opened_at
        if failures.first is not None:
            ctx.warn(
                f"{sum(failures.counts.values())} sockets failed to open, first: {failures.first}",
                warnings,
            )
        await asyncio.sleep(SETTLE_S)
        samples = await _hold(options, ctx, rss)
        open_after = sum(1 for subscriber in subscribers if subscriber.is_open)
        client_rss = procstat.rss_kb(os.getpid())
    finally:
        await close_subscribers(subscribers, concurrency=options.concurrency, console=console)
        await delete_sessions(ctx.base, created, console)
    rss_with = round(statistics.median(samples)) if samples else None
    per_socket = None
    if rss_before is not None and rss_with is not None and subscribers:
        per_socket = round((rss_with - rss_before) / len(subscribers), 2)
    if open_after < len(subscribers):
        ctx.warn(f"{len(subscribers) - open_after} sockets closed during the hold", warnings)
    return WsIdleResult(
        **ctx.common("ws-idle", None, warnings=warnings),
        sessions=options.sessions,
        sockets_requested=options.sockets,
        sockets_open=len(subscribers),
        sockets_open_after_hold=open_after,
        open_failures=dict(failures.counts),
        open_duration_s=round(open_duration_s, 3),
        compression=options.compression,
        server_pids=pids,
        rss_before_mb=_mb(rss_before),
        rss_with_sockets_mb=_mb(rss_with),
        kb_per_socket=per_socket,
        client_rss_mb=_mb(client_rss),
    )


async def _hold(
    options: WsIdleOptions, ctx: RunContext, rss: Callable[[], int | None]
) -> list[int]:
    """Hold the sockets for ``hold`` seconds; return the memory samples (KiB)."""
    samples: list[int] = []
    began = time.perf_counter()
    last = ""

    def text() -> str:
        return last

    async with (
        progress.live(
            ctx.console, "holding", options.hold, lambda: time.perf_counter() - began, text
        ),
        ctx.measure(period_s=SAMPLE_S),
    ):
        while (elapsed := time.perf_counter() - began) < options.hold:
            await asyncio.sleep(min(SAMPLE_S, options.hold - elapsed))
            kb = rss()
            if kb is not None:
                samples.append(kb)
                last = f"server RSS {kb / 1024:,.1f} MiB"
    return samples


SCENARIO = Scenario(
    name="ws-idle",
    help="server memory and CPU per idle WebSocket connection",
    options_type=WsIdleOptions,
    run=run_ws_idle,
    description=__doc__ or "",
    sockets=lambda o: o.sockets,
)
