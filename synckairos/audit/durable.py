"""``DurableWriter``: the ``postgres`` durability level's write before the answer.

In the ``postgres`` level (``SYNCKAIROS_DURABILITY``) a node writes every change
it committed in Redis to PostgreSQL itself before answering, as the outbox
event the worker will relay later, with the same event id: the worker's insert
of that entry is then a no-op (``ON CONFLICT (id) DO NOTHING``). The rows, the
SQL and the poison isolation are the worker's own (``pipeline.AuditWriter``):
one definition of what an audit row is.

It writes the ``sync_events`` row only: that row (the full state after the
change) is the record recovery reads, so it is what makes the change durable.
The summaries (``sync_sessions``, ``sync_participants``) stay the worker's:
upserting them here too made each write wait on the row locks of the worker's
open batch transactions (measured: p99 of a switch ~0.55 s at 8 clients).
"""

from __future__ import annotations

import asyncio
import contextlib
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


#: A lock another transaction holds did not come free within ``LOCK_TIMEOUT_MS``
#: (or a statement ran too long): retried alone, within the caller's budget.
_BLOCKED: tuple[type[BaseException], ...] = (
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
)

#: ``lock_timeout`` of the writer's connections: a change whose rows another
#: transaction holds (a stalled worker mid-batch) is split off its batch after
#: this long instead of holding up the others.
LOCK_TIMEOUT_MS = 100


def _with_lock_timeout(database_url: str) -> str:
    """``database_url`` with ``lock_timeout`` set (asyncpg passes unknown query
    parameters to the server as settings)."""
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}lock_timeout={LOCK_TIMEOUT_MS}"


class _Pending:
    """One caller's events, the future it awaits and its deadline (monotonic)."""

    __slots__ = ("deadline", "events", "future")

    def __init__(self, events: list[OutboxEvent], future: asyncio.Future[None], deadline: float):
        self.events = events
        self.future = future
        self.deadline = deadline

    def fail(self, error_class: str) -> None:
        if not self.future.done():
            self.future.set_exception(_not_durable(error_class))

    def succeed(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class DurableWriter:
    """Writes changes already committed in Redis to PostgreSQL, or says it could not.

    Group commit: the changes of concurrent callers that arrive while
    transactions are in flight are written together in the next one (at most
    ``max_batch`` events), so the cost per change falls as the load rises; a
    lone change is written at once. Up to ``flushers`` transactions are in
    flight at a time, so one that waits (on a row a worker's open batch
    holds: the worker may relay a change before the node wrote it) does not
    hold up the changes behind it. A change PostgreSQL refuses fails alone
    (the worker's poison isolation).

    Transient failures are retried with jittered backoff until each caller's
    ``budget_s`` is spent. A change that cannot be written is reported as
    ``StoreUnavailable`` with outcome unknown: it is in Redis (and its outbox
    entry may still reach PostgreSQL through the worker), but it was not made
    durable, so it must not be acknowledged.
    """

    def __init__(
        self,
        database_url: str,
        *,
        budget_s: float = 5.0,
        flushers: int = 4,
        max_batch: int = 500,
    ) -> None:
        self.writer = AuditWriter(
            _with_lock_timeout(database_url), pool_size=2 * flushers, events_only=True
        )
        self.flushers = flushers
        self.budget_s = budget_s
        """How long one ``write`` keeps retrying before giving up."""
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def write(self, events: list[OutboxEvent]) -> None:
        """Write ``events`` (committed in Redis, with their outbox event ids), or raise.

        Idempotent: an event already in PostgreSQL (same id) counts as written.

        Raises:
            StoreUnavailable: not written within the budget, or PostgreSQL
                refused the data; ``details["outcome"]`` is ``"unknown"`` and
                ``details["error"]`` the error class. The message never carries
                the driver's text.
        """
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        pending = _Pending(events, loop.create_future(), time.monotonic() + self.budget_s)
        self._queue.append(pending)
        if len(self._flushing) < self.flushers:
            flusher = loop.create_task(self._flush(), name="durable-writer")
            self._flushing.add(flusher)
            flusher.add_done_callback(self._flushing.discard)
        try:
            await pending.future
        except StoreUnavailable:
            metrics.AUDIT_SYNC_WRITES.labels("failed").observe(time.perf_counter() - started)
            raise
        metrics.AUDIT_SYNC_WRITES.labels("ok").observe(time.perf_counter() - started)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                await self._write_batch(batch)
            except BaseException as exc:  # never leave a caller waiting
                for pending in batch:
                    pending.fail(type(exc).__name__)
                if not isinstance(exc, Exception):
                    raise

    async def _write_batch(self, batch: list[_Pending]) -> None:
        delay = 0.025
        while True:
            events = [event for pending in batch for event in pending.events]
            try:
                outcome = await self.writer.write(events)
            except _BLOCKED as exc:
                if len(batch) > 1:
                    # One change waits on a row another transaction holds (a
                    # worker's batch): the others must not wait with it.
                    await asyncio.gather(*(self._write_batch([p]) for p in batch))
                    return
                error: BaseException = exc
            except _TRANSIENT as exc:
                error = exc
            except (asyncpg.PostgresError, msgspec.DecodeError, ValueError) as exc:
                for pending in batch:
                    pending.fail(type(exc).__name__)
                return
            else:
                refused = {r.event[0]: r.error for r in outcome.refused}
                for pending in batch:
                    bad = next((refused[e[0]] for e in pending.events if e[0] in refused), None)
                    if bad is None:
                        pending.succeed()
                    else:
                        pending.fail(bad)
                return
            now = time.monotonic()
            for pending in batch:
                if pending.deadline <= now:
                    pending.fail(type(error).__name__)
            batch = [p for p in batch if p.deadline > now and not p.future.done()]
            if not batch:
                return
            wait = min(p.deadline for p in batch) - now
            await asyncio.sleep(min(delay * (0.5 + random.random()), wait))
            delay = min(delay * 2, 0.5)

    async def close(self) -> None:
        """Close the pool (callers still waiting get outcome unknown)."""
        for flusher in list(self._flushing):
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        for pending in self._queue:
            pending.fail("WriterClosed")
        self._queue.clear()
        await self.writer.close()


def _not_durable(error_class: str) -> StoreUnavailable:
    return StoreUnavailable(
        "the change was committed in Redis but could not be written to PostgreSQL "
        "(durability level postgres): its outcome is unknown; read the session before retrying",
        {"outcome": "unknown", "durability": "postgres", "error": error_class},
    )
