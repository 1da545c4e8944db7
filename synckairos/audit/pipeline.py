"""The worker side of the audit trail: dramatiq broker, actor, PostgreSQL writer.

``synckairos.redis.broker.build_broker`` makes the dramatiq Redis broker
(with the AsyncIO middleware, so the actor is a coroutine and its asyncpg
pool lives in the worker's event loop). ``AuditPipeline.actor``
(``persist_events``) hands each batch of outbox events to ``AuditWriter``,
which inserts it in one transaction with ``ON CONFLICT (id) DO NOTHING``: a
redelivered batch is harmless.

Poison isolation: when PostgreSQL *refuses the data* of a batch (a data or
constraint error: ``asyncpg.DataError``, ``IntegrityConstraintViolationError``,
``ProgramLimitExceededError``) or an event cannot even be decoded, the writer
stores the batch again event by event (one transaction, a savepoint per
event), so one unstorable event can only fail itself. Each event that still
fails becomes a dead letter of its own (a one-event ``persist_events``
message in dramatiq's dead-letter set), is counted in
``P:audit:dead_lettered`` and logged with its ids and the error class.
Every other error (PostgreSQL down, too many connections, a schema not
migrated) fails the whole batch, which dramatiq retries with exponential
backoff; after the last retry it dead-letters the
batch, and ``AuditMonitor`` counts and logs it. ``synckairos audit requeue``
replays both kinds (``synckairos.audit.requeue``).

Logs of the audit path carry event/session ids, counts and error classes,
never a state, metadata or a driver message (which may quote the row):
``redact_dramatiq_logs`` strips dramatiq's own records of message arguments
and exception text.

Counters shared with the API nodes' ``/metrics`` live in Redis (``P:audit:*``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import dramatiq
import msgspec
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from synckairos.audit.records import EventRow, OutboxEvent, to_rows
from synckairos.redis.broker import AUDIT_QUEUE, DEAD_LETTER_TTL_MS, dead_letter_keys
from synckairos.redis.keys import audit_counter

__all__ = [
    "AUDIT_QUEUE",
    "DEAD_LETTER_TTL_MS",
    "AuditMonitor",
    "AuditPipeline",
    "AuditWriter",
    "RefusedEvent",
    "WriteOutcome",
    "dead_letter",
    "event_ids",
    "redact_dramatiq_logs",
]

logger = logging.getLogger(__name__)

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

# Guarded by version like the session upsert: a replayed old event (requeue)
# never overwrites a newer row.
_UPSERT_PARTICIPANT = """
INSERT INTO sync_participants (session_id, participant_id, total_time_ms, group_id,
    total_cycles, total_time_active_ms, last_version, last_active_at)
VALUES ($1::text::uuid, $2::text::uuid, $3, $4::text::uuid, $5, $6, $7, now())
ON CONFLICT (session_id, participant_id) DO UPDATE SET
    total_time_ms = EXCLUDED.total_time_ms, group_id = EXCLUDED.group_id,
    total_cycles = EXCLUDED.total_cycles,
    total_time_active_ms = EXCLUDED.total_time_active_ms,
    last_version = EXCLUDED.last_version, last_active_at = now()
WHERE sync_participants.last_version <= EXCLUDED.last_version
"""

_MARK_DELETED = """
UPDATE sync_sessions SET deleted_at = now(), last_version = 0, last_updated_at = now()
WHERE session_id = ANY($1::text[]::uuid[])
"""

_RESET_PARTICIPANTS = """
UPDATE sync_participants SET last_version = 0 WHERE session_id = ANY($1::text[]::uuid[])
"""

#: PostgreSQL refused the data itself: retrying the same rows cannot help.
_REFUSED_BY_POSTGRES: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
#: The outbox entry itself is malformed (not what the commit script writes).
_UNDECODABLE: tuple[type[BaseException], ...] = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    UnicodeError,
)
#: The connection (or the server behind it) failed: the pool must be rebuilt.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
)

Rows = tuple[list[EventRow], list[Any], list[Any], list[str]]


def event_ids(event: Sequence[Any]) -> tuple[str, str, str]:
    """``(event_id, session_id, version)`` of an outbox event, as text, for logs.

    Never raises, whatever the event holds: a malformed one gives ``"?"``.
    """

    def part(index: int) -> str:
        try:
            value = event[index]
        except (IndexError, KeyError, TypeError):
            return "?"
        return str(value)[:64] if isinstance(value, str | int) else "?"

    return part(0), part(1), part(2)


class RefusedEvent(msgspec.Struct, frozen=True):
    """An event PostgreSQL refused (or that could not be decoded), alone."""

    event: OutboxEvent
    error: str
    """Class name of the error (``UntranslatableCharacterError``...), never its text."""
    sqlstate: str | None = None
    """PostgreSQL's SQLSTATE (``22P05``...), None for a decoding error."""

    def reason(self) -> str:
        """``UntranslatableCharacterError, SQLSTATE 22P05``: safe to log (no data)."""
        return self.error if self.sqlstate is None else f"{self.error}, SQLSTATE {self.sqlstate}"


class WriteOutcome(msgspec.Struct):
    """What ``AuditWriter.write`` did with a batch."""

    stored: int = 0
    """Events written, or already there (a redelivery)."""
    refused: list[RefusedEvent] = msgspec.field(default_factory=list)
    """Events that failed alone, in batch order."""


def _refusal(event: OutboxEvent, exc: BaseException) -> RefusedEvent:
    sqlstate = getattr(exc, "sqlstate", None)
    return RefusedEvent(event, type(exc).__name__, sqlstate if isinstance(sqlstate, str) else None)


def _as_event(raw: Sequence[Any]) -> OutboxEvent:
    return tuple(raw)


class AuditWriter:
    """Writes outbox events into PostgreSQL, isolating the ones it refuses.

    The asyncpg pool is opened lazily in the caller's event loop and rebuilt
    after a connection error.
    """

    def __init__(self, database_url: str, *, pool_size: int = 4, events_only: bool = False) -> None:
        self.database_url = database_url
        self.pool_size = pool_size
        """Connections at most."""
        self.events_only = events_only
        """Write the ``sync_events`` rows only, not the session and participant
        summaries (a node's ``DurableWriter``: the summaries' row locks would
        make it wait on the worker's transactions, which upsert them anyway)."""
        self._pool: asyncpg.Pool | None = None

    def _rows(self, batch: list[OutboxEvent]) -> Rows:
        rows = to_rows(batch)
        return (rows[0], [], [], []) if self.events_only else rows

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.database_url, min_size=1, max_size=self.pool_size, command_timeout=30
            )
        return self._pool

    async def close(self) -> None:
        """Close the pool (a later ``write`` opens a new one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def write(self, events: Sequence[Sequence[Any]]) -> WriteOutcome:
        """Store ``events``; every storable one lands even when others cannot.

        First the whole batch in one transaction. If PostgreSQL refuses its
        data, or an event cannot be decoded, the batch is written again in
        one transaction with a savepoint per event (its row plus the session
        and participant upserts derived from it), in batch order; the events
        that fail roll back to their savepoint, are returned in ``refused``
        and nothing of them is written. Idempotent: an event already stored
        (same id) counts as stored.

        Raises:
            Any error that is not about the data (PostgreSQL unreachable,
            restarting, out of connections, schema not migrated): nothing is
            refused then, and the caller retries the whole batch later.
        """
        batch = [_as_event(e) for e in events]
        pool = await self._get_pool()
        try:
            try:
                rows = self._rows(batch)
            except _UNDECODABLE as exc:
                logger.warning(
                    "audit batch of %d events holds an undecodable event (%s); "
                    "writing event by event",
                    len(batch),
                    type(exc).__name__,
                )
            else:
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await _write_rows(conn, rows)
                except _REFUSED_BY_POSTGRES as exc:
                    logger.warning(
                        "audit batch of %d events refused by PostgreSQL (%s, SQLSTATE %s); "
                        "writing event by event",
                        len(batch),
                        type(exc).__name__,
                        getattr(exc, "sqlstate", None),
                    )
                else:
                    return WriteOutcome(stored=len(batch))
            return await self._write_with_savepoints(pool, batch)
        except _CONNECTION_LOST:
            # The pool may hold dead connections after a PostgreSQL restart.
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.terminate()
            raise

    async def _write_with_savepoints(
        self, pool: asyncpg.Pool, batch: list[OutboxEvent]
    ) -> WriteOutcome:
        # One transaction, one savepoint per event: a refused event rolls back
        # to its savepoint only, and the batch still costs a single commit.
        outcome = WriteOutcome()
        async with pool.acquire() as conn, conn.transaction():
            for event in batch:
                try:
                    rows = self._rows([event])
                except _UNDECODABLE as exc:
                    outcome.refused.append(_refusal(event, exc))
                    continue
                try:
                    async with conn.transaction():  # nested: a savepoint
                        await _write_rows(conn, rows)
                except _REFUSED_BY_POSTGRES as exc:
                    outcome.refused.append(_refusal(event, exc))
                else:
                    outcome.stored += 1
        return outcome


async def _write_rows(conn: Any, rows: Rows) -> None:
    events, sessions, participants, deleted = rows
    await conn.executemany(_INSERT_EVENT, _as_lists(events))
    if sessions:
        await conn.executemany(_UPSERT_SESSION, _as_lists(sessions))
    if participants:
        await conn.executemany(_UPSERT_PARTICIPANT, _as_lists(participants))
    if deleted:
        await conn.execute(_MARK_DELETED, deleted)
        await conn.execute(_RESET_PARTICIPANTS, deleted)


def dead_letter(broker: RedisBroker, refused: RefusedEvent) -> bool:
    """Put one refused event into dramatiq's dead-letter set, as a message of its own.

    The message is a ``persist_events`` call with that single event, so
    ``synckairos audit requeue`` replays it like a dead-lettered batch; its
    options record the error class and SQLSTATE. Its ``redis_message_id`` is
    ``event:<event id>``, so dead-lettering the same event again (a batch
    redelivered after a worker died) replaces it instead of adding a second
    one. Returns True when the event was not a dead letter yet.
    """
    event_id = event_ids(refused.event)[0]
    rid = f"event:{event_id}" if event_id not in ("", "?") else f"event:?{uuid.uuid4()}"
    message: Message[Any] = Message(
        queue_name=AUDIT_QUEUE,
        actor_name="persist_events",
        args=([list(refused.event)],),
        kwargs={},
        options={
            "redis_message_id": rid,
            "refused": {"error": refused.error, "sqlstate": refused.sqlstate},
        },
    )
    xq, bodies = dead_letter_keys(broker)
    pipe = broker.client.pipeline(transaction=True)
    pipe.hset(bodies, rid, message.encode())
    pipe.zadd(xq, {rid: int(time.time() * 1000)})
    added = pipe.execute()[1]
    return bool(added)


class AuditMonitor(Middleware):
    """Counts failed attempts and dead-lettered batches (in Redis) and logs them.

    Logs carry the message id, the attempt and the error class only.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None or message.queue_name != AUDIT_QUEUE:
            return
        self.client.incr(audit_counter(self.prefix, "retries"))
        logger.warning(
            "audit batch %s failed (attempt %d): %s; retrying with backoff",
            message.message_id,
            message.options.get("retries", 0) + 1,
            type(exception).__name__,
        )

    def after_nack(self, broker: Any, message: Any) -> None:
        if message.queue_name != AUDIT_QUEUE:
            return
        self.client.incr(audit_counter(self.prefix, "dead_lettered"))
        events = message.args[0] if message.args else []
        logger.error(
            "audit batch %s of %d events dead-lettered after its last retry; "
            "run `synckairos audit requeue` once PostgreSQL is healthy",
            message.message_id,
            len(events),
        )


class AuditPipeline:
    """Owns the ``persist_events`` actor and its ``AuditWriter``."""

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
        self.writer = AuditWriter(database_url)
        self.prefix = prefix
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

    async def persist(self, events: Sequence[Sequence[Any]]) -> WriteOutcome:
        """Store a batch; dead-letter, count and log each event PostgreSQL refuses.

        Safe to repeat (idempotent by event id). Raises what ``AuditWriter.write``
        raises (the batch is then retried whole).
        """
        outcome = await self.writer.write(events)
        for refused in outcome.refused:
            if dead_letter(self.broker, refused):
                self._counters.incr(audit_counter(self.prefix, "dead_lettered"))
            event_id, session_id, version = event_ids(refused.event)
            logger.error(
                "audit event %s (session %s, version %s) cannot be stored (%s); "
                "dead-lettered alone, replay it with `synckairos audit requeue` after a fix",
                event_id,
                session_id,
                version,
                refused.reason(),
            )
        if outcome.stored:
            self._counters.incrby(audit_counter(self.prefix, "persisted"), outcome.stored)
        return outcome


def _as_lists(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(msgspec.to_builtins(row)) for row in rows]


class _RedactDramatiq(logging.Filter):
    """Rewrites dramatiq's log records: no message arguments, no exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("dramatiq"):
            return True
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redacted(arg) for arg in args)
        elif args:
            record.args = ()
            record.msg = str(record.msg).split("%", 1)[0]
        if record.exc_info is not None and record.exc_info[1] is not None:
            message = record.getMessage()
            record.msg = f"{message} ({type(record.exc_info[1]).__name__})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _redacted(arg: object) -> object:
    if isinstance(arg, bool | int | float):
        return arg
    if isinstance(arg, str):
        return arg if len(arg) <= 128 else f"<{len(arg)} characters>"
    message_id = getattr(arg, "message_id", None)
    actor_name = getattr(arg, "actor_name", None)
    if isinstance(message_id, str) and isinstance(actor_name, str):
        return f"{actor_name}(message {message_id})"
    return f"<{type(arg).__name__}>"


_REDACTION = _RedactDramatiq()


def redact_dramatiq_logs(logger_: logging.Logger | None = None) -> None:
    """Strip message arguments and exception text from dramatiq's log records.

    dramatiq logs a failing message as ``persist_events([...every event...])``
    with a traceback quoting the driver's error: both may hold metadata. The
    filter goes on the handlers of ``logger_`` (the root logger by default),
    since a filter on a parent logger does not see its children's records.
    Idempotent.
    """
    for handler in (logger_ or logging.getLogger()).handlers:
        if _REDACTION not in handler.filters:
            handler.addFilter(_REDACTION)
