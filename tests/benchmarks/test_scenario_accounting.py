"""The pure accounting of the scenarios: lost updates, deliveries, drift windows."""

from __future__ import annotations

from benchmarks.result import TimelineWindow
from benchmarks.scenarios.sustained import drift, effective
from benchmarks.scenarios.switch_hot import lost_updates
from benchmarks.scenarios.ws_stress import count_deliveries


def test_every_2xx_switch_is_one_version():
    assert lost_updates(start=2, final=102, ok=100, uncertain=0) == 0


def test_fewer_versions_than_2xx_switches_are_lost_updates():
    assert lost_updates(start=2, final=99, ok=100, uncertain=0) == 3


def test_uncertain_failures_may_or_may_not_have_committed():
    assert lost_updates(start=2, final=105, ok=100, uncertain=3) == 0
    assert lost_updates(start=2, final=110, ok=100, uncertain=3) == -5


def test_deliveries_expected_are_the_versions_after_the_sync():
    sent = {3: 100, 4: 200, 5: 300}
    found = count_deliveries(3, [(4, 250), (5, 390)], sent)
    assert found.expected == 2
    assert found.delivered == [(200, 250), (300, 390)]
    assert (found.duplicates, found.out_of_order) == (0, 0)


def test_duplicates_and_reordering_are_counted():
    found = count_deliveries(0, [(2, 1), (1, 2), (2, 3)], {1: 0, 2: 0})
    assert (found.duplicates, found.out_of_order, len(found.delivered)) == (1, 1, 2)


def test_short_soaks_shrink_the_window_and_the_warmup():
    assert effective(1800, 60, 60) == (60, 60)
    assert effective(20, 60, 60) == (2.0, 4.0)
    assert effective(5, 60, 60) == (1.0, 1.0)


def _window(t: float, rss: float, p99: float) -> TimelineWindow:
    return TimelineWindow(
        t_s=t, ok=1, errors=0, throughput_rps=1, p50_ms=1, p99_ms=p99, server_rss_mb=rss
    )


def test_drift_compares_first_and_last_full_windows_after_warmup():
    timeline = [
        _window(0, 50, 9),
        _window(60, 100, 2),
        _window(120, 105, 2.5),
        _window(180, 110, 3),
    ]
    result = drift(timeline, warmup_s=60, width_s=60, duration_s=200)
    # The window at 180 s ends after 200 s: not full.
    assert result.windows == 2
    assert (result.rss_first_mb, result.rss_last_mb, result.rss_growth_percent) == (100, 105, 5.0)
    assert result.p99_drift_percent == 25.0
    assert result.rss_slope_percent_per_min == 5.0
