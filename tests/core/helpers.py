"""Builders for the pure core tests: create requests, sessions and clocks in ms.

Everything here is pure (no I/O, no event loop); ``now`` is always explicit.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any

from synckairos.core import (
    Command,
    CreateSession,
    NewParticipant,
    Participant,
    SessionState,
    Start,
    SyncMode,
    TimeoutAction,
    Transition,
    apply,
    create_session,
)
from synckairos.core.model import TimeoutActionType

__all__ = [
    "T0",
    "active",
    "after",
    "count_up",
    "global_session",
    "new_id",
    "participant",
    "per_cycle",
    "per_group",
    "per_participant",
    "snapshot",
    "spec_for",
    "started",
]

#: A fixed instant (epoch ms) every scenario starts from.
T0 = 1_800_000_000_000


def new_id() -> str:
    """A fresh UUID string."""
    return str(uuid.uuid4())


def _people(
    n: int,
    budget_ms: int,
    indexes: Sequence[int | None] | None = None,
    groups: Sequence[str | None] | None = None,
) -> list[NewParticipant]:
    return [
        NewParticipant(
            participant_id=new_id(),
            total_time_ms=budget_ms,
            participant_index=indexes[i] if indexes is not None else i,
            group_id=groups[i] if groups is not None else None,
        )
        for i in range(n)
    ]


def _spec(
    mode: SyncMode,
    people: list[NewParticipant],
    *,
    total_time_ms: int,
    action: TimeoutActionType | None = None,
    **extra: Any,
) -> CreateSession:
    return CreateSession(
        session_id=new_id(),
        sync_mode=mode,
        participants=people,
        total_time_ms=total_time_ms,
        action_on_timeout=TimeoutAction(action) if action is not None else None,
        **extra,
    )


def per_participant(
    n: int = 2,
    *,
    budget_ms: int = 60_000,
    increment_ms: int | None = None,
    indexes: Sequence[int | None] | None = None,
    **extra: Any,
) -> CreateSession:
    """A chess clock: ``n`` players with a bank of ``budget_ms`` each."""
    return _spec(
        SyncMode.PER_PARTICIPANT,
        _people(n, budget_ms, indexes),
        total_time_ms=budget_ms,
        increment_ms=increment_ms,
        **extra,
    )


def per_cycle(n: int = 2, *, time_per_cycle_ms: int = 10_000, **extra: Any) -> CreateSession:
    """``n`` participants, every turn lasting at most ``time_per_cycle_ms``."""
    return _spec(
        SyncMode.PER_CYCLE,
        _people(n, 60_000),
        total_time_ms=60_000,
        time_per_cycle_ms=time_per_cycle_ms,
        **extra,
    )


def per_group(
    group_sizes: Sequence[int] = (2, 2),
    *,
    budget_ms: int = 60_000,
    increment_ms: int | None = None,
    **extra: Any,
) -> CreateSession:
    """Groups of the given sizes sharing one bank each, members interleaved.

    With sizes (2, 2) the rotation is A0, B0, A1, B1 (participant_index 0..3).
    """
    group_ids = [new_id() for _ in group_sizes]
    groups: list[str | None] = []
    left = list(group_sizes)
    while any(left):
        for g, count in enumerate(left):
            if count:
                groups.append(group_ids[g])
                left[g] -= 1
    return _spec(
        SyncMode.PER_GROUP,
        _people(len(groups), budget_ms, groups=groups),
        total_time_ms=budget_ms,
        increment_ms=increment_ms,
        **extra,
    )


def global_session(
    n: int = 2,
    *,
    total_time_ms: int = 60_000,
    time_per_cycle_ms: int | None = None,
    **extra: Any,
) -> CreateSession:
    """One countdown of ``total_time_ms`` for ``n`` participants."""
    return _spec(
        SyncMode.GLOBAL,
        _people(n, total_time_ms),
        total_time_ms=total_time_ms,
        time_per_cycle_ms=time_per_cycle_ms,
        **extra,
    )


def count_up(n: int = 1, *, max_time_ms: int | None = None, **extra: Any) -> CreateSession:
    """A stopwatch for ``n`` participants, capped at ``max_time_ms`` if given."""
    return _spec(
        SyncMode.COUNT_UP,
        _people(n, 60_000),
        total_time_ms=60_000,
        max_time_ms=max_time_ms,
        **extra,
    )


def spec_for(mode: SyncMode, n: int = 2, **extra: Any) -> CreateSession:
    """A valid create request of ``mode`` in which every timer has a limit."""
    if mode is SyncMode.PER_PARTICIPANT:
        return per_participant(n, **extra)
    if mode is SyncMode.PER_CYCLE:
        return per_cycle(n, **extra)
    if mode is SyncMode.PER_GROUP:
        return per_group((n - n // 2, n // 2) if n > 1 else (1,), **extra)
    if mode is SyncMode.GLOBAL:
        return global_session(n, **extra)
    extra.setdefault("max_time_ms", 30_000)
    return count_up(n, **extra)


def started(spec: CreateSession, at: int = T0) -> SessionState:
    """Create the session and start it, both at ``at``."""
    return apply(create_session(spec, at).state, Start(), at).state


def after(state: SessionState, *steps: tuple[int, Command]) -> Transition:
    """Apply ``(delay_ms, command)`` steps in order, the clock advancing from
    ``state.server_time_ms``; return the last transition."""
    now = state.server_time_ms
    transition: Transition | None = None
    for delay, command in steps:
        now += delay
        transition = apply(state, command, now)
        state = transition.state
    assert transition is not None, "after() needs at least one step"
    return transition


def participant(state: SessionState, index: int) -> Participant:
    """The participant at position ``index`` of the rotation."""
    return state.participants[index]


def active(state: SessionState) -> Participant:
    """The active participant (fails when there is none)."""
    found = [p for p in state.participants if p.participant_id == state.active_participant_id]
    assert len(found) == 1, f"no active participant in {state.status}"
    return found[0]


def snapshot(state: SessionState) -> SessionState:
    """A deep copy, to check later that ``state`` was left unchanged."""
    return copy.deepcopy(state)
