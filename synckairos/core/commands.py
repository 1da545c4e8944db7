"""Inputs of the timer engine: the create request and the commands.

``CreateSession`` carries the schema limits of docs/protocol.md as msgspec
constraints, so decoding a request body validates types and ranges in one step;
the remaining rules (unique ids, per-mode requirements) are checked by
``machine.create_session``. Commands are tagged Structs; ``machine.apply``
dispatches on their type through the transition table.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from synckairos.core.model import SyncMode, TimeoutAction

__all__ = [
    "UUID_PATTERN",
    "Cancel",
    "Command",
    "Complete",
    "CreateSession",
    "NewParticipant",
    "Pause",
    "Resume",
    "Start",
    "Switch",
    "Timeout",
    "Uuid",
]

#: Canonical UUID text form (any version, either case). ``$`` of Python's ``re``
#: also matches before a trailing newline, so ``Uuid`` pins the length as well
#: (36 characters): together they match the whole string and nothing else, in
#: Python (msgspec) and in ECMAScript (the OpenAPI document) alike. The HTTP and
#: WebSocket layers lowercase every id they accept (``synckairos.wire``), so
#: keys, channels, PostgreSQL and responses only ever see one spelling.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

Uuid = Annotated[
    str,
    msgspec.Meta(
        pattern=UUID_PATTERN,
        min_length=36,
        max_length=36,
        description="UUID string (either case; stored and answered in lowercase)",
    ),
]
BudgetMs = Annotated[int, msgspec.Meta(ge=1_000, le=86_400_000)]
IncrementMs = Annotated[int, msgspec.Meta(ge=0, le=60_000)]

#: Largest serialized ``metadata`` object accepted, in bytes.
METADATA_MAX_BYTES = 10 * 1024


class NewParticipant(msgspec.Struct, frozen=True):
    """A participant as given in a create request."""

    participant_id: Uuid
    total_time_ms: BudgetMs
    participant_index: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    group_id: Uuid | None = None


class CreateSession(msgspec.Struct, frozen=True):
    """Body of ``POST /v1/sessions``. Unknown fields are ignored, never stored."""

    session_id: Uuid
    sync_mode: SyncMode
    participants: Annotated[list[NewParticipant], msgspec.Meta(min_length=1, max_length=1000)]
    total_time_ms: BudgetMs
    time_per_cycle_ms: BudgetMs | None = None
    increment_ms: IncrementMs | None = None
    max_time_ms: BudgetMs | None = None
    metadata: dict[str, Any] | None = None
    auto_advance: bool | None = None
    action_on_timeout: TimeoutAction | None = None


class Start(msgspec.Struct, frozen=True, tag=True):
    """pending → running: the first participant (lowest index) becomes active."""


class Switch(msgspec.Struct, frozen=True, tag=True):
    """End the active participant's turn and activate the next one.

    ``next_participant_id`` may not name the participant whose turn ends
    (unless nobody else could play). With ``rotation_only`` (a switch sent by
    a participant's token) it may only name whom the rotation order picks.
    """

    next_participant_id: str | None = None
    rotation_only: bool = False


class Pause(msgspec.Struct, frozen=True, tag=True):
    """running → paused: charge the elapsed time and stop the clock."""


class Resume(msgspec.Struct, frozen=True, tag=True):
    """paused → running: restart the clock of the same active participant."""


class Complete(msgspec.Struct, frozen=True, tag=True):
    """Finish the session normally (from pending, running or paused)."""


class Cancel(msgspec.Struct, frozen=True, tag=True):
    """Abort the session (from pending, running or paused)."""


class Timeout(msgspec.Struct, frozen=True, tag=True):
    """The running timer reached its deadline; applied by the server only."""


Command = Start | Switch | Pause | Resume | Complete | Cancel | Timeout
