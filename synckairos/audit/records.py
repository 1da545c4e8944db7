"""Outbox entries and the rows they become (pure: no I/O).

An outbox entry, written by the commit script, has the fields ``id`` (event
id), ``sid``, ``v`` (version), ``t`` (event type), ``e`` (history epoch) and
``c``: the change message (``synckairos.change``: ``{"version", "event",
"state", "ts"}``, or ``{"deleted": true, "ts"}`` for a deletion), decoded with
``change.decode_change``. The relay ships entries to the
worker as ``OutboxEvent`` lists (JSON-friendly); the worker turns them into
rows of ``sync_events``, ``sync_sessions`` and ``sync_participants``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from synckairos.audit.contract import OutboxEvent
from synckairos.change import decode_change, decode_event

__all__ = [
    "EventRow",
    "OutboxEvent",
    "ParticipantRow",
    "SessionRow",
    "from_stream_fields",
    "to_rows",
]


class _Participant(msgspec.Struct):
    participant_id: str
    total_time_ms: int = 0
    time_used_ms: int = 0
    time_remaining_ms: int = 0
    cycle_count: int = 0
    group_id: str | None = None


class _State(msgspec.Struct):
    sync_mode: str
    status: str
    participants: list[_Participant]
    active_participant_id: str | None = None
    time_per_cycle_ms: int | None = None
    increment_ms: int = 0
    max_time_ms: int | None = None
    created_at: str | None = None
    session_started_at: str | None = None
    session_completed_at: str | None = None
    metadata: dict[str, Any] | None = None


_state_decoder = msgspec.json.Decoder(_State)


class EventRow(msgspec.Struct, frozen=True, array_like=True):
    """One row of ``sync_events`` (column order of the INSERT)."""

    id: str
    session_id: str
    event_type: str
    participant_id: str | None
    group_id: str | None
    time_remaining_ms: int | None
    time_elapsed_ms: int | None
    cycle_number: int | None
    timestamp_ms: int
    state_snapshot: str | None
    version: int
    epoch: str
    event: str | None
    committed_at_ms: int


class SessionRow(msgspec.Struct, frozen=True, array_like=True):
    """The ``sync_sessions`` upsert for a session's newest change in a batch."""

    session_id: str
    sync_mode: str
    time_per_cycle_ms: int | None
    increment_ms: int
    max_time_ms: int | None
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    final_status: str
    total_cycles: int
    total_participants: int
    metadata: str
    last_version: int


class ParticipantRow(msgspec.Struct, frozen=True, array_like=True):
    """The ``sync_participants`` upsert for one participant."""

    session_id: str
    participant_id: str
    total_time_ms: int
    group_id: str | None
    total_cycles: int
    total_time_active_ms: int
    last_version: int


def from_stream_fields(fields: dict[bytes, bytes]) -> OutboxEvent:
    """Turn an outbox stream entry's fields into an ``OutboxEvent``."""
    return (
        fields[b"id"].decode(),
        fields[b"sid"].decode(),
        int(fields[b"v"]),
        fields[b"t"].decode(),
        fields.get(b"e", b"").decode(),
        fields[b"c"].decode(),
    )


def to_rows(
    events: list[OutboxEvent],
) -> tuple[list[EventRow], list[SessionRow], list[ParticipantRow], list[str]]:
    """Rows for a batch: every event, plus per session its newest state.

    Returns:
        Event rows; session and participant upserts (from the newest change of
        each session in the batch); ids of sessions deleted in the batch.
    """
    rows: list[EventRow] = []
    newest: dict[str, tuple[int, _State]] = {}
    deleted: list[str] = []
    for event_id, session_id, version, event_type, epoch, change_json in events:
        change = decode_change(change_json)
        if not change.has_state:
            rows.append(
                EventRow(
                    event_id, session_id, event_type, None, None, None, None, None,
                    change.ts, None, version, epoch, None, change.ts,
                )
            )  # fmt: skip
            deleted.append(session_id)
            continue
        state = _state_decoder.decode(change.state)
        event = decode_event(change)
        who = event.participant_id or state.active_participant_id
        person = next((p for p in state.participants if p.participant_id == who), None)
        rows.append(
            EventRow(
                id=event_id,
                session_id=session_id,
                event_type=event_type,
                participant_id=person.participant_id if person else None,
                group_id=person.group_id if person else None,
                time_remaining_ms=person.time_remaining_ms if person else None,
                time_elapsed_ms=person.time_used_ms if person else None,
                cycle_number=person.cycle_count if person else None,
                timestamp_ms=change.ts,
                state_snapshot=bytes(change.state).decode(),
                version=version,
                epoch=epoch,
                event=bytes(change.event).decode() if len(change.event) else None,
                committed_at_ms=change.ts,
            )
        )
        if session_id not in newest or newest[session_id][0] < version:
            newest[session_id] = (version, state)
    sessions: list[SessionRow] = []
    participants: list[ParticipantRow] = []
    for session_id, (version, state) in newest.items():
        sessions.append(
            SessionRow(
                session_id=session_id,
                sync_mode=state.sync_mode,
                time_per_cycle_ms=state.time_per_cycle_ms,
                increment_ms=state.increment_ms,
                max_time_ms=state.max_time_ms,
                created_at=state.created_at,
                started_at=state.session_started_at,
                completed_at=state.session_completed_at,
                final_status=state.status,
                total_cycles=sum(p.cycle_count for p in state.participants),
                total_participants=len(state.participants),
                metadata=msgspec.json.encode(state.metadata or {}).decode(),
                last_version=version,
            )
        )
        participants.extend(
            ParticipantRow(
                session_id,
                p.participant_id,
                p.total_time_ms,
                p.group_id,
                p.cycle_count,
                p.time_used_ms,
                version,
            )
            for p in state.participants
        )
    return rows, sessions, participants, deleted
