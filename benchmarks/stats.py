"""Latency statistics over raw samples: exact, no histograms or sketches.

- :func:`percentile` / :func:`summarize_latencies`: nearest-rank percentiles of
  nanosecond samples, summarized in milliseconds (:class:`LatencySummary`).
- :class:`LatencyRecorder`: the shared recorder of one operation (``switch``,
  ``create``, ``delivery``...): start time and latency of every success, start
  time and kind of every failure, in compact arrays. Scenarios append to it in
  their hot loops; the report derives :class:`OpStats` and per-window series
  from it afterwards.
- :func:`window_series`: the recorder cut into fixed-width windows (throughput,
  p50, p99 per window), for timelines, drift and plots.
- :func:`drift_percent` / :func:`slope_percent_per_unit`: how much a series
  moved between its first and last point, and its least-squares trend.

Everything here is pure (no clock, no I/O) and unit-tested.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

__all__ = [
    "LatencyRecorder",
    "LatencySummary",
    "OpStats",
    "WindowStats",
    "drift_percent",
    "percentile",
    "slope_percent_per_unit",
    "summarize_latencies",
    "window_series",
]


class LatencySummary(msgspec.Struct, frozen=True):
    """Latency distribution in milliseconds, rounded to the microsecond."""

    p50: float
    p95: float
    p99: float
    max: float
    mean: float


class OpStats(msgspec.Struct, frozen=True):
    """Outcome of one kind of operation over a measured window."""

    count: int
    """Operations started in the window: ``ok`` + all ``errors``."""
    ok: int
    """Successful operations (2xx, or a delivered message)."""
    errors: dict[str, int]
    """Failures by HTTP status (``"409"``) or exception name (``"TimeoutError"``)."""
    throughput_rps: float | None
    """``ok`` per second of the window (None when the window has no length)."""
    latency_ms: LatencySummary | None
    """Latency of the successful operations; None when there were none."""


class WindowStats(msgspec.Struct, frozen=True):
    """One fixed-width window of a recorder (see :func:`window_series`)."""

    t_s: float
    """Start of the window, seconds after the origin."""
    ok: int
    errors: int
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None


def percentile(sorted_samples: Sequence[int] | Sequence[float], p: float) -> float:
    """Return the nearest-rank ``p``-th percentile (0 < p <= 100) of ascending samples.

    The result is always one of the samples: the smallest value such that at
    least ``p`` percent of the samples are less than or equal to it.

    Raises:
        ValueError: ``sorted_samples`` is empty or ``p`` is out of range.
    """
    if not sorted_samples or not 0 < p <= 100:
        raise ValueError("need samples and 0 < p <= 100")
    rank = math.ceil(p * len(sorted_samples) / 100)
    return sorted_samples[rank - 1]


def _ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def summarize_latencies(samples_ns: Iterable[int]) -> LatencySummary | None:
    """Summarize latencies given in nanoseconds; ``None`` when there are none."""
    ordered = sorted(samples_ns)
    if not ordered:
        return None
    return LatencySummary(
        p50=_ms(percentile(ordered, 50)),
        p95=_ms(percentile(ordered, 95)),
        p99=_ms(percentile(ordered, 99)),
        max=_ms(ordered[-1]),
        mean=_ms(sum(ordered) / len(ordered)),
    )


class LatencyRecorder:
    """Outcomes of one operation, appended from one event loop (no locks).

    Times are nanoseconds on one clock chosen by the caller (normally
    :func:`time.perf_counter_ns`); only differences are used. Call
    :meth:`record` for a success and :meth:`error` for a failure, with the
    time the operation started: windows bucket by start time, so an operation
    belongs to the window in which it was issued.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        """Operation name, the key in ``ops`` of a result (``"switch"``)."""
        self.starts = array("q")
        """Start time of every success, in recording order."""
        self.latencies = array("q")
        """Latency of every success, parallel to :attr:`starts`."""
        self.error_starts = array("q")
        """Start time of every failure."""
        self.errors: Counter[str] = Counter()
        """Failures by kind."""

    def record(self, start_ns: int, latency_ns: int) -> None:
        """Record a success that started at ``start_ns`` and took ``latency_ns``."""
        self.starts.append(start_ns)
        self.latencies.append(latency_ns)

    def error(self, kind: str, start_ns: int) -> None:
        """Record a failure of ``kind`` (status code or exception name)."""
        self.errors[kind] += 1
        self.error_starts.append(start_ns)

    @property
    def ok(self) -> int:
        """Successes recorded."""
        return len(self.latencies)

    @property
    def count(self) -> int:
        """Successes and failures recorded."""
        return len(self.latencies) + len(self.error_starts)

    def summary(self) -> LatencySummary | None:
        """Latency summary of every success (None when there is none)."""
        return summarize_latencies(self.latencies)

    def stats(self, wall_s: float) -> OpStats:
        """Return the :class:`OpStats` of everything recorded, over ``wall_s`` seconds."""
        return OpStats(
            count=self.count,
            ok=self.ok,
            errors=dict(self.errors),
            throughput_rps=round(self.ok / wall_s, 1) if wall_s > 0 else None,
            latency_ms=self.summary(),
        )

    def latencies_ms(self) -> list[float]:
        """Every success's latency in ms (for histograms)."""
        return [ns / 1e6 for ns in self.latencies]


def window_series(
    recorder: LatencyRecorder, origin_ns: int, end_ns: int, width_s: float
) -> list[WindowStats]:
    """Cut ``[origin_ns, end_ns)`` into windows of ``width_s`` and summarize each.

    Operations are assigned by start time; those outside the range are
    ignored. The last window may be shorter than ``width_s``: its throughput
    is computed over its actual length.

    Raises:
        ValueError: ``width_s`` is not positive.
    """
    if width_s <= 0:
        raise ValueError("width_s must be positive")
    if end_ns <= origin_ns:
        return []
    width_ns = round(width_s * 1e9)
    count = math.ceil((end_ns - origin_ns) / width_ns)
    buckets: list[list[int]] = [[] for _ in range(count)]
    for start, latency in zip(recorder.starts, recorder.latencies, strict=True):
        if origin_ns <= start < end_ns:
            buckets[(start - origin_ns) // width_ns].append(latency)
    failures = [0] * count
    for start in recorder.error_starts:
        if origin_ns <= start < end_ns:
            failures[(start - origin_ns) // width_ns] += 1
    series = []
    for i, bucket in enumerate(buckets):
        length_s = min(width_ns, end_ns - origin_ns - i * width_ns) / 1e9
        bucket.sort()
        series.append(
            WindowStats(
                t_s=round(i * width_s, 3),
                ok=len(bucket),
                errors=failures[i],
                throughput_rps=round(len(bucket) / length_s, 1),
                p50_ms=_ms(percentile(bucket, 50)) if bucket else None,
                p99_ms=_ms(percentile(bucket, 99)) if bucket else None,
            )
        )
    return series


def drift_percent(first: float | None, last: float | None) -> float | None:
    """Return ``(last - first) / first`` in percent, or None if unknown or first is 0."""
    if first is None or last is None or first == 0:
        return None
    return round((last - first) / first * 100, 2)


def slope_percent_per_unit(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points, in percent of the fitted y at the first x.

    E.g. with x in minutes and y the RSS, the result is the RSS trend in % per
    minute relative to where the fit starts. None with fewer than two distinct
    x values or a fitted start of 0.
    """
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    start = mean_y + slope * (points[0][0] - mean_x)
    if start == 0:
        return None
    return round(slope / start * 100, 3)
