"""Builders of results for the harness's unit tests."""

from __future__ import annotations

from benchmarks.result import CpuReport, ScenarioResult
from benchmarks.stats import LatencySummary, OpStats


def result(
    throughput: float, p99: float, *, checks: dict[str, bool] | None = None
) -> ScenarioResult:
    """A one-op (``switch``) result with the given throughput and p99."""
    latency = LatencySummary(p50=p99 / 2, p95=p99, p99=p99, max=p99 * 2, mean=p99 / 2)
    return ScenarioResult(
        scenario="switch",
        url="http://127.0.0.1:1",
        duration_s=1.0,
        throughput_rps=throughput,
        main_op="switch",
        ops={"switch": OpStats(10, 10, {}, throughput, latency)},
        cpu=CpuReport(wall_s=1.0, server_percent=50.0, harness_percent=10.0),
        checks=checks or {},
    )
