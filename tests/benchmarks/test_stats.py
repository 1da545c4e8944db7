"""benchmarks.stats: percentiles, the latency recorder, windows, drift."""

from __future__ import annotations

import pytest

from benchmarks.stats import (
    LatencyRecorder,
    drift_percent,
    percentile,
    slope_percent_per_unit,
    summarize_latencies,
    window_series,
)


def test_percentile_is_nearest_rank_and_always_a_sample():
    samples = list(range(1, 101))
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7], 1) == 7
    assert percentile([1, 2, 3], 50) == 2


@pytest.mark.parametrize("p", [0, -1, 101])
def test_percentile_refuses_out_of_range(p):
    with pytest.raises(ValueError):
        percentile([1, 2], p)


def test_percentile_refuses_no_samples():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_is_in_milliseconds_from_nanoseconds():
    summary = summarize_latencies([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    assert summary is not None
    assert (summary.p50, summary.p99, summary.max, summary.mean) == (2.0, 4.0, 4.0, 2.5)
    assert summarize_latencies([]) is None


def test_recorder_counts_successes_and_failures_by_kind():
    recorder = LatencyRecorder("switch")
    recorder.record(0, 1_000_000)
    recorder.record(10, 3_000_000)
    recorder.error("409", 20)
    recorder.error("409", 30)
    recorder.error("TimeoutError", 40)
    stats = recorder.stats(2.0)
    assert (stats.count, stats.ok) == (5, 2)
    assert stats.errors == {"409": 2, "TimeoutError": 1}
    assert stats.throughput_rps == 1.0
    assert stats.latency_ms is not None and stats.latency_ms.max == 3.0
    assert recorder.stats(0).throughput_rps is None


def test_window_series_buckets_by_start_time_and_ignores_outside():
    recorder = LatencyRecorder("op")
    second = 1_000_000_000
    for start, latency in [(0, 1), (1, 2), (second, 5), (2 * second + 1, 7), (-1, 9)]:
        recorder.record(start, latency * 1_000_000)
    recorder.error("500", second + 5)
    series = window_series(recorder, 0, 2 * second + second // 2, 1.0)
    assert [w.ok for w in series] == [2, 1, 1]
    assert [w.errors for w in series] == [0, 1, 0]
    assert series[0].p99_ms == 2.0 and series[0].p50_ms == 1.0
    assert series[2].throughput_rps == 2.0  # one op in a half-second window
    assert [w.t_s for w in series] == [0.0, 1.0, 2.0]


def test_window_series_of_an_empty_range_is_empty_and_width_must_be_positive():
    recorder = LatencyRecorder("op")
    assert window_series(recorder, 10, 10, 1.0) == []
    with pytest.raises(ValueError):
        window_series(recorder, 0, 10, 0)


def test_drift_percent_compares_last_with_first():
    assert drift_percent(100.0, 110.0) == 10.0
    assert drift_percent(100.0, 90.0) == -10.0
    assert drift_percent(0.0, 5.0) is None
    assert drift_percent(None, 5.0) is None


def test_slope_is_relative_to_the_fitted_start():
    points = [(0.0, 100.0), (1.0, 110.0), (2.0, 120.0)]
    assert slope_percent_per_unit(points) == 10.0
    assert slope_percent_per_unit([(1.0, 5.0)]) is None
    assert slope_percent_per_unit([(1.0, 5.0), (1.0, 6.0)]) is None
