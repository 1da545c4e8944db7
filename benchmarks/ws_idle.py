"""Scenario "ws-idle": memory and CPU cost of idle WebSocket connections.

1. Setup: create ``sessions`` per_participant sessions (2 participants,
   one-hour banks) and start them. Wait :data:`SETTLE_S`, then read the
   server's resident memory: ``rss_before``.
2. Open ``sockets`` WebSocket subscribers, socket j on session
   ``j mod sessions``, ``concurrency`` handshakes at a time; a socket counts as
   open once its ``STATE_SYNC`` arrived. Failures are counted, not fatal.
3. Wait :data:`SETTLE_S`, then hold the sockets idle for ``hold_s`` seconds
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

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import procstat
from benchmarks.httpclient import BaseUrl
from benchmarks.sessions import create_sessions, delete_sessions
from benchmarks.wsclient import (
    Subscriber,
    check_fd_limit,
    close_subscribers,
    open_subscribers,
    ws_url,
)

__all__ = ["WsIdleConfig", "WsIdleSummary", "run_ws_idle"]

#: Seconds waited before each memory reading that follows a burst of activity.
SETTLE_S = 1.0

#: Seconds between memory samples during the hold.
SAMPLE_S = 0.5

#: Participants of every session.
PARTICIPANTS = 2


@dataclass(frozen=True, slots=True)
class WsIdleConfig:
    """Parameters of one run (see the CLI for their meaning)."""

    base: BaseUrl
    sockets: int = 10_000
    sessions: int = 100
    hold_s: float = 10.0
    concurrency: int = 100
    """Sockets opened at a time."""
    compression: bool = False
    """Offer permessage-deflate when opening the sockets."""
    server_pid: int | None = None
    """Root of the server's process tree, for memory and CPU."""


class WsIdleSummary(msgspec.Struct):
    """The JSON result of a run; field order is the output order."""

    scenario: str
    url: str
    sessions: int
    sockets_requested: int
    sockets_open: int
    sockets_open_after_hold: int
    open_failures: dict[str, int]
    open_duration_s: float
    compression: bool
    hold_s: float
    server_pids: list[int]
    rss_before_mb: float | None
    rss_with_sockets_mb: float | None
    kb_per_socket: float | None
    server_cpu_percent_idle: float | None
    client_rss_mb: float | None


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


async def run_ws_idle(config: WsIdleConfig, console: Console) -> WsIdleSummary:
    """Run the scenario against ``config.base`` and return its summary.

    Raises:
        SetupError: a session could not be created or started, or too few descriptors.
        OSError, HttpError: the server could not be reached during setup.
    """
    check_fd_limit(config.sockets)
    pids = [] if config.server_pid is None else procstat.server_pids(config.server_pid)
    if config.server_pid is not None and not pids:
        console.print(f"[yellow]warning:[/] no server process found under pid {config.server_pid}")

    def rss() -> int | None:
        return procstat.total_rss_kb(pids) if pids else None

    session_ids = [str(uuid.uuid4()) for _ in range(config.sessions)]
    created: list[str] = []
    subscribers: list[Subscriber] = []
    try:
        await create_sessions(config.base, session_ids, created, PARTICIPANTS, console)
        await asyncio.sleep(SETTLE_S)
        rss_before = rss()
        targets = [
            (j, ws_url(config.base, session_ids[j % config.sessions]))
            for j in range(config.sockets)
        ]
        opened_at = time.perf_counter()
        failures = await open_subscribers(
            targets,
            subscribers,
            concurrency=config.concurrency,
            compression=config.compression,
            console=console,
            stop_on_error=False,
        )
        open_duration_s = time.perf_counter() - opened_at
        if failures.first is not None:
            console.print(
                f"[yellow]warning:[/] {sum(failures.counts.values())} sockets failed to open, "
                f"first: {failures.first}"
            )
        await asyncio.sleep(SETTLE_S)
        samples, cpu = await _hold(config, rss, console)
        open_after = sum(1 for subscriber in subscribers if subscriber.is_open)
        client_rss = procstat.rss_kb(os.getpid())
    finally:
        await close_subscribers(subscribers, concurrency=config.concurrency, console=console)
        await delete_sessions(config.base, created, console)
    rss_with = round(statistics.median(samples)) if samples else None
    per_socket = None
    if rss_before is not None and rss_with is not None and subscribers:
        per_socket = round((rss_with - rss_before) / len(subscribers), 2)
    if open_after < len(subscribers):
        console.print(
            f"[yellow]warning:[/] {len(subscribers) - open_after} sockets closed during the hold"
        )
    return WsIdleSummary(
        scenario="ws-idle",
        url=str(config.base),
        sessions=config.sessions,
        sockets_requested=config.sockets,
        sockets_open=len(subscribers),
        sockets_open_after_hold=open_after,
        open_failures=dict(failures.counts),
        open_duration_s=round(open_duration_s, 3),
        compression=config.compression,
        hold_s=round(cpu.wall_s, 3),
        server_pids=pids,
        rss_before_mb=_mb(rss_before),
        rss_with_sockets_mb=_mb(rss_with),
        kb_per_socket=per_socket,
        server_cpu_percent_idle=cpu.server_percent,
        client_rss_mb=_mb(client_rss),
    )


async def _hold(
    config: WsIdleConfig, rss: Callable[[], int | None], console: Console
) -> tuple[list[int], procstat.CpuUsage]:
    """Hold the sockets for ``hold_s``; return the memory samples (KiB) and CPU use."""
    samples: list[int] = []
    progress = Progress(
        TextColumn("holding"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rss]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("hold", total=config.hold_s, rss="")
        start = procstat.sample(config.server_pid)
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < config.hold_s:
            await asyncio.sleep(min(SAMPLE_S, config.hold_s - elapsed))
            kb = rss()
            if kb is not None:
                samples.append(kb)
            text = "" if kb is None else f"server RSS {kb / 1024:,.1f} MB"
            progress.update(task, completed=time.perf_counter() - began, rss=text)
        end = procstat.sample(config.server_pid)
    return samples, procstat.usage(start, end)
