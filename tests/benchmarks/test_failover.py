"""The pure parts of the ``failover`` scenario: accounting, windows, options (no server)."""

from __future__ import annotations

from benchmarks import cli
from benchmarks.options import from_namespace
from benchmarks.registry import scenarios
from benchmarks.scenarios.failover import (
    account_session,
    longest_gap_s,
    same_state,
    unavailable_s,
)

S = 1_000_000_000


def test_a_linear_sequence_of_acknowledged_versions_loses_nothing():
    account = account_session("s", start=2, final=6, acked=[3, 4, 5, 6], uncertain=0)
    assert (account.lost, account.duplicates, account.beyond_final) == (0, 0, 0)


def test_a_version_acknowledged_twice_was_lost_once():
    # 4 acknowledged, lost with the primary; the next switch re-created version 4.
    account = account_session("s", start=2, final=5, acked=[3, 4, 4, 5], uncertain=0)
    assert (account.duplicates, account.lost) == (1, 1)


def test_versions_above_the_final_one_were_lost():
    account = account_session("s", start=2, final=4, acked=[3, 4, 5, 6], uncertain=0)
    assert (account.beyond_final, account.lost) == (2, 2)


def test_unknown_outcomes_may_add_versions_but_not_hide_missing_ones():
    # Two failures of unknown outcome, one of which committed (version 5).
    assert account_session("s", 2, 7, [3, 4, 6, 7], uncertain=2).lost == 0
    # Fewer versions than 2xx answers: lost, whatever the failures did.
    assert account_session("s", 2, 4, [3, 4], uncertain=3).lost == 0
    assert account_session("s", 2, 3, [3, 4], uncertain=3).lost == 1


def test_a_last_acknowledged_state_that_is_not_the_final_state_was_lost():
    account = account_session("s", 2, 4, [3, 4], uncertain=1, last_matches=False)
    assert account.lost == 1


def test_an_unknown_final_version_gives_no_verdict():
    account = account_session("s", 2, None, [3, 4], uncertain=0)
    assert account.lost is None


def test_unavailability_runs_to_the_first_success_sent_after_the_fault():
    fault = 10 * S
    starts = [9 * S, int(9.9 * S), 11 * S, int(10.5 * S)]
    latencies = [S // 10, 3 * S, S // 10, S]  # the second was in flight at the fault
    # Sent after the fault: ends at 11.1 s and 11.5 s; the first is 1.1 s after it.
    assert unavailable_s(fault, starts, latencies) == 1.1
    assert unavailable_s(20 * S, starts, latencies) is None


def test_longest_gap_includes_the_edges_of_the_window():
    assert longest_gap_s([2 * S, 3 * S, 7 * S], 0, 8 * S) == 4.0
    assert longest_gap_s([], 0, 8 * S) == 8.0
    assert longest_gap_s([S, 9 * S], 2 * S, 8 * S) == 6.0  # outside the window: ignored


def test_states_are_compared_on_the_fields_of_a_change():
    a = {"version": 3, "active_participant_id": "p", "cycle_started_at": 1, "participants": []}
    assert same_state(a, {**a, "server_time_ms": 99})
    assert not same_state(a, {**a, "active_participant_id": "q"})


def test_durability_is_the_default_and_no_durable_turns_it_off():
    scenario = scenarios()["failover"]
    parser = cli.build_parser()
    default = from_namespace(scenario.options_type, parser.parse_args(["failover"]))
    off = from_namespace(scenario.options_type, parser.parse_args(["failover", "--no-durable"]))
    assert (default.durability, off.durability, default.fault) == (True, False, "kill")
    assert scenario.local_only
