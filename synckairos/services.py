"""``Services``: the background work of a node, started in order and stopped in reverse.

A node runs long-lived tasks (pub/sub listener, Sentinel watcher, deadline
scheduler, GC unfreezer, heap trimmer) and holds resources that must be closed
(Redis clients, the archive's pool, the durable writer). ``create_app``'s
lifespan registers each one here, in dependency order; leaving the ``async
with`` stops them in reverse order, each one even if an earlier stop failed
(the first failure is raised after all have run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

__all__ = ["Services"]

logger = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[None] | None]
"""Called to stop a service or release a resource (sync or async)."""


class Services:
    """An ordered set of a node's services; ``async with`` runs them.

    Register with ``run`` (a task for the node's life) and ``on_stop`` (a
    cleanup) before or inside the ``async with``; everything registered is
    stopped, last first, when the block is left.
    """

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.names: list[str] = []
        """Names of the services registered, in start order (for logs and tests)."""

    def on_stop(self, name: str, stop: Stop) -> None:
        """Call ``stop`` when the services stop (before anything registered earlier)."""
        self.names.append(name)

        async def stopping() -> None:
            result = stop()
            if result is not None:
                await result

        self._stack.push_async_callback(stopping)

    def run(
        self,
        name: str,
        work: Coroutine[Any, Any, None],
        *,
        stop: Stop | None = None,
        cancel: bool = True,
        after: Stop | None = None,
    ) -> asyncio.Task[None]:
        """Run ``work`` as a task named ``name`` until the services stop.

        On stop, ``stop`` is called first (asking the work to finish), then
        the task is cancelled (unless ``cancel`` is False: ``stop`` makes it
        return) and awaited, then ``after`` is called (closing what it used).
        """
        task = asyncio.create_task(work, name=name)

        async def stopping() -> None:
            if stop is not None:
                result = stop()
                if result is not None:
                    await result
            if cancel:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if after is not None:
                result = after()
                if result is not None:
                    await result

        self.names.append(name)
        self._stack.push_async_callback(stopping)
        return task

    async def __aenter__(self) -> Services:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)
