"""Per-mode time arithmetic: banks, time left in a turn, deadlines, charging.

Pure functions of a ``SessionState`` and an instant ``now`` (epoch ms). Nothing
here reads a clock. What differs between modes is looked up in the session's
row of ``core.modes.MODES``; nothing here branches on a mode's name.
"""

from __future__ import annotations

import time

from msgspec.structs import replace

from synckairos.core.model import (
    Bank,
    Participant,
    SessionState,
    Status,
    SyncMode,
)
from synckairos.core.modes import MODES, policy_of

__all__ = [
    "BANKLESS_EXPIRY_MODES",
    "bank_key",
    "bank_unlimited",
    "charge",
    "compute_deadline",
    "iso_ms",
    "mirror_banks",
    "time_left_ms",
    "turn_limit_ms",
]

#: Modes whose ``has_expired`` marks "this turn ran out" (cleared at the next
#: turn) rather than "this participant's own bank is empty" (permanent):
#: derived from the table (``ModePolicy.expiry``), which the engine reads.
BANKLESS_EXPIRY_MODES = frozenset(
    SyncMode(mode) for mode, policy in MODES.items() if policy.expiry == "turn"
)


def iso_ms(ms: int) -> str:
    """Format epoch milliseconds as ISO 8601 UTC with milliseconds and ``Z``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def bank_key(mode: str, participant: Participant) -> str | None:
    """Return the key of the bank ``participant`` draws from, or None (no bank: per_cycle)."""
    return policy_of(mode).bank_key(participant.participant_id, participant.group_id)


def bank_unlimited(state: SessionState) -> bool:
    """True when the session's bank has no limit: it only counts time used.

    That is a counting-up bank without a cap (``count_up`` without ``max_time_ms``).
    """
    return policy_of(state.sync_mode).counts_up and state.max_time_ms is None


def turn_limit_ms(state: SessionState) -> int | None:
    """Return the per-turn budget, if the mode has one (per_cycle, global)."""
    if policy_of(state.sync_mode).turn_limit == "none":
        return None
    return state.time_per_cycle_ms


def _turn_left_ms(state: SessionState) -> int | None:
    limit = turn_limit_ms(state)
    return None if limit is None else max(0, limit - state.turn_used_ms)


def _bank_limit_ms(state: SessionState, bank: Bank | None) -> int | None:
    """Time left in ``bank`` as of the cycle start, or None when it has no limit."""
    if bank is None or bank_unlimited(state):
        return None
    return bank.remaining_ms


def time_left_ms(state: SessionState) -> int | None:
    """Return how long the running turn could last from ``cycle_started_ms``.

    None when no timer runs (status not running, active participant expired)
    or when nothing limits it (count_up without a cap).
    """
    if state.status is not Status.RUNNING or state.cycle_started_ms is None:
        return None
    active = _active(state)
    if active is None or active.has_expired:
        return None
    key = bank_key(state.sync_mode, active)
    bank_left = _bank_limit_ms(state, state.banks.get(key) if key is not None else None)
    if bank_left is not None:
        # An empty bank whose holder is not yet marked expired (paused at zero,
        # then resumed) has a timer that is due at once, not no timer at all:
        # returning None here would let ``charge`` drain it below zero.
        bank_left = max(0, bank_left)
    turn_left = _turn_left_ms(state)
    if bank_left is None:
        return turn_left
    if turn_left is None:
        return bank_left
    return min(bank_left, turn_left)


def compute_deadline(state: SessionState) -> int | None:
    """Return the absolute instant (epoch ms) at which the running timer hits zero."""
    left = time_left_ms(state)
    if left is None or state.cycle_started_ms is None:
        return None
    return state.cycle_started_ms + left


def _active(state: SessionState) -> Participant | None:
    if state.active_participant_id is None:
        return None
    for participant in state.participants:
        if participant.participant_id == state.active_participant_id:
            return participant
    return None


def charge(state: SessionState, now: int) -> SessionState:
    """Charge the time elapsed since ``cycle_started_ms`` to the active participant.

    The charge is capped by the time left (a bank never goes below zero, a turn
    never charges more than its limit). Returns a state whose
    ``cycle_started_ms`` is ``now`` and whose bank and participant figures are
    as of ``now``; a state with no running clock is returned unchanged.
    """
    if state.status is not Status.RUNNING or state.cycle_started_ms is None:
        return state
    active = _active(state)
    if active is None:
        return state
    elapsed = max(0, now - state.cycle_started_ms)
    left = time_left_ms(state)
    charged = elapsed if left is None else min(elapsed, left)
    if active.has_expired:
        charged = 0
    key = bank_key(state.sync_mode, active)
    banks = state.banks
    if key is not None and charged:
        bank = banks[key]
        remaining = bank.remaining_ms
        if not bank_unlimited(state):
            remaining -= charged
        banks = {
            **banks,
            key: replace(bank, used_ms=bank.used_ms + charged, remaining_ms=remaining),
        }
    participants = tuple(
        replace(p, time_used_ms=p.time_used_ms + charged)
        if p.participant_id == active.participant_id
        else p
        for p in state.participants
    )
    return mirror_banks(
        replace(
            state,
            participants=participants,
            banks=banks,
            cycle_started_ms=now,
            turn_used_ms=state.turn_used_ms + charged,
        )
    )


def mirror_banks(state: SessionState) -> SessionState:
    """Copy each bank's remaining time onto its members' wire fields.

    Participants of a mode without a bank (per_cycle) show the turn budget (the
    active one: what is left of its turn); those of a counting-up bank
    (count_up) show the time left to the cap (0 without a cap) and keep their
    budget; the others show their bank as both remaining and total.
    """
    policy = policy_of(state.sync_mode)
    out: list[Participant] = []
    for p in state.participants:
        key = policy.bank_key(p.participant_id, p.group_id)
        if key is None:
            remaining = state.time_per_cycle_ms or 0
            if p.participant_id == state.active_participant_id:
                remaining = max(0, remaining - state.turn_used_ms)
            out.append(replace(p, time_remaining_ms=remaining))
        elif policy.counts_up:
            out.append(replace(p, time_remaining_ms=state.banks[key].remaining_ms))
        else:
            remaining = state.banks[key].remaining_ms
            out.append(replace(p, time_remaining_ms=remaining, total_time_ms=remaining))
    return replace(state, participants=tuple(out))
