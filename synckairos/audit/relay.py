"""``OutboxRelay``: moves audit events from the Redis outbox into dramatiq.

The commit script appends every change to ``P:outbox``. The relay reads it
through a consumer group (``audit``), hands each batch to dramatiq (which
stores it durably in its own Redis queue), and only then acknowledges *and
deletes* the entries: a relay killed between the two re-sends the batch on
restart (its pending entries are read again; a dead relay's are claimed by
another after ``claim_idle_ms``), and the actor's ``ON CONFLICT DO NOTHING``
makes the repeat harmless. The reads are ``synckairos.redis.outbox``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from synckairos.audit.records import OutboxEvent, from_stream_fields
from synckairos.redis.outbox import GROUP, Entry, OutboxReader

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["GROUP", "OutboxRelay"]

logger = logging.getLogger(__name__)


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
        self.reader = OutboxReader(
            client, prefix=prefix, batch=batch, claim_idle_ms=claim_idle_ms, consumer=consumer
        )
        """The outbox's reads, acknowledgements and error handling (the Redis wing)."""
        self.send = send
        """Hands a batch to dramatiq (blocking; called in a thread)."""
        self._stopping = False

    async def _relay(self, entries: list[Entry]) -> int:
        live = [(entry_id, fields) for entry_id, fields in entries if fields]
        if live:
            events = [_as_event(entry_id, fields) for entry_id, fields in live]
            await asyncio.to_thread(self.send, events)
        await self.reader.done(entries, len(live))
        return len(live)

    async def run_once(self, block_ms: int = 1_000) -> int:
        """Relay one batch: own pending first, then idle ones, then new entries."""
        entries = await self.reader.read(block_ms)
        return await self._relay(entries) if entries else 0

    async def run(self) -> None:
        """Relay until ``stop()``; Redis or broker errors are retried with backoff."""
        await self.reader.run(self.run_once, lambda: self._stopping)

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
