"""``canonical_state``: one spelling (lowercase) for every id of a stored session."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from synckairos.core import SessionState, Switch, SyncMode, apply
from synckairos.core.ids import canonical_state
from tests.core.helpers import T0, spec_for, started


def _shout(spec_state: SessionState) -> SessionState:
    """The same state with every id in upper case (as an earlier version could store it)."""
    return replace(
        spec_state,
        session_id=spec_state.session_id.upper(),
        active_participant_id=(spec_state.active_participant_id or "").upper() or None,
        participants=tuple(
            replace(
                p,
                participant_id=p.participant_id.upper(),
                group_id=p.group_id.upper() if p.group_id else None,
            )
            for p in spec_state.participants
        ),
        banks={key.upper() if key != "session" else key: b for key, b in spec_state.banks.items()},
    )


@pytest.mark.parametrize("mode", list(SyncMode))
def test_an_upper_case_state_becomes_the_canonical_one(mode: SyncMode):
    state = started(spec_for(mode, 3))
    assert canonical_state(state) is state  # canonical already: untouched
    assert canonical_state(_shout(state)) == state
    # ... and plays on exactly like the original.
    canonical = canonical_state(_shout(state))
    assert apply(canonical, Switch(), T0 + 1_000) == apply(state, Switch(), T0 + 1_000)
