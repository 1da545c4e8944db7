"""Cost of poison isolation: one audit batch written whole vs event by event.

``python -m benchmarks.poison_isolation [--batch 500] [--rounds 5]`` starts a
private PostgreSQL, migrates it, and times ``AuditWriter.write`` on batches of
``--batch`` real outbox events (sessions created, started and switched by the
core): clean batches (one transaction), and the same size with one event
PostgreSQL refuses (NUL in metadata), which falls back to one transaction
per event. Prints the median of each and the ratio. The fallback only runs
for a batch that holds a refused event: the clean path is unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import msgspec
from msgspec.structs import replace

from synckairos.audit.migrate import migrate
from synckairos.audit.pipeline import AuditWriter
from synckairos.audit.records import OutboxEvent
from synckairos.core import CreateSession, Start, Switch, apply, create_session
from synckairos.core.machine import Transition
from synckairos.dev.embedded import EmbeddedPostgres

T0 = 1_800_000_000_000


def _body() -> dict[str, object]:
    return {
        "session_id": str(uuid.uuid4()),
        "sync_mode": "per_participant",
        "participants": [
            {"participant_id": str(uuid.uuid4()), "total_time_ms": 60_000} for _ in range(2)
        ],
        "total_time_ms": 60_000,
        "metadata": {"room": "B-204", "course": "MATH 101"},
    }


def _event(transition: Transition) -> OutboxEvent:
    state = msgspec.json.encode(transition.state).decode()
    event = msgspec.json.encode(transition.event).decode()
    change = f'{{"version":{transition.state.version},"event":{event},"state":{state},"ts":{T0}}}'
    return (
        str(uuid.uuid4()),
        transition.state.session_id,
        transition.state.version,
        transition.event.type,
        "ep",
        change,
    )


def batch(size: int, *, poisoned: bool) -> list[OutboxEvent]:
    """``size`` events: sessions of 10 changes each; the middle one poisoned if asked."""
    events: list[OutboxEvent] = []
    while len(events) < size:
        transition = create_session(msgspec.convert(_body(), CreateSession), T0)
        events.append(_event(transition))
        transition = apply(transition.state, Start(), T0 + 1)
        events.append(_event(transition))
        for i in range(8):
            transition = apply(transition.state, Switch(), T0 + 100 * (i + 2))
            events.append(_event(transition))
    events = events[:size]
    if poisoned:
        created = create_session(msgspec.convert(_body(), CreateSession), T0)
        bad = replace(created.state, metadata={"name": "x\x00"})
        events[size // 2] = _event(Transition(bad, created.event))
    return events


async def _run(dsn: str, size: int, rounds: int) -> None:
    await migrate(dsn)
    writer = AuditWriter(dsn)
    timings: dict[bool, list[float]] = {False: [], True: []}
    try:
        await writer.write(batch(size, poisoned=False))  # warm the pool
        for _ in range(rounds):
            for poisoned in (False, True):
                events = batch(size, poisoned=poisoned)
                started = time.perf_counter()
                outcome = await writer.write(events)
                timings[poisoned].append(time.perf_counter() - started)
                assert len(outcome.refused) == int(poisoned)
                assert outcome.stored == size - int(poisoned)
    finally:
        await writer.close()
    clean = statistics.median(timings[False]) * 1000
    isolated = statistics.median(timings[True]) * 1000
    print(f"batch of {size} events, median of {rounds} rounds:")
    print(f"  clean (one transaction):                     {clean:8.1f} ms")
    print(f"  one refused event (whole try + per event):  {isolated:8.1f} ms")
    print(f"  ratio: {isolated / clean:.1f}x (only for batches holding a refused event)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse the options, run against a private PostgreSQL, print figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poison_isolation")
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    parser.add_argument("--rounds", type=int, default=5, help="batches of each kind")
    args = parser.parse_args(argv)
    with EmbeddedPostgres() as server:
        asyncio.run(_run(server.url, args.batch, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
