"""``DurableWriter``: the ``postgres`` durability level's write before the answer.

In the ``postgres`` level (``SYNCKAIROS_DURABILITY``) a node writes every change
it committed in Redis to PostgreSQL itself before answering, as the outbox
event the worker will relay later, with the same event id: the worker's insert
of that entry is then a no-op (``ON CONFLICT (id) DO NOTHING``). The rows, the
SQL and the poison isolation are the worker's own (``pipeline.AuditWriter``):
one definition of what an audit row is.
"""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import msgspec

from synckairos import metrics
from synckairos.audit.pipeline import AuditWriter
from synckairos.audit.records import OutboxEvent
from synckairos.exceptions import StoreUnavailable

__all__ = ["DurableWriter"]

#: Errors after which the same write may succeed later (PostgreSQL restarting,
#: out of connections, a dead pooled connection, a timeout).
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class DurableWriter:
    """Writes changes already committed in Redis to PostgreSQL, or says it could not.

    ``write`` retries transient failures with jittered backoff within
    ``budget_s``. A change that cannot be written is reported as
    ``StoreUnavailable`` with outcome unknown: it is in Redis (and its outbox
    entry may still reach PostgreSQL through the worker), but it was not made
    durable, so it must not be acknowledged.
    """

    def __init__(self, database_url: str, *, budget_s: float = 5.0, pool_size: int = 16) -> None:
        self.writer = AuditWriter(database_url, pool_size=pool_size)
        self.budget_s = budget_s
        """How long one ``write`` keeps retrying before giving up."""

    async def write(self, events: list[OutboxEvent]) -> None:
        """Write ``events`` (committed in Redis, with their outbox event ids), or raise.

        Idempotent: an event already in PostgreSQL (same id) counts as written.

        Raises:
            StoreUnavailable: not written within the budget, or PostgreSQL
                refused the data; ``details["outcome"]`` is ``"unknown"`` and
                ``details["error"]`` the error class. The message never carries
                the driver's text.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self.budget_s
        delay = 0.025
        while True:
            try:
                outcome = await self.writer.write(events)
            except _TRANSIENT as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _not_durable(type(exc).__name__, started) from exc
                await asyncio.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 0.5)
                continue
            except (asyncpg.PostgresError, msgspec.DecodeError, ValueError) as exc:
                raise _not_durable(type(exc).__name__, started) from exc
            if outcome.refused:
                raise _not_durable(outcome.refused[0].error, started)
            metrics.AUDIT_SYNC_WRITES.labels("ok").observe(time.perf_counter() - started)
            return

    async def close(self) -> None:
        """Close the pool."""
        await self.writer.close()


def _not_durable(error_class: str, started: float) -> StoreUnavailable:
    metrics.AUDIT_SYNC_WRITES.labels("failed").observe(time.perf_counter() - started)
    return StoreUnavailable(
        "the change was committed in Redis but could not be written to PostgreSQL "
        "(durability level postgres): its outcome is unknown; read the session before retrying",
        {"outcome": "unknown", "durability": "postgres", "error": error_class},
    )
