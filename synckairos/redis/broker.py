"""The dramatiq broker of the audit pipeline, on Redis.

Its keys live under ``P:dramatiq`` (``keys.dramatiq_namespace``), so
deployments sharing a Redis with different key prefixes never take each
other's batches.
"""

from __future__ import annotations

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO

from synckairos.redis.keys import dramatiq_namespace

__all__ = ["AUDIT_QUEUE", "DEAD_LETTER_TTL_MS", "build_broker", "dead_letter_keys"]

#: dramatiq queue of the audit batches.
AUDIT_QUEUE = "synckairos_audit"

#: How long dramatiq keeps a dead letter before its maintenance drops it (30 days).
DEAD_LETTER_TTL_MS = 30 * 86_400_000


def dead_letter_keys(broker: RedisBroker) -> tuple[str, str]:
    """dramatiq's dead-letter set of the audit queue and the hash of its message bodies.

    The sorted set maps each dead letter's ``redis_message_id`` to the epoch
    ms it was dead-lettered at; the hash maps it to the encoded message.
    """
    xq = f"{broker.namespace}:{AUDIT_QUEUE}.XQ"
    return xq, f"{xq}.msgs"


def build_broker(
    client: redis.Redis, *, prefix: str = "sk", heartbeat_timeout_ms: int = 10_000
) -> RedisBroker:
    """The dramatiq broker on ``client`` (``connection.sync_client``) with AsyncIO.

    A worker that dies holding a message is detected after
    ``heartbeat_timeout_ms`` and its messages are redelivered. Dead letters
    are kept ``DEAD_LETTER_TTL_MS`` (30 days) for ``synckairos audit requeue``.
    """
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=dramatiq_namespace(prefix),
        heartbeat_timeout=heartbeat_timeout_ms,
        dead_message_ttl=DEAD_LETTER_TTL_MS,
        # Out of a million dispatches; maintenance is what gives a dead
        # worker's unacknowledged batches back, so run it about once a second.
        maintenance_chance=50_000,
    )
    broker.add_middleware(AsyncIO())
    return broker
