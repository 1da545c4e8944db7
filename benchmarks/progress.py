"""Shared progress display (rich, on the stderr console).

- :func:`bar`: a counted bar (``setup 40/100``) advanced by the caller.
- :func:`live`: a bar refreshed in the background from callables, for load
  phases whose progress is elapsed time or a count read from recorders,
  with a free text column (rate, p99, RSS...).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Live", "bar", "live"]

#: Seconds between refreshes of a :func:`live` bar.
REFRESH_S = 0.5


def bar(console: Console) -> Progress:
    """A progress display with description, bar, ``M/N`` and elapsed time."""
    return Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


class Live:
    """Handle of a :func:`live` bar."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task

    def describe(self, description: str, total: float | None = None) -> None:
        """Change the description (and the total) of the bar."""
        if total is None:
            self.progress.update(self.task, description=description)
        else:
            self.progress.update(self.task, description=description, total=total)


@contextlib.asynccontextmanager
async def live(
    console: Console,
    description: str,
    total: float,
    completed: Callable[[], float],
    text: Callable[[], str],
) -> AsyncIterator[Live]:
    """Show a bar refreshed every :data:`REFRESH_S` from ``completed()`` and ``text()``.

    Both callables run on the event loop and must be cheap. The bar is
    refreshed once more when the block ends.
    """
    progress = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[text]}"),
        console=console,
        auto_refresh=False,
    )

    def refresh() -> None:
        progress.update(task, completed=completed(), text=text())
        progress.refresh()

    async def loop() -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            refresh()

    with progress:
        task = progress.add_task(description, total=total, text="")
        refresher = asyncio.create_task(loop())
        try:
            yield Live(progress, task)
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            refresh()


def rate_text(ok: int, errors: int, rate: float, extra: str = "") -> str:
    """``"12,345 ok  1,234/s  0 err"`` plus ``extra``."""
    text = f"{ok:>9,} ok {rate:>8,.0f}/s {errors:,} err"
    return f"{text}  {extra}" if extra else text
