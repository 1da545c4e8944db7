"""Scenario "deadlines": do server-side timers expire on time, once, for everyone?

1. Subscribe: open one WebSocket subscriber per (not yet existing) session,
   ``concurrency`` handshakes at a time, subscriber i on node ``i mod nodes``,
   and wait for each one's ``CONNECTED``. Sockets the server closes with 1013
   within :data:`OPEN_SETTLE_S` are opened again (:data:`REOPEN_ROUNDS`); any
   other failure stops the run.
2. Setup: T0 = now + ``lead_s``. Session i (one participant,
   ``per_participant``) gets the budget that puts its deadline at
   ``T0 + i * window_s / sessions``: budget = target - the wall clock just
   before its ``POST /v1/sessions``; it is started at once
   (``POST /v1/sessions/{id}/start``) and the ``deadline_ms`` of the start
   response is recorded (authoritative). Session i is created and started
   through node ``(i // nodes) mod nodes``, so every (creating node, subscriber
   node) pair occurs. :data:`SETUP_CONNECTIONS` workers take the sessions in
   deadline order.
3. Receive: sleep until T0, then record, for each session, the wall-clock
   arrival (:func:`time.time_ns`, read when the bytes carrying the frame were
   handed over) and the ``ts`` of the first ``STATE_UPDATE`` whose event is
   ``session_expired``; any later timeout event of that session is a
   duplicate. Ends when every session fired (plus :data:`DUPLICATE_GRACE_S`
   to catch doubles) or :data:`DRAIN_S` after T0 + ``window_s``.
4. Cleanup (always): close the sockets, then delete the sessions.

The server and this harness share the machine, hence the wall clock, so
``arrival - deadline_ms`` is the lag a client sees and ``ts - deadline_ms`` is
the server's own firing lag (``ts`` is its commit time, in whole ms). CPU is
measured from T0 to the last arrival.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from benchmarks.context import RunContext
from benchmarks.httpclient import BaseUrl, HttpConnection
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import (
    JSON,
    SETUP_CONNECTIONS,
    SetupError,
    delete_sessions,
    expect,
    for_each,
)
from benchmarks.stats import percentile
from benchmarks.wsclient import (
    Subscriber,
    close_subscribers,
    open_subscribers,
    ws_url,
)

__all__ = [
    "DRAIN_S",
    "SCENARIO",
    "DeadlinesOptions",
    "DeadlinesResult",
    "ExpirySubscriber",
    "default_lead_s",
    "run_deadlines",
    "write_samples",
]

#: Smallest and largest budget the server accepts, ms.
MIN_BUDGET_MS = 1_000
MAX_BUDGET_MS = 86_400_000

#: Seconds to wait after the end of the window for late expiries.
DRAIN_S = 10.0

#: Seconds to keep listening for duplicate expiries once every session fired.
DUPLICATE_GRACE_S = 1.0

#: Seconds between refreshes of the progress line.
POLL_S = 0.2

#: Seconds to wait after the last socket opened before checking that all are
#: still open: the server subscribes and reads the (missing) session only
#: after sending CONNECTED, and closes the socket with 1013 if that fails.
#: Long enough to cover a garbage-collection pause of the server (about 1 s
#: with 10,000 sockets on the reference machine).
OPEN_SETTLE_S = 2.0

#: Rounds of reopening sockets the server closed with 1013 ("try again") right
#: after CONNECTED, as a client is told to do; after that, setup fails.
REOPEN_ROUNDS = 3

#: Default handshakes in flight while opening. After CONNECTED the server uses
#: a Redis connection per socket, and its redis-py pool (100 connections,
#: non-blocking) fails the excess with "Too many connections" (close 1013).
#: Client concurrency does not bound that work (it continues after CONNECTED),
#: but a lower one makes it rarer; the rest are reopened.
DEFAULT_CONCURRENCY = 50

#: Default lead: this many seconds between the estimated end of setup and T0...
LEAD_MARGIN_S = 3.0

#: ...with setup estimated at this many sessions (create + start) per second,
#: below what a 2-core machine does with the subscribers attached (10,000 in
#: 5.5 s without the audit worker, 8-11 s with it), so that the estimate errs
#: on the long side. Extra nodes on the same machine do not make setup faster,
#: so it does not scale with them.
SETUP_RATE_ESTIMATE = 700.0

#: ``others_cpu_percent`` above which a warning says the machine was not quiet.
BUSY_NEIGHBOURS_PERCENT = 10.0

#: Events that end a turn on a timeout; after the first ``session_expired`` of a
#: session, any of them is a duplicate.
TIMEOUT_EVENTS = frozenset({"session_expired", "participant_timeout"})

#: Events every subscriber receives during setup (not reported).
SETUP_EVENTS = frozenset({"session_created", "session_started"})


def default_lead_s(sessions: int) -> float:
    """Return the default lead: estimated setup time plus :data:`LEAD_MARGIN_S`."""
    return round(LEAD_MARGIN_S + sessions / SETUP_RATE_ESTIMATE, 1)


@dataclass(frozen=True, slots=True)
class DeadlinesOptions:
    """Options of ``deadlines``."""

    sessions: int = option(1000, "sessions, one timer and one subscriber each", low=1)
    window_s: float = option(
        10.0, "seconds over which the deadlines are spread uniformly (0: all at once)", low=0
    )
    lead_s: float | None = option(
        None,
        f"seconds from the start of setup to the first deadline (default: {LEAD_MARGIN_S:g} "
        f"+ sessions / {SETUP_RATE_ESTIMATE:g})",
        low=1,
    )
    nodes: int | None = option(
        None,
        "server nodes on one Redis: private ones started, or the number of --url "
        "(default: 1, or the number of --url)",
        low=1,
        high=16,
    )
    concurrency: int = option(DEFAULT_CONCURRENCY, "sockets opened at a time", low=1)
    samples: Path | None = option(  # noqa: RUF009 (a dataclass field, not a call per instance)
        None, "also write one CSV line per session: deadline, arrival, server ts", metavar="CSV"
    )


def _validate(options: DeadlinesOptions) -> str | None:
    lead_s = default_lead_s(options.sessions) if options.lead_s is None else options.lead_s
    if (lead_s + options.window_s) * 1000 > MAX_BUDGET_MS:
        return (
            f"--lead-s ({lead_s:g}) + --window-s must not exceed {MAX_BUDGET_MS // 1000} s "
            "(the longest budget the server accepts)"
        )
    return None


@dataclass(frozen=True, slots=True)
class _Config:
    """Parameters of one run: the options and the target's nodes."""

    bases: tuple[BaseUrl, ...]
    """One base URL per node; subscribers and sessions are spread over them."""
    sessions: int = 1000
    window_s: float = 10.0
    lead_s: float | None = None
    """Seconds from the start of setup to the first deadline; None: :func:`default_lead_s`."""
    concurrency: int = DEFAULT_CONCURRENCY
    """Sockets opened at a time."""
    server_pids: tuple[int, ...] = ()
    """Roots of the servers' process trees for CPU accounting (summed), if known."""
    samples_path: Path | None = None
    """Where to write one CSV line per session (see :func:`write_samples`)."""

    @property
    def nodes(self) -> int:
        """Number of server nodes."""
        return len(self.bases)

    @property
    def effective_lead_s(self) -> float:
        """``lead_s``, or the default for this many sessions and nodes."""
        if self.lead_s is not None:
            return self.lead_s
        return default_lead_s(self.sessions)


class DeadlinesResult(ScenarioResult, kw_only=True):
    """Result of ``deadlines``: ``ops.expiry`` is the lag seen by subscribers
    (arrival - ``deadline_ms``), ``ops.server_expiry`` the server's commit lag."""

    sessions: int
    window_s: float
    nodes: int
    urls: list[str]
    lead_s: float
    setup_s: float
    first_deadline_after_setup_s: float
    expected: int
    fired: int
    missed: int
    duplicates: int
    other_events: dict[str, int]
    other_messages: dict[str, int]
    sockets_reopened: dict[str, int]
    sockets_closed_early: dict[str, int]


class _Event(msgspec.Struct, gc=False):
    type: str = ""


class _Update(msgspec.Struct, gc=False):
    """The fields of a server message this scenario reads; ``state`` is skipped."""

    type: str = ""
    event: _Event | None = None
    ts: int | None = None


_decode_update = msgspec.json.Decoder(_Update).decode


class ExpirySubscriber(Subscriber):
    """A subscriber to a session that does not exist yet, waiting for its expiry.

    Ready on ``CONNECTED``. Arrival times are wall-clock ns
    (:func:`time.time_ns`), comparable with the server's epoch-ms deadlines.
    """

    clock = staticmethod(time.time_ns)
    ready_message = "CONNECTED"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expired_ns: int | None = None
        """Wall-clock arrival of the first ``session_expired``, ns."""
        self.expired_ts: int | None = None
        """Its ``ts``: the server's commit time, epoch ms."""
        self.duplicates = 0
        """Timeout events received after the first ``session_expired``."""
        self.events: Counter[str] = Counter()
        """Other STATE_UPDATE events (not created, started or a timeout), by type."""
        self.fired_log: list[int] = []
        """Where the tag is appended on expiry (shared by all subscribers of a run)."""

    def handle_message(self, data: bytes | bytearray | memoryview) -> None:
        try:
            message = _decode_update(data)
        except msgspec.DecodeError:
            self.other["<undecodable>"] += 1
            return
        kind = message.type
        if kind == "STATE_UPDATE":
            event = "" if message.event is None else message.event.type
            if event == "session_expired" and self.expired_ns is None:
                self.expired_ns = self.arrival_ns
                self.expired_ts = message.ts
                self.fired_log.append(self.tag)
            elif event in TIMEOUT_EVENTS and self.expired_ns is not None:
                self.duplicates += 1
            elif event not in SETUP_EVENTS:
                self.events[event or "<no event>"] += 1
        elif kind == "CONNECTED":
            if not self.synced.done():
                self.synced.set_result(0)
        else:
            self.other[kind] += 1
            if kind == "ERROR" and not self.synced.done():
                detail = bytes(data[:300]).decode(errors="replace")
                self.synced.set_exception(ConnectionError(f"server sent {detail}"))


class _StartData(msgspec.Struct):
    deadline_ms: int | None = None


class _StartEnvelope(msgspec.Struct):
    data: _StartData


_decode_start = msgspec.json.Decoder(_StartEnvelope).decode


def _now_ms() -> float:
    return time.time_ns() / 1e6


@dataclass(slots=True)
class _Run:
    """What a run produced, for the summary."""

    subscribers: list[ExpirySubscriber] = field(default_factory=list)
    """By tag (session index)."""
    deadlines_ms: list[int] = field(default_factory=list)
    """By session index, from the start responses."""
    lead_s: float = 0.0
    setup_s: float = 0.0
    first_deadline_after_setup_s: float = 0.0
    reopened: Counter[str] = field(default_factory=Counter)
    """Sockets closed right after CONNECTED and opened again, by close cause."""
    closed_early: dict[int, str] = field(default_factory=dict)
    """Close cause of the sockets no longer open at the end of the window, by tag."""


async def run_deadlines(options: DeadlinesOptions, ctx: RunContext) -> DeadlinesResult:
    """Run the scenario against the nodes of ``ctx.target`` and return its result.

    Raises:
        SetupError: a session could not be created or started, the lead was too
            short for the setup, or ``--nodes`` does not match the ``--url`` given.
        OSError, HttpError: a server could not be reached during setup.
        ConnectionClosed, InvalidHandshake, TimeoutError: a socket could not be opened.
    """
    bases = ctx.target.bases
    if options.nodes is not None and options.nodes != len(bases):
        raise SetupError(f"--nodes {options.nodes} does not match the {len(bases)} --url given")
    config = _Config(
        bases=bases,
        sessions=options.sessions,
        window_s=options.window_s,
        lead_s=options.lead_s,
        concurrency=options.concurrency,
        server_pids=ctx.target.server_pids,
        samples_path=options.samples,
    )
    console = ctx.console
    lead_s = config.effective_lead_s
    if lead_s * 1000 < MIN_BUDGET_MS or (lead_s + config.window_s) * 1000 > MAX_BUDGET_MS:
        raise SetupError(
            f"lead + window must stay within the budgets the server accepts "
            f"({MIN_BUDGET_MS}-{MAX_BUDGET_MS} ms)"
        )
    session_ids = [str(uuid.uuid4()) for _ in range(config.sessions)]
    created: list[str] = []
    opened: list[Subscriber] = []
    warnings: list[str] = []
    run = _Run(lead_s=lead_s)
    try:
        targets = [
            (i, ws_url(config.bases[i % config.nodes], session_id))
            for i, session_id in enumerate(session_ids)
        ]
        run.subscribers = await _subscribe(config, targets, opened, run.reopened, console)
        setup_start = _now_ms()
        t0_ms = setup_start + lead_s * 1000
        run.deadlines_ms = await _create(config, session_ids, created, t0_ms, console)
        setup_end = _now_ms()
        run.setup_s = round((setup_end - setup_start) / 1000, 3)
        first = min(run.deadlines_ms)
        run.first_deadline_after_setup_s = round((first - setup_end) / 1000, 3)
        if first < setup_end:
            ctx.warn(
                f"setup took {run.setup_s} s and overran the first deadlines by "
                f"{-run.first_deadline_after_setup_s} s: its load falls inside the window; "
                "raise --lead-s",
                warnings,
            )
        await _receive(config, ctx, run, t0_ms)
        run.closed_early = {
            subscriber.tag: _close_cause(subscriber)
            for subscriber in run.subscribers
            if not subscriber.is_open
        }
    finally:
        await close_subscribers(opened, concurrency=config.concurrency, console=console)
        await delete_sessions(config.bases[0], created, console)
    if config.samples_path is not None:
        write_samples(config.samples_path, run)
    return _summarize(config, ctx, run, warnings)


async def _subscribe(
    config: _Config,
    targets: Sequence[tuple[int, str]],
    opened: list[Subscriber],
    reopened: Counter[str],
    console: Console,
) -> list[ExpirySubscriber]:
    """Open a subscriber per target; return them by tag, all open.

    Every socket opened is appended to ``opened`` (for the caller to close).
    After each round, waits OPEN_SETTLE_S; sockets the server closed with 1013
    meanwhile are counted in ``reopened`` and opened again, up to REOPEN_ROUNDS.

    Raises:
        SetupError: a socket closed otherwise, or still closed after the last round.
        ConnectionClosed, InvalidHandshake, TimeoutError, OSError: a handshake failed.
    """
    pending = list(targets)
    live: dict[int, ExpirySubscriber] = {}
    for attempt in range(REOPEN_ROUNDS + 1):
        batch: list[Subscriber] = []
        try:
            await open_subscribers(
                pending,
                batch,
                concurrency=config.concurrency,
                compression=False,
                console=console,
                stop_on_error=True,
                connection_class=ExpirySubscriber,
            )
        finally:
            opened.extend(batch)
        await asyncio.sleep(OPEN_SETTLE_S)
        closed: list[Subscriber] = []
        for subscriber in batch:
            if subscriber.is_open:
                live[subscriber.tag] = cast(ExpirySubscriber, subscriber)
            else:
                closed.append(subscriber)
        if not closed:
            break
        causes = Counter(_close_cause(subscriber) for subscriber in closed)
        retriable = all(cause.startswith("1013") for cause in causes)
        if not retriable or attempt == REOPEN_ROUNDS:
            raise SetupError(
                f"{len(closed)} sockets were closed by the server right after CONNECTED "
                f"({dict(causes)}); try a lower --concurrency (was {config.concurrency})"
            )
        reopened.update(causes)
        console.print(
            f"[yellow]warning:[/] the server closed {len(closed)} sockets right after "
            f"CONNECTED ({dict(causes)}); opening them again"
        )
        pending = [targets[subscriber.tag] for subscriber in closed]
    return [live[tag] for tag, _ in targets]


async def _create(
    config: _Config,
    session_ids: Sequence[str],
    created: list[str],
    t0_ms: float,
    console: Console,
) -> list[int]:
    """Create and start every session so its deadline lands at its slot; return the deadlines.

    Raises:
        SetupError: an answer other than 201 / 200, a start response without
            ``deadline_ms``, or a slot less than MIN_BUDGET_MS away (lead too short).
    """
    index = {session_id: i for i, session_id in enumerate(session_ids)}
    spacing_ms = config.window_s * 1000 / config.sessions
    nodes = config.nodes
    deadlines = [0] * len(session_ids)

    def route(session_id: str) -> BaseUrl:
        return config.bases[(index[session_id] // nodes) % nodes]

    async def create_and_start(connection: HttpConnection, session_id: str) -> None:
        i = index[session_id]
        budget = round(t0_ms + i * spacing_ms - _now_ms())
        if budget < MIN_BUDGET_MS:
            raise SetupError(
                f"setup fell behind: session {i} would need a budget of {budget} ms "
                f"(minimum {MIN_BUDGET_MS}); raise --lead-s (was {config.effective_lead_s} s)"
            )
        body = {
            "session_id": session_id,
            "sync_mode": "per_participant",
            "participants": [
                {
                    "participant_id": str(uuid.uuid4()),
                    "participant_index": 0,
                    "total_time_ms": budget,
                }
            ],
            "total_time_ms": budget,
            "increment_ms": 0,
        }
        response = await connection.request("POST", "/v1/sessions", msgspec.json.encode(body), JSON)
        expect(response, 201, "POST /v1/sessions")
        created.append(session_id)
        response = await connection.request("POST", f"/v1/sessions/{session_id}/start", b"")
        expect(response, 200, f"POST /v1/sessions/{session_id}/start")
        deadline = _decode_start(response.body).data.deadline_ms
        if deadline is None:
            raise SetupError(f"start of {session_id} answered no deadline_ms")
        deadlines[i] = deadline

    await for_each(config.bases[0], session_ids, create_and_start, console, "setup", route=route)
    return deadlines


@contextmanager
def _no_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector from pausing the harness inside the window.

    Everything allocated so far (sockets, sessions) is frozen out of future
    collections, and collection is off until the block ends.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def _receive(config: _Config, ctx: RunContext, run: _Run, t0_ms: float) -> None:
    """Wait for T0, then for every expiry; show fired/expected and the running p99."""
    subscribers = run.subscribers
    deadlines_ns = [deadline * 1_000_000 for deadline in run.deadlines_ms]
    fired_log: list[int] = []
    for subscriber in subscribers:
        subscriber.fired_log = fired_log
        if subscriber.expired_ns is not None:  # fired during setup (lead too short)
            fired_log.append(subscriber.tag)
    progress = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        console=ctx.console,
        auto_refresh=False,
    )
    lags: list[int] = []  # sorted, ns
    seen = 0

    def fold() -> str:
        nonlocal seen
        for tag in fired_log[seen:]:
            arrival = subscribers[tag].expired_ns
            assert arrival is not None
            bisect.insort(lags, arrival - deadlines_ns[tag])
        seen = len(fired_log)
        if not lags:
            return ""
        duplicates = sum(s.duplicates for s in subscribers)
        return (
            f"p99 {percentile(lags, 99) / 1e6:.2f} ms, max {lags[-1] / 1e6:.2f} ms, "
            f"{duplicates} dup"
        )

    end_ms = t0_ms + (config.window_s + DRAIN_S) * 1000
    with _no_gc(), progress:
        task = progress.add_task("", total=len(subscribers), stats="")
        while (wait_ms := t0_ms - _now_ms()) > 0:
            progress.update(task, description=f"first deadline in {wait_ms / 1000:.1f} s")
            progress.refresh()
            await asyncio.sleep(min(POLL_S, wait_ms / 1000))
        async with ctx.measure():
            progress.update(task, description="expiring")
            while len(fired_log) < len(subscribers) and _now_ms() < end_ms:
                await asyncio.sleep(POLL_S)
                progress.update(task, completed=len(fired_log), stats=fold())
                progress.refresh()
        if len(fired_log) == len(subscribers):
            progress.update(task, description="listening for duplicates")
            progress.refresh()
            await asyncio.sleep(DUPLICATE_GRACE_S)
        progress.update(task, description="done", completed=len(fired_log), stats=fold())
        progress.refresh()


def write_samples(path: Path, run: _Run) -> None:
    """Write ``session,deadline_ms,arrival_ms,ts_ms,duplicates,closed`` per session.

    ``arrival_ms`` is the wall-clock arrival of the first ``session_expired``
    (fractional ms) and ``ts_ms`` its ``ts``; both are empty for a missed session.
    ``closed`` is the close cause of a socket that closed before the end.
    """
    lines = ["session,deadline_ms,arrival_ms,ts_ms,duplicates,closed"]
    for subscriber in run.subscribers:
        arrival = "" if subscriber.expired_ns is None else f"{subscriber.expired_ns / 1e6:.3f}"
        ts = "" if subscriber.expired_ts is None else str(subscriber.expired_ts)
        closed = run.closed_early.get(subscriber.tag, "")
        lines.append(
            f"{subscriber.tag},{run.deadlines_ms[subscriber.tag]},{arrival},{ts},"
            f"{subscriber.duplicates},{closed}"
        )
    path.write_text("\n".join(lines) + "\n")


def _close_cause(subscriber: Subscriber) -> str:
    """Describe why a socket closed: ``"1013 send queue overflow"``, ``"abnormal"``..."""
    code = subscriber.close_code
    if code is None or code == 1006:
        return "abnormal (no close frame)"
    reason = subscriber.close_reason
    return f"{code} {reason}" if reason else str(code)


def _summarize(config: _Config, ctx: RunContext, run: _Run, warnings: list[str]) -> DeadlinesResult:
    # Lags are recorded with the deadline as start, moved to the perf_counter
    # clock of the measured window so that the timeline buckets by deadline.
    offset_ns = time.perf_counter_ns() - time.time_ns()
    expiry = ctx.recorder("expiry")
    server_expiry = ctx.recorder("server_expiry")
    duplicates = 0
    events: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for subscriber in run.subscribers:
        deadline_ns = run.deadlines_ms[subscriber.tag] * 1_000_000
        if subscriber.expired_ns is not None:
            expiry.record(deadline_ns + offset_ns, subscriber.expired_ns - deadline_ns)
            if subscriber.expired_ts is not None:
                lag = subscriber.expired_ts * 1_000_000 - deadline_ns
                server_expiry.record(deadline_ns + offset_ns, lag)
        duplicates += subscriber.duplicates
        events.update(subscriber.events)
        other.update(subscriber.other)
    expected = len(run.deadlines_ms)
    fired = expiry.ok
    if expected - fired:
        ctx.warn(f"{expected - fired} sessions never reported expiry", warnings)
    if duplicates:
        ctx.warn(f"{duplicates} duplicate timeout events", warnings)
    checks = {"no_missed_expiry": fired == expected, "no_duplicate_expiry": duplicates == 0}
    return DeadlinesResult(
        **ctx.common("deadlines", "expiry", checks=checks, warnings=warnings),
        sessions=config.sessions,
        window_s=config.window_s,
        nodes=config.nodes,
        urls=[str(base) for base in config.bases],
        lead_s=run.lead_s,
        setup_s=run.setup_s,
        first_deadline_after_setup_s=run.first_deadline_after_setup_s,
        expected=expected,
        fired=fired,
        missed=expected - fired,
        duplicates=duplicates,
        other_events=dict(events),
        other_messages=dict(other),
        sockets_reopened=dict(run.reopened),
        sockets_closed_early=dict(Counter(run.closed_early.values())),
    )


SCENARIO = Scenario(
    name="deadlines",
    help="server-side timer expiry: lateness, misses and duplicates seen by subscribers",
    options_type=DeadlinesOptions,
    run=run_deadlines,
    description=__doc__ or "",
    multi_node=True,
    nodes=lambda o: o.nodes or 1,
    sockets=lambda o: o.sessions + SETUP_CONNECTIONS * (o.nodes or 1),
    validate=_validate,
)
