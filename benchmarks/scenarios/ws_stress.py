"""Scenario ``ws-stress``: ramp to many WebSocket subscribers while updates flow.

Modelled on the Node.js suite's ``05-websocket-stress`` (ramp to 10,000
sockets, a delivery-time threshold), with the updates driven on a schedule:

1. Setup: create and start ``sessions`` per_participant sessions.
2. Measured window opens. Updates start flowing: every session is switched
   ``rate`` times per second, open loop (see :mod:`benchmarks.pacer`).
3. Ramp: ``sockets`` subscribers are opened at an even pace over ``ramp``
   seconds (``concurrency`` handshakes at most in flight), subscriber j on
   session ``j mod sessions``. Failures are counted, not fatal.
4. Hold: all sockets stay open ``hold`` seconds while the updates go on.
5. The updates stop; the harness waits up to :data:`DRAIN_S` for deliveries,
   and the measured window closes. Then the sockets close and the sessions
   are deleted.

Delivery latency of (subscriber, version): its arrival minus the moment the
switch that produced the version was sent (``ops.delivery``; those sent
during the hold, at full load, also in ``ops.delivery_at_peak``). A
subscriber is expected to receive every version of its session above the
version of its ``STATE_SYNC``. Server RSS (server processes only) is sampled
every second: before the ramp, at peak and per socket.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from benchmarks import procstat, progress
from benchmarks.context import RunContext
from benchmarks.options import option
from benchmarks.pacer import Pacer
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import create_sessions, delete_sessions
from benchmarks.stats import LatencySummary, summarize_latencies
from benchmarks.wsclient import (
    Subscriber,
    close_subscribers,
    describe_failure,
    open_subscriber,
    ws_url,
)

__all__ = ["SCENARIO", "WsStressOptions", "WsStressResult", "count_deliveries"]

#: Seconds to wait for outstanding deliveries after the updates stop.
DRAIN_S = 5.0

#: Seconds between checks while draining.
POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class WsStressOptions:
    """Options of ``ws-stress``."""

    sockets: int = option(10_000, "WebSocket subscribers at the end of the ramp", low=1)
    sessions: int = option(1000, "sessions the subscribers are spread over", low=1)
    rate: float = option(1.0, "updates (switches) per session per second", low=0)
    ramp: float = option(60.0, "seconds to open all the sockets", low=0)
    hold: float = option(30.0, "seconds at full count with updates flowing", low=0)
    clients: int = option(16, "HTTP connections driving the switches", low=1)
    concurrency: int = option(100, "WebSocket handshakes in flight at most", low=1)


class WsStressResult(ScenarioResult, kw_only=True):
    """Result of ``ws-stress``."""

    sockets_requested: int
    sockets_open: int
    sockets_open_at_end: int
    open_failures: dict[str, int]
    sessions: int
    updates_per_session_per_s: float
    expected: int
    delivered: int
    missing: int
    duplicates: int
    out_of_order: int
    skipped_slots: int
    """Switch slots skipped because the session's previous switch had not answered."""
    schedule_lag_ms: LatencySummary | None
    """How late switches left against their slots (harness queueing)."""
    rss_before_mb: float | None
    rss_peak_mb: float | None
    rss_at_full_mb: float | None
    """Median server RSS during the hold."""
    kb_per_socket: float | None
    """``(rss_at_full - rss_before) / sockets_open``."""
    harness_rss_mb: float | None


@dataclass(frozen=True, slots=True)
class Deliveries:
    """Outcome of :func:`count_deliveries` for one subscriber."""

    expected: int
    delivered: list[tuple[int, int]]
    """``(sent_ns, arrival_ns)`` of every expected version received (first copy)."""
    duplicates: int
    out_of_order: int


def count_deliveries(
    synced_version: int, updates: list[tuple[int, int]], sent: dict[int, int]
) -> Deliveries:
    """Match one subscriber's ``(version, arrival)`` updates against the switches sent.

    Expected: every version in ``sent`` above ``synced_version``. A version
    received twice is a duplicate; one below a version already received is
    out of order. Versions not in ``sent`` (e.g. a timeout) are ignored.
    """
    seen: set[int] = set()
    highest = synced_version
    delivered = []
    duplicates = out_of_order = 0
    for version, arrival in updates:
        if version in seen:
            duplicates += 1
            continue
        seen.add(version)
        if version < highest:
            out_of_order += 1
        else:
            highest = version
        sent_ns = sent.get(version)
        if sent_ns is not None and version > synced_version:
            delivered.append((sent_ns, arrival))
    expected = sum(1 for version in sent if version > synced_version)
    return Deliveries(expected, delivered, duplicates, out_of_order)


def _mb(kb: float | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


async def run_ws_stress(options: WsStressOptions, ctx: RunContext) -> WsStressResult:
    """Run the scenario against ``ctx.target`` and return its result.

    Raises:
        SetupError: a session could not be created or started.
    """
    console = ctx.console
    session_ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
    created: list[str] = []
    opened: list[Subscriber] = []
    failures: Counter[str] = Counter()
    pacer = Pacer(ctx.base, session_ids, options.rate, options.clients, ctx.recorder("switch"))
    phases: dict[str, int] = {}
    try:
        await create_sessions(ctx.base, session_ids, created, 2, console)
        for i in range(len(session_ids)):
            pacer.set_version(i, 2)  # created (1) and started (+1)

        def gauges() -> dict[str, float]:
            return {"sockets_open": float(sum(1 for s in opened if s.is_open))}

        async with ctx.measure(gauges=gauges):
            stop = asyncio.Event()
            driving = asyncio.create_task(pacer.run(stop))
            try:
                phases["ramp"] = time.perf_counter_ns()
                await _ramp(options, ctx, session_ids, opened, failures, pacer)
                phases["hold"] = time.perf_counter_ns()
                await _hold(options, ctx, opened)
            finally:
                stop.set()
                await driving
            phases["drain"] = time.perf_counter_ns()
            await _drain(ctx, opened, pacer)
        open_at_end = sum(1 for s in opened if s.is_open)
        harness_rss = procstat.rss_kb(os.getpid())
    finally:
        await close_subscribers(opened, concurrency=options.concurrency, console=console)
        await delete_sessions(ctx.base, created, console)
    return _summarize(options, ctx, opened, failures, pacer, phases, open_at_end, harness_rss)


async def _ramp(
    options: WsStressOptions,
    ctx: RunContext,
    session_ids: list[str],
    opened: list[Subscriber],
    failures: Counter[str],
    pacer: Pacer,
) -> None:
    """Open the sockets at an even pace over ``ramp`` seconds."""
    limit = asyncio.Semaphore(options.concurrency)
    began = time.perf_counter()
    step = options.ramp / options.sockets
    tasks: set[asyncio.Task[None]] = set()

    async def open_one(j: int) -> None:
        try:
            index = j % len(session_ids)
            subscriber = await open_subscriber(ws_url(ctx.base, session_ids[index]))
        except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
            failures[describe_failure(exc)] += 1
        else:
            subscriber.tag = index
            pacer.set_version(index, subscriber.synced.result())
            opened.append(subscriber)
        finally:
            limit.release()

    def text() -> str:
        failed = sum(failures.values())
        return f"{len(opened):>7,}/{options.sockets:,} sockets, {failed:,} failed"

    async with progress.live(
        ctx.console, "ramp", options.sockets, lambda: len(opened) + sum(failures.values()), text
    ):
        for j in range(options.sockets):
            delay = began + j * step - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await limit.acquire()
            task = asyncio.create_task(open_one(j))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


async def _hold(options: WsStressOptions, ctx: RunContext, opened: list[Subscriber]) -> None:
    began = time.perf_counter()

    def text() -> str:
        fresh = sum(s.fresh for s in opened)
        return f"{sum(1 for s in opened if s.is_open):,} sockets open, {fresh:,} updates received"

    async with progress.live(
        ctx.console, "hold", options.hold, lambda: time.perf_counter() - began, text
    ):
        await asyncio.sleep(options.hold)


async def _drain(ctx: RunContext, opened: list[Subscriber], pacer: Pacer) -> None:
    """Wait until every open subscriber has every version of its session, or DRAIN_S."""

    def pending() -> int:
        missing = 0
        for s in opened:
            if s.is_open:
                last = pacer.versions[s.tag]
                missing += not s.updates or max(v for v, _ in s.updates[-3:]) < last
        return missing

    deadline = time.monotonic() + DRAIN_S
    with ctx.console.status("draining deliveries"):
        # Polls counters that the sockets' protocol callbacks update.
        while time.monotonic() < deadline and pending():  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)


def _summarize(
    options: WsStressOptions,
    ctx: RunContext,
    opened: list[Subscriber],
    failures: Counter[str],
    pacer: Pacer,
    phases: dict[str, int],
    open_at_end: int,
    harness_rss_kb: int | None,
) -> WsStressResult:
    delivery = ctx.recorder("delivery")
    peak = ctx.recorder("delivery_at_peak")
    hold_from = phases.get("hold", 0)
    hold_to = phases.get("drain", 0)
    expected = delivered = duplicates = out_of_order = 0
    for subscriber in opened:
        synced = subscriber.synced.result()
        found = count_deliveries(synced, subscriber.updates, pacer.sent[subscriber.tag])
        expected += found.expected
        delivered += len(found.delivered)
        duplicates += found.duplicates
        out_of_order += found.out_of_order
        for sent_ns, arrival in found.delivered:
            delivery.record(sent_ns, arrival - sent_ns)
            if hold_from <= sent_ns < hold_to:
                peak.record(sent_ns, arrival - sent_ns)
    measurement = ctx.measurement
    rss_before = rss_peak = rss_full = None
    if measurement is not None:
        samples = [(s.wall_ns, s.server_rss_kb) for s in measurement.samples]
        known = [(t, kb) for t, kb in samples if kb is not None]
        if known:
            rss_before = known[0][1]
            rss_peak = max(kb for _, kb in known)
            full = [kb for t, kb in known if hold_from <= t < hold_to]
            rss_full = round(statistics.median(full)) if full else None
    per_socket = None
    if rss_before is not None and rss_full is not None and opened:
        per_socket = round((rss_full - rss_before) / len(opened), 2)
    missing = expected - delivered
    warnings: list[str] = []
    if sum(failures.values()):
        ctx.warn(f"{sum(failures.values())} sockets failed to open: {dict(failures)}", warnings)
    if missing:
        ctx.warn(f"{missing} deliveries missing", warnings)
    if pacer.skipped:
        ctx.warn(
            f"{pacer.skipped} switch slots skipped (previous switch of the session still in "
            "flight): the server or the harness could not keep the rate",
            warnings,
        )
    checks = {
        "no_missing_delivery": missing == 0,
        "no_duplicate_delivery": duplicates == 0,
        "in_order_delivery": out_of_order == 0,
    }
    return WsStressResult(
        **ctx.common("ws-stress", "delivery", checks=checks, warnings=warnings),
        sockets_requested=options.sockets,
        sockets_open=len(opened),
        sockets_open_at_end=open_at_end,
        open_failures=dict(failures),
        sessions=options.sessions,
        updates_per_session_per_s=options.rate,
        expected=expected,
        delivered=delivered,
        missing=missing,
        duplicates=duplicates,
        out_of_order=out_of_order,
        skipped_slots=pacer.skipped,
        schedule_lag_ms=summarize_latencies(pacer.lag_ns),
        rss_before_mb=_mb(rss_before),
        rss_peak_mb=_mb(rss_peak),
        rss_at_full_mb=_mb(rss_full),
        kb_per_socket=per_socket,
        harness_rss_mb=_mb(harness_rss_kb),
    )


SCENARIO = Scenario(
    name="ws-stress",
    help="ramp to 10,000 WebSocket subscribers with 1 update/session/s: delivery latency, RSS",
    options_type=WsStressOptions,
    run=run_ws_stress,
    description=__doc__ or "",
    sockets=lambda o: o.sockets + o.clients,
)
