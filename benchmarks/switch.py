"""Scenario "switch": throughput and latency of ``POST /v1/sessions/{id}/switch``.

1. Setup: create ``sessions`` per_participant sessions of ``participants``
   participants (one-hour banks, no increment) and start them; every response
   must be 201 / 200 or :class:`SetupError` is raised.
2. Load: ``clients`` coroutines, each on its own keep-alive connection, switch
   back to back. Client k owns sessions k, k+C, k+2C, ... and cycles through
   them, so clients never share a session when sessions >= clients (otherwise
   client k uses session k mod N). The first ``warmup_s`` seconds are not
   recorded; the measured window opens after them and closes when the last
   request started within ``duration_s`` completes.
3. Cleanup (always, also after a failure): delete every session created;
   failures are reported on the console, never raised.

Only requests started inside the window count. Latency is measured around
each request with :func:`time.perf_counter_ns`, for 2xx responses only; any
other status or transport error is counted in ``errors`` by status code or
exception name. Progress goes to the given (stderr) console.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from benchmarks import procstat
from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, encode_request
from benchmarks.sessions import JSON, SetupError, create_sessions, delete_sessions
from benchmarks.stats import LatencySummary, summarize_latencies

__all__ = ["SetupError", "SwitchConfig", "SwitchSummary", "run_switch"]

#: Pause of a client after a transport error, so a dead server is not spun on.
ERROR_BACKOFF_S = 0.01

#: Seconds between refreshes of the live progress line.
REFRESH_S = 0.5

_NEVER = sys.maxsize


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    """Parameters of one run (see the CLI for their meaning)."""

    base: BaseUrl
    sessions: int = 200
    clients: int = 1
    duration_s: float = 10.0
    warmup_s: float = 2.0
    participants: int = 2
    server_pid: int | None = None
    """Root of the server's process tree for CPU accounting, if known."""


class SwitchSummary(msgspec.Struct):
    """The JSON result of a run; field order is the output order."""

    scenario: str
    url: str
    sessions: int
    clients: int
    participants: int
    duration_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    throughput_rps: float
    latency_ms: LatencySummary | None
    server_cpu_percent: float | None
    client_cpu_percent: float
    client_bound_warning: bool


class _Recorder:
    """Window and outcomes shared by the client coroutines (one thread, no locks)."""

    def __init__(self) -> None:
        self.record_from_ns = _NEVER
        """perf_counter_ns at which the measured window opened (_NEVER during warm-up)."""
        self.stop_at_ns = _NEVER
        """No request starts at or after this perf_counter_ns."""
        self.completed = 0
        """Requests completed so far, warm-up included (for the live line)."""
        self.latencies_ns: list[int] = []
        self.errors: Counter[str] = Counter()


async def run_switch(config: SwitchConfig, console: Console) -> SwitchSummary:
    """Run the scenario against ``config.base`` and return its summary.

    Raises:
        SetupError: a session could not be created or started.
        OSError, HttpError: the server could not be reached during setup.
    """
    session_ids = [str(uuid.uuid4()) for _ in range(config.sessions)]
    created: list[str] = []
    try:
        await _setup(config, session_ids, created, console)
        recorder, cpu = await _load(config, session_ids, console)
    finally:
        await delete_sessions(config.base, created, console)
    summary = _summarize(config, recorder, cpu)
    if cpu.client_bound:
        console.print(
            f"[yellow]warning:[/] the load generator used {cpu.client_percent} % of a core; "
            "it, not the server, may be the bottleneck"
        )
    return summary


async def _setup(
    config: SwitchConfig, session_ids: list[str], created: list[str], console: Console
) -> None:
    """Create and start every session; append each created id to ``created``."""
    await create_sessions(config.base, session_ids, created, config.participants, console)


def _client_sessions(client: int, clients: int, session_ids: list[str]) -> list[str]:
    """Sessions client ``client`` cycles through (see the module docstring)."""
    if len(session_ids) >= clients:
        return session_ids[client::clients]
    return [session_ids[client % len(session_ids)]]


async def _client(connection: HttpConnection, requests: list[bytes], recorder: _Recorder) -> None:
    """Send ``requests`` round robin until ``recorder.stop_at_ns``; record outcomes."""
    clock = time.perf_counter_ns
    latencies = recorder.latencies_ns
    errors = recorder.errors
    for request in itertools.cycle(requests):
        start = clock()
        if start >= recorder.stop_at_ns:
            return
        try:
            status = (await connection.roundtrip(request)).status
        except (HttpError, OSError) as exc:
            recorder.completed += 1
            if start >= recorder.record_from_ns:
                errors[type(exc).__name__] += 1
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        end = clock()
        recorder.completed += 1
        if start >= recorder.record_from_ns:
            if 200 <= status < 300:
                latencies.append(end - start)
            else:
                errors[str(status)] += 1


async def _report(progress: Progress, task: TaskID, recorder: _Recorder) -> None:
    """Refresh the live line every REFRESH_S: elapsed, requests, current req/s."""
    began = last = time.perf_counter()
    last_completed = 0
    while True:
        await asyncio.sleep(REFRESH_S)
        now = time.perf_counter()
        rate = (recorder.completed - last_completed) / (now - last)
        last, last_completed = now, recorder.completed
        progress.update(task, completed=now - began, requests=last_completed, rate=rate)
        progress.refresh()


async def _load(
    config: SwitchConfig, session_ids: list[str], console: Console
) -> tuple[_Recorder, procstat.CpuUsage]:
    """Run the clients through warm-up and the measured window."""
    base = config.base
    recorder = _Recorder()
    connections = [HttpConnection(base) for _ in range(config.clients)]
    progress = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[requests]:>10,} req {task.fields[rate]:>9,.0f} req/s"),
        console=console,
        auto_refresh=False,
    )
    if len(session_ids) < config.clients:
        console.print("[yellow]warning:[/] fewer sessions than clients: clients share sessions")
    tasks = []
    with progress:
        task = progress.add_task(
            "warm-up", total=config.warmup_s + config.duration_s, requests=0, rate=0.0
        )
        reporter = asyncio.create_task(_report(progress, task, recorder))
        for k, connection in enumerate(connections):
            requests = [
                encode_request(
                    "POST", f"{base.prefix}/v1/sessions/{sid}/switch", base.authority, b"{}", JSON
                )
                for sid in _client_sessions(k, config.clients, session_ids)
            ]
            tasks.append(asyncio.create_task(_client(connection, requests, recorder)))
        try:
            await asyncio.sleep(config.warmup_s)
            start = procstat.sample(config.server_pid)
            recorder.record_from_ns = start.wall_ns
            recorder.stop_at_ns = start.wall_ns + round(config.duration_s * 1e9)
            progress.update(task, description="measuring")
            await asyncio.gather(*tasks)
            end = procstat.sample(config.server_pid)
            progress.update(
                task,
                description="done",
                completed=config.warmup_s + config.duration_s,
                requests=recorder.completed,
            )
            return recorder, procstat.usage(start, end)
        finally:
            for pending in (*tasks, reporter):
                pending.cancel()
            await asyncio.gather(*tasks, reporter, return_exceptions=True)
            for connection in connections:
                connection.close()


def _summarize(config: SwitchConfig, recorder: _Recorder, cpu: procstat.CpuUsage) -> SwitchSummary:
    ok = len(recorder.latencies_ns)
    return SwitchSummary(
        scenario="switch",
        url=str(config.base),
        sessions=config.sessions,
        clients=config.clients,
        participants=config.participants,
        duration_s=round(cpu.wall_s, 3),
        requests=ok + sum(recorder.errors.values()),
        ok=ok,
        errors=dict(recorder.errors),
        throughput_rps=round(ok / cpu.wall_s, 1),
        latency_ms=summarize_latencies(recorder.latencies_ns),
        server_cpu_percent=cpu.server_percent,
        client_cpu_percent=cpu.client_percent,
        client_bound_warning=cpu.client_bound,
    )
