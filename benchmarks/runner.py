"""Running a scenario: servers, repeated runs, A/B rounds, medians, report, plots.

:func:`execute` is the whole life of one ``python -m benchmarks <scenario>``:

1. Refuses early what cannot work (scenario unavailable, ``--url`` for a
   scenario that starts its own processes, matplotlib missing with ``--plot``),
   and raises the descriptor limit so a private stack inherits it.
2. Target A: the ``--url`` server(s), or a private ``synckairos dev`` stack
   (plus more nodes on its Redis when the scenario wants several), started
   once for all runs. Target B: the ``--compare`` server.
3. Runs: ``--runs`` times on A; with ``--compare``, ``--rounds`` rounds each
   running ``--runs`` times on A and on B, the order alternating (AB, BA,
   AB...) so that neither server always runs on a warmer machine. Each run
   gets a fresh event loop and :class:`~benchmarks.context.RunContext`;
   :data:`PAUSE_S` separates runs.
4. Each run's harness-bottleneck and busy-machine verdicts are added to its
   warnings; the median of every figure is taken per target, the B/A ratios
   of the headline figures computed, the checks merged.
5. The report goes to stdout (JSON), to ``<stem>.json`` / ``<stem>.md``, and
   with ``--plot`` the PNGs (from each target's last run).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown

from benchmarks import aggregate, plot, report
from benchmarks.context import RunContext, Target
from benchmarks.httpclient import BaseUrl, parse_base_url, run
from benchmarks.options import options_dict
from benchmarks.registry import Scenario, ScenarioUnavailable
from benchmarks.result import (
    HARNESS_BOUND_PERCENT,
    Report,
    ScenarioResult,
    TargetReport,
    TimelineWindow,
)
from benchmarks.stack import DevStack
from benchmarks.wsclient import check_fd_limit

__all__ = ["HarnessConfig", "Outcome", "execute", "schedule"]

#: Seconds between two runs, for the server to settle.
PAUSE_S = 1.0

#: Host CPU (percent of one core, all cores summed) above which a run is flagged
#: as taken on a saturated machine.
HOST_SATURATED_PERCENT = 100.0 * (os.cpu_count() or 1) * 0.95

#: Shortest measured window (seconds) whose CPU figures are trusted for warnings.
MIN_VERDICT_S = 1.0

#: Version of the report layout.
HARNESS_VERSION = "2"


@dataclass(frozen=True, slots=True)
class HarnessConfig:
    """The scenario-independent options (see ``python -m benchmarks --help``)."""

    urls: tuple[BaseUrl, ...] = ()
    server_pids: tuple[int, ...] = ()
    compare: BaseUrl | None = None
    compare_pids: tuple[int, ...] = ()
    runs: int = 1
    rounds: int = 3
    out: str | None = None
    save: bool = True
    json_path: Path | None = None
    plot: bool = False
    command: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv))


@dataclass(slots=True)
class Outcome:
    """What :func:`execute` produced."""

    report: Report
    files: list[Path]


def schedule(runs: int, rounds: int, compare: bool) -> list[str]:
    """Return the order of the runs as target labels.

    Without ``compare``: ``runs`` times ``"A"``. With it: ``rounds`` rounds of
    ``runs`` on each target, A first in even rounds and B first in odd ones.
    """
    if not compare:
        return ["A"] * runs
    order: list[str] = []
    for i in range(rounds):
        first, second = ("A", "B") if i % 2 == 0 else ("B", "A")
        order += [first] * runs + [second] * runs
    return order


def _run_warnings(result: ScenarioResult) -> list[str]:
    """Warnings about the harness and the machine for one run."""
    cpu = result.cpu
    if cpu is None:
        return []
    found = []
    if cpu.wall_s < MIN_VERDICT_S:
        return []
    if cpu.harness_bound:
        server = "unknown" if cpu.server_percent is None else f"{cpu.server_percent} %"
        found.append(
            f"the harness used {cpu.harness_percent} % of its core (server: {server}): "
            "the harness, not the server, is likely the bottleneck; the figures understate "
            "the server (use fewer connections or sockets per run)"
        )
    elif cpu.harness_percent > HARNESS_BOUND_PERCENT:
        found.append(
            f"the harness used {cpu.harness_percent} % of its core, close to saturation "
            "(the server was busy too)"
        )
    if cpu.host_percent is not None and cpu.host_percent > HOST_SATURATED_PERCENT:
        found.append(
            f"the machine was saturated ({cpu.host_percent} % over {os.cpu_count()} cores, "
            f"{cpu.others_percent} % used by other processes): latencies include CPU queueing"
        )
    return found


@contextlib.contextmanager
def _local_target(nodes: int, console: Console) -> Iterator[Target]:
    """Start a private stack (and ``nodes - 1`` more nodes on its Redis)."""
    console.print(f"starting a private synckairos dev stack{' and more nodes' * (nodes > 1)}...")
    with contextlib.ExitStack() as stacks:
        first = stacks.enter_context(DevStack.start())
        started = [first]
        if nodes > 1:
            redis_url = first.redis_url()
            for _ in range(nodes - 1):
                # Entered after the first: stopped before it (and its Redis).
                started.append(stacks.enter_context(DevStack.start_node(redis_url)))
        for i, stack in enumerate(started):
            console.print(f"node {i} at {stack.url} (pid {stack.pid})")
        yield Target(
            "A",
            tuple(parse_base_url(stack.url) for stack in started),
            tuple(stack.pid for stack in started),
        )


def _check(scenario: Scenario, options: Any, config: HarnessConfig) -> None:
    """Refuse what cannot work before anything starts."""
    missing = scenario.available()
    if missing is not None:
        raise ScenarioUnavailable(missing)
    if scenario.local_only and (config.urls or config.compare):
        raise ScenarioUnavailable(
            f"{scenario.name} starts and stops server processes itself: "
            "--url and --compare do not apply"
        )
    if config.plot:
        plot.require_matplotlib()


def execute(scenario: Scenario, options: Any, config: HarnessConfig, console: Console) -> Outcome:
    """Run ``scenario`` as ``config`` says and write its report (see the module doc).

    Raises:
        ScenarioUnavailable: the scenario cannot run here or with these options.
        PlotUnavailable: ``--plot`` without matplotlib.
        StackError, SetupError, OSError, HttpError...: a server could not be
            started or reached, or a run could not be set up.
    """
    _check(scenario, options, config)
    check_fd_limit(scenario.sockets(options))
    created = datetime.datetime.now(datetime.UTC)
    order = schedule(config.runs, config.rounds, config.compare is not None)
    results: dict[str, list[ScenarioResult]] = {"A": []}
    last: dict[str, tuple[RunContext, ScenarioResult]] = {}
    with contextlib.ExitStack() as stacks:
        if scenario.local_only:
            target_a = Target("A", ())  # the scenario starts its own servers
        elif config.urls:
            target_a = Target("A", config.urls, config.server_pids)
        else:
            target_a = stacks.enter_context(_local_target(scenario.nodes(options), console))
        targets = {"A": target_a}
        if config.compare is not None:
            targets["B"] = Target("B", (config.compare,), config.compare_pids)
            results["B"] = []
        for i, label in enumerate(order):
            target = targets[label]
            if len(order) > 1:
                if i:
                    time.sleep(PAUSE_S)
                where = target.base if target.bases else "own servers"
                console.rule(f"run {i + 1}/{len(order)}: target {label} ({where})")
            ctx = RunContext(console, target)
            result = run(scenario.run(options, ctx))
            for warning in _run_warnings(result):
                ctx.warn(warning, result.warnings)
            results[label].append(result)
            last[label] = (ctx, result)
    reports = {
        label: TargetReport(
            str(targets[label].base) if targets[label].bases else "",
            runs,
            aggregate.median_figures(runs),
        )
        for label, runs in results.items()
    }
    comparison = None
    if "B" in reports:
        keys = aggregate.headline_keys(results["A"] + results["B"])
        comparison = aggregate.ratios(reports["A"].median, reports["B"].median, keys)
    all_runs = [r for runs in results.values() for r in runs]
    warnings: list[str] = []
    for label, runs in results.items():
        for n, result in enumerate(runs):
            tag = f"{label}{n + 1}" if len(all_runs) > 1 else ""
            warnings += [f"{tag}: {w}" if tag else w for w in result.warnings]
    document = Report(
        scenario=scenario.name,
        created_at=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        command=list(config.command),
        options=options_dict(options),
        harness={
            "version": HARNESS_VERSION,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "host": platform.node(),
        },
        targets=reports,
        comparison=comparison,
        checks=aggregate.merge_checks(all_runs),
        warnings=warnings,
    )
    files = _emit(document, config, created, last, console)
    return Outcome(document, files)


def _emit(
    document: Report,
    config: HarnessConfig,
    created: datetime.datetime,
    last: dict[str, tuple[RunContext, ScenarioResult]],
    console: Console,
) -> list[Path]:
    """Print the report and write its files (and plots)."""
    text = report.encode_json(document)
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
    files: list[Path] = []
    if config.json_path is not None:
        config.json_path.parent.mkdir(parents=True, exist_ok=True)
        config.json_path.write_bytes(text)
        files.append(config.json_path)
    stem = report.output_stem(config.out, document.scenario, created)
    if config.save:
        files += report.write_report(document, stem)
    if config.plot:
        data = {
            label: plot.PlotData(result.url, ctx.recorders, _plot_timeline(ctx, result.main_op))
            for label, (ctx, result) in last.items()
        }
        files += plot.write_plots(stem, data)
    console.print(Markdown(report.render_markdown(document)))
    for path in files:
        console.print(f"wrote {path}")
    return files


def _plot_timeline(ctx: RunContext, main_op: str | None) -> list[TimelineWindow]:
    """A finer timeline than the result's for the chart: about 100 windows."""
    window = ctx.measurement
    if window is None:
        return []
    width = max(0.1, round(window.wall_s / 100, 1))
    return window.timeline(ctx.recorders.get(main_op or ""), width)
