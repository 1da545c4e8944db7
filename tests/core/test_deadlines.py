"""Per-mode time arithmetic: bank keys, turn limits, time left, deadlines, charging."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from synckairos.core import (
    Pause,
    Status,
    SyncMode,
    Timeout,
    apply,
    compute_deadline,
    create_session,
    is_overdue,
    iso_ms,
)
from synckairos.core.deadlines import (
    BANKLESS_EXPIRY_MODES,
    bank_key,
    charge,
    mirror_banks,
    time_left_ms,
    turn_limit_ms,
)
from synckairos.core.model import GLOBAL_BANK, Bank
from tests.core.helpers import (
    T0,
    count_up,
    global_session,
    per_cycle,
    per_group,
    per_participant,
    snapshot,
    spec_for,
    started,
)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (T0, "2027-01-15T08:00:00.000Z"),
        (T0 + 86_400_123, "2027-01-16T08:00:00.123Z"),
    ],
)
def test_iso_ms_formats_utc_with_milliseconds_and_z(ms: int, text: str):
    assert iso_ms(ms) == text


def test_bank_key_per_mode():
    keys = {}
    for mode in SyncMode:
        state = create_session(spec_for(mode, 2), T0).state
        first = state.participants[0]
        keys[mode] = bank_key(mode, first)
        if mode is SyncMode.PER_PARTICIPANT:
            assert keys[mode] == first.participant_id
        if mode is SyncMode.PER_GROUP:
            assert first.group_id is not None
            assert keys[mode] == first.group_id
    assert keys[SyncMode.PER_CYCLE] is None
    assert keys[SyncMode.GLOBAL] == keys[SyncMode.COUNT_UP] == GLOBAL_BANK


def test_only_per_cycle_and_global_have_a_turn_limit():
    limits = {
        mode: turn_limit_ms(create_session(spec_for(mode, 2, time_per_cycle_ms=7_000), T0).state)
        for mode in SyncMode
    }
    assert limits == {
        SyncMode.PER_PARTICIPANT: None,
        SyncMode.PER_CYCLE: 7_000,
        SyncMode.PER_GROUP: None,
        SyncMode.GLOBAL: 7_000,
        SyncMode.COUNT_UP: None,
    }


def test_has_expired_marks_a_turn_only_in_bankless_modes():
    assert {SyncMode.PER_CYCLE, SyncMode.GLOBAL, SyncMode.COUNT_UP} == BANKLESS_EXPIRY_MODES


# ---------------------------------------------------------------- time left, deadline


def test_no_time_left_when_no_timer_runs():
    pending = create_session(per_participant(2), T0).state
    assert time_left_ms(pending) is None
    paused = apply(started(per_participant(2)), Pause(), T0 + 1_000).state
    assert time_left_ms(paused) is None
    assert compute_deadline(paused) is None


def test_no_time_left_once_the_active_participant_expired():
    state = started(per_participant(2, budget_ms=5_000, action="notify"))
    state = apply(state, Timeout(), T0 + 5_000).state
    assert time_left_ms(state) is None
    assert compute_deadline(state) is None


def test_count_up_without_cap_is_unlimited():
    state = started(count_up(1))
    assert time_left_ms(state) is None
    assert compute_deadline(state) is None


def test_time_left_is_the_bank_as_of_the_cycle_start():
    state = started(per_participant(2, budget_ms=30_000))
    assert time_left_ms(state) == 30_000
    assert compute_deadline(state) == T0 + 30_000


def test_time_left_is_the_smaller_of_bank_and_turn():
    state = started(global_session(2, total_time_ms=60_000, time_per_cycle_ms=10_000))
    assert time_left_ms(state) == 10_000
    low_bank = replace(state, banks={GLOBAL_BANK: Bank(60_000, 4_000, used_ms=56_000)})
    assert time_left_ms(low_bank) == 4_000
    assert compute_deadline(low_bank) == T0 + 4_000


def test_time_left_subtracts_the_part_of_the_turn_already_used():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    resumed_mid_turn = replace(state, turn_used_ms=3_500, cycle_started_ms=T0 + 9_000)
    assert time_left_ms(resumed_mid_turn) == 6_500
    assert compute_deadline(resumed_mid_turn) == T0 + 15_500


def test_an_overused_turn_has_zero_time_left_not_negative():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    assert time_left_ms(replace(state, turn_used_ms=12_000)) == 0


def test_an_empty_bank_has_zero_time_left_so_its_timeout_is_due_at_once():
    state = started(per_participant(2, budget_ms=10_000))
    pid = state.participants[0].participant_id
    empty = replace(state, banks={**state.banks, pid: Bank(10_000, 0, used_ms=10_000)})
    assert time_left_ms(empty) == 0
    assert compute_deadline(empty) == T0


def test_is_overdue_at_and_after_the_deadline_only():
    state = started(per_participant(2, budget_ms=10_000))
    assert not is_overdue(state, T0 + 9_999)
    assert is_overdue(state, T0 + 10_000)
    assert is_overdue(state, T0 + 10_001)
    assert not is_overdue(create_session(per_participant(2), T0).state, T0 + 10**9)


# ---------------------------------------------------------------- charge


def test_charge_without_a_running_clock_returns_the_state_unchanged():
    pending = create_session(per_participant(2), T0).state
    assert charge(pending, T0 + 5_000) is pending
    paused = apply(started(per_participant(2)), Pause(), T0 + 1_000).state
    assert charge(paused, T0 + 5_000) is paused


def test_charge_moves_elapsed_time_from_remaining_to_used():
    state = started(per_participant(2, budget_ms=30_000))
    before = snapshot(state)
    charged = charge(state, T0 + 4_000)
    pid = state.participants[0].participant_id
    assert charged.banks[pid] == Bank(30_000, 26_000, used_ms=4_000)
    assert charged.participants[0].time_used_ms == 4_000
    assert charged.participants[0].time_remaining_ms == 26_000
    assert charged.cycle_started_ms == T0 + 4_000
    assert charged.turn_used_ms == 4_000
    assert state == before


def test_charge_never_takes_a_bank_below_zero():
    state = started(per_participant(2, budget_ms=30_000))
    charged = charge(state, T0 + 90_000)
    pid = state.participants[0].participant_id
    assert charged.banks[pid] == Bank(30_000, 0, used_ms=30_000)
    assert charged.participants[0].time_used_ms == 30_000


def test_charge_never_exceeds_the_turn_limit():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    charged = charge(state, T0 + 25_000)
    assert charged.participants[0].time_used_ms == 10_000
    assert charged.turn_used_ms == 10_000
    assert charged.participants[0].time_remaining_ms == 0


def test_charge_ignores_a_clock_that_went_backwards():
    state = started(per_participant(2, budget_ms=30_000))
    charged = charge(state, T0 - 5_000)
    assert charged.participants[0].time_used_ms == 0
    assert charged.banks == state.banks


def test_charge_counts_up_without_cap_without_touching_remaining():
    state = started(count_up(2))
    charged = charge(state, T0 + 3_600_000)
    assert charged.banks[GLOBAL_BANK] == Bank(0, 0, used_ms=3_600_000)
    assert charged.participants[0].time_used_ms == 3_600_000


def test_charge_gives_nothing_to_an_expired_participant():
    state = started(per_participant(2, budget_ms=5_000, action="notify"))
    state = apply(state, Timeout(), T0 + 5_000).state
    assert state.status is Status.RUNNING
    charged = charge(state, T0 + 50_000)
    assert [p.time_used_ms for p in charged.participants] == [5_000, 0]
    assert charged.banks == state.banks


def test_charge_in_a_group_drains_the_group_bank_for_all_members():
    state = started(per_group((2, 1), budget_ms=20_000))
    charged = charge(state, T0 + 6_000)
    a0, b0, a1 = charged.participants
    assert a0.group_id is not None
    assert charged.banks[a0.group_id] == Bank(20_000, 14_000, used_ms=6_000)
    assert a0.time_remaining_ms == a1.time_remaining_ms == 14_000
    assert b0.time_remaining_ms == 20_000


# ---------------------------------------------------------------- mirror


def test_mirror_shows_per_cycle_participants_the_turn_budget_and_the_active_one_its_rest():
    state = started(per_cycle(3, time_per_cycle_ms=10_000))
    mirrored = mirror_banks(replace(state, turn_used_ms=2_500))
    assert [p.time_remaining_ms for p in mirrored.participants] == [7_500, 10_000, 10_000]


def test_mirror_keeps_count_up_budgets_and_shows_the_time_left_to_the_cap():
    state = started(count_up(2, max_time_ms=30_000))
    totals = [p.total_time_ms for p in state.participants]
    mirrored = mirror_banks(
        replace(state, banks={GLOBAL_BANK: Bank(30_000, 12_000, used_ms=18_000)})
    )
    assert [p.time_remaining_ms for p in mirrored.participants] == [12_000, 12_000]
    assert [p.total_time_ms for p in mirrored.participants] == totals


def test_mirror_shows_the_bank_size_as_total_time_in_bank_modes():
    state = started(per_participant(2, budget_ms=30_000))
    pid = state.participants[0].participant_id
    mirrored = mirror_banks(
        replace(
            state,
            banks={**state.banks, pid: Bank(30_000, 31_000, used_ms=1_000, increments_ms=2_000)},
        )
    )
    assert mirrored.participants[0].total_time_ms == mirrored.participants[0].time_remaining_ms
    assert mirrored.participants[0].time_remaining_ms == 31_000


@pytest.mark.parametrize("mode", list(SyncMode), ids=str)
def test_finalized_states_carry_the_computed_deadline(mode: SyncMode):
    state = started(spec_for(mode, 3))
    assert state.deadline_ms is not None
    assert state.deadline_ms == compute_deadline(state)
    paused = apply(state, Pause(), T0 + 1_000).state
    assert paused.deadline_ms is None
    assert compute_deadline(paused) is None
