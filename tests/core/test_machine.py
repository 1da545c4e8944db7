"""The state machine, pure: transitions, create validation, per-mode time, timeouts."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from synckairos.core import (
    TERMINAL_STATUSES,
    Cancel,
    Command,
    Complete,
    CreateSession,
    Pause,
    Resume,
    SessionState,
    Start,
    Status,
    Switch,
    SyncMode,
    Timeout,
    apply,
    create_session,
    iso_ms,
)
from synckairos.core.machine import DEFAULT_TIMEOUT_ACTIONS, TRANSITIONS
from synckairos.core.model import GLOBAL_BANK, Bank, TimeoutActionType
from synckairos.exceptions import InvalidTransition, TimeoutNotDue, ValidationFailed
from tests.core.helpers import (
    T0,
    active,
    after,
    count_up,
    global_session,
    new_id,
    per_cycle,
    per_group,
    per_participant,
    snapshot,
    spec_for,
    started,
)

ALL_COMMANDS: list[Command] = [
    Start(),
    Switch(),
    Pause(),
    Resume(),
    Complete(),
    Cancel(),
    Timeout(),
]


def _ids(state: SessionState) -> list[str]:
    return [p.participant_id for p in state.participants]


def _fields(error: ValidationFailed) -> list[str]:
    return [problem["field"] for problem in error.details]


def _unchanged(state: SessionState, before: SessionState) -> None:
    assert state == before
    assert msgspec.json.encode(state) == msgspec.json.encode(before)


# ---------------------------------------------------------------- transition table


def state_in(status: Status, mode: SyncMode) -> SessionState:
    """A two-participant session of ``mode`` in ``status``; every timer has a limit."""
    if status is Status.EXPIRED:
        spec = spec_for(mode, 2, action="expire_session", auto_advance=False)
    else:
        spec = spec_for(mode, 2)
    created = create_session(spec, T0).state
    if status is Status.PENDING:
        return created
    running = apply(created, Start(), T0).state
    if status is Status.RUNNING:
        return running
    if status is Status.PAUSED:
        return apply(running, Pause(), T0 + 1_000).state
    if status is Status.EXPIRED:
        assert running.deadline_ms is not None
        return apply(running, Timeout(), running.deadline_ms).state
    if status is Status.COMPLETED:
        return apply(running, Complete(), T0 + 1_000).state
    return apply(running, Cancel(), T0 + 1_000).state


#: (status, command) → (event type, resulting status) for the mode-independent rows.
EXPECTED: dict[tuple[Status, type], tuple[str, Status]] = {
    (Status.PENDING, Start): ("session_started", Status.RUNNING),
    (Status.PENDING, Complete): ("session_completed", Status.COMPLETED),
    (Status.PENDING, Cancel): ("session_cancelled", Status.CANCELLED),
    (Status.RUNNING, Switch): ("cycle_switched", Status.RUNNING),
    (Status.RUNNING, Pause): ("session_paused", Status.PAUSED),
    (Status.RUNNING, Complete): ("session_completed", Status.COMPLETED),
    (Status.RUNNING, Cancel): ("session_cancelled", Status.CANCELLED),
    (Status.PAUSED, Resume): ("session_resumed", Status.RUNNING),
    (Status.PAUSED, Complete): ("session_completed", Status.COMPLETED),
    (Status.PAUSED, Cancel): ("session_cancelled", Status.CANCELLED),
}

#: What a due Timeout does to a fresh two-participant session, by mode (defaults).
TIMEOUT_OUTCOME: dict[SyncMode, tuple[str, Status]] = {
    SyncMode.PER_PARTICIPANT: ("session_expired", Status.EXPIRED),
    SyncMode.PER_GROUP: ("session_expired", Status.EXPIRED),
    SyncMode.GLOBAL: ("session_expired", Status.EXPIRED),
    SyncMode.PER_CYCLE: ("participant_timeout", Status.RUNNING),
    SyncMode.COUNT_UP: ("session_completed", Status.COMPLETED),
}


def test_transition_table_is_the_documented_lifecycle():
    allowed = {status: set(handlers) for status, handlers in TRANSITIONS.items()}
    assert allowed == {
        Status.PENDING: {Start, Complete, Cancel},
        Status.RUNNING: {Switch, Pause, Complete, Cancel, Timeout},
        Status.PAUSED: {Resume, Complete, Cancel},
        Status.EXPIRED: set(),
        Status.COMPLETED: set(),
        Status.CANCELLED: set(),
    }


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("status", list(Status), ids=str)
@pytest.mark.parametrize("mode", list(SyncMode), ids=str)
def test_a_command_applies_iff_the_transition_table_allows_it(
    mode: SyncMode, status: Status, command: Command
):
    state = state_in(status, mode)
    before = snapshot(state)
    now = state.server_time_ms + 1_000
    if isinstance(command, Timeout) and state.deadline_ms is not None:
        now = state.deadline_ms
    if type(command) in TRANSITIONS[status]:
        transition = apply(state, command, now)
        if isinstance(command, Timeout):
            expected_event, expected_status = TIMEOUT_OUTCOME[mode]
        else:
            expected_event, expected_status = EXPECTED[status, type(command)]
        assert transition.event.type == expected_event
        assert transition.state.status is expected_status
        assert transition.state.version == state.version + 1
        assert transition.state.server_time_ms == now
        assert transition.state.updated_at == iso_ms(now)
    else:
        with pytest.raises(InvalidTransition) as raised:
            apply(state, command, now)
        assert raised.value.code == "INVALID_STATE_TRANSITION"
        assert raised.value.details == {
            "status": status.value,
            "command": type(command).__name__.lower(),
        }
    _unchanged(state, before)


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES), ids=str)
def test_terminal_sessions_have_no_active_participant_and_no_deadline(status: Status):
    state = state_in(status, SyncMode.PER_PARTICIPANT)
    assert state.active_participant_id is None
    assert state.deadline_ms is None
    assert all(not p.is_active for p in state.participants)
    assert state.session_completed_at is not None


# ---------------------------------------------------------------- create


def test_create_builds_version_one_pending_with_no_deadline():
    spec = per_participant(2, budget_ms=90_000, increment_ms=1_000, metadata={"table": 7})
    transition = create_session(spec, T0)
    state = transition.state
    assert transition.event.type == "session_created"
    assert state.version == 1
    assert state.status is Status.PENDING
    assert state.active_participant_id is None
    assert state.deadline_ms is None
    assert state.cycle_started_ms is None
    assert state.created_at == state.updated_at == iso_ms(T0)
    assert state.server_time_ms == T0
    assert state.metadata == {"table": 7}
    assert state.increment_ms == 1_000
    assert [p.time_remaining_ms for p in state.participants] == [90_000, 90_000]
    assert state.banks == {pid: Bank(90_000, 90_000) for pid in _ids(state)}


def test_create_without_increment_stores_zero():
    assert create_session(per_participant(2), T0).state.increment_ms == 0


@pytest.mark.parametrize(
    ("spec", "banks"),
    [
        (per_cycle(2), {}),
        (global_session(3, total_time_ms=45_000), {GLOBAL_BANK: Bank(45_000, 45_000)}),
        (count_up(2), {GLOBAL_BANK: Bank(0, 0)}),
        (count_up(2, max_time_ms=5_000), {GLOBAL_BANK: Bank(5_000, 5_000)}),
    ],
    ids=["per_cycle", "global", "count_up", "count_up_capped"],
)
def test_create_opens_one_bank_per_bank_key(spec: CreateSession, banks: dict[str, Bank]):
    assert create_session(spec, T0).state.banks == banks


def test_create_opens_one_bank_per_group():
    state = create_session(per_group((2, 1), budget_ms=20_000), T0).state
    groups = {p.group_id for p in state.participants}
    assert len(groups) == 2
    assert state.banks == {g: Bank(20_000, 20_000) for g in groups if g is not None}


def test_create_rejects_duplicate_participant_ids():
    spec = per_participant(2)
    twin = msgspec.structs.replace(
        spec.participants[1], participant_id=spec.participants[0].participant_id
    )
    spec = msgspec.structs.replace(spec, participants=[spec.participants[0], twin])
    with pytest.raises(ValidationFailed) as raised:
        create_session(spec, T0)
    assert raised.value.code == "VALIDATION_ERROR"
    assert raised.value.details == [
        {
            "field": "participants",
            "message": "participant_id values must be unique",
            "code": "duplicate",
        }
    ]


@pytest.mark.parametrize(
    "indexes", [[0, 0], [None, 0], [3, 1, 3]], ids=["explicit", "implicit", "three"]
)
def test_create_rejects_duplicate_participant_indexes(indexes: list[int | None]):
    with pytest.raises(ValidationFailed) as raised:
        create_session(per_participant(len(indexes), indexes=indexes), T0)
    assert raised.value.details == [
        {
            "field": "participants",
            "message": "participant_index values must be unique",
            "code": "duplicate",
        }
    ]


def test_create_rejects_per_cycle_without_time_per_cycle():
    spec = msgspec.structs.replace(per_cycle(2), time_per_cycle_ms=None)
    with pytest.raises(ValidationFailed) as raised:
        create_session(spec, T0)
    assert _fields(raised.value) == ["time_per_cycle_ms"]


def test_create_rejects_per_group_member_without_group():
    spec = per_group((2, 1))
    lost = msgspec.structs.replace(spec.participants[1], group_id=None)
    spec = msgspec.structs.replace(
        spec, participants=[spec.participants[0], lost, spec.participants[2]]
    )
    with pytest.raises(ValidationFailed) as raised:
        create_session(spec, T0)
    assert _fields(raised.value) == ["participants.1.group_id"]


def test_create_rejects_unequal_budgets_within_a_group():
    spec = per_group((2, 2), budget_ms=60_000)
    # Rotation A0, B0, A1, B1: the second member of group A asks for more time.
    richer = msgspec.structs.replace(spec.participants[2], total_time_ms=61_000)
    people = list(spec.participants)
    people[2] = richer
    with pytest.raises(ValidationFailed) as raised:
        create_session(msgspec.structs.replace(spec, participants=people), T0)
    assert _fields(raised.value) == ["participants.2.total_time_ms"]


def test_different_groups_may_have_different_budgets():
    spec = per_group((1, 1), budget_ms=60_000)
    people = [
        spec.participants[0],
        msgspec.structs.replace(spec.participants[1], total_time_ms=5_000),
    ]
    state = create_session(msgspec.structs.replace(spec, participants=people), T0).state
    assert sorted(bank.budget_ms for bank in state.banks.values()) == [5_000, 60_000]


def test_create_accepts_metadata_of_exactly_10_kb_and_rejects_one_byte_more():
    overhead = len(msgspec.json.encode({"blob": ""}))
    fits = {"blob": "x" * (10 * 1024 - overhead)}
    create_session(per_participant(2, metadata=fits), T0)
    too_big = {"blob": "x" * (10 * 1024 - overhead + 1)}
    with pytest.raises(ValidationFailed) as raised:
        create_session(per_participant(2, metadata=too_big), T0)
    assert _fields(raised.value) == ["metadata"]


def test_create_reports_every_problem_at_once():
    spec = per_group((2,))
    people = [
        msgspec.structs.replace(p, group_id=None, participant_index=0) for p in spec.participants
    ]
    spec = msgspec.structs.replace(spec, participants=people, metadata={"x": "y" * 20_000})
    with pytest.raises(ValidationFailed) as raised:
        create_session(spec, T0)
    assert _fields(raised.value) == [
        "participants",
        "participants.0.group_id",
        "participants.1.group_id",
        "metadata",
    ]


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_id": new_id(),
        "sync_mode": "per_participant",
        "participants": [{"participant_id": new_id(), "total_time_ms": 60_000}],
        "total_time_ms": 60_000,
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    "overrides",
    [
        {"total_time_ms": 999},
        {"total_time_ms": 86_400_001},
        {"time_per_cycle_ms": 999},
        {"increment_ms": -1},
        {"increment_ms": 60_001},
        {"max_time_ms": 86_400_001},
        {"participants": []},
        {"participants": [{"participant_id": "not-a-uuid", "total_time_ms": 60_000}]},
        {"participants": [{"participant_id": new_id(), "total_time_ms": 500}]},
        {"sync_mode": "sudden_death"},
        {"action_on_timeout": {"type": "explode"}},
    ],
)
def test_schema_rejects_values_outside_the_protocol_limits(overrides: dict[str, Any]):
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(_body(**overrides), CreateSession)


def test_schema_accepts_the_limits_and_ignores_unknown_fields():
    body = _body(
        total_time_ms=86_400_000,
        increment_ms=60_000,
        max_time_ms=1_000,
        surprise="ignored",
        participants=[{"participant_id": new_id(), "total_time_ms": 1_000}],
    )
    spec = msgspec.convert(body, CreateSession)
    assert spec.total_time_ms == 86_400_000
    assert not hasattr(spec, "surprise")


# ---------------------------------------------------------------- per_participant


def test_start_activates_the_lowest_index_and_sets_the_deadline_to_its_bank():
    state = started(per_participant(2, budget_ms=60_000))
    first = state.participants[0]
    assert state.status is Status.RUNNING
    assert state.active_participant_id == first.participant_id
    assert first.is_active and not state.participants[1].is_active
    assert state.cycle_started_ms == T0
    assert state.cycle_started_at == state.session_started_at == iso_ms(T0)
    assert state.deadline_ms == T0 + 60_000


def test_switch_grants_fischer_increment_to_the_player_who_moved():
    state = started(per_participant(2, budget_ms=60_000, increment_ms=2_000))
    first, second = _ids(state)
    transition = apply(state, Switch(), T0 + 1_500)
    after_switch = transition.state
    mover, waiter = after_switch.participants
    assert mover.time_remaining_ms == 60_500
    assert mover.time_used_ms == 1_500
    assert mover.total_time_ms == 60_500
    assert mover.cycle_count == 1
    assert not mover.is_active
    assert after_switch.banks[first] == Bank(60_000, 60_500, used_ms=1_500, increments_ms=2_000)
    assert waiter.is_active
    assert after_switch.active_participant_id == second
    assert after_switch.cycle_started_ms == T0 + 1_500
    assert after_switch.deadline_ms == T0 + 1_500 + waiter.time_remaining_ms == T0 + 61_500
    assert transition.event.type == "cycle_switched"
    assert transition.event.participant_id == first
    assert transition.event.next_participant_id == second
    assert transition.event.expired_participant_id is None


def test_waiting_banks_do_not_drain():
    state = started(per_participant(3, budget_ms=60_000))
    state = after(state, (10_000, Switch()), (20_000, Switch())).state
    first, second, third = state.participants
    assert (first.time_remaining_ms, second.time_remaining_ms) == (50_000, 40_000)
    assert third.time_remaining_ms == 60_000 and third.time_used_ms == 0
    assert state.deadline_ms == T0 + 30_000 + 60_000


def test_rotation_follows_participant_index_not_list_order():
    spec = per_participant(3, indexes=[2, 0, 1])
    listed = [p.participant_id for p in spec.participants]
    state = started(spec)
    assert [p.participant_index for p in state.participants] == [0, 1, 2]
    seen = [state.active_participant_id]
    for _ in range(3):
        state = apply(state, Switch(), state.server_time_ms + 1_000).state
        seen.append(state.active_participant_id)
    assert seen == [listed[1], listed[2], listed[0], listed[1]]


def test_a_missing_participant_index_falls_back_to_the_list_position():
    spec = per_participant(3, indexes=[None, 5, None])
    listed = [p.participant_id for p in spec.participants]
    state = create_session(spec, T0).state
    assert _ids(state) == [listed[0], listed[2], listed[1]]
    assert [p.participant_index for p in state.participants] == [0, 2, 5]


def test_next_participant_id_jumps_the_rotation_which_then_continues_from_there():
    state = started(per_participant(3))
    first, _, third = _ids(state)
    state = apply(state, Switch(next_participant_id=third), T0 + 1_000).state
    assert state.active_participant_id == third
    assert state.participants[1].cycle_count == 0
    state = apply(state, Switch(), T0 + 2_000).state
    assert state.active_participant_id == first


def test_switch_to_an_unknown_participant_is_a_validation_error_and_changes_nothing():
    state = started(per_participant(2))
    before = snapshot(state)
    with pytest.raises(ValidationFailed) as raised:
        apply(state, Switch(next_participant_id=new_id()), T0 + 1_000)
    assert _fields(raised.value) == ["next_participant_id"]
    _unchanged(state, before)


def test_switch_to_a_participant_with_an_empty_bank_is_refused():
    state = started(per_participant(3, budget_ms=10_000, action="skip_cycle"))
    first = state.active_participant_id
    state = apply(state, Timeout(), T0 + 10_000).state
    before = snapshot(state)
    with pytest.raises(InvalidTransition):
        apply(state, Switch(next_participant_id=first), T0 + 11_000)
    _unchanged(state, before)


def test_switch_at_the_deadline_expires_the_mover_without_increment():
    state = started(per_participant(3, budget_ms=60_000, increment_ms=2_000))
    first, second, _ = _ids(state)
    transition = apply(state, Switch(), T0 + 75_000)
    mover = transition.state.participants[0]
    assert transition.state.banks[first] == Bank(60_000, 0, used_ms=60_000)
    assert mover.has_expired and mover.time_used_ms == 60_000
    assert transition.event.expired_participant_id == first
    assert transition.state.active_participant_id == second


def test_pause_charges_the_elapsed_time_and_stops_the_clock():
    state = started(per_participant(2, budget_ms=60_000))
    paused = apply(state, Pause(), T0 + 10_000).state
    mover = paused.participants[0]
    assert (mover.time_used_ms, mover.time_remaining_ms) == (10_000, 50_000)
    assert paused.deadline_ms is None
    assert paused.cycle_started_ms is None and paused.cycle_started_at is None
    assert paused.active_participant_id == mover.participant_id and mover.is_active


def test_resume_restarts_the_same_participant_with_what_was_left():
    state = started(per_participant(2, budget_ms=60_000, increment_ms=5_000))
    paused = apply(state, Pause(), T0 + 10_000).state
    resumed = apply(paused, Resume(), T0 + 100_000).state
    assert resumed.participants == paused.participants
    assert resumed.banks == paused.banks
    assert resumed.cycle_started_ms == T0 + 100_000
    assert resumed.deadline_ms == T0 + 150_000
    # Pausing is not a move: no increment was granted.
    assert resumed.banks[resumed.participants[0].participant_id].increments_ms == 0


def test_complete_and_cancel_charge_the_running_turn():
    state = started(per_participant(2, budget_ms=60_000))
    for command, status in ((Complete(), Status.COMPLETED), (Cancel(), Status.CANCELLED)):
        finished = apply(state, command, T0 + 7_000).state
        assert finished.status is status
        assert finished.participants[0].time_used_ms == 7_000
        assert finished.participants[0].time_remaining_ms == 53_000
        assert finished.session_completed_at == iso_ms(T0 + 7_000)
        assert finished.active_participant_id is None and finished.deadline_ms is None


# ---------------------------------------------------------------- per_cycle


def test_per_cycle_gives_every_turn_the_same_budget():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    assert state.deadline_ms == T0 + 10_000
    assert [p.time_remaining_ms for p in state.participants] == [10_000, 10_000]
    state = apply(state, Switch(), T0 + 3_000).state
    first, second = state.participants
    assert first.time_used_ms == 3_000
    assert second.is_active
    assert state.deadline_ms == T0 + 13_000
    assert [first.time_remaining_ms, second.time_remaining_ms] == [10_000, 10_000]


def test_per_cycle_pause_and_resume_keep_what_is_left_of_the_turn():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    paused = apply(state, Pause(), T0 + 4_000).state
    assert paused.participants[0].time_remaining_ms == 6_000
    assert paused.turn_used_ms == 4_000
    resumed = apply(paused, Resume(), T0 + 50_000).state
    assert resumed.participants[0].time_remaining_ms == 6_000
    assert resumed.deadline_ms == T0 + 56_000


def test_per_cycle_resets_the_turn_budget_at_each_switch():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    state = after(state, (4_000, Pause()), (46_000, Resume()), (1_000, Switch())).state
    first, second = state.participants
    assert first.time_used_ms == 5_000
    assert state.turn_used_ms == 0
    assert second.time_remaining_ms == 10_000
    assert state.deadline_ms == T0 + 51_000 + 10_000
    state = apply(state, Switch(), T0 + 52_000).state
    assert state.active_participant_id == first.participant_id
    assert state.participants[0].time_remaining_ms == 10_000
    assert state.deadline_ms == T0 + 52_000 + 10_000


def test_per_cycle_accumulates_time_used_across_turns():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    state = after(state, (3_000, Switch()), (2_000, Switch()), (4_000, Switch())).state
    assert [p.time_used_ms for p in state.participants] == [7_000, 2_000]
    assert [p.cycle_count for p in state.participants] == [2, 1]


def test_per_cycle_timeout_skips_to_the_next_turn_from_the_deadline():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    first, second = _ids(state)
    transition = apply(state, Timeout(), T0 + 10_250)
    late = transition.state
    assert transition.event.type == "participant_timeout"
    assert transition.event.reason == "skip_cycle"
    assert transition.event.next_participant_id == second
    assert late.status is Status.RUNNING
    assert late.participants[0].time_used_ms == 10_000
    assert late.participants[0].has_expired
    assert late.active_participant_id == second
    assert late.cycle_started_ms == T0 + 10_000
    assert late.deadline_ms == T0 + 20_000
    # Running out of a turn only marks that turn: the next one starts afresh.
    back = apply(late, Switch(), T0 + 12_000).state
    assert back.active_participant_id == first
    assert not back.participants[0].has_expired
    assert back.deadline_ms == T0 + 22_000


# ---------------------------------------------------------------- per_group


def test_group_members_share_one_bank_and_its_increment():
    state = started(per_group((2, 2), budget_ms=60_000, increment_ms=1_000))
    a0, b0, a1, b1 = state.participants
    assert a0.group_id == a1.group_id != b0.group_id == b1.group_id
    assert a0.group_id is not None and b0.group_id is not None
    state = apply(state, Switch(), T0 + 1_000).state
    assert state.banks[a0.group_id] == Bank(60_000, 60_000, used_ms=1_000, increments_ms=1_000)
    assert [p.time_remaining_ms for p in state.participants] == [60_000, 60_000, 60_000, 60_000]
    state = apply(state, Switch(), T0 + 3_000).state
    assert state.banks[b0.group_id] == Bank(60_000, 59_000, used_ms=2_000, increments_ms=1_000)
    assert state.active_participant_id == a1.participant_id
    assert state.deadline_ms == T0 + 3_000 + 60_000
    state = apply(state, Switch(), T0 + 6_000).state
    assert state.banks[a0.group_id] == Bank(60_000, 58_000, used_ms=4_000, increments_ms=2_000)
    a0, b0, a1, b1 = state.participants
    assert (a0.time_used_ms, a1.time_used_ms) == (1_000, 3_000)
    assert a0.time_remaining_ms == a1.time_remaining_ms == a0.total_time_ms == 58_000
    assert b0.time_remaining_ms == b1.time_remaining_ms == 59_000


def test_an_empty_group_bank_takes_every_member_out_of_the_rotation():
    state = started(per_group((2, 2), budget_ms=10_000, action="skip_cycle"))
    _, b0, _, b1 = _ids(state)
    state = apply(state, Timeout(), T0 + 10_000).state
    assert [p.has_expired for p in state.participants] == [True, False, True, False]
    assert state.active_participant_id == b0
    state = apply(state, Switch(), T0 + 11_000).state
    assert state.active_participant_id == b1
    state = apply(state, Switch(), T0 + 12_000).state
    assert state.active_participant_id == b0


def test_an_empty_group_bank_expires_the_session_by_default():
    state = started(per_group((2, 2), budget_ms=10_000))
    state = after(state, (4_000, Switch()), (1_000, Switch())).state
    assert state.deadline_ms == T0 + 5_000 + 6_000
    transition = apply(state, Timeout(), T0 + 11_000)
    assert transition.event.type == "session_expired"
    assert transition.state.status is Status.EXPIRED
    assert [p.has_expired for p in transition.state.participants] == [True, False, True, False]


# ---------------------------------------------------------------- global


def test_global_has_one_bank_whoever_is_active():
    state = started(global_session(2, total_time_ms=60_000, increment_ms=5_000))
    state = after(state, (2_000, Switch()), (3_000, Switch())).state
    assert state.banks == {GLOBAL_BANK: Bank(60_000, 55_000, used_ms=5_000)}
    assert [p.time_used_ms for p in state.participants] == [2_000, 3_000]
    assert [p.time_remaining_ms for p in state.participants] == [55_000, 55_000]
    assert state.deadline_ms == T0 + 60_000


def test_global_deadline_is_the_sooner_of_turn_limit_and_bank():
    state = started(global_session(2, total_time_ms=15_000, time_per_cycle_ms=10_000))
    assert state.deadline_ms == T0 + 10_000
    state = apply(state, Switch(), T0 + 8_000).state
    assert state.banks[GLOBAL_BANK].remaining_ms == 7_000
    assert state.deadline_ms == T0 + 15_000


def test_auto_advance_skips_to_the_next_turn_when_only_the_turn_limit_ran_out():
    spec = global_session(2, total_time_ms=60_000, time_per_cycle_ms=10_000, auto_advance=True)
    state = started(spec)
    transition = apply(state, Timeout(), T0 + 10_000)
    assert transition.event.type == "participant_timeout"
    assert transition.state.status is Status.RUNNING
    assert transition.state.banks[GLOBAL_BANK].remaining_ms == 50_000
    assert transition.state.active_participant_id == transition.state.participants[1].participant_id
    assert transition.state.deadline_ms == T0 + 20_000


def test_without_auto_advance_a_turn_limit_timeout_applies_the_configured_action():
    spec = global_session(2, time_per_cycle_ms=10_000, action="notify", auto_advance=False)
    transition = apply(started(spec), Timeout(), T0 + 10_000)
    state = transition.state
    assert transition.event.type == "participant_timeout"
    assert transition.event.reason == "notify"
    assert state.status is Status.RUNNING
    assert active(state).has_expired
    assert state.deadline_ms is None
    assert state.banks[GLOBAL_BANK].remaining_ms == 50_000


def test_auto_advance_does_not_rescue_an_empty_bank():
    spec = global_session(2, total_time_ms=15_000, time_per_cycle_ms=10_000, auto_advance=True)
    state = apply(started(spec), Switch(), T0 + 8_000).state
    transition = apply(state, Timeout(), T0 + 15_000)
    assert transition.event.type == "session_expired"
    assert transition.state.status is Status.EXPIRED
    assert transition.state.banks[GLOBAL_BANK] == Bank(15_000, 0, used_ms=15_000)


# ---------------------------------------------------------------- count_up


def test_count_up_without_cap_has_no_deadline_and_only_counts_up():
    state = started(count_up(2))
    assert state.deadline_ms is None
    state = apply(state, Switch(), T0 + 5_000).state
    assert state.deadline_ms is None
    state = apply(state, Pause(), T0 + 7_000).state
    assert [p.time_used_ms for p in state.participants] == [5_000, 2_000]
    assert state.banks == {GLOBAL_BANK: Bank(0, 0, used_ms=7_000)}
    assert [p.time_remaining_ms for p in state.participants] == [0, 0]


def test_count_up_without_cap_never_times_out():
    state = started(count_up(1))
    before = snapshot(state)
    with pytest.raises(TimeoutNotDue):
        apply(state, Timeout(), T0 + 86_400_000)
    _unchanged(state, before)


def test_count_up_deadline_is_when_the_total_reaches_the_cap():
    state = started(count_up(2, max_time_ms=30_000))
    assert state.deadline_ms == T0 + 30_000
    state = apply(state, Switch(), T0 + 10_000).state
    assert state.banks[GLOBAL_BANK] == Bank(30_000, 20_000, used_ms=10_000)
    assert state.deadline_ms == T0 + 30_000
    transition = apply(state, Timeout(), T0 + 31_000)
    assert transition.event.type == "session_completed"
    assert transition.event.reason == "timeout"
    assert transition.state.status is Status.COMPLETED
    assert transition.state.banks[GLOBAL_BANK] == Bank(30_000, 0, used_ms=30_000)
    assert transition.state.session_completed_at == iso_ms(T0 + 30_000)


# ---------------------------------------------------------------- timeouts


@pytest.mark.parametrize("mode", list(SyncMode), ids=str)
def test_timeout_before_the_deadline_is_refused_and_changes_nothing(mode: SyncMode):
    state = started(spec_for(mode, 2))
    assert state.deadline_ms is not None
    before = snapshot(state)
    with pytest.raises(TimeoutNotDue) as raised:
        apply(state, Timeout(), state.deadline_ms - 1)
    assert isinstance(raised.value, InvalidTransition)
    assert raised.value.details == {
        "deadline_ms": state.deadline_ms,
        "now_ms": state.deadline_ms - 1,
    }
    _unchanged(state, before)


def test_timeout_is_refused_once_the_participant_was_notified():
    state = started(per_participant(2, action="notify"))
    state = apply(state, Timeout(), T0 + 60_000).state
    before = snapshot(state)
    with pytest.raises(TimeoutNotDue):
        apply(state, Timeout(), T0 + 120_000)
    _unchanged(state, before)


@pytest.mark.parametrize("lateness", [0, 1, 5_000], ids=["at", "1ms_late", "5s_late"])
def test_a_timeout_is_computed_as_of_the_deadline(lateness: int):
    state = started(per_participant(3, budget_ms=60_000, action="skip_cycle"))
    first, second, _ = _ids(state)
    transition = apply(state, Timeout(), T0 + 60_000 + lateness)
    late = transition.state
    assert late.banks[first] == Bank(60_000, 0, used_ms=60_000)
    assert late.participants[0].time_used_ms == 60_000
    assert late.participants[0].time_remaining_ms == 0
    assert late.participants[0].has_expired
    assert late.active_participant_id == second
    assert late.cycle_started_ms == T0 + 60_000
    assert late.cycle_started_at == iso_ms(T0 + 60_000)
    assert late.deadline_ms == T0 + 120_000
    assert late.server_time_ms == T0 + 60_000 + lateness
    assert late.version == state.version + 1


@pytest.mark.parametrize(
    ("action", "event", "status"),
    [
        ("expire_session", "session_expired", Status.EXPIRED),
        ("complete_session", "session_completed", Status.COMPLETED),
        ("notify", "participant_timeout", Status.RUNNING),
        ("skip_cycle", "participant_timeout", Status.RUNNING),
    ],
)
def test_each_timeout_action(action: TimeoutActionType, event: str, status: Status):
    state = started(per_participant(3, budget_ms=10_000, action=action))
    first, second, _ = _ids(state)
    transition = apply(state, Timeout(), T0 + 12_000)
    after_timeout = transition.state
    assert transition.event.type == event
    assert transition.event.participant_id == first
    assert after_timeout.status is status
    assert after_timeout.participants[0].has_expired
    assert after_timeout.banks[first].remaining_ms == 0
    if status is not Status.RUNNING:
        assert after_timeout.session_completed_at == iso_ms(T0 + 10_000)
        assert after_timeout.active_participant_id is None
        assert after_timeout.deadline_ms is None
    elif action == "notify":
        assert transition.event.reason == "notify"
        assert after_timeout.active_participant_id == first
        assert after_timeout.deadline_ms is None
    else:
        assert transition.event.next_participant_id == second
        assert after_timeout.active_participant_id == second
        assert after_timeout.deadline_ms == T0 + 20_000


def test_after_notify_a_switch_takes_the_expired_participant_out_of_the_rotation():
    state = started(per_participant(3, budget_ms=10_000, action="notify"))
    first, second, _ = _ids(state)
    state = apply(state, Timeout(), T0 + 10_000).state
    transition = apply(state, Switch(), T0 + 30_000)
    assert transition.event.type == "cycle_switched"
    assert transition.event.expired_participant_id == first
    assert transition.state.active_participant_id == second
    # The 20 s between the timeout and the switch are charged to nobody.
    assert transition.state.participants[0].time_used_ms == 10_000
    assert transition.state.deadline_ms == T0 + 40_000
    state = after(transition.state, (1_000, Switch()), (1_000, Switch())).state
    assert state.active_participant_id == second


@pytest.mark.parametrize("mode", list(SyncMode), ids=str)
def test_default_timeout_action_and_auto_advance_per_mode(mode: SyncMode):
    state = create_session(spec_for(mode, 2), T0).state
    assert state.action_on_timeout.type == DEFAULT_TIMEOUT_ACTIONS[mode]
    assert (
        DEFAULT_TIMEOUT_ACTIONS[mode]
        == {
            SyncMode.PER_PARTICIPANT: "expire_session",
            SyncMode.PER_GROUP: "expire_session",
            SyncMode.GLOBAL: "expire_session",
            SyncMode.PER_CYCLE: "skip_cycle",
            SyncMode.COUNT_UP: "complete_session",
        }[mode]
    )
    has_turn_limit = state.time_per_cycle_ms is not None
    assert state.auto_advance is (
        mode is SyncMode.PER_CYCLE or (mode is SyncMode.GLOBAL and has_turn_limit)
    )


def test_a_global_session_with_a_turn_limit_advances_by_default_and_without_one_does_not():
    with_limit = create_session(global_session(2, time_per_cycle_ms=10_000), T0).state
    without = create_session(global_session(2), T0).state
    assert with_limit.auto_advance is True
    assert without.auto_advance is False


@pytest.mark.parametrize("mode", list(SyncMode), ids=str)
def test_default_timeout_behaviour_per_mode(mode: SyncMode):
    state = started(spec_for(mode, 2))
    assert state.deadline_ms is not None
    transition = apply(state, Timeout(), state.deadline_ms)
    assert (transition.event.type, transition.state.status) == TIMEOUT_OUTCOME[mode]
    assert transition.state.participants[0].has_expired


def test_per_cycle_with_expire_session_and_no_auto_advance_expires_on_a_turn_timeout():
    spec = per_cycle(2, action="expire_session", auto_advance=False)
    transition = apply(started(spec), Timeout(), T0 + 10_000)
    assert transition.event.type == "session_expired"
    assert transition.state.status is Status.EXPIRED


def test_per_cycle_auto_advance_overrides_a_configured_action():
    spec = per_cycle(2, action="complete_session", auto_advance=True)
    transition = apply(started(spec), Timeout(), T0 + 10_000)
    assert transition.event.type == "participant_timeout"
    assert transition.state.status is Status.RUNNING


def test_skip_cycle_expires_the_session_once_every_bank_is_empty():
    state = started(per_participant(2, budget_ms=10_000, action="skip_cycle"))
    state = apply(state, Timeout(), T0 + 10_000).state
    assert state.deadline_ms == T0 + 20_000
    transition = apply(state, Timeout(), T0 + 20_000)
    assert transition.event.type == "session_expired"
    assert transition.state.status is Status.EXPIRED
    assert all(p.has_expired for p in transition.state.participants)
    assert all(p.time_remaining_ms == 0 for p in transition.state.participants)


@pytest.mark.parametrize("action", ["skip_cycle", "notify"])
@pytest.mark.parametrize(
    "spec_factory",
    [
        lambda action: global_session(2, total_time_ms=10_000, action=action),
        lambda action: count_up(2, max_time_ms=10_000, action=action),
    ],
    ids=["global", "count_up"],
)
def test_an_empty_shared_bank_leaves_nobody_to_play(spec_factory: Any, action: TimeoutActionType):
    state = started(spec_factory(action))
    state = apply(state, Timeout(), T0 + 10_000).state
    if state.status is Status.RUNNING:
        state = apply(state, Switch(), T0 + 15_000).state
    assert state.status is Status.EXPIRED
    assert state.banks[GLOBAL_BANK] == Bank(10_000, 0, used_ms=10_000)
    assert state.deadline_ms is None


def test_resuming_a_bank_paused_at_zero_makes_its_timeout_due_at_once():
    state = started(per_participant(2, budget_ms=10_000))
    paused = apply(state, Pause(), T0 + 12_000).state
    assert paused.participants[0].time_remaining_ms == 0
    resumed = apply(paused, Resume(), T0 + 20_000).state
    assert resumed.deadline_ms == T0 + 20_000
    transition = apply(resumed, Timeout(), T0 + 20_000)
    assert transition.event.type == "session_expired"
    assert transition.state.participants[0].time_used_ms == 10_000
    assert transition.state.banks[transition.state.participants[0].participant_id].remaining_ms == 0


# ---------------------------------------------------------------- events


EVENT_SCENARIOS: list[tuple[str, CreateSession, list[tuple[int, Command]], str]] = [
    ("create", per_participant(2), [], "session_created"),
    ("start", per_participant(2), [(0, Start())], "session_started"),
    ("switch", per_participant(2), [(0, Start()), (1_000, Switch())], "cycle_switched"),
    ("pause", per_participant(2), [(0, Start()), (1_000, Pause())], "session_paused"),
    (
        "resume",
        per_participant(2),
        [(0, Start()), (1_000, Pause()), (1_000, Resume())],
        "session_resumed",
    ),
    ("complete", per_participant(2), [(0, Start()), (1_000, Complete())], "session_completed"),
    ("cancel", per_participant(2), [(0, Start()), (1_000, Cancel())], "session_cancelled"),
    (
        "timeout_notify",
        per_participant(2, action="notify"),
        [(0, Start()), (60_000, Timeout())],
        "participant_timeout",
    ),
    (
        "timeout_skip",
        per_cycle(2),
        [(0, Start()), (10_000, Timeout())],
        "participant_timeout",
    ),
    (
        "timeout_expire",
        per_participant(2),
        [(0, Start()), (60_000, Timeout())],
        "session_expired",
    ),
    (
        "timeout_complete",
        count_up(1, max_time_ms=5_000),
        [(0, Start()), (5_000, Timeout())],
        "session_completed",
    ),
]


@pytest.mark.parametrize(
    ("spec", "steps", "event"),
    [scenario[1:] for scenario in EVENT_SCENARIOS],
    ids=[scenario[0] for scenario in EVENT_SCENARIOS],
)
def test_every_change_reports_its_event(
    spec: CreateSession, steps: list[tuple[int, Command]], event: str
):
    transition = create_session(spec, T0)
    if steps:
        transition = after(transition.state, *steps)
    assert transition.event.type == event
