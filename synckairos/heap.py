"""Give the heap memory a burst freed back to the system, so RSS returns near its baseline.

Large messages (a 1,000-participant state is ~350 KB, a replay of its history
was ~70 MB) are allocated by glibc's ``malloc`` outside CPython's small-object
allocator. glibc serves big blocks with ``mmap`` only below a threshold that
it raises dynamically each time such a block is freed; after that, big blocks
come from the heap arenas, and freed arena memory stays in the process.
Measured (``python -m benchmarks.memory_burst``, 12 RECONNECT replays of 70 MB):
RSS 52 MB before, 476 MB at the peak, 194 MB kept afterwards for good.

``run_trimmer`` calls ``malloc_trim(0)`` every ``interval_s`` seconds (in a
thread: it locks each arena in turn but never the event loop), which returns
free pages of every arena to the system. Where the C library has no
``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

__all__ = ["run_trimmer", "trim"]

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim_function: Callable[[int], int] = function
    return trim_function


def trim() -> bool:
    """Return free heap memory to the system now; False when unsupported or nothing freed."""
    function = _malloc_trim()
    return bool(function(0)) if function is not None else False


async def run_trimmer(interval_s: float) -> None:
    """Every ``interval_s`` seconds, ``trim()`` in a worker thread, until cancelled."""
    if _malloc_trim() is None:
        logger.info("malloc_trim is not available; freed heap memory is not trimmed")
        return
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(trim)
