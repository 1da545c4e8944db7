"""The change message: the one schema of a committed change, wherever it travels.

A commit produces one *change*, encoded once per commit by ``encode_change``
(the hot path: a few byte splices, the state is the JSON already committed)::

    {"version": V, "event": {...}, "state": {...}, "ts": T}

That same byte string is

* the session history entry (``sk:{sid}:history``, field ``c``), which a
  RECONNECT replays as STATE_UPDATE (``ws_messages.state_update_from_history``);
* the audit outbox entry's ``c`` (``audit.records.to_rows`` decodes it);
* the pub/sub payload, once the commit script has put the session's epoch in
  front of it, inside Redis (it only knows the epoch there)::

      {"epoch": "E", "version": V, "event": {...}, "state": {...}, "ts": T}

  ``publish_payload`` states that splice in Python (the script must agree:
  ``tests/test_change.py`` runs the real script and compares); sockets get
  the payload as STATE_UPDATE (``ws_messages.decode_delivery``).

A deletion is ``{"deleted": true, "ts": T}`` (``encode_deletion``): outbox
``c`` and pub/sub payload as is; it has no history entry.

Every consumer decodes with ``decode_change`` into ``ChangeMessage`` (the
event and state stay ``msgspec.Raw``, never parsed into objects) and reads
the event with ``decode_event``; the fan-out, which needs only the header
of every published change, decodes ``ChangeHeader`` with ``decode_header``
(the same fields without the body: half the time of a full decode on an
18 KB change). Field names live here only.
"""

from __future__ import annotations

import msgspec

from synckairos.core import Event

__all__ = [
    "ChangeEvent",
    "ChangeHeader",
    "ChangeMessage",
    "decode_change",
    "decode_event",
    "decode_header",
    "encode_change",
    "encode_deletion",
    "publish_payload",
    "splice",
]

_encoder = msgspec.json.Encoder()


class ChangeEvent(msgspec.Struct, frozen=True):
    """The fields of a change's ``event`` its consumers read (lenient: any stored event decodes).

    The producer encodes ``core.Event``; this view has a default for every
    field so an event written by any release decodes.
    """

    type: str = ""
    participant_id: str | None = None
    """Whom the event concerns (the timed-out participant of a timeout)."""
    reason: str | None = None
    """``timeout``, ``pending_ttl``, ``already_completed``, ... (None: a command)."""


class ChangeMessage(msgspec.Struct, frozen=True):
    """Any change message decoded: history entry, outbox ``c`` or pub/sub payload.

    A change has ``version``, ``event``, ``state`` and ``ts``; a published
    change also ``epoch``; a deletion only ``deleted`` (True) and ``ts``.
    ``event`` and ``state`` stay raw JSON (empty when absent).
    """

    version: int = 0
    """Session version the change produced (0 for a deletion)."""
    event: msgspec.Raw = msgspec.Raw(b"")
    state: msgspec.Raw = msgspec.Raw(b"")
    ts: int = 0
    """Commit time, server epoch ms."""
    epoch: str = ""
    """History epoch of the session (pub/sub payloads only; "" elsewhere)."""
    deleted: bool = False
    """True for a deletion."""

    @property
    def has_state(self) -> bool:
        """True when the message carries a state (a change, not a deletion)."""
        return not self.deleted and len(self.state) > 0 and bytes(self.state) != b"null"


class ChangeHeader(msgspec.Struct, frozen=True):
    """``ChangeMessage`` without ``event`` and ``state`` (skipped, not kept): the fan-out's view."""

    version: int = 0
    ts: int = 0
    epoch: str = ""
    deleted: bool = False


_change_decoder = msgspec.json.Decoder(ChangeMessage)
_header_decoder = msgspec.json.Decoder(ChangeHeader)
_event_decoder = msgspec.json.Decoder(ChangeEvent)


def encode_change(version: int, event: Event, state_json: bytes, ts: int) -> bytes:
    """The change JSON of one commit (history entry, outbox ``c``, publish body).

    Args:
        version: the version the change produces (``state_json``'s own).
        event: what the change did.
        state_json: the new state, as committed (spliced, not re-encoded).
        ts: commit time, server epoch ms.
    """
    return b'{"version":%d,"event":%s,"state":%s,"ts":%d}' % (
        version,
        _encoder.encode(event),
        state_json,
        ts,
    )


def encode_deletion(ts: int) -> bytes:
    """The change JSON of a deletion at ``ts`` (outbox ``c``, publish payload)."""
    return b'{"deleted":true,"ts":%d}' % ts


def splice(fields: bytes, obj_json: bytes) -> bytes:
    """``obj_json`` (a non-empty JSON object) with ``fields`` (``"k":v,...``) put first.

    The one way a message is extended without decoding it: the epoch into a
    published change, the envelope of a STATE_UPDATE, ``expired_participant_id``
    into a switch's answer.
    """
    return b"{" + fields + b"," + obj_json[1:]


def publish_payload(change_json: bytes, epoch: str) -> bytes:
    """What the commit script publishes for ``change_json`` committed in ``epoch``.

    The script builds it in Lua (``'{"epoch":"' .. epoch .. '",' ..
    string.sub(change, 2)``); this is the same splice, the reference the
    script is tested against.
    """
    return splice(b'"epoch":"%s"' % epoch.encode(), change_json)


def decode_change(data: bytes | str) -> ChangeMessage:
    """Decode a history entry, outbox ``c`` or pub/sub payload.

    Raises:
        msgspec.DecodeError: not a JSON object of this schema.
    """
    return _change_decoder.decode(data)


def decode_header(data: bytes | str) -> ChangeHeader:
    """Decode only the header of a change message (the body is skipped).

    Raises:
        msgspec.DecodeError: not a JSON object of this schema.
    """
    return _header_decoder.decode(data)


def decode_event(change: ChangeMessage) -> ChangeEvent:
    """The event of ``change`` (an empty ``ChangeEvent`` for a deletion).

    Raises:
        msgspec.DecodeError: the event is not an object of this schema.
    """
    if len(change.event) == 0:
        return ChangeEvent()
    return _event_decoder.decode(change.event)
