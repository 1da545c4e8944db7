"""Properties of the engine over random sessions and random command sequences.

Hypothesis draws a session of any mode (budgets within the schema limits, 1-6
participants, increments, groups) and a sequence of ``(command, time step)``;
illegal commands must be refused without touching the state, and after every
step the invariants of ``check_invariants`` and ``_step`` must hold. Run with
``--hypothesis-show-statistics`` to see which transitions the runs reached.

The generator and the invariants read what differs between modes from the
mode's row of ``core.modes.MODES`` (never from its name), so ``check_run``
runs unchanged on a mode added to the table: ``test_modes.py`` does that with a
throwaway sixth mode, and pins the five real rows to docs/timer-modes.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from synckairos.core import (
    Cancel,
    Command,
    Complete,
    CreateSession,
    NewParticipant,
    Participant,
    Pause,
    Resume,
    SessionState,
    Start,
    Status,
    Switch,
    SyncMode,
    Timeout,
    TimeoutAction,
    apply,
    create_session,
    is_overdue,
    iso_ms,
)
from synckairos.core.deadlines import bank_key
from synckairos.core.model import TimeoutActionType
from synckairos.core.modes import MODES, ModePolicy, policy_of
from synckairos.exceptions import Forbidden, InvalidTransition, TimeoutNotDue, ValidationFailed
from tests.core.helpers import T0, snapshot

#: Switch target that is no participant of any generated session.
STRANGER = "00000000-0000-4000-8000-000000000000"

#: Time step sentinels: jump exactly to the running deadline, or just past it.
TO_DEADLINE = -1
PAST_DEADLINE = -2

#: Event types each command may produce.
EVENTS: dict[type, set[str]] = {
    Start: {"session_started"},
    Switch: {"cycle_switched", "session_expired"},
    Pause: {"session_paused"},
    Resume: {"session_resumed"},
    Complete: {"session_completed"},
    Cancel: {"session_cancelled"},
    Timeout: {"participant_timeout", "session_expired", "session_completed"},
}

budgets = st.one_of(
    st.integers(1_000, 30_000),  # short enough for the steps below to run them out
    st.integers(30_000, 600_000),
    st.integers(1_000, 86_400_000),
)
optional_budgets = st.one_of(st.none(), budgets)


@st.composite
def sessions(draw: st.DrawFn, rows: Sequence[ModePolicy] = tuple(MODES.values())) -> CreateSession:
    """A valid create request of any mode of ``rows`` (default: every row of the table)."""
    policy = draw(st.sampled_from(rows))
    # A mode outside ``SyncMode`` (a test's own row) is a plain string here.
    mode = cast(SyncMode, policy.mode)
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.uuids(), min_size=n, max_size=n, unique=True))
    indexes: list[int | None] = draw(
        st.one_of(
            st.just([None] * n),
            st.lists(st.integers(0, 1_000_000), min_size=n, max_size=n, unique=True),
        )
    )
    if policy.bank == "group":
        group_count = draw(st.integers(1, n))
        group_ids = draw(
            st.lists(st.uuids(), min_size=group_count, max_size=group_count, unique=True)
        )
        group_budgets = draw(st.lists(budgets, min_size=group_count, max_size=group_count))
        membership = draw(st.lists(st.integers(0, group_count - 1), min_size=n, max_size=n))
        groups: list[str | None] = [str(group_ids[g]) for g in membership]
        own_budgets = [group_budgets[g] for g in membership]
    else:
        groups = [None] * n
        own_budgets = draw(st.lists(budgets, min_size=n, max_size=n))
    people = [
        NewParticipant(
            participant_id=str(ids[i]),
            total_time_ms=own_budgets[i],
            participant_index=indexes[i],
            group_id=groups[i],
        )
        for i in range(n)
    ]
    per_turn = draw(budgets if policy.turn_limit == "required" else optional_budgets)
    # Weighted towards the actions that keep a session going after a timeout.
    actions: list[TimeoutActionType | None] = [
        None,
        "skip_cycle",
        "skip_cycle",
        "notify",
        "expire_session",
        "complete_session",
    ]
    action = draw(st.sampled_from(actions))
    return CreateSession(
        session_id=str(draw(st.uuids())),
        sync_mode=mode,
        participants=people,
        total_time_ms=draw(budgets),
        time_per_cycle_ms=per_turn,
        increment_ms=draw(st.one_of(st.none(), st.integers(0, 60_000))),
        max_time_ms=draw(optional_budgets),
        metadata=draw(st.one_of(st.none(), st.just({"k": "v"}))),
        auto_advance=draw(st.one_of(st.none(), st.booleans())),
        action_on_timeout=TimeoutAction(action) if action is not None else None,
    )


#: Commands, weighted by repetition: a command; ``("switch_to", k)`` (switch to
#: the k-th participant; a stranger when there is no k-th one); or ``"go"``, the
#: command that moves the session on in its status (start, switch, resume), so
#: that runs do not stall in one status. Complete and Cancel end a run: rare.
command_choices: list[Any] = [
    *[Switch()] * 20,
    *[Timeout()] * 10,
    *[Pause()] * 8,
    *[Resume()] * 8,
    *[Start()] * 4,
    *[("switch_to", k) for k in (*range(7), *range(7))],
    *[("switch_as_participant", k) for k in range(7)],
    *["go"] * 20,
    Complete(),
    Cancel(),
]
commands = st.sampled_from(command_choices)
time_steps = st.one_of(
    st.integers(0, 3_000),
    st.integers(0, 3_000),
    st.integers(0, 3_000),
    st.integers(0, 60_000),
    st.sampled_from([TO_DEADLINE, PAST_DEADLINE]),
    st.integers(0, 86_400_000),
)
runs = st.lists(st.tuples(commands, time_steps), min_size=15, max_size=60)


GO: dict[Status, Command] = {Status.PENDING: Start(), Status.PAUSED: Resume()}


def _resolve_command(choice: Any, state: SessionState) -> Command:
    if choice == "go":
        return GO.get(state.status, Switch())
    if isinstance(choice, tuple):
        kind, k = choice
        target = state.participants[k].participant_id if k < len(state.participants) else STRANGER
        return Switch(next_participant_id=target, rotation_only=kind == "switch_as_participant")
    command: Command = choice
    return command


def _next_now(step: int, state: SessionState, now: int) -> int:
    if step >= 0:
        return now + step
    deadline = state.deadline_ms
    if deadline is None:
        return now
    return max(now, deadline + (1 if step == PAST_DEADLINE else 0))


# ---------------------------------------------------------------- invariants


def _active(state: SessionState) -> Participant | None:
    found = [p for p in state.participants if p.participant_id == state.active_participant_id]
    return found[0] if found else None


def _uncapped(state: SessionState) -> bool:
    """A counting-up bank without a cap (count_up without ``max_time_ms``)."""
    return policy_of(state.sync_mode).counts_up and state.max_time_ms is None


def _turn_limit(state: SessionState) -> int | None:
    """The turn limit of the session (per_cycle; global with ``time_per_cycle_ms``)."""
    return state.time_per_cycle_ms if policy_of(state.sync_mode).turn_limit != "none" else None


def _limits(state: SessionState) -> list[int]:
    """What limits the active participant's running turn, from first principles."""
    active = _active(state)
    assert active is not None
    limits: list[int] = []
    key = bank_key(state.sync_mode, active)
    if key is not None and not _uncapped(state):
        limits.append(state.banks[key].remaining_ms)
    limit = _turn_limit(state)
    if limit:
        limits.append(max(0, limit - state.turn_used_ms))
    return limits


def timer_runs(state: SessionState) -> bool:
    """Whether a timer counts down now: running, active not expired, a limit exists."""
    active = _active(state)
    return (
        state.status is Status.RUNNING
        and active is not None
        and not active.has_expired
        and bool(_limits(state))
    )


def expected_deadline(state: SessionState) -> int:
    """The deadline recomputed from first principles (for a running timer)."""
    assert state.cycle_started_ms is not None
    return state.cycle_started_ms + min(_limits(state))


def _bank_keys(state: SessionState) -> set[str]:
    """One bank per key of the mode's bank scope; none without a bank (per_cycle)."""
    policy = policy_of(state.sync_mode)
    keys = {policy.bank_key(p.participant_id, p.group_id) for p in state.participants}
    return {k for k in keys if k is not None}


def check_invariants(state: SessionState) -> None:
    mode = state.sync_mode
    policy = policy_of(mode)
    # A deadline exists exactly when a timer runs, and it is the right one.
    assert (state.deadline_ms is not None) == timer_runs(state)
    if state.deadline_ms is not None:
        assert state.deadline_ms == expected_deadline(state)
        assert state.cycle_started_ms is not None
        assert state.deadline_ms >= state.cycle_started_ms

    # Who is active.
    active = _active(state)
    flagged = [p.participant_id for p in state.participants if p.is_active]
    if state.status in (Status.RUNNING, Status.PAUSED):
        assert active is not None
        assert flagged == [state.active_participant_id]
    else:
        assert state.active_participant_id is None
        assert flagged == []
    assert (state.cycle_started_ms is not None) == (state.status is Status.RUNNING)

    # Banks: time is conserved, never negative, and the members account for it.
    assert set(state.banks) == _bank_keys(state)
    for key, bank in state.banks.items():
        assert bank.remaining_ms >= 0
        assert bank.used_ms >= 0
        if _uncapped(state):
            assert bank.budget_ms == bank.remaining_ms == bank.increments_ms == 0
        else:
            assert bank.used_ms + bank.remaining_ms == bank.budget_ms + bank.increments_ms
        if not policy.increments:
            assert bank.increments_ms == 0
        members = [p for p in state.participants if bank_key(mode, p) == key]
        assert sum(p.time_used_ms for p in members) == bank.used_ms
        for p in members:
            assert p.time_remaining_ms == bank.remaining_ms
            if p.has_expired and policy.expiry == "bank":
                assert bank.remaining_ms == 0

    # Turns.
    limit = _turn_limit(state)
    if limit is not None:
        assert 0 <= state.turn_used_ms <= limit
    for p in state.participants:
        assert p.time_used_ms >= 0
        assert p.time_remaining_ms >= 0
        if policy.bank is None:
            assert limit is not None
            assert p.time_remaining_ms <= limit


# ---------------------------------------------------------------- the property


@dataclass
class Run:
    """What the property remembers along a run."""

    state: SessionState
    now: int = T0
    running_wall_ms: int = 0
    applied: int = 0


def _remaining(state: SessionState) -> tuple[list[int], dict[str, int]]:
    return (
        [p.time_remaining_ms for p in state.participants],
        {k: b.remaining_ms for k, b in state.banks.items()},
    )


def _step(run: Run, command: Command) -> None:
    state = run.state
    before = snapshot(state)
    try:
        transition = apply(state, command, run.now)
    except (InvalidTransition, ValidationFailed, Forbidden) as refused:
        note(f"t+{run.now - T0}: {command!r} refused: {refused.message}")
        assert state == before, "a refused command changed the state"
        if isinstance(refused, ValidationFailed):
            # A stranger, or the participant whose turn ends (it may not keep its turn).
            assert isinstance(command, Switch)
            assert command.next_participant_id in (STRANGER, state.active_participant_id)
        if isinstance(refused, Forbidden):
            assert isinstance(command, Switch) and command.rotation_only
        if isinstance(command, Timeout) and state.status is Status.RUNNING:
            assert isinstance(refused, TimeoutNotDue)
            assert not is_overdue(state, run.now)
        return
    note(f"t+{run.now - T0}: {command!r} -> {transition.event.type} v{transition.state.version}")
    event(f"{state.sync_mode}: {transition.event.type}")
    assert state == before, "apply mutated its input"
    new = transition.state
    run.applied += 1
    assert new.version == state.version + 1
    assert new.version == 1 + run.applied
    assert new.server_time_ms == run.now
    assert transition.event.type in EVENTS[type(command)]

    old_used = {p.participant_id: p.time_used_ms for p in state.participants}
    for p in new.participants:
        assert p.time_used_ms >= old_used[p.participant_id], "time used went backwards"

    if isinstance(command, Timeout):
        # Applied only when due, and computed as of the deadline.
        assert state.deadline_ms is not None
        assert state.cycle_started_ms is not None
        assert is_overdue(state, run.now)
        mover = state.active_participant_id
        assert mover is not None
        charged = {p.participant_id: p.time_used_ms for p in new.participants}[mover]
        assert charged - old_used[mover] == state.deadline_ms - state.cycle_started_ms
        if new.status is Status.RUNNING and new.active_participant_id != mover:
            assert new.cycle_started_ms == state.deadline_ms
        if new.deadline_ms is not None:
            # Otherwise the next timeout is due at the same instant, forever.
            assert new.deadline_ms > state.deadline_ms, "a timeout made no progress"
        if new.status in (Status.EXPIRED, Status.COMPLETED):
            assert new.session_completed_at == iso_ms(state.deadline_ms)

    if isinstance(command, Switch) and new.status is Status.RUNNING:
        # Turn integrity: a switch never hands the turn back to the participant
        # whose turn ended while the rotation had someone else, and a
        # participant's own switch goes where the rotation goes.
        rotation = apply(state, Switch(), run.now).state.active_participant_id
        if new.active_participant_id == state.active_participant_id:
            assert rotation == state.active_participant_id, "a switch kept its own turn"
        if command.rotation_only:
            assert new.active_participant_id == rotation

    if isinstance(command, Resume):
        assert _remaining(new) == _remaining(state), "pause/resume changed a remaining time"
        assert new.turn_used_ms == state.turn_used_ms

    check_invariants(new)
    run.state = new


def _check_pause_resume_round_trip(state: SessionState, now: int) -> None:
    """Pausing now and resuming any time later loses and gains nothing."""
    if state.status is not Status.RUNNING:
        return
    paused = apply(state, Pause(), now).state
    for delay in (0, 1, 123_456):
        resumed = apply(paused, Resume(), now + delay).state
        assert _remaining(resumed) == _remaining(paused)
        check_invariants(resumed)
        if state.deadline_ms is not None:
            if now <= state.deadline_ms:
                assert resumed.deadline_ms == state.deadline_ms + delay
            else:
                assert resumed.deadline_ms == now + delay


#: Whether a run starts with a Start (mostly) or with whatever was drawn.
start_firsts = st.sampled_from([True, True, True, False])


@settings(max_examples=200, deadline=None)
@given(spec=sessions(), start_first=start_firsts, steps=runs)
def test_invariants_hold_after_every_step(
    spec: CreateSession, start_first: bool, steps: list[tuple[Any, int]]
):
    check_run(spec, start_first, steps)


def check_run(spec: CreateSession, start_first: bool, steps: list[tuple[Any, int]]) -> None:
    """Create ``spec``, apply ``steps`` and check every invariant after each one.

    The mode's row must be in ``MODES`` while this runs.
    """
    created = create_session(spec, T0)
    assert created.event.type == "session_created"
    run = Run(state=created.state)
    check_invariants(run.state)
    if start_first:
        steps = [(Start(), 0), *steps]
    for choice, step in steps:
        now = _next_now(step, run.state, run.now)
        if run.state.status is Status.RUNNING:
            run.running_wall_ms += now - run.now
        run.now = now
        _check_pause_resume_round_trip(run.state, now)
        _step(run, _resolve_command(choice, run.state))
        charged = sum(p.time_used_ms for p in run.state.participants)
        assert charged <= run.running_wall_ms, "charged more time than ran"
        for bank in run.state.banks.values():
            assert bank.used_ms <= run.running_wall_ms
