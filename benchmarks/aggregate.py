"""Median of runs and A/B ratios: pure functions over results.

A result is reduced to its numeric figures by :func:`flatten`: every int or
float leaf of its JSON form, keyed by its dotted path
(``ops.switch.latency_ms.p99``), lists (the timeline) excluded. :func:`median_figures`
takes the median of each figure over the runs, independently: the median p99
may come from another run than the median throughput. :func:`ratios` divides
B's medians by A's for the headline figures (:func:`headline_keys`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from benchmarks.result import Ratio, ScenarioResult

__all__ = [
    "HEADLINE_PERCENTILES",
    "flatten",
    "headline_keys",
    "median_figures",
    "merge_checks",
    "ratios",
]

#: Latency percentiles compared between A and B.
HEADLINE_PERCENTILES = ("p50", "p99")


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Return the numeric leaves of ``value`` (a Struct or JSON builtins) by dotted path.

    Booleans, strings, None and lists are skipped.
    """
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    figures: dict[str, float] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            figures.update(flatten(item, f"{prefix}{key}."))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        figures[prefix.rstrip(".")] = value
    return figures


def median_figures(results: Sequence[ScenarioResult]) -> dict[str, float]:
    """Median of every figure over ``results`` (over the runs that have it)."""
    values: dict[str, list[float]] = {}
    for result in results:
        for key, value in flatten(result).items():
            values.setdefault(key, []).append(value)
    return {key: _round(statistics.median(items)) for key, items in values.items()}


def _round(value: float) -> float:
    return value if isinstance(value, int) else round(value, 3)


def headline_keys(results: Iterable[ScenarioResult]) -> list[str]:
    """Figures compared by ``--compare``: the headline throughput, then for every
    operation its throughput and its p50 and p99 latency."""
    keys = ["throughput_rps"]
    ops: list[str] = []
    for result in results:
        ops.extend(op for op in result.ops if op not in ops)
    for op in ops:
        keys.append(f"ops.{op}.throughput_rps")
        keys.extend(f"ops.{op}.latency_ms.{p}" for p in HEADLINE_PERCENTILES)
    return keys


def ratios(a: Mapping[str, float], b: Mapping[str, float], keys: Sequence[str]) -> dict[str, Ratio]:
    """Return ``b / a`` for each key that either side has."""
    table: dict[str, Ratio] = {}
    for key in keys:
        value_a, value_b = a.get(key), b.get(key)
        if value_a is None and value_b is None:
            continue
        ratio = None
        if value_a is not None and value_b is not None and value_a != 0:
            ratio = round(value_b / value_a, 3)
        table[key] = Ratio(value_a, value_b, ratio)
    return table


def merge_checks(results: Iterable[ScenarioResult]) -> dict[str, bool]:
    """Every check of every run; a check is True only if it passed in every run."""
    merged: dict[str, bool] = {}
    for result in results:
        for name, passed in result.checks.items():
            merged[name] = merged.get(name, True) and passed
    return merged
