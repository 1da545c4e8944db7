"""``synckairos worker``: the outbox relay and the dramatiq actor in one process.

dramatiq's worker threads run the ``persist_events`` actor (on the AsyncIO
middleware's event loop); the main thread runs the relay's event loop. SIGTERM
or SIGINT stops the relay after its batch, then the worker after the messages
in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import dramatiq
import redis

from synckairos.audit.pipeline import (
    AUDIT_QUEUE,
    AuditPipeline,
    redact_dramatiq_logs,
)
from synckairos.audit.relay import OutboxRelay
from synckairos.config import Settings
from synckairos.redis.broker import build_broker
from synckairos.redis.connection import PrimaryWatcher, async_client, sync_client

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, database_url: str) -> None:
    """Relay the outbox into dramatiq and persist it into PostgreSQL until a signal.

    dramatiq's own log records are redacted (no message arguments, no
    exception text): audit logs carry ids and error classes only.
    """
    redact_dramatiq_logs()
    broker_client = sync_client(settings)
    broker = build_broker(
        broker_client,
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
        asyncio.run(_relay_until_signal(settings, broker_client, pipeline))
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        logger.info("audit worker stopped")


async def _relay_until_signal(
    settings: Settings, broker_client: redis.Redis, pipeline: AuditPipeline
) -> None:
    client = async_client(settings)
    relay = OutboxRelay(
        client, pipeline.actor.send, prefix=settings.key_prefix, batch=settings.audit_batch
    )
    watcher: PrimaryWatcher | None = None
    watching: asyncio.Task[None] | None = None
    if settings.redis_sentinels:
        # Relay reads and dramatiq's enqueues must follow the same primary.
        watcher = PrimaryWatcher(settings, clients=[client], sync_clients=[broker_client])
        watching = asyncio.create_task(watcher.run(), name="primary-watcher")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop)
    try:
        await relay.run()
    finally:
        if watcher is not None and watching is not None:
            watcher.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await watcher.close()
        await client.aclose()
