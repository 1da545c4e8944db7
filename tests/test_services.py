"""``Services``: started in order, stopped in reverse, every stop run."""

from __future__ import annotations

import asyncio

import pytest

from synckairos.services import Services


async def test_services_stop_in_reverse_order_of_registration():
    stopped: list[str] = []

    async def work() -> None:
        await asyncio.Event().wait()

    async with Services() as services:
        services.on_stop("first", lambda: stopped.append("first"))
        services.run("second", work(), after=lambda: stopped.append("second"))

        async def third() -> None:
            stopped.append("third")

        services.on_stop("third", third)
        assert services.names == ["first", "second", "third"]
    assert stopped == ["third", "second", "first"]


async def test_a_task_asked_to_stop_is_awaited_without_cancelling_when_told():
    done = asyncio.Event()
    finished: list[bool] = []

    async def work() -> None:
        await done.wait()
        finished.append(True)

    async with Services() as services:
        task = services.run("watcher", work(), stop=done.set, cancel=False)
    assert finished == [True] and task.done() and not task.cancelled()


async def test_a_failing_stop_does_not_keep_the_others_from_running():
    stopped: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        async with Services() as services:
            services.on_stop("kept", lambda: stopped.append("kept"))
            services.on_stop("failing", fail)
    assert stopped == ["kept"]
