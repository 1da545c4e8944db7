"""benchmarks.aggregate: medians of runs, A/B ratios, merged checks."""

from __future__ import annotations

from benchmarks.aggregate import flatten, headline_keys, median_figures, merge_checks, ratios
from benchmarks.result import Ratio
from tests.benchmarks.helpers import result


def test_flatten_keeps_numbers_by_dotted_path_and_skips_the_rest():
    figures = flatten({"a": 1, "b": {"c": 2.5, "d": None, "e": True, "f": "x"}, "g": [1, 2]})
    assert figures == {"a": 1, "b.c": 2.5}


def test_median_is_taken_per_figure_over_the_runs():
    runs = [result(throughput=100, p99=5.0), result(throughput=300, p99=1.0), result(200, 9.0)]
    median = median_figures(runs)
    assert median["throughput_rps"] == 200
    assert median["ops.switch.latency_ms.p99"] == 5.0
    assert median["ops.switch.ok"] == 10


def test_median_of_one_run_is_that_run():
    median = median_figures([result(throughput=123.4, p99=2.0)])
    assert median["throughput_rps"] == 123.4


def test_ratios_divide_b_by_a():
    table = ratios({"x": 100.0, "y": 0.0}, {"x": 150.0, "y": 3.0, "z": 1.0}, ["x", "y", "z", "w"])
    assert table["x"] == Ratio(100.0, 150.0, 1.5)
    assert table["y"].ratio is None  # a is 0
    assert table["z"] == Ratio(None, 1.0, None)
    assert "w" not in table


def test_headline_keys_cover_throughput_and_p50_p99_of_every_op():
    keys = headline_keys([result(100, 1.0)])
    assert keys == [
        "throughput_rps",
        "ops.switch.throughput_rps",
        "ops.switch.latency_ms.p50",
        "ops.switch.latency_ms.p99",
    ]


def test_a_check_passes_only_if_it_passed_in_every_run():
    runs = [result(1, 1, checks={"a": True, "b": True}), result(1, 1, checks={"a": False})]
    assert merge_checks(runs) == {"a": False, "b": True}
