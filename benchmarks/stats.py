"""Latency statistics over raw samples: exact, no histograms or sketches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

__all__ = ["LatencySummary", "percentile", "summarize_latencies"]


class LatencySummary(msgspec.Struct, frozen=True):
    """Latency distribution in milliseconds, rounded to the microsecond."""

    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def percentile(sorted_samples: Sequence[int], p: float) -> int:
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


def summarize_latencies(samples_ns: Sequence[int]) -> LatencySummary | None:
    """Summarize latencies given in nanoseconds; ``None`` when there are none."""
    if not samples_ns:
        return None
    ordered = sorted(samples_ns)

    def ms(ns: float) -> float:
        return round(ns / 1e6, 3)

    return LatencySummary(
        p50=ms(percentile(ordered, 50)),
        p95=ms(percentile(ordered, 95)),
        p99=ms(percentile(ordered, 99)),
        max=ms(ordered[-1]),
        mean=ms(sum(ordered) / len(ordered)),
    )
