"""``ws_api.SocketConnection`` carrying out ``resume`` decisions, on a stub store (no Redis).

The real-server behaviour is tests/test_ws_api.py; this only checks the
wrapper's side: what it queues for each plan and verdict, and when it starts a
background repair.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from synckairos.store import HistorySlice
from synckairos.ws_api import SocketConnection
from synckairos.ws_messages import Delivery

SID = "00000000-0000-4000-8000-000000000001"


class StubStore:
    """Answers ``read_since`` from a list; ``gate`` holds the read until set."""

    def __init__(self, *answers: HistorySlice) -> None:
        self.answers = list(answers)
        self.reads: list[int] = []
        self.gate: asyncio.Event | None = None

    async def read_since(
        self, session_id: str, since: int, max_bytes: int | None = None
    ) -> HistorySlice:
        self.reads.append(since)
        if self.gate is not None:
            await self.gate.wait()
        return self.answers.pop(0)


def history(version: int, changes: list[int], epoch: str = "A") -> HistorySlice:
    entries = [(v, b'{"version":%d,"state":{}}' % v) for v in changes]
    return HistorySlice(b'{"s":1}', version, epoch, entries)


def delivery(version: int, epoch: str = "A") -> Delivery:
    return Delivery(version, epoch, False, 0, f'{{"type":"STATE_UPDATE","version":{version}}}')


def connection(store: StubStore) -> SocketConnection:
    return SocketConnection(
        cast(Any, None), SID, store=cast(Any, store), clock=lambda: 1_000, max_queue=100
    )


def queued(conn: SocketConnection) -> list[tuple[str, int]]:
    """(type, version) of each queued message, and empties the queue."""
    out = []
    for item in conn._queue:
        assert isinstance(item, tuple)
        message = json.loads(item[0])
        out.append((message["type"], message.get("version", -1)))
    conn._queue.clear()
    return out


async def test_a_replay_is_queued_as_state_updates_and_a_state_sync_as_one_message():
    store = StubStore(history(4, []), history(7, [5, 6, 7]), history(20, []))
    conn = connection(store)
    await conn.repair(0, None, full=True)
    assert queued(conn) == [("STATE_SYNC", 4)]
    plan = await conn.repair(4, "A", full=False)
    assert queued(conn) == [("STATE_UPDATE", 5), ("STATE_UPDATE", 6), ("STATE_UPDATE", 7)]
    assert (plan.recovered, plan.replayed, conn.last_version) == (True, 3, 7)
    await conn.repair(7, "A", full=False)  # 13 missed, the store read none: STATE_SYNC
    assert queued(conn) == [("STATE_SYNC", 20)]
    assert store.reads == [0, 4, 7]


async def test_offers_are_filtered_by_version_and_a_gap_starts_one_background_repair():
    store = StubStore(history(4, []), history(7, [5, 6, 7]))
    conn = connection(store)
    conn.offer(delivery(4))  # held before the first sync, then a duplicate
    await conn.repair(0, None, full=True)
    conn.offer(delivery(4))
    assert queued(conn) == [("STATE_SYNC", 4)]
    conn.offer(delivery(7))  # 5 and 6 lost: a repair starts in the background
    conn.offer(delivery(8))
    assert conn._repair_task is not None
    await conn._repair_task
    assert queued(conn) == [
        ("STATE_UPDATE", 5),
        ("STATE_UPDATE", 6),
        ("STATE_UPDATE", 7),
        ("STATE_UPDATE", 8),
    ]
    assert store.reads == [0, 4] and not conn._buffering


async def test_a_token_of_another_incarnation_closes_before_any_state_is_queued():
    conn = connection(StubStore(history(4, [], epoch="B")))
    conn.token_epoch = "A"
    await conn.repair(0, None, full=True)
    assert [type(item).__name__ for item in conn._queue] == ["_Close"]


async def test_a_gap_found_when_a_background_repair_ends_starts_another_repair():
    store = StubStore(history(4, []), history(5, [5]), history(9, [6, 7, 8, 9]))
    conn = connection(store)
    await conn.repair(0, None, full=True)
    queued(conn)
    store.gate = asyncio.Event()
    conn.offer(delivery(6))  # 5 lost: background repair, its read waits
    await asyncio.sleep(0)
    conn.offer(delivery(8))  # held meanwhile; 7 lost too
    store.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    conn.offer(delivery(9))
    for _ in range(20):
        await asyncio.sleep(0)
    assert conn.last_version == 9 and not conn._buffering
