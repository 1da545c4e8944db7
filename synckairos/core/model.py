"""The session model: what a timer session *is*, as immutable msgspec Structs.

The stored form of a session is its wire form: ``SessionState`` encodes to the
``SyncState`` JSON of docs/protocol.md (SyncKairos fields plus our extensions), so a
state read from Redis can be sent to a client without re-encoding.

Time accounting lives in *banks*. A bank is a pool of milliseconds that drains
while one of its members is active:

* ``per_participant``: one bank per participant (key: ``participant_id``);
* ``per_group``: one bank per group (key: ``group_id``);
* ``global``: one bank for the session (key: ``"session"``);
* ``count_up``: one bank for the session whose budget is ``max_time_ms``
  (``None``: no cap), counting time used rather than time left;
* ``per_cycle``: no bank; every turn has the budget ``time_per_cycle_ms``.

(``core/modes.py`` holds these per-mode rules as one table; ``SyncMode``,
``GLOBAL_BANK`` and ``TimeoutActionType`` are defined there and re-exported.)

Each bank keeps ``used + remaining == budget + increments`` (time is conserved).
A participant's ``time_remaining_ms`` (and ``total_time_ms``, as in the Node.js
SyncKairos, where it is the bank's current size) mirror its bank as of the last
committed change; clients compute the live value from ``deadline_ms`` or
``cycle_started_ms`` and the synced clock ("calculate, don't count").
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from synckairos.core.modes import GLOBAL_BANK, SyncMode, TimeoutActionType

__all__ = [
    "GLOBAL_BANK",
    "TERMINAL_STATUSES",
    "Bank",
    "Event",
    "Participant",
    "SessionState",
    "Status",
    "SyncMode",
    "TimeoutAction",
    "TimeoutActionType",
]


class Status(enum.StrEnum):
    """Lifecycle status of a session."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    EXPIRED = "expired"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


#: Statuses from which no transition leads anywhere.
TERMINAL_STATUSES = frozenset({Status.EXPIRED, Status.COMPLETED, Status.CANCELLED})


class TimeoutAction(msgspec.Struct, frozen=True, omit_defaults=True):
    """What happens when a running timer reaches zero (``action_on_timeout``)."""

    type: TimeoutActionType


class Bank(msgspec.Struct, frozen=True):
    """A pool of time shared by the members of one bank key.

    Invariant: ``used_ms + remaining_ms == budget_ms + increments_ms`` (for a
    count-up bank without a cap, ``budget_ms`` is 0 and only ``used_ms`` grows).
    """

    budget_ms: int
    """Initial size of the bank."""
    remaining_ms: int
    """Time left as of ``SessionState.cycle_started_ms`` (or the last change)."""
    used_ms: int = 0
    """Time charged to the bank so far."""
    increments_ms: int = 0
    """Fischer increments granted to the bank so far."""


class Participant(msgspec.Struct, frozen=True, omit_defaults=True):
    """One participant of a session, in the SyncKairos wire shape.

    ``group_id`` is the only field with a default, so the only one omitted
    when unset (absent, not null, as the Node.js server's response schema
    wants: ``group_id`` is optional there, not nullable). Every other field is
    always present, zeros and ``false`` included.
    """

    participant_id: str
    participant_index: int
    total_time_ms: int
    time_used_ms: int
    time_remaining_ms: int
    cycle_count: int
    is_active: bool
    has_expired: bool
    group_id: str | None = None


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a committed change did: the ``event`` of a STATE_UPDATE."""

    type: str
    participant_id: str | None = None
    next_participant_id: str | None = None
    expired_participant_id: str | None = None
    reason: str | None = None


class SessionState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A whole session: the SyncKairos ``SyncState`` plus our extensions.

    Instants used for arithmetic are integer epoch milliseconds
    (``cycle_started_ms``); the ISO 8601 fields exist for wire compatibility and
    are derived from the same instants by the core.

    Unset optional fields are *absent* from the JSON, not null: the Node.js
    server's response schema declares ``max_time_ms`` (and ``increment_ms``)
    optional, not nullable, so a client validating with it rejects a null.
    Those fields (and our ``metadata``) are the only ones with a default
    (``omit_defaults``). Fields the schema declares nullable
    (``active_participant_id``, ``time_per_cycle_ms``, the ISO instants) and
    ours documented as nullable (``deadline_ms``, ``cycle_started_ms``) have
    no default: always present, null when unset. States stored before this
    change (with ``"max_time_ms": null``) decode to the same value.
    """

    session_id: str
    sync_mode: SyncMode
    status: Status
    version: int
    participants: tuple[Participant, ...]
    active_participant_id: str | None
    total_time_ms: int
    time_per_cycle_ms: int | None
    cycle_started_at: str | None
    session_started_at: str | None
    session_completed_at: str | None
    increment_ms: int
    max_time_ms: int | None = None
    created_at: str
    updated_at: str
    # Extensions (docs/protocol.md "(ext)").
    server_time_ms: int
    deadline_ms: int | None
    cycle_started_ms: int | None
    turn_used_ms: int
    """Time already used in the current turn before ``cycle_started_ms``
    (non-zero after a pause/resume within a turn)."""
    metadata: dict[str, Any] | None = None
    action_on_timeout: TimeoutAction
    auto_advance: bool
    recovered: bool
    banks: dict[str, Bank]
