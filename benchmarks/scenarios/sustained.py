"""Scenario ``sustained``: a soak (default 30 min): RSS and latency drift per window.

Modelled on the Node.js suite's ``06-sustained-load`` (500 virtual users,
each creating a session, switching it 20 times a second apart, completing
it, again and again), which looks for memory leaks and slow degradation:

- ``users`` virtual users, each on its own keep-alive connection, started
  ``interval / users`` apart, loop until ``duration`` is over: create a
  session (``participants`` one-hour banks), start it, open ``subscribers``
  WebSocket subscribers to it, switch it ``switches`` times on a fixed
  ``interval`` schedule, complete it, check that every subscriber received
  every switch's update (waiting up to :data:`DELIVERY_WAIT_S`), close the
  subscribers, delete the session. Sessions, sockets and connections
  therefore churn the whole time, as in production.
- Every operation is recorded (``create``, ``start``, ``subscribe``,
  ``switch``, ``complete``, ``delete``, and ``delivery``: switch sent to
  update received); the main one is ``switch``.
- Server RSS (server processes only) is sampled every second; the timeline
  has one entry per ``window`` seconds.

Drift, after ``warmup``: the first full window after the warm-up is compared
with the last full window: ``rss_growth_percent`` (median RSS) and
``p99_drift_percent`` (switch p99), plus least-squares trends over all
post-warm-up windows in % per minute. With a short ``--duration`` the window
shrinks to a tenth of the duration and the warm-up to a fifth at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from benchmarks import progress
from benchmarks.context import RunContext
from benchmarks.httpclient import HttpConnection, HttpError
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult, TimelineWindow
from benchmarks.scenarios.ws_stress import count_deliveries
from benchmarks.sessions import JSON, create_body
from benchmarks.stats import drift_percent, slope_percent_per_unit
from benchmarks.wsclient import Subscriber, describe_failure, open_subscriber, ws_url

__all__ = ["SCENARIO", "Drift", "SustainedOptions", "SustainedResult", "drift", "effective"]

#: Seconds a session waits, after its last switch, for its subscribers' updates.
DELIVERY_WAIT_S = 1.0

#: Seconds a user pauses after a failed create.
FAILURE_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class SustainedOptions:
    """Options of ``sustained``."""

    duration: float = option(1800.0, "seconds of load (the soak)", low=1)
    users: int = option(200, "virtual users, one session at a time each", low=1)
    switches: int = option(20, "switches per session before it is completed", low=1)
    interval: float = option(1.0, "seconds between two switches of a session", low=0.01)
    subscribers: int = option(1, "WebSocket subscribers per session (0: none)", low=0)
    participants: int = option(3, "participants per session", low=1, high=1000)
    window: float = option(60.0, "seconds per drift window", low=1)
    warmup: float = option(60.0, "seconds excluded from the drift figures", low=0)


class Drift(msgspec.Struct, frozen=True, kw_only=True):
    """RSS and p99 movement between the first and last full windows after warm-up."""

    windows: int
    """Full windows after the warm-up."""
    rss_first_mb: float | None
    rss_last_mb: float | None
    rss_growth_percent: float | None
    rss_slope_percent_per_min: float | None
    p99_first_ms: float | None
    p99_last_ms: float | None
    p99_drift_percent: float | None
    p99_slope_percent_per_min: float | None


class SustainedResult(ScenarioResult, kw_only=True):
    """Result of ``sustained``."""

    users: int
    switches_per_session: int
    interval_s: float
    subscribers_per_session: int
    window_s: float
    """Window actually used (see the module doc)."""
    warmup_s: float
    sessions_completed: int
    expected_deliveries: int
    missing_deliveries: int
    duplicate_deliveries: int
    subscribe_failures: dict[str, int]
    drift: Drift


def effective(duration: float, window: float, warmup: float) -> tuple[float, float]:
    """Return the (window, warm-up) used for a run of ``duration`` seconds.

    At least ten windows (but no window under 1 s) and a warm-up of at most
    a fifth of the run.
    """
    width = max(1.0, min(window, duration / 10))
    return width, min(warmup, duration / 5)


def drift(
    timeline: Sequence[TimelineWindow], warmup_s: float, width_s: float, duration_s: float
) -> Drift:
    """Compare the first and last full windows that start at or after ``warmup_s``.

    A window is full when it ends by ``duration_s``. Slopes are least-squares
    fits over every full window after the warm-up, x in minutes.
    """
    full = [
        w for w in timeline if w.t_s >= warmup_s - 1e-9 and w.t_s + width_s <= duration_s + 1e-6
    ]
    rss = [(w.t_s / 60, w.server_rss_mb) for w in full if w.server_rss_mb is not None]
    p99 = [(w.t_s / 60, w.p99_ms) for w in full if w.p99_ms is not None]
    rss_first = rss[0][1] if rss else None
    rss_last = rss[-1][1] if rss else None
    p99_first = p99[0][1] if p99 else None
    p99_last = p99[-1][1] if p99 else None
    return Drift(
        windows=len(full),
        rss_first_mb=rss_first,
        rss_last_mb=rss_last,
        rss_growth_percent=drift_percent(rss_first, rss_last) if len(rss) > 1 else None,
        rss_slope_percent_per_min=slope_percent_per_unit(rss),
        p99_first_ms=p99_first,
        p99_last_ms=p99_last,
        p99_drift_percent=drift_percent(p99_first, p99_last) if len(p99) > 1 else None,
        p99_slope_percent_per_min=slope_percent_per_unit(p99),
    )


class _Data(msgspec.Struct):
    version: int | None = None


class _Envelope(msgspec.Struct):
    data: _Data


_decode = msgspec.json.Decoder(_Envelope).decode


@dataclass(slots=True)
class _Tally:
    completed: int = 0
    expected: int = 0
    missing: int = 0
    duplicates: int = 0


class _User:
    """One virtual user's loop (see the module doc)."""

    def __init__(
        self, options: SustainedOptions, ctx: RunContext, tally: _Tally, failures: Counter[str]
    ) -> None:
        self.options = options
        self.ctx = ctx
        self.tally = tally
        self.failures = failures
        self.connection = HttpConnection(ctx.base)

    async def call(self, op: str, method: str, path: str, body: bytes | None) -> bytes | None:
        """One request recorded under ``op``; the body of a 2xx, else None."""
        recorder = self.ctx.recorder(op)
        start = time.perf_counter_ns()
        try:
            response = await self.connection.request(
                method, path, body, None if body is None else JSON
            )
        except (HttpError, OSError) as exc:
            recorder.error(type(exc).__name__, start)
            return None
        if 200 <= response.status < 300:
            recorder.record(start, time.perf_counter_ns() - start)
            return response.body
        recorder.error(str(response.status), start)
        return None

    async def run(self, delay_s: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(delay_s)
            while not stop.is_set():
                await self.session(stop)
        finally:
            self.connection.close()

    async def session(self, stop: asyncio.Event) -> None:
        options = self.options
        sid = str(uuid.uuid4())
        created = await self.call(
            "create", "POST", "/v1/sessions", create_body(sid, options.participants)
        )
        if created is None:
            await asyncio.sleep(FAILURE_PAUSE_S)
            return
        subscribers: list[Subscriber] = []
        try:
            await self.call("start", "POST", f"/v1/sessions/{sid}/start", b"")
            version = 2
            for _ in range(options.subscribers):
                start = time.perf_counter_ns()
                try:
                    subscriber = await open_subscriber(ws_url(self.ctx.base, sid))
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    cause = describe_failure(exc)
                    self.ctx.recorder("subscribe").error(cause, start)
                    self.failures[cause] += 1
                    continue
                self.ctx.recorder("subscribe").record(start, time.perf_counter_ns() - start)
                version = max(version, subscriber.synced.result())
                subscribers.append(subscriber)
            sent: dict[int, int] = {}
            began = time.perf_counter()
            for i in range(options.switches):
                if stop.is_set():
                    break
                delay = began + i * options.interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                start = time.perf_counter_ns()
                body = await self.call("switch", "POST", f"/v1/sessions/{sid}/switch", b"{}")
                if body is not None:
                    try:
                        reported = _decode(body).data.version
                    except msgspec.DecodeError:
                        reported = None
                    version = version + 1 if reported is None else reported
                    sent[version] = start
            await self.call("complete", "POST", f"/v1/sessions/{sid}/complete", b"")
            await self.collect(subscribers, sent)
            self.tally.completed += 1
        finally:
            for subscriber in subscribers:
                with contextlib.suppress(OSError, ConnectionClosed):
                    await subscriber.close()
            await self.call("delete", "DELETE", f"/v1/sessions/{sid}", None)

    async def collect(self, subscribers: list[Subscriber], sent: dict[int, int]) -> None:
        """Wait up to DELIVERY_WAIT_S for the updates, then record the deliveries."""
        if not subscribers or not sent:
            return
        last = max(sent)
        deadline = time.monotonic() + DELIVERY_WAIT_S
        # Polls lists that the sockets' protocol callbacks fill.
        while (  # noqa: ASYNC110
            time.monotonic() < deadline
            and any(
                s.is_open and not any(v >= last for v, _ in s.updates[-3:]) for s in subscribers
            )
        ):
            await asyncio.sleep(0.02)
        recorder = self.ctx.recorder("delivery")
        for subscriber in subscribers:
            found = count_deliveries(subscriber.synced.result(), subscriber.updates, sent)
            self.tally.expected += found.expected
            self.tally.missing += found.expected - len(found.delivered)
            self.tally.duplicates += found.duplicates
            for sent_ns, arrival in found.delivered:
                recorder.record(sent_ns, arrival - sent_ns)


async def run_sustained(options: SustainedOptions, ctx: RunContext) -> SustainedResult:
    """Run the soak against ``ctx.target`` and return its result."""
    width, warmup = effective(options.duration, options.window, options.warmup)
    tally = _Tally()
    failures: Counter[str] = Counter()
    stop = asyncio.Event()
    switch = ctx.recorder("switch")
    began = time.perf_counter()

    def text() -> str:
        window = ctx.measurement
        rss = ""
        if window is not None and window.samples and window.samples[-1].server_rss_kb:
            rss = f"  server RSS {window.samples[-1].server_rss_kb / 1024:,.1f} MiB"
        errors = len(switch.error_starts)
        return f"{switch.ok:>9,} switches, {errors:,} failed, {tally.completed:,} sessions{rss}"

    users = [_User(options, ctx, tally, failures) for _ in range(options.users)]
    async with (
        progress.live(
            ctx.console, "soak", options.duration, lambda: time.perf_counter() - began, text
        ),
        ctx.measure(),
    ):
        tasks = [
            asyncio.create_task(user.run(i * options.interval / options.users, stop))
            for i, user in enumerate(users)
        ]
        try:
            await asyncio.sleep(options.duration)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    common = ctx.common("sustained", "switch", window_s=width)
    result_drift = drift(common["timeline"], warmup, width, options.duration)
    warnings: list[str] = common.pop("warnings")
    if tally.missing:
        ctx.warn(f"{tally.missing} deliveries missing", warnings)
    if result_drift.windows < 2:
        ctx.warn("fewer than two full windows after the warm-up: no drift figures", warnings)
    checks = {"no_missing_delivery": tally.missing == 0}
    common["checks"] = checks
    return SustainedResult(
        **common,
        warnings=warnings,
        users=options.users,
        switches_per_session=options.switches,
        interval_s=options.interval,
        subscribers_per_session=options.subscribers,
        window_s=width,
        warmup_s=warmup,
        sessions_completed=tally.completed,
        expected_deliveries=tally.expected,
        missing_deliveries=tally.missing,
        duplicate_deliveries=tally.duplicates,
        subscribe_failures=dict(failures),
        drift=result_drift,
    )


SCENARIO = Scenario(
    name="sustained",
    help="soak (default 30 min) with session churn: RSS growth and p99 drift per window",
    options_type=SustainedOptions,
    run=run_sustained,
    description=__doc__ or "",
    sockets=lambda o: o.users * (1 + o.subscribers),
)
