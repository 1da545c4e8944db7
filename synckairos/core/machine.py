"""The timer state machine: every change of a session is decided here.

Rule 1: everything that affects a session's status or time accounting lives in
this module and in ``deadlines.py``; the adapters (store, API, scheduler) only
load, call ``apply`` with the instant they read from their clock, and commit.

Theory of operation
-------------------
``TRANSITIONS[status][command type]`` names the handler allowed for a command
in a status; a missing entry raises ``InvalidTransition`` and nothing changes
(the input state is immutable). A handler first charges the time elapsed since
the turn started (``deadlines.charge``), then rewrites the turn. ``_finalize``
bumps the version by exactly one, stamps ``updated_at``/``server_time_ms`` and
recomputes ``deadline_ms``, so a deadline exists exactly when a timer runs.

Timeouts are computed *as of the deadline*, not as of the moment they are
applied: the bank is charged to exactly zero and the next turn (if any) starts
at the deadline, so firing lag never leaks into anyone's clock.

Modes are data: what differs between two modes (which bank, turn limit,
increments, what ``has_expired`` means, the defaults at creation) is read from
the session's row of ``core.modes.MODES``; no handler branches on a mode name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec
from msgspec.structs import replace

from synckairos.core.commands import (
    METADATA_MAX_BYTES,
    Cancel,
    Command,
    Complete,
    CreateSession,
    Pause,
    Resume,
    Start,
    Switch,
    Timeout,
)
from synckairos.core.deadlines import (
    bank_key,
    bank_unlimited,
    charge,
    compute_deadline,
    iso_ms,
    mirror_banks,
)
from synckairos.core.model import (
    Bank,
    Event,
    Participant,
    SessionState,
    Status,
    SyncMode,
    TimeoutAction,
    TimeoutActionType,
)
from synckairos.core.modes import MODES, policy_of
from synckairos.core.storable import id_problems, storable_problems
from synckairos.exceptions import Forbidden, InvalidTransition, TimeoutNotDue, ValidationFailed

__all__ = [
    "DEFAULT_TIMEOUT_ACTIONS",
    "TRANSITIONS",
    "Transition",
    "apply",
    "create_session",
    "is_overdue",
]

#: ``action_on_timeout`` of a session created without one, by mode: derived
#: from the table (``ModePolicy.default_timeout``), which the engine reads.
DEFAULT_TIMEOUT_ACTIONS: dict[SyncMode, TimeoutActionType] = {
    SyncMode(mode): policy.default_timeout for mode, policy in MODES.items()
}


class Transition(msgspec.Struct, frozen=True):
    """Result of ``apply``: the new state and the event that describes the change."""

    state: SessionState
    event: Event


Outcome = tuple[SessionState, Event]
Handler = Callable[[SessionState, Command, int], Outcome]
"""A transition handler, as ``TRANSITIONS`` holds it: any command in, checked."""

C = TypeVar("C", Start, Switch, Pause, Resume, Complete, Cancel, Timeout)


def _on(command_type: type[C], handler: Callable[[SessionState, C, int], Outcome]) -> Handler:
    """Return ``handler`` as a ``Handler``: mypy checks that it takes ``command_type``."""

    def handle(state: SessionState, command: Command, now: int) -> Outcome:
        if not isinstance(command, command_type):  # pragma: no cover - apply() looks up by type
            raise TypeError(f"{handler.__name__} handles {command_type.__name__}, got {command!r}")
        return handler(state, command, now)

    handle.__name__ = handler.__name__
    return handle


# ---------------------------------------------------------------- creation


def create_session(spec: CreateSession, now: int) -> Transition:
    """Build version 1 of a session from a decoded create request.

    Raises:
        ValidationFailed: a rule the schema cannot express is broken (duplicate
            ids or indexes, missing ``time_per_cycle_ms`` for per_cycle, missing
            or inconsistent groups for per_group, oversized metadata, metadata
            PostgreSQL cannot store: see ``core.storable``).
    """
    _validate_create(spec)
    ordered = sorted(
        enumerate(spec.participants),
        key=lambda item: (
            item[1].participant_index if item[1].participant_index is not None else item[0]
        ),
    )
    participants = tuple(
        Participant(
            participant_id=p.participant_id,
            participant_index=p.participant_index if p.participant_index is not None else i,
            total_time_ms=p.total_time_ms,
            time_used_ms=0,
            time_remaining_ms=p.total_time_ms,
            cycle_count=0,
            is_active=False,
            has_expired=False,
            group_id=p.group_id,
        )
        for i, p in ordered
    )
    stamp = iso_ms(now)
    policy = policy_of(spec.sync_mode)
    action = spec.action_on_timeout or TimeoutAction(policy.default_timeout)
    auto_advance = spec.auto_advance
    if auto_advance is None:
        # A turn limit that runs out passes the turn on by default; it never
        # ends the whole session unless the client asks for that.
        auto_advance = policy.default_auto_advance and policy.has_turn_limit(spec.time_per_cycle_ms)
    state = SessionState(
        session_id=spec.session_id,
        sync_mode=spec.sync_mode,
        status=Status.PENDING,
        version=1,
        participants=participants,
        active_participant_id=None,
        total_time_ms=spec.total_time_ms,
        time_per_cycle_ms=spec.time_per_cycle_ms,
        cycle_started_at=None,
        session_started_at=None,
        session_completed_at=None,
        increment_ms=spec.increment_ms or 0,
        max_time_ms=spec.max_time_ms,
        created_at=stamp,
        updated_at=stamp,
        server_time_ms=now,
        deadline_ms=None,
        cycle_started_ms=None,
        turn_used_ms=0,
        metadata=spec.metadata,
        action_on_timeout=action,
        auto_advance=auto_advance,
        recovered=False,
        banks=_initial_banks(spec, participants),
    )
    return Transition(mirror_banks(state), Event(type="session_created"))


def _validate_create(spec: CreateSession) -> None:
    problems: list[dict[str, str]] = []
    ids = [p.participant_id for p in spec.participants]
    if len(set(ids)) != len(ids):
        problems.append(
            {
                "field": "participants",
                "message": "participant_id values must be unique",
                "code": "duplicate",
            }
        )
    indexes = [
        p.participant_index if p.participant_index is not None else i
        for i, p in enumerate(spec.participants)
    ]
    if len(set(indexes)) != len(indexes):
        problems.append(
            {
                "field": "participants",
                "message": "participant_index values must be unique",
                "code": "duplicate",
            }
        )
    policy = policy_of(spec.sync_mode)
    if policy.turn_limit == "required" and spec.time_per_cycle_ms is None:
        problems.append(
            {
                "field": "time_per_cycle_ms",
                "message": f"required when sync_mode is {policy.mode}",
                "code": "required",
            }
        )
    if policy.bank == "group":
        budgets: dict[str, int] = {}
        for i, p in enumerate(spec.participants):
            if p.group_id is None:
                problems.append(
                    {
                        "field": f"participants.{i}.group_id",
                        "message": f"required when sync_mode is {policy.mode}",
                        "code": "required",
                    }
                )
            elif budgets.setdefault(p.group_id, p.total_time_ms) != p.total_time_ms:
                problems.append(
                    {
                        "field": f"participants.{i}.total_time_ms",
                        "message": "members of one group must have the same total_time_ms",
                        "code": "invalid_value",
                    }
                )
    if spec.metadata is not None and len(msgspec.json.encode(spec.metadata)) > METADATA_MAX_BYTES:
        problems.append(
            {
                "field": "metadata",
                "message": f"must be at most {METADATA_MAX_BYTES} bytes as JSON",
                "code": "too_big",
            }
        )
    if spec.metadata is not None:
        problems.extend(storable_problems(spec.metadata))
    named: list[tuple[str, str | None]] = [("session_id", spec.session_id)]
    for i, p in enumerate(spec.participants):
        named += [(f"participants.{i}.participant_id", p.participant_id)]
        named += [(f"participants.{i}.group_id", p.group_id)]
    problems.extend(id_problems(named))
    if problems:
        raise ValidationFailed("invalid session definition", problems)


def _initial_banks(spec: CreateSession, participants: tuple[Participant, ...]) -> dict[str, Bank]:
    """One bank per bank key, sized by the mode's budget rule (``ModePolicy.counts_up``)."""
    policy = policy_of(spec.sync_mode)
    banks: dict[str, Bank] = {}
    for p in participants:
        key = policy.bank_key(p.participant_id, p.group_id)
        if key is None or key in banks:
            continue
        if policy.counts_up:
            budget = spec.max_time_ms or 0
        elif policy.bank == "session":
            budget = spec.total_time_ms
        else:
            budget = p.total_time_ms
        banks[key] = Bank(budget, budget)
    return banks


# ---------------------------------------------------------------- transitions


def apply(state: SessionState, command: Command, now: int) -> Transition:
    """Apply ``command`` to ``state`` at instant ``now`` (epoch ms).

    Returns:
        The new state (version + 1) and its event.

    Raises:
        InvalidTransition: the command is not allowed in the session's status;
            ``TimeoutNotDue`` for a ``Timeout`` before the deadline.
        ValidationFailed: the command names a participant the session lacks,
            or a switch names the participant whose turn ends as the next one.
        Forbidden: a ``rotation_only`` switch names someone the rotation
            order does not pick.
    """
    handler = TRANSITIONS[state.status].get(type(command))
    if handler is None:
        name = type(command).__name__.lower()
        raise InvalidTransition(
            f"cannot {name} a session that is {state.status.value}",
            {"status": state.status.value, "command": name},
        )
    new_state, event = handler(state, command, now)
    return Transition(_finalize(new_state, state.version, now), event)


def is_overdue(state: SessionState, now: int) -> bool:
    """True when the running timer's deadline is at or before ``now``."""
    return state.deadline_ms is not None and state.deadline_ms <= now


def _finalize(state: SessionState, previous_version: int, now: int) -> SessionState:
    started = state.cycle_started_ms
    return replace(
        state,
        version=previous_version + 1,
        updated_at=iso_ms(now),
        server_time_ms=now,
        cycle_started_at=iso_ms(started) if started is not None else None,
        deadline_ms=compute_deadline(state),
    )


def _start(state: SessionState, _: Start, now: int) -> tuple[SessionState, Event]:
    first = state.participants[0]
    state = replace(
        state,
        status=Status.RUNNING,
        session_started_at=iso_ms(now),
    )
    return _activate(state, first.participant_id, now), Event(
        type="session_started", participant_id=first.participant_id
    )


def _switch(state: SessionState, command: Switch, now: int) -> tuple[SessionState, Event]:
    state = charge(state, now)
    current = _require_active(state)
    if command.next_participant_id is not None and not any(
        p.participant_id == command.next_participant_id for p in state.participants
    ):
        raise ValidationFailed(
            "next_participant_id is not a participant of this session",
            [
                {
                    "field": "next_participant_id",
                    "message": "unknown participant",
                    "code": "invalid_value",
                }
            ],
        )
    expired_id: str | None = None
    if _bank_exhausted(state, current):
        state = _expire_bank_members(state, current)
        expired_id = current.participant_id
    else:
        state = _grant_increment(state, current)
    state = _end_turn(state, current.participant_id)
    _check_next(state, current.participant_id, command)
    next_id = _pick_next(state, current.participant_id, command.next_participant_id)
    if next_id is None:
        finished = _finish(state, Status.EXPIRED, now)
        return finished, Event(
            type="session_expired", participant_id=current.participant_id, reason="timeout"
        )
    return _activate(state, next_id, now), Event(
        type="cycle_switched",
        participant_id=current.participant_id,
        next_participant_id=next_id,
        expired_participant_id=expired_id,
    )


def _pause(state: SessionState, _: Pause, now: int) -> tuple[SessionState, Event]:
    state = charge(state, now)
    return replace(state, status=Status.PAUSED, cycle_started_ms=None), Event(type="session_paused")


def _resume(state: SessionState, _: Resume, now: int) -> tuple[SessionState, Event]:
    return replace(state, status=Status.RUNNING, cycle_started_ms=now), Event(
        type="session_resumed"
    )


def _complete(state: SessionState, _: Complete, now: int) -> tuple[SessionState, Event]:
    return _finish(charge(state, now), Status.COMPLETED, now), Event(type="session_completed")


def _cancel(state: SessionState, _: Cancel, now: int) -> tuple[SessionState, Event]:
    return _finish(charge(state, now), Status.CANCELLED, now), Event(type="session_cancelled")


def _timeout(state: SessionState, _: Timeout, now: int) -> tuple[SessionState, Event]:
    deadline = state.deadline_ms if state.deadline_ms is not None else compute_deadline(state)
    if deadline is None or now < deadline:
        raise TimeoutNotDue(
            "the running timer has not reached its deadline",
            {"deadline_ms": deadline, "now_ms": now},
        )
    at = deadline
    state = charge(state, at)
    active = _require_active(state)
    pid = active.participant_id
    exhausted = _bank_exhausted(state, active)
    action: TimeoutActionType = state.action_on_timeout.type
    if not exhausted and state.auto_advance:
        action = "skip_cycle"
    state = _expire_bank_members(state, active) if exhausted else _mark_expired(state, {pid})
    if action == "expire_session":
        return _finish(state, Status.EXPIRED, at), Event(
            type="session_expired", participant_id=pid, reason="timeout"
        )
    if action == "complete_session":
        return _finish(state, Status.COMPLETED, at), Event(
            type="session_completed", participant_id=pid, reason="timeout"
        )
    if action == "notify":
        return state, Event(type="participant_timeout", participant_id=pid, reason="notify")
    state = _end_turn(state, pid)
    next_id = _pick_next(state, pid, None)
    if next_id is None:
        return _finish(state, Status.EXPIRED, at), Event(
            type="session_expired", participant_id=pid, reason="timeout"
        )
    return _activate(state, next_id, at), Event(
        type="participant_timeout",
        participant_id=pid,
        next_participant_id=next_id,
        reason="skip_cycle",
    )


TRANSITIONS: dict[Status, dict[type[Command], Handler]] = {
    Status.PENDING: {
        Start: _on(Start, _start),
        Complete: _on(Complete, _complete),
        Cancel: _on(Cancel, _cancel),
    },
    Status.RUNNING: {
        Switch: _on(Switch, _switch),
        Pause: _on(Pause, _pause),
        Complete: _on(Complete, _complete),
        Cancel: _on(Cancel, _cancel),
        Timeout: _on(Timeout, _timeout),
    },
    Status.PAUSED: {
        Resume: _on(Resume, _resume),
        Complete: _on(Complete, _complete),
        Cancel: _on(Cancel, _cancel),
    },
    Status.EXPIRED: {},
    Status.COMPLETED: {},
    Status.CANCELLED: {},
}


# ---------------------------------------------------------------- helpers


def _require_active(state: SessionState) -> Participant:
    for p in state.participants:
        if p.participant_id == state.active_participant_id:
            return p
    raise InvalidTransition("the session has no active participant")


def _bank_exhausted(state: SessionState, participant: Participant) -> bool:
    key = bank_key(state.sync_mode, participant)
    if key is None or bank_unlimited(state):
        return False
    return state.banks[key].remaining_ms <= 0


def _expire_bank_members(state: SessionState, participant: Participant) -> SessionState:
    key = bank_key(state.sync_mode, participant)
    members = {p.participant_id for p in state.participants if bank_key(state.sync_mode, p) == key}
    return _mark_expired(state, members)


def _mark_expired(state: SessionState, ids: set[str]) -> SessionState:
    return replace(
        state,
        participants=tuple(
            replace(p, has_expired=True) if p.participant_id in ids else p
            for p in state.participants
        ),
    )


def _grant_increment(state: SessionState, participant: Participant) -> SessionState:
    if not state.increment_ms or not policy_of(state.sync_mode).increments:
        return state
    key = bank_key(state.sync_mode, participant)
    assert key is not None
    bank = state.banks[key]
    granted = replace(
        bank,
        remaining_ms=bank.remaining_ms + state.increment_ms,
        increments_ms=bank.increments_ms + state.increment_ms,
    )
    return mirror_banks(replace(state, banks={**state.banks, key: granted}))


def _end_turn(state: SessionState, participant_id: str) -> SessionState:
    return replace(
        state,
        participants=tuple(
            replace(p, is_active=False, cycle_count=p.cycle_count + 1)
            if p.participant_id == participant_id
            else p
            for p in state.participants
        ),
        active_participant_id=None,
        cycle_started_ms=None,
        turn_used_ms=0,
    )


def _check_next(state: SessionState, current_id: str, command: Switch) -> None:
    """Refuse a ``next_participant_id`` that would let a turn keep or pick its successor.

    Naming the participant whose turn ends would restart its own turn (a new
    per-turn budget, a Fischer increment per call): refused unless the
    rotation picks it anyway (nobody else can play, e.g. a single participant).
    A participant's own switch (``rotation_only``) may only name whom the
    rotation picks; controllers and API keys may name anyone else with time.
    """
    requested = command.next_participant_id
    if requested is None:
        return
    rotation = _pick_next(state, current_id, None)
    if requested == rotation:
        return
    if requested == current_id:
        raise ValidationFailed(
            "next_participant_id may not name the participant whose turn ends",
            [
                {
                    "field": "next_participant_id",
                    "message": "is the participant whose turn ends",
                    "code": "invalid_value",
                }
            ],
        )
    if command.rotation_only:
        raise Forbidden(
            "a participant may not choose who plays next; the rotation order decides",
            {"next_participant_id": requested, "rotation_participant_id": rotation},
        )


def _pick_next(state: SessionState, current_id: str, requested: str | None) -> str | None:
    """Return who plays next: ``requested``, or the next one in index order.

    A participant whose bank is empty is out of the rotation (in bank modes
    that is what ``has_expired`` marks); in per_cycle/global/count_up
    ``has_expired`` only marks a turn that ran out, and everyone stays in
    until the shared bank, if any, is empty.
    """
    keeps_expired = policy_of(state.sync_mode).expiry == "turn"

    def out_of_time(p: Participant) -> bool:
        # A shared bank (global, capped count_up) that is empty leaves nobody
        # to play, even though its members' has_expired is only per turn.
        return (p.has_expired and not keeps_expired) or _bank_exhausted(state, p)

    if requested is not None:
        target = next(p for p in state.participants if p.participant_id == requested)
        if out_of_time(target):
            raise InvalidTransition(
                "next_participant_id has no time left", {"participant_id": requested}
            )
        return requested
    order = state.participants
    start = next(i for i, p in enumerate(order) if p.participant_id == current_id)
    for step in range(1, len(order) + 1):
        candidate = order[(start + step) % len(order)]
        if not out_of_time(candidate):
            return candidate.participant_id
    return None


def _activate(state: SessionState, participant_id: str, at: int) -> SessionState:
    keeps_expired = policy_of(state.sync_mode).expiry == "turn"
    participants = tuple(
        replace(p, is_active=True, has_expired=False if keeps_expired else p.has_expired)
        if p.participant_id == participant_id
        else p
        for p in state.participants
    )
    return mirror_banks(
        replace(
            state,
            participants=participants,
            active_participant_id=participant_id,
            cycle_started_ms=at,
            turn_used_ms=0,
        )
    )


def _finish(state: SessionState, status: Status, at: int) -> SessionState:
    return mirror_banks(
        replace(
            state,
            status=status,
            participants=tuple(replace(p, is_active=False) for p in state.participants),
            active_participant_id=None,
            cycle_started_ms=None,
            session_completed_at=iso_ms(at),
        )
    )
