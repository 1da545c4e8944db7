"""``synckairos audit requeue``: put dead-lettered audit batches back in the queue.

dramatiq's Redis broker keeps dead-lettered messages in the sorted set
``<namespace>:<queue>.XQ`` and their bodies in ``<namespace>:<queue>.XQ.msgs``. Each
one is re-enqueued with its retry count reset, then removed from there.
"""

from __future__ import annotations

from typing import Any

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from synckairos.audit.pipeline import AUDIT_QUEUE

__all__ = ["requeue_dead_letters"]


def requeue_dead_letters(broker: RedisBroker, limit: int | None = None) -> int:
    """Re-enqueue dead-lettered audit batches; returns how many."""
    xq = f"{broker.namespace}:{AUDIT_QUEUE}.XQ"
    bodies = f"{xq}.msgs"
    ids: Any = broker.client.zrange(xq, 0, -1 if limit is None else limit - 1)
    moved = 0
    for message_id in ids:
        data: Any = broker.client.hget(bodies, message_id)
        if data is not None:
            message = Message.decode(data)
            options = {
                k: v for k, v in message.options.items() if k not in ("retries", "traceback")
            }
            broker.enqueue(message.copy(options=options))
            moved += 1
        broker.client.zrem(xq, message_id)
        broker.client.hdel(bodies, message_id)
    return moved
