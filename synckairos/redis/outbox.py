"""``OutboxReader``: the audit relay's reads of the outbox stream (``P:outbox``).

The commit script appends every change to the outbox. The reader takes it
through a consumer group (``audit``), hands each batch to its caller, and
only then acknowledges *and deletes* the entries: a relay killed between the
two re-sends the batch on restart (its pending entries are read again; a dead
relay's are claimed by another after ``claim_idle_ms``). Deleting
acknowledged entries keeps the outbox length equal to the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from synckairos.redis.keys import Keys

__all__ = ["GROUP", "Entry", "OutboxReader"]

logger = logging.getLogger(__name__)

#: Consumer group of the relays on the outbox stream.
GROUP = "audit"

#: One outbox entry: its stream id and fields (empty: deleted meanwhile).
Entry = tuple[bytes, dict[bytes, bytes]]


class OutboxReader:
    """Reads ``P:outbox`` in batches for one consumer of the ``audit`` group."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sk",
        batch: int = 500,
        claim_idle_ms: int = 10_000,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.outbox = self.keys.outbox
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless it exists."""
        try:
            await self.client.xgroup_create(self.outbox, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, block_ms: int = 1_000) -> list[Entry]:
        """One batch: own pending entries first, then idle ones, then new entries."""
        pending: Any = await self.client.xreadgroup(
            GROUP, self.consumer, {self.outbox: "0"}, count=self.batch
        )
        if pending and pending[0][1]:
            return list(pending[0][1])
        claimed: Any = await self.client.xautoclaim(
            self.outbox, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        if claimed and claimed[1]:
            return list(claimed[1])
        fresh: Any = await self.client.xreadgroup(
            GROUP, self.consumer, {self.outbox: ">"}, count=self.batch, block=block_ms
        )
        if fresh and fresh[0][1]:
            return list(fresh[0][1])
        return []

    async def done(self, entries: list[Entry], relayed: int) -> None:
        """Acknowledge and delete ``entries``; count ``relayed`` events relayed."""
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.outbox, GROUP, *ids)
                pipe.xdel(self.outbox, *ids)
                pipe.incrby(self.keys.audit_counter("relayed"), relayed)
                await pipe.execute()

    async def run(
        self, relay_once: Callable[[], Awaitable[int]], stopping: Callable[[], bool]
    ) -> None:
        """Call ``relay_once`` until ``stopping()``; Redis errors are retried with backoff.

        Errors of the dramatiq broker (Redis too) raised by ``relay_once`` are
        retried the same way.
        """
        backoff = 0.1
        while not stopping():
            try:
                await self.ensure_group()
                while not stopping():
                    await relay_once()
                    backoff = 0.1
            except (redis_errors.RedisError, OSError) as exc:
                logger.warning(
                    "outbox relay error (%s); retrying in %.1f s", type(exc).__name__, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
