"""The measured window of a scenario: CPU of server, harness and host, server RSS over time.

``async with Measurement.open(server_pids) as window:`` takes a CPU sample when
the window opens, samples the server's RSS and CPU every ``period_s`` in a
background task while the body runs, and a last sample when it closes. Then:

- :attr:`Measurement.cpu`: the :class:`~benchmarks.result.CpuReport` of the
  whole window (with the harness-bottleneck verdict);
- :meth:`Measurement.timeline`: a recorder cut into windows, joined with the
  RSS / CPU samples of each window and scenario gauges;
- :meth:`Measurement.rss_mb_series`: ``(t_s, MiB)`` of every RSS sample.

The harness's CPU is ``getrusage(RUSAGE_SELF)`` (user + system) of this
process. Server processes for RSS are :func:`procstat.server_pids` of each root
(no Redis, PostgreSQL or audit worker), re-read every
:data:`PID_REFRESH_S` so workers that restart are followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from benchmarks import procstat
from benchmarks.result import HARNESS_BOUND_PERCENT, CpuReport, TimelineWindow
from benchmarks.stats import LatencyRecorder, window_series

__all__ = ["Measurement", "MonitorSample", "cpu_report", "harness_cpu_seconds"]

#: Seconds between two lookups of the server's pids.
PID_REFRESH_S = 10.0


def harness_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class MonitorSample:
    """What the monitor read at one instant."""

    wall_ns: int
    """:func:`time.perf_counter_ns`."""
    harness_cpu_s: float
    server_cpu_s: float | None
    host_cpu_s: float | None
    server_rss_kb: int | None
    gauges: dict[str, float]


def cpu_report(first: MonitorSample, last: MonitorSample) -> CpuReport:
    """Return CPU use between two samples, with the harness-bottleneck verdict."""
    wall_s = (last.wall_ns - first.wall_ns) / 1e9

    def percent(a: float | None, b: float | None) -> float | None:
        if a is None or b is None or wall_s <= 0:
            return None
        return round((b - a) / wall_s * 100, 1)

    server = percent(first.server_cpu_s, last.server_cpu_s)
    harness = percent(first.harness_cpu_s, last.harness_cpu_s) or 0.0
    host = percent(first.host_cpu_s, last.host_cpu_s)
    others = None
    if host is not None and server is not None:
        others = round(max(0.0, host - server - harness), 1)
    bound = harness > HARNESS_BOUND_PERCENT and (server is None or server < HARNESS_BOUND_PERCENT)
    return CpuReport(
        wall_s=round(wall_s, 3),
        server_percent=server,
        harness_percent=harness,
        host_percent=host,
        others_percent=others,
        harness_bound=bound,
    )


class Measurement:
    """A measured window; open it with :meth:`open`."""

    def __init__(
        self,
        server_roots: Sequence[int],
        period_s: float,
        gauges: Callable[[], dict[str, float]] | None,
    ) -> None:
        self.server_roots = tuple(server_roots)
        self.period_s = period_s
        self._gauges = gauges
        self.samples: list[MonitorSample] = []
        """Every sample, the first taken when the window opened, the last when it closed."""
        self._pids: list[int] = []
        self._pids_at = -PID_REFRESH_S
        self.closed = False

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        server_roots: Sequence[int],
        *,
        period_s: float = 1.0,
        gauges: Callable[[], dict[str, float]] | None = None,
    ) -> AsyncIterator[Measurement]:
        """Measure the body of the ``async with`` block.

        Args:
            server_roots: root pids of the server trees (empty: server unknown).
            period_s: seconds between background samples.
            gauges: called at every sample for scenario gauges (e.g. sockets open).
        """
        measurement = cls(server_roots, period_s, gauges)
        measurement.samples.append(measurement.sample())
        task = asyncio.create_task(measurement._run())
        try:
            yield measurement
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            measurement.samples.append(measurement.sample())
            measurement.closed = True

    def sample(self) -> MonitorSample:
        """Read every clock and gauge now."""
        roots = self.server_roots
        server_cpu: float | None = None
        rss: int | None = None
        if roots:
            trees = [procstat.tree_cpu_seconds(root) for root in roots]
            if None not in trees:
                server_cpu = sum(t for t in trees if t is not None)
            now = time.monotonic()
            if now - self._pids_at >= PID_REFRESH_S or not self._pids:
                self._pids = [pid for root in roots for pid in procstat.server_pids(root)]
                self._pids_at = now
            rss = procstat.total_rss_kb(self._pids) if self._pids else None
        return MonitorSample(
            wall_ns=time.perf_counter_ns(),
            harness_cpu_s=harness_cpu_seconds(),
            server_cpu_s=server_cpu,
            host_cpu_s=procstat.host_cpu_seconds(),
            server_rss_kb=rss,
            gauges=self._gauges() if self._gauges is not None else {},
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            self.samples.append(self.sample())

    @property
    def origin_ns(self) -> int:
        """perf_counter_ns when the window opened."""
        return self.samples[0].wall_ns

    @property
    def end_ns(self) -> int:
        """perf_counter_ns when the window closed (now while it is open)."""
        return self.samples[-1].wall_ns if self.closed else time.perf_counter_ns()

    @property
    def wall_s(self) -> float:
        """Length of the window so far, seconds."""
        return (self.end_ns - self.origin_ns) / 1e9

    @property
    def cpu(self) -> CpuReport:
        """CPU use over the whole window (call after it closed)."""
        return cpu_report(self.samples[0], self.samples[-1])

    def rss_mb_series(self) -> list[tuple[float, float]]:
        """``(seconds after the origin, server RSS MiB)`` of every sample with an RSS."""
        origin = self.origin_ns
        return [
            (round((s.wall_ns - origin) / 1e9, 3), round(s.server_rss_kb / 1024, 1))
            for s in self.samples
            if s.server_rss_kb is not None
        ]

    def timeline(self, recorder: LatencyRecorder | None, width_s: float) -> list[TimelineWindow]:
        """Cut the window into ``width_s`` windows: ops of ``recorder`` plus server gauges.

        Without a recorder the op fields are zero / None. Each window's
        ``server_rss_mb`` is the median of its RSS samples, its CPU figures
        span from the last sample at or before its start to the last one at or
        before its end, and ``gauges`` are those of its last sample.
        """
        origin, end = self.origin_ns, self.end_ns
        width_ns = round(width_s * 1e9)
        if recorder is not None:
            series = window_series(recorder, origin, end, width_s)
        else:
            empty = LatencyRecorder("")
            series = window_series(empty, origin, end, width_s)
        windows = []
        for i, stats in enumerate(series):
            low, high = origin + i * width_ns, origin + (i + 1) * width_ns
            inside = [s for s in self.samples if low <= s.wall_ns < high]
            rss = [s.server_rss_kb for s in inside if s.server_rss_kb is not None]
            before = [s for s in self.samples if s.wall_ns <= low] or self.samples[:1]
            upto = [s for s in self.samples if s.wall_ns <= high] or self.samples[:1]
            first, last = before[-1], upto[-1]
            cpu = cpu_report(first, last) if last.wall_ns > first.wall_ns else None
            windows.append(
                TimelineWindow(
                    t_s=stats.t_s,
                    ok=stats.ok,
                    errors=stats.errors,
                    throughput_rps=stats.throughput_rps,
                    p50_ms=stats.p50_ms,
                    p99_ms=stats.p99_ms,
                    server_rss_mb=round(statistics.median(rss) / 1024, 1) if rss else None,
                    server_cpu_percent=None if cpu is None else cpu.server_percent,
                    harness_cpu_percent=None if cpu is None else cpu.harness_percent,
                    gauges=inside[-1].gauges if inside else {},
                )
            )
        return windows
