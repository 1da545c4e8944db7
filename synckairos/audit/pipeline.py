"""The worker side of the audit trail: dramatiq broker, actor, PostgreSQL writer.

``build_broker`` makes the dramatiq Redis broker (with the AsyncIO middleware,
so the actor is a coroutine and its asyncpg pool lives in the worker's event
loop). ``AuditPipeline.actor`` (``persist_events``) inserts a batch of outbox
events in one transaction with ``writer.write_events`` (``ON CONFLICT (id) DO
NOTHING``): a redelivered batch is harmless. It is retried with exponential
backoff (PostgreSQL down); after the last retry dramatiq dead-letters the
message, and ``AuditMonitor`` counts it and logs an error; ``synckairos audit
requeue`` puts it back.

Counters shared with the API nodes' ``/metrics`` live in Redis (``P:audit:*``).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from dramatiq.middleware.asyncio import AsyncIO

from synckairos.audit.records import OutboxEvent
from synckairos.audit.writer import write_events

__all__ = ["AUDIT_QUEUE", "AuditMonitor", "AuditPipeline", "build_broker", "counter_key"]

logger = logging.getLogger(__name__)

#: dramatiq queue of the audit batches.
AUDIT_QUEUE = "synckairos_audit"


def counter_key(prefix: str, name: str) -> str:
    """Redis key of a shared audit counter (persisted, retries, dead_lettered, ...)."""
    return f"{prefix}:audit:{name}"


def build_broker(
    client: redis.Redis, *, prefix: str = "sk", heartbeat_timeout_ms: int = 10_000
) -> RedisBroker:
    """The dramatiq broker on ``client`` (``redis_client.sync_client``) with AsyncIO.

    Its keys live under ``<prefix>:dramatiq`` so deployments sharing a Redis
    with different key prefixes never take each other's batches. A worker
    that dies holding a message is detected after ``heartbeat_timeout_ms``
    and its messages are redelivered.
    """
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=f"{prefix}:dramatiq",
        heartbeat_timeout=heartbeat_timeout_ms,
        # Out of a million dispatches; maintenance is what gives a dead
        # worker's unacknowledged batches back, so run it about once a second.
        maintenance_chance=50_000,
    )
    broker.add_middleware(AsyncIO())
    return broker


class AuditMonitor(Middleware):
    """Counts failed attempts and dead-lettered batches (in Redis) and logs them."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None or message.queue_name != AUDIT_QUEUE:
            return
        self.client.incr(counter_key(self.prefix, "retries"))
        logger.warning(
            "audit batch %s failed (attempt %d): %s; retrying with backoff",
            message.message_id,
            message.options.get("retries", 0) + 1,
            exception,
        )

    def after_nack(self, broker: Any, message: Any) -> None:
        if message.queue_name != AUDIT_QUEUE:
            return
        self.client.incr(counter_key(self.prefix, "dead_lettered"))
        events = message.args[0] if message.args else []
        logger.error(
            "audit batch %s of %d events dead-lettered after its last retry; "
            "run `synckairos audit requeue` once PostgreSQL is healthy",
            message.message_id,
            len(events),
        )


class AuditPipeline:
    """Owns the ``persist_events`` actor and its PostgreSQL pool."""

    def __init__(
        self,
        broker: RedisBroker,
        database_url: str,
        *,
        prefix: str = "sk",
        max_retries: int = 20,
        min_backoff_ms: int = 200,
        max_backoff_ms: int = 30_000,
    ) -> None:
        self.broker = broker
        self.database_url = database_url
        self.prefix = prefix
        self._pool: asyncpg.Pool | None = None
        self._counters = broker.client
        broker.add_middleware(AuditMonitor(broker.client, prefix))

        async def persist_events(events: list[OutboxEvent]) -> None:
            await self.persist(events)

        decorate = dramatiq.actor(
            broker=broker,
            actor_name="persist_events",
            queue_name=AUDIT_QUEUE,
            max_retries=max_retries,
            min_backoff=min_backoff_ms,
            max_backoff=max_backoff_ms,
        )
        self.actor: dramatiq.Actor[[list[OutboxEvent]], Any] = decorate(persist_events)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.database_url, min_size=1, max_size=4, command_timeout=30
            )
        return self._pool

    async def persist(self, events: list[OutboxEvent]) -> None:
        """Insert a batch in one transaction; safe to repeat (idempotent by event id)."""
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                written = await write_events(conn, [tuple(e) for e in events])  # type: ignore[misc]
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
            # The pool may hold dead connections after a PostgreSQL restart.
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.terminate()
            raise
        self._counters.incrby(counter_key(self.prefix, "persisted"), written)
