"""Scenario "fanout": delivery of state changes to many WebSocket subscribers.

1. Setup: create ``sessions`` per_participant sessions (2 participants,
   one-hour banks) and start them; open ``subscribers`` WebSocket subscribers
   per session (``concurrency`` handshakes at a time) and wait for each one's
   ``STATE_SYNC``. Any failure stops the run (:class:`SetupError` or the
   socket's error).
2. Load: one driver coroutine per session, each on its own keep-alive HTTP
   connection, performs ``switches`` ``POST /v1/sessions/{id}/switch`` (body
   ``{}``) one after the other, sleeping ``interval_ms`` after each response.
   Driver i starts ``i * interval_ms / sessions`` after the first, so the
   switches of different sessions are spread over the interval instead of
   arriving in bursts. ``sent_ns`` (:func:`time.perf_counter_ns` just before
   the request is written) is recorded under the ``version`` of the 200
   response.
3. Drain: wait until every subscriber has received every version switched in
   its session, or :data:`DRAIN_TIMEOUT_S` after the last switch answered.
4. Cleanup (always): close the sockets, then delete the sessions.

The delivery latency of (subscriber, version) is its arrival time (see
:mod:`benchmarks.wsclient`) minus the ``sent_ns`` of the switch that produced
that version: it spans the HTTP request, the commit, the server's fan-out and
the WebSocket write, as a client sees it. CPU is measured from the first
switch to the end of the drain.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import procstat
from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, encode_request
from benchmarks.sessions import JSON, create_sessions, delete_sessions
from benchmarks.stats import LatencySummary, summarize_latencies
from benchmarks.wsclient import (
    Subscriber,
    check_fd_limit,
    close_subscribers,
    open_subscribers,
    ws_url,
)

__all__ = ["DRAIN_TIMEOUT_S", "FanoutConfig", "FanoutSummary", "run_fanout"]

#: Seconds to wait for outstanding deliveries after the last switch answered.
DRAIN_TIMEOUT_S = 10.0

#: Seconds between checks of the deliveries and refreshes of the progress bar.
POLL_S = 0.05

#: Participants of every session.
PARTICIPANTS = 2


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """Parameters of one run (see the CLI for their meaning)."""

    base: BaseUrl
    sessions: int = 10
    subscribers: int = 200
    """Subscribers per session."""
    switches: int = 10
    """Switches per session."""
    interval_ms: float = 100.0
    concurrency: int = 100
    """Sockets opened at a time."""
    compression: bool = False
    """Offer permessage-deflate when opening the sockets."""
    server_pid: int | None = None
    """Root of the server's process tree for CPU accounting, if known."""


class FanoutSummary(msgspec.Struct):
    """The JSON result of a run; field order is the output order."""

    scenario: str
    url: str
    sessions: int
    subscribers_per_session: int
    switches_per_session: int
    interval_ms: float
    compression: bool
    expected: int
    delivered: int
    missing: int
    duplicates: int
    out_of_order: int
    unexpected: int
    other_messages: dict[str, int]
    switch_errors: dict[str, int]
    latency_ms: LatencySummary | None
    switch_latency_ms: LatencySummary | None
    duration_s: float
    server_cpu_percent: float | None
    client_cpu_percent: float
    client_bound_warning: bool


class _SwitchData(msgspec.Struct):
    version: int


class _SwitchEnvelope(msgspec.Struct):
    data: _SwitchData


_decode_switch = msgspec.json.Decoder(_SwitchEnvelope).decode


@dataclass(slots=True)
class _Driver:
    """What one session's driver did."""

    sent_ns: dict[int, int]
    """perf_counter_ns before sending, by the version the switch produced."""
    latencies_ns: list[int]
    """Round trip of every successful switch."""
    errors: Counter[str]


async def run_fanout(config: FanoutConfig, console: Console) -> FanoutSummary:
    """Run the scenario against ``config.base`` and return its summary.

    Raises:
        SetupError: a session could not be created or started, or too few file descriptors.
        OSError, HttpError: the server could not be reached during setup.
        ConnectionClosed, InvalidHandshake, TimeoutError: a socket could not be opened.
    """
    check_fd_limit(config.sessions * config.subscribers + config.sessions)
    session_ids = [str(uuid.uuid4()) for _ in range(config.sessions)]
    created: list[str] = []
    subscribers: list[Subscriber] = []
    try:
        await create_sessions(config.base, session_ids, created, PARTICIPANTS, console)
        targets = [
            (index, ws_url(config.base, session_id))
            for index, session_id in enumerate(session_ids)
            for _ in range(config.subscribers)
        ]
        await open_subscribers(
            targets,
            subscribers,
            concurrency=config.concurrency,
            compression=config.compression,
            console=console,
            stop_on_error=True,
        )
        drivers, cpu = await _load(config, session_ids, subscribers, console)
    finally:
        await close_subscribers(subscribers, concurrency=config.concurrency, console=console)
        await delete_sessions(config.base, created, console)
    summary = _summarize(config, drivers, subscribers, cpu)
    if summary.missing:
        console.print(f"[yellow]warning:[/] {summary.missing} deliveries missing")
    if cpu.client_bound:
        console.print(
            f"[yellow]warning:[/] the harness used {cpu.client_percent} % of a core; "
            "its own speed, not the server, may dominate the latencies"
        )
    return summary


async def _drive(
    base: BaseUrl,
    session_id: str,
    switches: int,
    interval_s: float,
    delay_s: float,
    driver: _Driver,
) -> None:
    """Switch ``session_id`` ``switches`` times, recording each switch in ``driver``."""
    clock = time.perf_counter_ns
    request = encode_request(
        "POST", f"{base.prefix}/v1/sessions/{session_id}/switch", base.authority, b"{}", JSON
    )
    connection = HttpConnection(base)
    try:
        await asyncio.sleep(delay_s)
        for i in range(switches):
            if i:
                await asyncio.sleep(interval_s)
            start = clock()
            try:
                response = await connection.roundtrip(request)
            except (HttpError, OSError) as exc:
                driver.errors[type(exc).__name__] += 1
                continue
            end = clock()
            if response.status != 200:
                driver.errors[str(response.status)] += 1
                continue
            try:
                version = _decode_switch(response.body).data.version
            except msgspec.DecodeError:
                driver.errors["no version in response"] += 1
                continue
            driver.sent_ns[version] = start
            driver.latencies_ns.append(end - start)
    finally:
        connection.close()


async def _load(
    config: FanoutConfig,
    session_ids: Sequence[str],
    subscribers: Sequence[Subscriber],
    console: Console,
) -> tuple[list[_Driver], procstat.CpuUsage]:
    """Run the drivers, then wait for the deliveries; return the drivers and CPU use."""
    drivers = [_Driver({}, [], Counter()) for _ in session_ids]
    interval_s = config.interval_ms / 1000
    progress = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[switches]:>7,} switches"),
        console=console,
        auto_refresh=False,
    )
    expected_max = len(subscribers) * config.switches

    def received() -> int:
        return sum(subscriber.fresh for subscriber in subscribers)

    def switched() -> int:
        return sum(len(driver.sent_ns) for driver in drivers)

    with progress:
        task = progress.add_task("switching", total=expected_max, switches=0)

        def refresh() -> None:
            progress.update(task, completed=received(), switches=switched())
            progress.refresh()

        start = procstat.sample(config.server_pid)
        tasks = [
            asyncio.create_task(
                _drive(
                    config.base,
                    session_id,
                    config.switches,
                    interval_s,
                    i * interval_s / len(session_ids),
                    drivers[i],
                )
            )
            for i, session_id in enumerate(session_ids)
        ]
        try:
            while not all(t.done() for t in tasks):
                await asyncio.wait(tasks, timeout=POLL_S * 5)
                refresh()
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        expected = config.subscribers * switched()
        progress.update(task, description="draining", total=expected)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while received() < expected and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            refresh()
        end = procstat.sample(config.server_pid)
        progress.update(task, description="done")
        refresh()
    return drivers, procstat.usage(start, end)


def _summarize(
    config: FanoutConfig,
    drivers: Sequence[_Driver],
    subscribers: Sequence[Subscriber],
    cpu: procstat.CpuUsage,
) -> FanoutSummary:
    latencies: list[int] = []
    duplicates = out_of_order = unexpected = 0
    other: Counter[str] = Counter()
    for subscriber in subscribers:
        sent = drivers[subscriber.tag].sent_ns
        seen: set[int] = set()
        highest = 0
        for version, arrival in subscriber.updates:
            if version in seen:
                duplicates += 1
                continue
            seen.add(version)
            if version < highest:
                out_of_order += 1
            else:
                highest = version
            sent_ns = sent.get(version)
            if sent_ns is None:
                unexpected += 1
            else:
                latencies.append(arrival - sent_ns)
        other.update(subscriber.other)
    expected = config.subscribers * sum(len(driver.sent_ns) for driver in drivers)
    errors: Counter[str] = Counter()
    switch_latencies: list[int] = []
    for driver in drivers:
        errors.update(driver.errors)
        switch_latencies.extend(driver.latencies_ns)
    return FanoutSummary(
        scenario="fanout",
        url=str(config.base),
        sessions=config.sessions,
        subscribers_per_session=config.subscribers,
        switches_per_session=config.switches,
        interval_ms=config.interval_ms,
        compression=config.compression,
        expected=expected,
        delivered=len(latencies),
        missing=expected - len(latencies),
        duplicates=duplicates,
        out_of_order=out_of_order,
        unexpected=unexpected,
        other_messages=dict(other),
        switch_errors=dict(errors),
        latency_ms=summarize_latencies(latencies),
        switch_latency_ms=summarize_latencies(switch_latencies),
        duration_s=round(cpu.wall_s, 3),
        server_cpu_percent=cpu.server_percent,
        client_cpu_percent=cpu.client_percent,
        client_bound_warning=cpu.client_bound,
    )
