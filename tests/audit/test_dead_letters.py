"""Dead letters of single events, on the real Redis: keyed by event id, never doubled."""

from __future__ import annotations

from typing import Any

from dramatiq import Message

from synckairos.audit.pipeline import RefusedEvent, dead_letter
from synckairos.config import Settings
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.redis.broker import build_broker, dead_letter_keys
from synckairos.redis.connection import sync_client
from tests.helpers import new_id


def test_dead_lettering_the_same_event_twice_keeps_one_dead_letter(redis_server: EmbeddedRedis):
    settings = Settings(redis_url=redis_server.url, key_prefix=f"t{new_id()[:8]}")
    broker = build_broker(sync_client(settings), prefix=settings.key_prefix)
    try:
        event_id = new_id()
        refused = RefusedEvent(
            (event_id, new_id(), 3, "cycle_switched", "ep", "{}"),
            "UntranslatableCharacterError",
            "22P05",
        )
        assert dead_letter(broker, refused) is True
        assert dead_letter(broker, refused) is False  # a redelivered batch
        xq, bodies = dead_letter_keys(broker)
        assert broker.client.zcard(xq) == 1
        body: Any = broker.client.hget(bodies, f"event:{event_id}")
        message = Message.decode(body)
        assert message.actor_name == "persist_events"
        assert message.args[0] == [list(refused.event)]
        assert message.options["refused"] == {
            "error": "UntranslatableCharacterError",
            "sqlstate": "22P05",
        }
    finally:
        broker.close()
