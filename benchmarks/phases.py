"""Fixed-work phases: one HTTP request per item over C keep-alive connections.

:func:`run_phase` sends one request per item (``request(item)`` returns the
method, path and body), ``clients`` at a time, each client on its own
keep-alive connection taking the next item as soon as its previous request
answered (closed loop, optional think time). Every outcome goes into the
recorder of the phase: 2xx with its latency, anything else by status or
exception name. It never raises for a failed request: a phase is load, not
setup. It shows a counted progress bar and returns the phase's wall time and
the items that succeeded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from rich.console import Console

from benchmarks import progress
from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, Response
from benchmarks.stats import LatencyRecorder

__all__ = ["PhaseResult", "Request", "run_phase"]

T = TypeVar("T")

#: ``(method, path, body)`` of one request; body None sends none.
Request = tuple[str, str, bytes | None]

#: Pause of a client after a transport error, so a dead server is not spun on.
ERROR_BACKOFF_S = 0.01


class PhaseResult:
    """What a phase did."""

    def __init__(self, wall_s: float, succeeded: list[int]) -> None:
        self.wall_s = wall_s
        """Seconds from the first request to the last answer."""
        self.succeeded = succeeded
        """Indexes of the items whose request answered 2xx, in completion order."""


async def run_phase(
    base: BaseUrl,
    name: str,
    items: Sequence[T],
    request: Callable[[T], Request],
    recorder: LatencyRecorder,
    *,
    clients: int,
    console: Console,
    think_s: float = 0.0,
    on_response: Callable[[T, Response], None] | None = None,
) -> PhaseResult:
    """Send one request per item, ``clients`` at a time; record every outcome.

    Args:
        request: builds the request of an item.
        think_s: pause of a client after each answer.
        on_response: called with every complete response (any status).
    """
    clock = time.perf_counter_ns
    pending = iter(range(len(items)))
    succeeded: list[int] = []
    began = clock()
    with progress.bar(console) as bar:
        task = bar.add_task(name, total=len(items))

        async def client() -> None:
            connection = HttpConnection(base)
            try:
                for index in pending:
                    item = items[index]
                    method, path, body = request(item)
                    content_type = None if body is None else "application/json"
                    start = clock()
                    try:
                        response = await connection.request(method, path, body, content_type)
                    except (HttpError, OSError) as exc:
                        recorder.error(type(exc).__name__, start)
                        bar.advance(task)
                        await asyncio.sleep(ERROR_BACKOFF_S)
                        continue
                    end = clock()
                    if 200 <= response.status < 300:
                        recorder.record(start, end - start)
                        succeeded.append(index)
                    else:
                        recorder.error(str(response.status), start)
                    if on_response is not None:
                        on_response(item, response)
                    bar.advance(task)
                    if think_s:
                        await asyncio.sleep(think_s)
            finally:
                connection.close()

        async with asyncio.TaskGroup() as group:
            for _ in range(min(clients, len(items))):
                group.create_task(client())
    return PhaseResult((clock() - began) / 1e9, succeeded)
