"""Canonical ids of a stored session: every UUID in lowercase.

The HTTP and WebSocket layers lowercase every id they accept, so a session
created through them is canonical already. ``canonical_state`` brings a state
that was not (a snapshot archived by an earlier version, with upper-case ids)
to the same form, so a restore stores it under the key every lookup uses.
"""

from __future__ import annotations

from msgspec.structs import replace

from synckairos.core.model import SessionState

__all__ = ["canonical_state"]


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def canonical_state(state: SessionState) -> SessionState:
    """``state`` with its session, participant and group ids (and bank keys) lowercased.

    Returns ``state`` itself when it is canonical already. Pure; the time
    accounting is untouched (bank keys are ids, or ``"session"``).
    """
    ids = [state.session_id, *state.banks]
    for p in state.participants:
        ids.append(p.participant_id)
        if p.group_id is not None:
            ids.append(p.group_id)
    if all(value == value.lower() for value in ids):
        return state
    return replace(
        state,
        session_id=state.session_id.lower(),
        active_participant_id=_lower(state.active_participant_id),
        participants=tuple(
            replace(p, participant_id=p.participant_id.lower(), group_id=_lower(p.group_id))
            for p in state.participants
        ),
        banks={key.lower(): bank for key, bank in state.banks.items()},
    )
