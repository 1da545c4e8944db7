"""``DeadlineScheduler``: timers expire on the server at their deadline, once.

Every node runs one. Deadlines live in Redis (``sk:deadlines``, written by the
commit script). The scheduler claims due deadlines atomically
(``deadline_claim.lua``): a claimed deadline's score moves to now + lease, so no
other node claims it meanwhile, and comes due again if this node dies before
firing it. Firing goes through ``Node.fire_timeouts``: the core's timeout
transition, computed as of the deadline, committed with the version check.
Two nodes can therefore never apply the same timeout twice, and a command that
committed first is honoured.

Precision: after each claim the script returns the earliest pending deadline,
and the loop sleeps exactly until then (at most ``max_idle_s``). A deadline
committed by this node that is earlier wakes the loop at once (``notify``);
one committed by another node is that node's to wake for, and the others poll
within ``max_idle_s`` in case it died. Claims are batched, and firing runs
with bounded concurrency, so many deadlines in one millisecond are fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from synckairos import metrics
from synckairos.exceptions import SyncKairosError
from synckairos.node import Node
from synckairos.store import Store

__all__ = ["DeadlineScheduler"]

logger = logging.getLogger(__name__)


class DeadlineScheduler:
    """Claims and fires due deadlines; run ``run()`` as a task for the node's life."""

    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        lease_ms: int = 5_000,
        batch: int = 256,
        concurrency: int = 64,
        max_idle_s: float = 1.0,
    ) -> None:
        self.node = node
        self.store = store
        self.lease_ms = lease_ms
        """How long a claim holds before another node may fire the deadline."""
        self.batch = batch
        self.max_idle_s = max_idle_s
        self.alive = False
        """True while the last claim reached Redis."""
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._next_wake_ms = math.inf
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def notify(self, deadline_ms: int) -> None:
        """Tell the scheduler about a deadline this node just committed."""
        if deadline_ms < self._next_wake_ms:
            self._wake.set()

    async def run(self) -> None:
        """Claim and fire due deadlines until ``stop()``."""
        clock = self.node.clock
        backoff = 0.05
        while not self._stopping:
            # Armed before the claim: a deadline committed while the claim runs
            # wakes the next sleep at once instead of being missed.
            self._wake.clear()
            self._next_wake_ms = math.inf
            try:
                claimed, upcoming = await self.store.claim_due(clock(), self.batch, self.lease_ms)
            except SyncKairosError as exc:
                if self.alive:
                    logger.warning("scheduler cannot reach Redis (%s); retrying", exc)
                self.alive = False
                metrics.SCHEDULER_ERRORS.inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self.alive = True
            backoff = 0.05
            for session_id, deadline in claimed:
                await self._slots.acquire()
                task = asyncio.create_task(self._fire(session_id, deadline))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if len(claimed) == self.batch:
                continue  # more may be due right now
            await self._sleep_until(upcoming)

    async def _sleep_until(self, upcoming: int | None) -> None:
        now = self.node.clock()
        wait = self.max_idle_s
        if upcoming is not None:
            wait = min(wait, max(0.0005, (upcoming - now) / 1000))
        self._next_wake_ms = now + wait * 1000
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _fire(self, session_id: str, deadline: int) -> None:
        try:
            fired = await self.node.fire_timeouts(session_id)
        except SyncKairosError as exc:
            metrics.SCHEDULER_ERRORS.inc()
            logger.warning(
                "timeout of %s (deadline %d) not applied: %s; retried after the lease",
                session_id,
                deadline,
                exc,
            )
            return
        finally:
            self._slots.release()
        if not fired:
            metrics.CLAIMS_LOST.inc()
        for transition, lag_ms in fired:
            metrics.TIMEOUTS_FIRED.labels(transition.event.type).inc()
            metrics.FIRING_LAG.observe(max(0, lag_ms) / 1000)

    async def stop(self) -> None:
        """Stop claiming and wait for the firings under way."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
