"""Garbage-collector pauses: measured, and kept short for large heaps.

A node holding thousands of sockets has a large heap of long-lived objects,
and CPython's full (generation 2) collection walks all of it while nothing
else runs: measured here with 10,000 sockets, pauses grew to ~1 s and timers
fired a second late. Two things are done about it:

* every collection is timed (``synckairos_gc_pause_seconds``; a pause over
  ``WARN_PAUSE_S`` is logged);
* young collections are made rarer (threshold 50,000 allocations), and after
  each generation-1 or full collection the survivors are frozen
  (``gc.freeze()``): they are still reference counted, but later collections
  no longer walk them, so any collection only scans what was allocated since. The cost: cyclic
  garbage among frozen objects is not reclaimed until they are unfrozen, which
  ``run_unfreezer`` does every ``unfreeze_s`` seconds (one full-heap
  collection then; default every 15 minutes, ``SYNCKAIROS_GC_UNFREEZE_S``;
  0 keeps CPython's default behaviour and never freezes).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from synckairos import metrics

__all__ = ["WARN_PAUSE_S", "install", "run_unfreezer"]

logger = logging.getLogger(__name__)

#: A collection pausing the process longer than this is logged as a warning.
WARN_PAUSE_S = 0.1

_state: dict[str, Any] = {"started": 0.0, "freeze": False}


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _state["started"] = time.perf_counter()
        return
    pause = time.perf_counter() - _state["started"]
    generation = info.get("generation", 0)
    metrics.GC_PAUSE.labels(str(generation)).observe(pause)
    if pause > WARN_PAUSE_S:
        logger.warning(
            "gc generation %d paused the process %.0f ms (%d collected)",
            generation,
            pause * 1000,
            info.get("collected", 0),
        )
    if generation >= 1 and _state["freeze"]:
        gc.freeze()


def install(*, freeze: bool = True) -> None:
    """Time collections in this process; with ``freeze``, freeze full-collection survivors."""
    _state["freeze"] = freeze
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    if freeze:
        gc.freeze()  # what startup built lives as long as the process
        gc.set_threshold(50_000, 20, 20)


async def run_unfreezer(interval_s: float) -> None:
    """Every ``interval_s``, unfreeze and run one full collection to reclaim old cycles.

    Without the explicit collection the unfreeze achieves nothing: the next
    generation-1 collection freezes everything again before a full one runs.
    """
    while True:
        await asyncio.sleep(interval_s)
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        collected = gc.collect()  # timed by _on_gc; its survivors are frozen again
        logger.info("gc: %d frozen objects rechecked, %d unreachable reclaimed", frozen, collected)
