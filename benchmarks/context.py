"""What a scenario's ``run()`` receives: the target server and the shared instruments.

A :class:`RunContext` is made by the runner for every run. The scenario:

1. takes its recorders with :meth:`RunContext.recorder` (one per operation
   kind; the runner keeps them for ``--plot``),
2. opens its measured window with ``async with ctx.measure() as window:``
   around the load (setup and cleanup stay outside),
3. builds its result with ``**ctx.common(...)`` for the shared fields of
   :class:`~benchmarks.result.ScenarioResult` plus its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from benchmarks.httpclient import BaseUrl
from benchmarks.monitor import Measurement
from benchmarks.stats import LatencyRecorder

__all__ = ["RunContext", "Target", "default_window_s"]

#: Most timeline windows a result carries by default.
MAX_TIMELINE_WINDOWS = 120


def default_window_s(duration_s: float) -> float:
    """Timeline window width for a measured window of ``duration_s``: 1 s, or wider
    so that there are at most :data:`MAX_TIMELINE_WINDOWS` windows."""
    return max(1.0, round(duration_s / MAX_TIMELINE_WINDOWS))


@dataclass(frozen=True, slots=True)
class Target:
    """A server to measure: one node or several sharing one state store."""

    label: str
    """``"A"``, or ``"B"`` for the ``--compare`` server."""
    bases: tuple[BaseUrl, ...]
    server_pids: tuple[int, ...] = ()
    """Root pids of the nodes' process trees, for CPU and RSS; empty when unknown."""

    @property
    def base(self) -> BaseUrl:
        """The first node's base URL.

        Raises:
            RuntimeError: the target has no node (a scenario that starts its own servers).
        """
        if not self.bases:
            raise RuntimeError("this scenario starts its own servers: the target has no URL")
        return self.bases[0]

    @property
    def server_pid(self) -> int | None:
        """The first node's root pid, if known."""
        return self.server_pids[0] if self.server_pids else None


class RunContext:
    """One run of one scenario against one target."""

    def __init__(self, console: Console, target: Target) -> None:
        self.console = console
        """Progress and warnings go here (stderr)."""
        self.target = target
        self.recorders: dict[str, LatencyRecorder] = {}
        """Recorders by operation, in creation order."""
        self.measurement: Measurement | None = None
        """The measured window, once opened."""

    @property
    def base(self) -> BaseUrl:
        """Base URL of the (first) server."""
        return self.target.base

    def recorder(self, name: str) -> LatencyRecorder:
        """Return the recorder of operation ``name``, created on first use."""
        recorder = self.recorders.get(name)
        if recorder is None:
            recorder = self.recorders[name] = LatencyRecorder(name)
        return recorder

    def measure(
        self, *, period_s: float = 1.0, gauges: Callable[[], dict[str, float]] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Measurement]:
        """Open the measured window (see :class:`~benchmarks.monitor.Measurement`)."""
        return self._measure(period_s, gauges)

    @contextlib.asynccontextmanager
    async def _measure(
        self, period_s: float, gauges: Callable[[], dict[str, float]] | None
    ) -> AsyncIterator[Measurement]:
        async with Measurement.open(
            self.target.server_pids, period_s=period_s, gauges=gauges
        ) as measurement:
            self.measurement = measurement
            yield measurement

    def common(
        self,
        scenario: str,
        main_op: str | None,
        *,
        window_s: float | None = None,
        walls: Mapping[str, float] | None = None,
        checks: Mapping[str, bool] | None = None,
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        """Return the shared fields of a :class:`~benchmarks.result.ScenarioResult`.

        Call after the measured window closed.

        Args:
            main_op: the recorder behind the headline throughput and the timeline.
            window_s: timeline window width (default :func:`default_window_s`).
            walls: seconds over which each recorder's throughput is computed
                (default: the whole measured window), for phased scenarios.
            checks, warnings: the scenario's own.
        """
        window = self.measurement
        wall_s = window.wall_s if window is not None else 0.0
        lengths = walls or {}
        ops = {
            name: recorder.stats(lengths.get(name, wall_s))
            for name, recorder in self.recorders.items()
        }
        main = ops.get(main_op) if main_op is not None else None
        timeline = []
        if window is not None:
            width = window_s or default_window_s(wall_s)
            timeline = window.timeline(self.recorders.get(main_op or ""), width)
        return {
            "scenario": scenario,
            "url": str(self.target.base) if self.target.bases else "",
            "duration_s": round(wall_s, 3),
            "throughput_rps": None if main is None else main.throughput_rps,
            "main_op": main_op,
            "ops": ops,
            "cpu": None if window is None else window.cpu,
            "timeline": timeline,
            "checks": dict(checks or {}),
            "warnings": list(warnings or []),
        }

    def warn(self, message: str, warnings: list[str] | None = None) -> None:
        """Print ``message`` as a warning and append it to ``warnings`` if given."""
        self.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
        if warnings is not None:
            warnings.append(message)
