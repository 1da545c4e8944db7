"""The one PostgreSQL write of the audit trail, shared by the worker and the nodes.

``write_events`` turns outbox events into rows (``records.to_rows``) and
writes them in the caller's transaction: event rows are inserted with ``ON
CONFLICT (id) DO NOTHING`` (an event id already present is skipped), the
session and participant summaries are upserted, deletions are marked. The
worker (``pipeline.AuditPipeline``) calls it per batch; a node in the
``postgres`` durability level calls it through ``AuditWriter`` for every change
before answering, with the same event id as the change's outbox entry, so the
worker's later write of that entry inserts nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg
import msgspec

from synckairos import metrics
from synckairos.audit.records import OutboxEvent, to_rows
from synckairos.exceptions import StoreUnavailable

__all__ = ["AuditWriter", "write_events"]

_INSERT_EVENT = """
INSERT INTO sync_events (id, session_id, event_type, participant_id, group_id,
    time_remaining_ms, time_elapsed_ms, cycle_number, timestamp, state_snapshot,
    version, epoch, event, committed_at_ms)
VALUES ($1::text::uuid, $2::text::uuid, $3, $4::text::uuid, $5::text::uuid,
    $6, $7, $8, to_timestamp($9::bigint / 1000.0), $10::text::jsonb,
    $11, $12, $13::text::jsonb, $14)
ON CONFLICT (id) DO NOTHING
"""

_UPSERT_SESSION = """
INSERT INTO sync_sessions (session_id, sync_mode, time_per_cycle_ms, increment_ms,
    max_time_ms, created_at, started_at, completed_at, final_status, total_cycles,
    total_participants, metadata, last_version, last_updated_at, deleted_at)
VALUES ($1::text::uuid, $2, $3, $4, $5, COALESCE($6::text::timestamptz, now()),
    $7::text::timestamptz, $8::text::timestamptz, $9, $10, $11, $12::text::jsonb, $13,
    now(), NULL)
ON CONFLICT (session_id) DO UPDATE SET
    sync_mode = EXCLUDED.sync_mode, time_per_cycle_ms = EXCLUDED.time_per_cycle_ms,
    increment_ms = EXCLUDED.increment_ms, max_time_ms = EXCLUDED.max_time_ms,
    created_at = EXCLUDED.created_at, started_at = EXCLUDED.started_at,
    completed_at = EXCLUDED.completed_at, final_status = EXCLUDED.final_status,
    total_cycles = EXCLUDED.total_cycles, total_participants = EXCLUDED.total_participants,
    metadata = EXCLUDED.metadata, last_version = EXCLUDED.last_version,
    last_updated_at = now(), deleted_at = NULL
WHERE sync_sessions.last_version < EXCLUDED.last_version
   OR sync_sessions.deleted_at IS NOT NULL
"""

_UPSERT_PARTICIPANT = """
INSERT INTO sync_participants (session_id, participant_id, total_time_ms, group_id,
    total_cycles, total_time_active_ms, last_active_at)
VALUES ($1::text::uuid, $2::text::uuid, $3, $4::text::uuid, $5, $6, now())
ON CONFLICT (session_id, participant_id) DO UPDATE SET
    total_time_ms = EXCLUDED.total_time_ms, group_id = EXCLUDED.group_id,
    total_cycles = EXCLUDED.total_cycles,
    total_time_active_ms = EXCLUDED.total_time_active_ms, last_active_at = now()
"""

_MARK_DELETED = """
UPDATE sync_sessions SET deleted_at = now(), last_version = 0, last_updated_at = now()
WHERE session_id = ANY($1::text[]::uuid[])
"""


async def write_events(conn: Any, events: list[OutboxEvent]) -> int:
    """Write ``events`` on ``conn`` (an asyncpg connection, inside a transaction).

    Idempotent by event id: writing the same events again changes nothing but
    the summaries' ``last_updated_at``.

    Returns:
        The number of event rows offered (inserted or already present).
    """
    rows, sessions, participants, deleted = to_rows(events)
    await conn.executemany(_INSERT_EVENT, _as_lists(rows))
    if sessions:
        await conn.executemany(_UPSERT_SESSION, _as_lists(sessions))
    if participants:
        await conn.executemany(_UPSERT_PARTICIPANT, _as_lists(participants))
    if deleted:
        await conn.execute(_MARK_DELETED, deleted)
    return len(rows)


def _as_lists(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(msgspec.to_builtins(row)) for row in rows]


#: Errors after which the same write may succeed later (PostgreSQL restarting,
#: a dead pooled connection, a timeout).
_TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


class AuditWriter:
    """Synchronous audit writes of a node in the ``postgres`` durability level.

    The pool is opened lazily in the caller's event loop. ``write`` retries a
    failing write with jittered backoff within ``budget_s``; the change it
    carries is already committed in Redis, so a write that cannot be made is
    reported as an outcome unknown to the client (the worker will still
    deliver the change from the outbox if Redis keeps it).
    """

    def __init__(self, database_url: str, *, budget_s: float = 5.0, pool_size: int = 16) -> None:
        self.database_url = database_url
        self.budget_s = budget_s
        """How long one ``write`` keeps retrying before giving up."""
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.database_url,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=5,
                        command_timeout=10,
                    )
        return self._pool

    async def _write_once(self, events: list[OutboxEvent]) -> None:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await write_events(conn, events)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
            # The pool may hold dead connections after a PostgreSQL restart.
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.terminate()
            raise

    async def write(self, events: list[OutboxEvent]) -> None:
        """Write ``events`` (already committed in Redis) to PostgreSQL, or raise.

        Transient errors are retried (25 ms doubling to 500 ms, jittered) until
        ``budget_s`` is spent; any other database error is not retried.

        Raises:
            StoreUnavailable: the write did not succeed; ``details["outcome"]``
                is ``"unknown"`` (the change is in Redis but not known to be
                durable). The message never carries the driver's text.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self.budget_s
        delay = 0.025
        while True:
            try:
                await self._write_once(events)
                _observe("ok", started)
                return
            except _TRANSIENT as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _observe("failed", started)
                    raise _not_durable(type(exc).__name__) from exc
                await asyncio.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 0.5)
            except (asyncpg.PostgresError, ValueError, msgspec.DecodeError) as exc:
                _observe("failed", started)
                raise _not_durable(type(exc).__name__) from exc

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _observe(result: str, started: float) -> None:
    metrics.AUDIT_SYNC_WRITES.labels(result).observe(time.perf_counter() - started)


def _not_durable(error_class: str) -> StoreUnavailable:
    return StoreUnavailable(
        "the change was committed in Redis but could not be written to PostgreSQL "
        "(durability level postgres): its outcome is unknown; read the session before retrying",
        {"outcome": "unknown", "durability": "postgres", "error": error_class},
    )
