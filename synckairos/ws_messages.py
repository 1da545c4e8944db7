"""WebSocket messages of docs/protocol.md: client messages decoded, server messages built.

Server messages are built as text by splicing the JSON the store already
holds (a change or a state) into a small envelope, so a change is encoded once
per node however many sockets receive it. Field names follow the Node.js
SyncKairos (``sessionId``, ``timestamp``); our extensions use snake_case. The
change inside a STATE_UPDATE is the change message of ``synckairos.change``,
decoded and spliced with its functions (one schema).
"""

from __future__ import annotations

import msgspec

from synckairos.change import decode_header, splice

__all__ = [
    "ClientMessage",
    "Delivery",
    "connected",
    "decode_client_message",
    "decode_delivery",
    "error",
    "pong",
    "reconnect_ack",
    "session_deleted",
    "state_sync",
    "state_update_from_history",
    "time_sync",
]


class ClientMessage(msgspec.Struct, frozen=True):
    """Any client → server message; fields other than ``type`` are optional.

    ``PING {t0?}``, ``RECONNECT {last_known_version?, epoch?, reconnect_attempt?}``,
    ``TIME_SYNC {t0}``. Unknown fields are ignored (compatibility).
    """

    type: str
    t0: int | float | None = None
    last_known_version: int | None = None
    epoch: str | None = None
    reconnect_attempt: int | None = None


class Delivery(msgspec.Struct, frozen=True):
    """One published change as the hub hands it to a node's sockets."""

    version: int
    """Session version the change produced (0 for a deletion)."""
    epoch: str
    """History epoch of the session when it was committed."""
    deleted: bool
    """True when the session was deleted."""
    ts: int
    """Commit time (server epoch ms), for the delivery latency metric."""
    text: str
    """The ready-to-send STATE_UPDATE (or SESSION_DELETED) message."""


_client_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def decode_client_message(data: str | bytes) -> ClientMessage:
    """Decode a client message.

    Raises:
        msgspec.DecodeError: not JSON, or not an object with a string ``type``.
    """
    return _client_decoder.decode(data)


def decode_delivery(session_id: str, payload: bytes, now: int) -> Delivery:
    """Turn a pub/sub payload of the commit script into a ``Delivery``.

    The payload is ``change.publish_payload``: ``{"epoch","version","event",
    "state","ts"}`` for a change and ``{"deleted": true, "ts"}`` for a
    deletion.

    Raises:
        msgspec.DecodeError: not a change message.
    """
    header = decode_header(payload)
    if header.deleted:
        return Delivery(0, "", True, header.ts, session_deleted(session_id, now))
    head = b'"type":"STATE_UPDATE","sessionId":"%s","timestamp":%d' % (session_id.encode(), now)
    text = splice(head, payload).decode()
    return Delivery(header.version, header.epoch, False, header.ts, text)


def state_update_from_history(session_id: str, epoch: str, change_json: bytes, now: int) -> str:
    """A STATE_UPDATE rebuilt from a history entry (``change.encode_change``).

    The same message ``decode_delivery`` builds from the published change.
    """
    head = b'"type":"STATE_UPDATE","sessionId":"%s","timestamp":%d,"epoch":"%s"' % (
        session_id.encode(),
        now,
        epoch.encode(),
    )
    return splice(head, change_json).decode()


def connected(session_id: str, now: int) -> str:
    """``CONNECTED``: the socket is accepted."""
    return f'{{"type":"CONNECTED","sessionId":"{session_id}","timestamp":{now}}}'


def state_sync(session_id: str, now: int, version: int, epoch: str, state_json: bytes) -> str:
    """``STATE_SYNC``: the whole current state (after connect, or when replay is impossible)."""
    head = (
        f'{{"type":"STATE_SYNC","sessionId":"{session_id}","timestamp":{now},'
        f'"version":{version},"epoch":"{epoch}","state":'
    )
    return head + state_json.decode() + "}"


def session_deleted(session_id: str, now: int) -> str:
    """``SESSION_DELETED``: sent before closing the socket with 1000."""
    return f'{{"type":"SESSION_DELETED","sessionId":"{session_id}","timestamp":{now}}}'


def pong(now: int, t0: int | float | None) -> str:
    """``PONG``, echoing the client's ``t0`` when it sent one."""
    if t0 is None:
        return f'{{"type":"PONG","timestamp":{now}}}'
    return f'{{"type":"PONG","timestamp":{now},"t0":{_encoder.encode(t0).decode()}}}'


def time_sync(t0: int | float | None, t1: int, t2: int) -> str:
    """``TIME_SYNC``: client send time echoed, server receive and send times."""
    echoed = "null" if t0 is None else _encoder.encode(t0).decode()
    return f'{{"type":"TIME_SYNC","t0":{echoed},"t1":{t1},"t2":{t2}}}'


def error(code: str, message: str) -> str:
    """``ERROR``: the connection stays open unless a close follows."""
    return _encoder.encode({"type": "ERROR", "code": code, "message": message}).decode()


def reconnect_ack(recovered: bool, replayed: int, version: int, epoch: str) -> str:
    """``RECONNECT_ACK``: the outcome of a RECONNECT (after the replay or STATE_SYNC)."""
    return _encoder.encode(
        {
            "type": "RECONNECT_ACK",
            "success": True,
            "recovered": recovered,
            "replayed": replayed,
            "version": version,
            "epoch": epoch,
        }
    ).decode()
