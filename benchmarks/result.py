"""The typed results every scenario returns, and the report document around them.

Every scenario's result is a subclass of :class:`ScenarioResult` (a msgspec
Struct, so it encodes to JSON as is): the fields shared by all scenarios come
first (what was measured, per-operation stats, CPU, timeline, checks,
warnings), the scenario's own fields follow. Generic code (the report, the
median of runs, ``--compare`` ratios, plots) only reads the shared fields and
the numeric leaves of the rest.

:class:`Report` is the document written to ``<stem>.json`` and printed on
stdout: every run of every target, the per-target medians and, with
``--compare``, the B/A ratios.
"""

from __future__ import annotations

import msgspec

from benchmarks.stats import OpStats

__all__ = [
    "HARNESS_BOUND_PERCENT",
    "CpuReport",
    "Ratio",
    "Report",
    "ScenarioResult",
    "TargetReport",
    "TimelineWindow",
]

#: Harness CPU (percent of one core) above which the harness may be the bottleneck.
HARNESS_BOUND_PERCENT = 85.0


class CpuReport(msgspec.Struct, frozen=True, kw_only=True):
    """CPU use over a scenario's measured window, in percent of one core.

    On the 2-core machine 200 means both cores fully busy.
    """

    wall_s: float
    """Length of the window, seconds."""
    server_percent: float | None
    """The server's process tree (with ``synckairos dev``: also its Redis,
    PostgreSQL and audit worker). None without a known server pid."""
    harness_percent: float
    """This harness process (``getrusage(RUSAGE_SELF)``: user + system)."""
    host_percent: float | None = None
    """Every process of the machine (``/proc/stat``)."""
    others_percent: float | None = None
    """``host - server - harness``: neighbours competing for the cores."""
    harness_bound: bool = False
    """The harness used more than :data:`HARNESS_BOUND_PERCENT` of its one core
    while the server was below that (or unknown): the harness, not the server,
    may be the bottleneck, and the figures understate the server."""


class TimelineWindow(msgspec.Struct, frozen=True, kw_only=True):
    """One window of a measured run: the main operation plus server gauges."""

    t_s: float
    """Start of the window, seconds after the measured window opened."""
    ok: int
    errors: int
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    server_rss_mb: float | None = None
    """Median server RSS sampled in the window (server processes only: no Redis)."""
    server_cpu_percent: float | None = None
    harness_cpu_percent: float | None = None
    gauges: dict[str, float] = {}
    """Scenario gauges at the end of the window (e.g. ``sockets_open``)."""


class ScenarioResult(msgspec.Struct, kw_only=True):
    """Fields common to every scenario's result; subclasses add their own after them."""

    scenario: str
    url: str
    """Base URL of the server measured (the first node's with several)."""
    duration_s: float
    """Length of the measured window."""
    throughput_rps: float | None
    """Headline throughput: successful operations of the main kind per second
    (see the scenario's ``main_op``); None when the scenario has no rate."""
    main_op: str | None
    """Key of ``ops`` that the headline, the timeline and ``--compare`` use."""
    ops: dict[str, OpStats]
    """Per operation kind (``create``, ``switch``, ``delivery``...)."""
    cpu: CpuReport | None
    timeline: list[TimelineWindow] = []
    checks: dict[str, bool] = {}
    """Correctness checks (``no_lost_update``...); any False makes the exit status 3."""
    warnings: list[str] = []


class Ratio(msgspec.Struct, frozen=True):
    """One figure of a ``--compare`` run: medians of A and B and ``b / a``."""

    a: float | None
    b: float | None
    ratio: float | None
    """``b / a``; None when either is unknown or ``a`` is 0. For throughput
    above 1 means B is faster, for latency below 1 means B is faster."""


class TargetReport(msgspec.Struct):
    """All runs against one server and their per-figure medians."""

    url: str
    runs: list[ScenarioResult]
    median: dict[str, float]
    """Median over the runs of every numeric figure, keyed by its dotted path
    in the result (``ops.switch.latency_ms.p99``)."""


class Report(msgspec.Struct):
    """The JSON document of one harness invocation."""

    scenario: str
    created_at: str
    """UTC, ISO 8601."""
    command: list[str]
    options: dict[str, object]
    """The scenario's options as used (defaults filled in)."""
    harness: dict[str, object]
    """Where it ran: harness version, Python, CPU count, hostname."""
    targets: dict[str, TargetReport]
    """``"A"``, and ``"B"`` with ``--compare``."""
    comparison: dict[str, Ratio] | None
    checks: dict[str, bool]
    """Every check, False if it failed in any run."""
    warnings: list[str]
