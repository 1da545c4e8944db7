"""Turn integrity (issue 14, item 5): a switch cannot keep or choose a turn to gain time.

* Nobody may name the participant whose turn ends as the next one (it would
  restart its own turn: a new per-turn budget, a Fischer increment per call),
  unless the rotation picks it anyway (a single participant, a last survivor).
* A participant's own switch (``rotation_only``) goes where the rotation goes;
  only a controller (or API key) may name someone else.
"""

from __future__ import annotations

import pytest

from synckairos.core import Switch, SyncMode, Timeout, apply
from synckairos.core.model import Status
from synckairos.exceptions import Forbidden, ValidationFailed
from tests.core.helpers import (
    T0,
    active,
    after,
    per_cycle,
    per_group,
    per_participant,
    snapshot,
    spec_for,
    started,
)


@pytest.mark.parametrize("mode", list(SyncMode))
def test_no_mode_lets_a_switch_name_the_participant_whose_turn_ends(mode: SyncMode):
    state = started(spec_for(mode, 3))
    me = active(state).participant_id
    before = snapshot(state)
    for rotation_only in (False, True):
        with pytest.raises(ValidationFailed) as refused:
            apply(state, Switch(me, rotation_only=rotation_only), T0 + 1_000)
        assert refused.value.details == [
            {
                "field": "next_participant_id",
                "message": "is the participant whose turn ends",
                "code": "invalid_value",
            }
        ]
    assert state == before


def test_fischer_increments_cannot_be_farmed_by_switching_to_oneself():
    state = started(per_participant(2, budget_ms=300_000, increment_ms=5_000))
    me = active(state).participant_id
    now = T0
    for _ in range(8):
        now += 10
        with pytest.raises(ValidationFailed):
            apply(state, Switch(me), now)
    assert state.banks[me].remaining_ms == 300_000
    # A real switch grants the increment once and passes the turn.
    moved = apply(state, Switch(), now).state
    assert moved.active_participant_id != me
    assert moved.banks[me].remaining_ms == 300_000 - 80 + 5_000


def test_a_per_cycle_turn_cannot_be_renewed_by_naming_oneself():
    state = started(per_cycle(2, time_per_cycle_ms=10_000))
    me = active(state).participant_id
    with pytest.raises(ValidationFailed):
        apply(state, Switch(me), T0 + 9_000)
    # The turn runs out at its deadline as it would have anyway.
    timed_out = apply(state, Timeout(), T0 + 10_000).state
    assert timed_out.active_participant_id != me


@pytest.mark.parametrize("mode", list(SyncMode))
def test_a_single_participant_may_still_switch_to_itself(mode: SyncMode):
    state = started(spec_for(mode, 1))
    me = active(state).participant_id
    for command in (Switch(), Switch(me), Switch(me, rotation_only=True)):
        switched = apply(state, command, T0 + 1_000).state
        assert switched.status is Status.RUNNING
        assert switched.active_participant_id == me


def test_a_last_survivor_may_name_itself():
    # Banks of 1 s and skip_cycle: the first two run out, the third plays on alone.
    state = started(per_participant(3, budget_ms=1_000, action="skip_cycle"))
    ids = [p.participant_id for p in state.participants]
    state = after(state, (1_000, Timeout()), (1_000, Timeout())).state
    assert state.status is Status.RUNNING and state.active_participant_id == ids[2]
    for command in (Switch(), Switch(ids[2]), Switch(ids[2], rotation_only=True)):
        switched = apply(state, command, state.server_time_ms + 10).state
        assert switched.active_participant_id == ids[2]


def test_a_participants_switch_follows_the_rotation_order():
    state = started(per_participant(3))
    _, second, third = (p.participant_id for p in state.participants)
    before = snapshot(state)
    with pytest.raises(Forbidden):
        apply(state, Switch(third, rotation_only=True), T0 + 100)
    assert state == before
    # Naming whom the rotation picks anyway is harmless (clients that always send it).
    named = apply(state, Switch(second, rotation_only=True), T0 + 100).state
    assert named.active_participant_id == second
    # A controller may skip someone (it knows the game's rules).
    assert apply(state, Switch(third), T0 + 100).state.active_participant_id == third


def test_a_group_member_cannot_pass_the_turn_to_a_teammate():
    # Rotation A0, B0, A1, B1: A0 naming A1 would keep group A's bank running
    # and earn it an increment while group B never plays.
    state = started(per_group((2, 2), increment_ms=5_000))
    a0, b0, a1, _ = (p.participant_id for p in state.participants)
    assert active(state).participant_id == a0
    with pytest.raises(Forbidden):
        apply(state, Switch(a1, rotation_only=True), T0 + 100)
    assert apply(state, Switch(b0, rotation_only=True), T0 + 100).state.active_participant_id == b0
