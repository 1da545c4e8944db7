"""The key schema of ``synckairos.redis.keys``: names the deployed data already uses."""

from __future__ import annotations

from synckairos.redis.keys import (
    Keys,
    audit_counter,
    dramatiq_namespace,
    session_channel,
    session_of_channel,
)


def test_a_sessions_keys_share_one_hash_tag():
    keys = Keys("sk").session("abc")
    assert (keys.state, keys.history, keys.channel, keys.rate) == (
        "sk:{abc}",
        "sk:{abc}:history",
        "sk:{abc}:updates",
        "sk:{abc}:rl",
    )


def test_the_global_keys_keep_their_names():
    keys = Keys("p")
    assert (keys.deadlines, keys.outbox, keys.dropped, keys.active, keys.nodes) == (
        "p:deadlines",
        "p:outbox",
        "p:outbox:dropped",
        "p:active",
        "p:nodes",
    )
    assert keys.limiter("create", "1.2.3.4") == "p:rl:create:1.2.3.4"
    assert audit_counter("p", "persisted") == keys.audit_counter("persisted") == "p:audit:persisted"
    assert dramatiq_namespace("p") == "p:dramatiq"


def test_a_session_channel_is_parsed_back_to_its_session():
    assert session_of_channel(session_channel("sk", "abc")) == "abc"
    assert session_of_channel(b"sk:nodes") is None
