"""The change message: every producer and consumer agrees on one schema (``synckairos.change``).

A change is encoded once by the node, stored by the real commit script in the
history and the outbox, and published with the epoch spliced in by the script;
each consumer (sockets, audit rows, the node's timeout lookup) decodes what it
receives with the one decoder.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from synckairos import ws_messages
from synckairos.audit.records import from_stream_fields, to_rows
from synckairos.change import (
    decode_change,
    decode_event,
    decode_header,
    encode_change,
    encode_deletion,
    publish_payload,
    splice,
)
from synckairos.core import CreateSession, Event, Start, apply, create_session
from synckairos.node import Node
from synckairos.redis.store import RedisStore
from tests.helpers import FakeClock, session_body

T0 = 1_800_000_000_000


def _started() -> tuple[bytes, int, Event]:
    spec = msgspec.convert(session_body(), CreateSession)
    started = apply(create_session(spec, T0).state, Start(), T0 + 10)
    return msgspec.json.encode(started.state), started.state.version, started.event


def test_an_encoded_change_decodes_to_what_was_encoded():
    state_json, version, event = _started()
    change = decode_change(encode_change(version, event, state_json, T0 + 10))
    assert (change.version, change.ts, change.epoch, change.deleted) == (
        version,
        T0 + 10,
        "",
        False,
    )
    assert bytes(change.state) == state_json and change.has_state
    assert decode_event(change).type == event.type == "session_started"


def test_a_deletion_decodes_as_a_deletion_without_state_or_event():
    change = decode_change(encode_deletion(T0))
    assert change.deleted and not change.has_state and change.ts == T0
    assert decode_event(change).type == ""


def test_splice_puts_fields_first_and_keeps_the_object_valid_json():
    assert splice(b'"a":1', b'{"b":2}') == b'{"a":1,"b":2}'
    assert msgspec.json.decode(publish_payload(b'{"version":3}', "ep")) == {
        "epoch": "ep",
        "version": 3,
    }


def test_a_state_update_is_the_same_whether_published_or_replayed_from_history():
    state_json, version, event = _started()
    change_json = encode_change(version, event, state_json, T0 + 10)
    published = ws_messages.decode_delivery("sid", publish_payload(change_json, "ep"), T0 + 20)
    replayed = ws_messages.state_update_from_history("sid", "ep", change_json, T0 + 20)
    assert published.text == replayed
    assert (published.version, published.epoch, published.ts) == (version, "ep", T0 + 10)
    message = msgspec.json.decode(replayed)
    assert message["type"] == "STATE_UPDATE" and message["state"]["version"] == version


async def _next_message(pubsub: Any) -> bytes:
    async with asyncio.timeout(5):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                data: bytes = message["data"]
                return data


async def test_the_commit_script_stores_and_publishes_what_every_consumer_decodes(
    store: RedisStore,
):
    clock = FakeClock()
    node = Node(store, clock=clock)
    spec = msgspec.convert(session_body(), CreateSession)
    channel = store.keys(spec.session_id).channel
    pubsub = store.client.pubsub()
    await pubsub.subscribe(channel)
    try:
        await node.create(spec)
        created_payload = await _next_message(pubsub)
        clock.advance(10)
        result = await node.execute(spec.session_id, Start())
        published = await _next_message(pubsub)
        history = await store.read_since(spec.session_id, 1)
        [(version, change_json)] = history.changes
        outbox: Any = await store.client.xrevrange(store.outbox_key, count=1)
        fields = outbox[0][1]
        # One encoding: history entry and outbox ``c`` are the node's bytes,
        # the published payload is the script's splice of the epoch.
        assert version == result.transition.state.version == 2
        assert fields[b"c"] == change_json
        assert published == publish_payload(change_json, result.epoch)
        assert decode_change(created_payload).version == 1
        header, full = decode_header(published), decode_change(published)
        assert (header.version, header.ts, header.epoch) == (full.version, full.ts, full.epoch)
        assert full.epoch == result.epoch and bytes(full.state) == result.state_json
        # Every consumer decodes it.
        delivery = ws_messages.decode_delivery(spec.session_id, published, clock.now)
        assert (delivery.version, delivery.epoch, delivery.deleted) == (2, result.epoch, False)
        assert delivery.text == ws_messages.state_update_from_history(
            spec.session_id, result.epoch, change_json, clock.now
        )
        rows, sessions, _, deleted = to_rows([from_stream_fields(fields)])
        assert [(r.version, r.event_type, r.epoch) for r in rows] == [
            (2, "session_started", result.epoch)
        ]
        assert sessions[0].final_status == "running" and deleted == []
        assert decode_event(decode_change(change_json)).type == "session_started"

        await node.delete(spec.session_id)
        deletion = await _next_message(pubsub)
        assert decode_change(deletion).deleted
        gone = ws_messages.decode_delivery(spec.session_id, deletion, clock.now)
        assert gone.deleted and "SESSION_DELETED" in gone.text
        outbox = await store.client.xrevrange(store.outbox_key, count=1)
        assert outbox[0][1][b"c"] == deletion
        assert to_rows([from_stream_fields(outbox[0][1])])[3] == [spec.session_id]
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
