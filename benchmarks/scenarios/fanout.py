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

from benchmarks import progress
from benchmarks.context import RunContext
from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, encode_request
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import JSON, create_sessions, delete_sessions
from benchmarks.stats import LatencyRecorder
from benchmarks.wsclient import (
    Subscriber,
    close_subscribers,
    open_subscribers,
    ws_url,
)

__all__ = ["DRAIN_TIMEOUT_S", "SCENARIO", "FanoutOptions", "FanoutResult", "run_fanout"]

#: Seconds to wait for outstanding deliveries after the last switch answered.
DRAIN_TIMEOUT_S = 10.0

#: Seconds between checks of the deliveries and refreshes of the progress bar.
POLL_S = 0.05

#: Participants of every session.
PARTICIPANTS = 2


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    """Options of ``fanout``."""

    sessions: int = option(10, "sessions, each with its own driver", low=1)
    subscribers: int = option(200, "WebSocket subscribers per session", low=1)
    switches: int = option(10, "switches per session", low=1)
    interval_ms: float = option(100.0, "pause between two switches of one session, ms", low=0)
    concurrency: int = option(100, "WebSocket handshakes in flight while opening", low=1)
    compression: bool = option(False, "offer permessage-deflate to the server")


class FanoutResult(ScenarioResult, kw_only=True):
    """Result of ``fanout``: ``ops.delivery`` is the delivery latency, ``ops.switch``
    the switch round trip."""

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


class _SwitchData(msgspec.Struct):
    version: int | None = None


class _SwitchEnvelope(msgspec.Struct):
    data: _SwitchData


_decode_switch = msgspec.json.Decoder(_SwitchEnvelope).decode


@dataclass(slots=True)
class _Driver:
    """What one session's driver did."""

    sent_ns: dict[int, int]
    """perf_counter_ns before sending, by the version the switch produced."""
    version: int
    """Last version of the session known to the driver (from its STATE_SYNC, then
    from each switch: the response's ``version``, or the previous one + 1 for a
    server without that field)."""


async def run_fanout(options: FanoutOptions, ctx: RunContext) -> FanoutResult:
    """Run the scenario against ``ctx.target`` and return its result.

    Raises:
        SetupError: a session could not be created or started, or too few file descriptors.
        OSError, HttpError: the server could not be reached during setup.
        ConnectionClosed, InvalidHandshake, TimeoutError: a socket could not be opened.
    """
    session_ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
    created: list[str] = []
    subscribers: list[Subscriber] = []
    console = ctx.console
    try:
        await create_sessions(ctx.base, session_ids, created, PARTICIPANTS, console)
        targets = [
            (index, ws_url(ctx.base, session_id))
            for index, session_id in enumerate(session_ids)
            for _ in range(options.subscribers)
        ]
        await open_subscribers(
            targets,
            subscribers,
            concurrency=options.concurrency,
            compression=options.compression,
            console=console,
            stop_on_error=True,
        )
        drivers = await _load(options, ctx, session_ids, subscribers)
    finally:
        await close_subscribers(subscribers, concurrency=options.concurrency, console=console)
        await delete_sessions(ctx.base, created, console)
    return _summarize(options, ctx, drivers, subscribers)


async def _drive(
    base: BaseUrl,
    session_id: str,
    switches: int,
    interval_s: float,
    delay_s: float,
    driver: _Driver,
    recorder: LatencyRecorder,
) -> None:
    """Switch ``session_id`` ``switches`` times, recording each switch."""
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
                recorder.error(type(exc).__name__, start)
                continue
            end = clock()
            if response.status != 200:
                recorder.error(str(response.status), start)
                continue
            try:
                version = _decode_switch(response.body).data.version
            except msgspec.DecodeError:
                recorder.error("undecodable response", start)
                continue
            driver.version = driver.version + 1 if version is None else version
            driver.sent_ns[driver.version] = start
            recorder.record(start, end - start)
    finally:
        connection.close()


async def _load(
    options: FanoutOptions,
    ctx: RunContext,
    session_ids: Sequence[str],
    subscribers: Sequence[Subscriber],
) -> list[_Driver]:
    """Run the drivers, then wait for the deliveries; return the drivers."""
    initial = [0] * len(session_ids)
    for subscriber in subscribers:
        initial[subscriber.tag] = max(initial[subscriber.tag], subscriber.synced.result())
    drivers = [_Driver({}, version) for version in initial]
    interval_s = options.interval_ms / 1000
    recorder = ctx.recorder("switch")
    expected_max = len(subscribers) * options.switches

    def received() -> int:
        return sum(subscriber.fresh for subscriber in subscribers)

    def switched() -> int:
        return sum(len(driver.sent_ns) for driver in drivers)

    def text() -> str:
        return f"{switched():>7,} switches {received():>9,}/{expected_max:,} delivered"

    async with (
        progress.live(ctx.console, "switching", expected_max, received, text) as live,
        ctx.measure(),
    ):
        tasks = [
            asyncio.create_task(
                _drive(
                    ctx.base,
                    session_id,
                    options.switches,
                    interval_s,
                    i * interval_s / len(session_ids),
                    drivers[i],
                    recorder,
                )
            )
            for i, session_id in enumerate(session_ids)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        expected = options.subscribers * switched()
        live.describe("draining", total=expected)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        # Polls counters that the sockets' protocol callbacks update.
        while received() < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        live.describe("done")
    return drivers


def _summarize(
    options: FanoutOptions,
    ctx: RunContext,
    drivers: Sequence[_Driver],
    subscribers: Sequence[Subscriber],
) -> FanoutResult:
    delivery = ctx.recorder("delivery")
    delivered = duplicates = out_of_order = unexpected = 0
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
                delivered += 1
                delivery.record(sent_ns, arrival - sent_ns)
        other.update(subscriber.other)
    expected = options.subscribers * sum(len(driver.sent_ns) for driver in drivers)
    missing = expected - delivered
    warnings: list[str] = []
    if missing:
        ctx.warn(f"{missing} deliveries missing", warnings)
    checks = {
        "no_missing_delivery": missing == 0,
        "no_duplicate_delivery": duplicates == 0,
        "in_order_delivery": out_of_order == 0,
    }
    return FanoutResult(
        **ctx.common("fanout", "delivery", checks=checks, warnings=warnings),
        sessions=options.sessions,
        subscribers_per_session=options.subscribers,
        switches_per_session=options.switches,
        interval_ms=options.interval_ms,
        compression=options.compression,
        expected=expected,
        delivered=delivered,
        missing=missing,
        duplicates=duplicates,
        out_of_order=out_of_order,
        unexpected=unexpected,
        other_messages=dict(other),
    )


SCENARIO = Scenario(
    name="fanout",
    help="delivery of switches to WebSocket subscribers: completeness and latency",
    options_type=FanoutOptions,
    run=run_fanout,
    description=__doc__ or "",
    sockets=lambda o: o.sessions * o.subscribers + o.sessions,
)
