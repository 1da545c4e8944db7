"""``OutboxRelay``: moves audit events from the Redis outbox into dramatiq.

The commit script appends every change to ``P:outbox``. The relay reads it
through a consumer group (``audit``), hands each batch to dramatiq (which
stores it durably in its own Redis queue), and only then acknowledges *and
deletes* the entries: a relay killed between the two re-sends the batch on
restart (its pending entries are read again; a dead relay's are claimed by
another after ``claim_idle_ms``), and the actor's ``ON CONFLICT DO NOTHING``
makes the repeat harmless. Deleting acknowledged entries keeps the outbox
length equal to the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from synckairos.audit.pipeline import counter_key
from synckairos.audit.records import OutboxEvent, from_stream_fields

__all__ = ["GROUP", "OutboxRelay"]

logger = logging.getLogger(__name__)

#: Consumer group of the relays on the outbox stream.
GROUP = "audit"


class OutboxRelay:
    """Relays ``P:outbox`` to ``send`` in batches; run ``run()`` until ``stop()``."""

    def __init__(
        self,
        client: aioredis.Redis,
        send: Callable[[list[OutboxEvent]], Any],
        *,
        prefix: str = "sk",
        batch: int = 500,
        claim_idle_ms: int = 10_000,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.send = send
        """Hands a batch to dramatiq (blocking; called in a thread)."""
        self.outbox = f"{prefix}:outbox"
        self.prefix = prefix
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._stopping = False

    async def _ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.outbox, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _relay(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        live = [(entry_id, fields) for entry_id, fields in entries if fields]
        if live:
            events = [_as_event(entry_id, fields) for entry_id, fields in live]
            await asyncio.to_thread(self.send, events)
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.outbox, GROUP, *ids)
                pipe.xdel(self.outbox, *ids)
                pipe.incrby(counter_key(self.prefix, "relayed"), len(live))
                await pipe.execute()
        return len(live)

    async def run_once(self, block_ms: int = 1_000) -> int:
        """Relay one batch: own pending first, then idle ones, then new entries."""
        pending: Any = await self.client.xreadgroup(
            GROUP, self.consumer, {self.outbox: "0"}, count=self.batch
        )
        if pending and pending[0][1]:
            return await self._relay(pending[0][1])
        claimed: Any = await self.client.xautoclaim(
            self.outbox, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        if claimed and claimed[1]:
            return await self._relay(claimed[1])
        fresh: Any = await self.client.xreadgroup(
            GROUP, self.consumer, {self.outbox: ">"}, count=self.batch, block=block_ms
        )
        if fresh and fresh[0][1]:
            return await self._relay(fresh[0][1])
        return 0

    async def run(self) -> None:
        """Relay until ``stop()``; Redis or broker errors are retried with backoff."""
        backoff = 0.1
        while not self._stopping:
            try:
                await self._ensure_group()
                while not self._stopping:
                    await self.run_once()
                    backoff = 0.1
            except (redis_errors.RedisError, OSError) as exc:
                logger.warning(
                    "outbox relay error (%s); retrying in %.1f s", type(exc).__name__, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        """Finish after the current batch."""
        self._stopping = True


_FIELDS = (b"id", b"sid", b"v", b"t", b"e", b"c")


def _as_event(entry_id: bytes, fields: dict[bytes, bytes]) -> OutboxEvent:
    """The event of an outbox entry; a malformed entry is passed on as it is.

    The commit script always writes every field. An entry that lacks one or
    holds a non-integer version (written by hand, or by another program) must
    not stop the relay for everyone: it goes on as text, the worker cannot
    store it and dead-letters it alone (poison isolation).
    """
    try:
        return from_stream_fields(fields)
    except (KeyError, ValueError):
        logger.error("outbox entry %s is malformed; it will be dead-lettered", entry_id.decode())
        raw = [fields.get(name, b"").decode(errors="replace") for name in _FIELDS]
        return (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])  # type: ignore[return-value]
