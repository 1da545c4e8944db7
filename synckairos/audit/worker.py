"""``synckairos worker``: the outbox relay and the dramatiq actor in one process.

dramatiq's worker threads run the ``persist_events`` actor (on the AsyncIO
middleware's event loop); the main thread runs the relay's event loop. SIGTERM
or SIGINT stops the relay after its batch, then the worker after the messages
in hand.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import dramatiq
import redis.asyncio as aioredis

from synckairos.audit.pipeline import AUDIT_QUEUE, AuditPipeline, build_broker
from synckairos.audit.relay import OutboxRelay
from synckairos.config import Settings

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, redis_url: str, database_url: str) -> None:
    """Relay the outbox into dramatiq and persist it into PostgreSQL until a signal."""
    broker = build_broker(
        redis_url,
        prefix=settings.key_prefix,
        heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms,
    )
    pipeline = AuditPipeline(
        broker, database_url, prefix=settings.key_prefix, max_retries=settings.audit_max_retries
    )
    worker = dramatiq.Worker(
        broker, queues={AUDIT_QUEUE}, worker_threads=settings.worker_threads, worker_timeout=100
    )
    worker.start()
    logger.info("audit worker started (%d threads)", settings.worker_threads)
    try:
        asyncio.run(_relay_until_signal(settings, redis_url, pipeline))
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        logger.info("audit worker stopped")


async def _relay_until_signal(settings: Settings, redis_url: str, pipeline: AuditPipeline) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_keepalive=True)
    relay = OutboxRelay(
        client, pipeline.actor.send, prefix=settings.key_prefix, batch=settings.audit_batch
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop)
    try:
        await relay.run()
    finally:
        await client.aclose()
