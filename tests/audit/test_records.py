"""Outbox entries → table rows (pure: no database)."""

from __future__ import annotations

import msgspec

from synckairos.audit.records import from_stream_fields, to_rows
from synckairos.core import CreateSession, Start, Switch, apply, create_session
from tests.helpers import session_body

T0 = 1_800_000_000_000


def _change(transition) -> str:
    state = msgspec.json.encode(transition.state).decode()
    event = msgspec.json.encode(transition.event).decode()
    return f'{{"version":{transition.state.version},"event":{event},"state":{state},"ts":{T0}}}'


def test_a_batch_becomes_one_row_per_event_and_one_upsert_per_session():
    spec = msgspec.convert(session_body(participants=2), CreateSession)
    created = create_session(spec, T0)
    started = apply(created.state, Start(), T0 + 10)
    switched = apply(started.state, Switch(), T0 + 1_510)
    events = [
        (f"{i:032x}", spec.session_id, t.state.version, t.event.type, "ep", _change(t))
        for i, t in enumerate((created, started, switched))
    ]
    rows, sessions, participants, deleted = to_rows(events)
    assert [r.version for r in rows] == [1, 2, 3]
    assert [r.event_type for r in rows] == ["session_created", "session_started", "cycle_switched"]
    mover = spec.participants[0].participant_id
    assert rows[2].participant_id == mover and rows[2].time_elapsed_ms == 1_500
    assert rows[2].cycle_number == 1 and rows[2].epoch == "ep"
    assert msgspec.json.decode(rows[2].state_snapshot or "null")["version"] == 3
    assert [s.last_version for s in sessions] == [3]
    assert sessions[0].final_status == "running" and sessions[0].total_cycles == 1
    assert {p.participant_id for p in participants} == {p.participant_id for p in spec.participants}
    assert deleted == []


def test_a_deletion_has_no_snapshot_and_marks_the_session():
    rows, sessions, _, deleted = to_rows(
        [("ab" * 16, "sid-1", 4, "session_deleted", "ep", '{"deleted":true,"ts":5}')]
    )
    assert rows[0].state_snapshot is None and rows[0].version == 4
    assert rows[0].committed_at_ms == 5
    assert sessions == [] and deleted == ["sid-1"]


def test_stream_fields_are_read_in_the_relay_format():
    fields = {b"id": b"x", b"sid": b"s", b"v": b"7", b"t": b"cycle_switched", b"e": b"ep",
              b"c": b"{}"}  # fmt: skip
    assert from_stream_fields(fields) == ("x", "s", 7, "cycle_switched", "ep", "{}")
