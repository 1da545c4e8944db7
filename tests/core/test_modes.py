"""The mode table (``core/modes.py``): its rows, its rules, and the cost of a new mode.

The five real rows are pinned to docs/timer-modes.md here, field by field, so
that the table-driven invariants of ``test_properties.py`` stay independent of
the code under test. The last tests add throwaway modes through the table alone
(``patch.dict(MODES, ...)``, nothing else changes) and run the property tests
and a scenario on them: that is all a sixth mode costs the engine.
"""

from __future__ import annotations

from typing import Any, cast
from unittest.mock import patch

import pytest
from hypothesis import given, settings

from synckairos.core import (
    CreateSession,
    NewParticipant,
    Start,
    Status,
    Switch,
    SyncMode,
    Timeout,
    apply,
    create_session,
)
from synckairos.core.modes import MODES, ModePolicy, policy_of
from synckairos.exceptions import ValidationFailed
from tests.core.helpers import T0, new_id
from tests.core.test_properties import check_run, runs, sessions, start_firsts

# ---------------------------------------------------------------- the real rows

#: docs/timer-modes.md, one tuple per mode: bank, counts up, turn limit,
#: increments, what has_expired marks, default action_on_timeout.
DOCUMENTED: dict[SyncMode, tuple[str | None, bool, str, bool, str, str]] = {
    SyncMode.PER_PARTICIPANT: ("participant", False, "none", True, "bank", "expire_session"),
    SyncMode.PER_CYCLE: (None, False, "required", False, "turn", "skip_cycle"),
    SyncMode.PER_GROUP: ("group", False, "none", True, "bank", "expire_session"),
    SyncMode.GLOBAL: ("session", False, "optional", False, "turn", "expire_session"),
    SyncMode.COUNT_UP: ("session", True, "none", False, "turn", "complete_session"),
}


@pytest.mark.parametrize("mode", list(SyncMode), ids=str)
def test_each_real_row_says_what_the_docs_say(mode: SyncMode):
    row = policy_of(mode)
    assert row.mode == mode
    assert (
        row.bank,
        row.counts_up,
        row.turn_limit,
        row.increments,
        row.expiry,
        row.default_timeout,
    ) == DOCUMENTED[mode]
    # auto_advance defaults to true exactly when a turn limit exists (docs).
    assert row.default_auto_advance is True


def test_the_table_names_every_sync_mode_once_in_enum_order():
    assert list(MODES) == [m.value for m in SyncMode]
    assert all(isinstance(key, SyncMode) for key in MODES)


def test_an_unknown_mode_has_no_row():
    with pytest.raises(KeyError):
        policy_of("sundial")


@pytest.mark.parametrize(
    "fields",
    [
        {"bank": "participant", "turn_limit": "optional", "expiry": "bank"},
        {"bank": None, "turn_limit": "required", "expiry": "bank"},
        {"bank": None, "turn_limit": "optional", "expiry": "turn"},
        {"bank": None, "turn_limit": "required", "expiry": "turn", "increments": True},
        {"bank": "session", "counts_up": True, "increments": True, "expiry": "turn"},
    ],
    ids=[
        "bank-expiry-with-a-turn-limit",
        "bank-expiry-without-a-bank",
        "no-bank-and-an-optional-turn-limit",
        "increments-without-a-bank",
        "increments-on-a-counting-up-bank",
    ],
)
def test_a_row_the_engine_cannot_honour_is_refused_at_construction(fields: dict[str, Any]):
    with pytest.raises(ValueError, match="mode 'odd'"):
        ModePolicy(mode="odd", summary="?", default_timeout="notify", **fields)


# ---------------------------------------------------------------- a sixth mode

#: Team banks with a move limit: per_group's banks and increments plus global's
#: optional turn limit (so has_expired marks a turn, as in global).
TEAM_MOVES = ModePolicy(
    mode="per_group_moves",
    summary="team banks with a move limit",
    bank="group",
    turn_limit="optional",
    increments=True,
    expiry="turn",
    default_timeout="expire_session",
)

#: A stopwatch each: count_up's capped counting-up bank, one per participant;
#: a participant whose stopwatch reaches the cap is out.
STOPWATCHES = ModePolicy(
    mode="count_up_each",
    summary="a stopwatch each",
    bank="participant",
    counts_up=True,
    expiry="bank",
    default_timeout="skip_cycle",
)


@settings(max_examples=200, deadline=None)
@given(spec=sessions(rows=(TEAM_MOVES,)), start_first=start_firsts, steps=runs)
def test_a_sixth_mode_added_through_the_table_alone_keeps_every_invariant(
    spec: CreateSession, start_first: bool, steps: list[tuple[Any, int]]
):
    with patch.dict(MODES, {TEAM_MOVES.mode: TEAM_MOVES}):
        check_run(spec, start_first, steps)


@settings(max_examples=100, deadline=None)
@given(spec=sessions(rows=(STOPWATCHES,)), start_first=start_firsts, steps=runs)
def test_another_throwaway_mode_keeps_every_invariant_too(
    spec: CreateSession, start_first: bool, steps: list[tuple[Any, int]]
):
    with patch.dict(MODES, {STOPWATCHES.mode: STOPWATCHES}):
        check_run(spec, start_first, steps)


def _team_moves(**extra: Any) -> CreateSession:
    """Two teams of two (A0, B0, A1, B1), 60 s banks, 5 s moves, 1 s increment."""
    teams = [new_id(), new_id()]
    return CreateSession(
        session_id=new_id(),
        sync_mode=cast(SyncMode, TEAM_MOVES.mode),
        participants=[
            NewParticipant(
                participant_id=new_id(),
                total_time_ms=60_000,
                participant_index=i,
                group_id=teams[i % 2],
            )
            for i in range(4)
        ],
        total_time_ms=60_000,
        increment_ms=1_000,
        **extra,
    )


def test_the_sixth_mode_composes_its_rows_fields_as_documented():
    with patch.dict(MODES, {TEAM_MOVES.mode: TEAM_MOVES}):
        state = create_session(_team_moves(time_per_cycle_ms=5_000), T0).state
        assert state.auto_advance is True
        assert state.action_on_timeout.type == "expire_session"
        team_a = state.participants[0].group_id
        assert team_a is not None
        assert set(state.banks) == {p.group_id for p in state.participants}

        state = apply(state, Start(), T0).state
        assert state.deadline_ms == T0 + 5_000  # the move limit, sooner than the bank
        # A switch charges the team's bank and grants the increment.
        state = apply(state, Switch(), T0 + 2_000).state
        assert state.banks[team_a].remaining_ms == 60_000 - 2_000 + 1_000
        assert state.participants[2].time_remaining_ms == 59_000  # A1 shares A's bank
        # A move that runs out passes the turn on (auto_advance), marking that move only.
        timed_out = apply(state, Timeout(), T0 + 7_000)
        assert timed_out.event.type == "participant_timeout"
        assert timed_out.state.status is Status.RUNNING
        assert timed_out.state.active_participant_id == state.participants[2].participant_id
        assert timed_out.state.participants[1].has_expired


def test_the_sixth_mode_without_a_move_limit_is_per_group_and_refuses_missing_groups():
    with patch.dict(MODES, {TEAM_MOVES.mode: TEAM_MOVES}):
        state = create_session(_team_moves(), T0).state
        assert state.auto_advance is False
        spec = _team_moves()
        lone = NewParticipant(participant_id=new_id(), total_time_ms=60_000, participant_index=9)
        with pytest.raises(ValidationFailed) as refused:
            create_session(
                CreateSession(
                    session_id=spec.session_id,
                    sync_mode=spec.sync_mode,
                    participants=[*spec.participants, lone],
                    total_time_ms=60_000,
                ),
                T0,
            )
        assert refused.value.details == [
            {
                "field": "participants.4.group_id",
                "message": "required when sync_mode is per_group_moves",
                "code": "required",
            }
        ]


def test_a_throwaway_mode_leaves_the_table_as_it_was():
    with patch.dict(MODES, {TEAM_MOVES.mode: TEAM_MOVES}):
        assert TEAM_MOVES.mode in MODES
    assert list(MODES) == [m.value for m in SyncMode]
