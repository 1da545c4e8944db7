"""Issue 14, audit integrity, on the real stack (server, worker, Redis, PostgreSQL).

* One event PostgreSQL refuses only dead-letters itself: its batch neighbours
  (other sessions, and the same session's other events) land; it is kept,
  counted and logged with ids and error class only; ``audit requeue`` replays
  it once it is storable and names it while it is not.
* Values that grow over a session's life (times used after weeks, balances
  after tens of thousands of Fischer increments, versions after a restore)
  fit the audit columns.

Poisoned events are written straight into the outbox, as the commit script
would: the API refuses every value the test uses to poison (see
tests/test_storable_input.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import redis
from dramatiq import Message
from msgspec.structs import replace

from synckairos.core import CreateSession, Pause, Start, Switch, apply, create_session
from synckairos.core.machine import Transition
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.redis.keys import audit_counter as counter_key
from tests.helpers import new_id, session_body
from tests.test_audit_e2e import Stack, Worker

#: A marker in poisoned metadata: it must never appear in a log or report.
SECRET = "PERSONAL-DATA-b1f7"

T0 = 1_800_000_000_000


@pytest.fixture
def quiet_stack(redis_server: EmbeddedRedis, audit_dsn: str) -> Iterator[Stack]:
    """Server + (stopped) worker on a fresh database; the test starts its own worker."""
    stack = Stack(redis_server.url, audit_dsn)
    stack.worker.stop()
    # One attempt: on the old code a refused batch is dead-lettered at once
    # instead of after ~7 minutes of backoff.
    stack.env["SYNCKAIROS_AUDIT_MAX_RETRIES"] = "1"
    yield stack
    stack.stop()


def _change(transition: Transition, ts: int) -> str:
    state = msgspec.json.encode(transition.state).decode()
    event = msgspec.json.encode(transition.event).decode()
    return f'{{"version":{transition.state.version},"event":{event},"state":{state},"ts":{ts}}}'


def _xadd(stack: Stack, sid: str, transition: Transition, epoch: str, event_id: str) -> None:
    """Append a change to the outbox exactly as the commit script does."""
    client = redis.Redis.from_url(stack.redis_url)
    client.xadd(
        f"{stack.prefix}:outbox",
        {
            "id": event_id,
            "sid": sid,
            "v": transition.state.version,
            "t": transition.event.type,
            "e": epoch,
            "c": _change(transition, T0),
        },
    )
    client.close()


def _redis(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url)


def _dead_letters(stack: Stack) -> list[list[Any]]:
    """The event lists of the audit queue's dead letters."""
    client = _redis(stack)
    bodies: list[Any] = client.hvals(f"{stack.prefix}:dramatiq:synckairos_audit.XQ.msgs")
    client.close()
    return [list(Message.decode(body).args[0]) for body in bodies]


def _counter(stack: Stack, name: str) -> int:
    client = _redis(stack)
    value = client.get(counter_key(stack.prefix, name))
    client.close()
    return int(value or 0)


async def _rows(database_url: str) -> dict[str, list[tuple[int, str]]]:
    """``session_id -> [(version, event id)]`` of every row of ``sync_events``."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT session_id::text AS sid, version, id::text AS id FROM sync_events"
            " ORDER BY session_id, version"
        )
    finally:
        await conn.close()
    found: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        found.setdefault(row["sid"], []).append((row["version"], row["id"]))
    return found


async def _wait(predicate: Any, what: str, wait_s: float = 40) -> None:
    deadline = time.monotonic() + wait_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _requeue(stack: Stack) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "synckairos", "audit", "requeue"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_one_refused_event_is_dead_lettered_alone_and_its_batch_neighbours_land(
    quiet_stack: Stack, tmp_path: Path
):
    stack = quiet_stack
    acked: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        bodies = [session_body(metadata={"owner": "innocent"}) for _ in range(6)]
        for body in bodies:
            sid = body["session_id"]
            assert (await http.post("/v1/sessions", json=body)).status_code == 201
            assert (await http.post(f"/v1/sessions/{sid}/start")).status_code == 200
            switched = await http.post(f"/v1/sessions/{sid}/switch")
            acked[sid] = switched.json()["data"]["version"]

        # Poison 1: NUL in metadata (JSONB refuses it): never storable.
        spec = msgspec.convert(session_body(), CreateSession)
        created = create_session(spec, T0)
        nul = Transition(
            replace(created.state, metadata={"name": f"{SECRET}\x00", "n": 1}), created.event
        )
        nul_id = new_id()
        _xadd(stack, spec.session_id, nul, "ep-nul", nul_id)
        # Poison 2: a different change for a version another event already
        # holds (what a restore that reused a version wrote): refused by the
        # unique index until an operator removes the wrong row.
        victim = bodies[0]["session_id"]
        client = _redis(stack)
        epoch: Any = client.hget(f"{stack.prefix}:{{{victim}}}", "e")
        client.close()
        assert epoch is not None
        clash_spec = msgspec.convert(bodies[0], CreateSession)
        clash = apply(create_session(clash_spec, T0).state, Start(), T0 + 5)
        clash_id = new_id()
        _xadd(stack, victim, clash, epoch.decode(), clash_id)
        assert clash.state.version == 2

        # Poison 3: a malformed outbox entry (a version that is not a number,
        # a change that is not JSON): it must not stop the relay for everyone.
        malformed_id = new_id()
        client = _redis(stack)
        client.xadd(
            f"{stack.prefix}:outbox",
            {"id": malformed_id, "sid": new_id(), "v": "seven", "t": "x", "e": "", "c": "{oops"},
        )
        client.close()

        # More innocent changes after the poison, in the same batch.
        for body in bodies:
            sid = body["session_id"]
            switched = await http.post(f"/v1/sessions/{sid}/switch")
            acked[sid] = switched.json()["data"]["version"]

    worker = Worker(stack.env, tmp_path / "worker.log")
    try:

        async def innocent_landed() -> bool:
            rows = await _rows(stack.database_url)
            return all(
                [v for v, _ in rows.get(sid, [])] == list(range(1, n + 1))
                for sid, n in acked.items()
            )

        await _wait(innocent_landed, "every innocent version in PostgreSQL")

        async def three_dead_letters() -> bool:
            return _counter(stack, "dead_lettered") >= 3

        await _wait(three_dead_letters, "3 dead letters")
        rows = await _rows(stack.database_url)
        stored_ids = {event_id for events in rows.values() for _, event_id in events}
        assert nul_id not in stored_ids and clash_id not in stored_ids
        assert spec.session_id not in rows
        letters = _dead_letters(stack)
        assert sorted(len(events) for events in letters) == [1, 1, 1], "each poison alone"
        assert {events[0][0] for events in letters} == {nul_id, clash_id, malformed_id}
        assert _counter(stack, "dead_lettered") == 3
        async with httpx.AsyncClient(base_url=stack.server.url) as http:
            metrics = (await http.get("/metrics")).text
        assert "synckairos_audit_dead_lettered 3.0" in metrics
    finally:
        worker.stop()
    log = worker.text()
    assert nul_id in log and "UntranslatableCharacterError" in log
    assert clash_id in log and "UniqueViolationError" in log
    assert malformed_id in log
    assert SECRET not in log, "a log line quotes the metadata"
    assert "innocent" not in log

    # Still unstorable: requeue names both and keeps them.
    result = await _requeue(stack)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 event(s) stored, 3 still refused" in result.stdout
    assert nul_id in result.stdout and clash_id in result.stdout and malformed_id in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert len(_dead_letters(stack)) == 3

    # The operator decides the clashing event is the real version 2.
    conn = await asyncpg.connect(stack.database_url)
    await conn.execute(
        "DELETE FROM sync_events WHERE session_id = $1::text::uuid AND version = 2", victim
    )
    await conn.close()
    result = await _requeue(stack)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 event(s) stored, 2 still refused" in result.stdout
    assert nul_id in result.stdout and clash_id not in result.stdout
    rows = await _rows(stack.database_url)
    assert (2, clash_id) in rows[victim]
    assert sorted(events[0][0] for events in _dead_letters(stack)) == sorted([nul_id, malformed_id])


def _many_increments() -> Transition:
    """A Fischer game after 72,000 one-millisecond turns of +60 s: balances > 2**31 ms."""
    body = session_body(budget_ms=86_400_000, increment_ms=60_000)
    spec = msgspec.convert(body, CreateSession)
    transition = apply(create_session(spec, T0).state, Start(), T0)
    now = T0
    for _ in range(72_000):
        now += 1
        transition = apply(transition.state, Switch(), now)
    return transition


async def test_values_that_grow_over_a_session_life_fit_the_audit_columns(quiet_stack: Stack):
    stack = quiet_stack
    day = 86_400_000
    # count_up without a cap, running 25 days: time used > 2**31 ms.
    count_up = msgspec.convert(session_body(mode="count_up"), CreateSession)
    long_run = apply(create_session(count_up, T0).state, Start(), T0)
    long_run = apply(long_run.state, Pause(), T0 + 25 * day)
    # Fischer increments: time remaining > 2**31 ms.
    fischer = _many_increments()
    # A restored session's version is the restoring node's clock in µs.
    restored_spec = msgspec.convert(session_body(), CreateSession)
    restored = create_session(restored_spec, T0)
    restored = Transition(replace(restored.state, version=1_800_000_000_000_000), restored.event)
    cases = {
        count_up.session_id: long_run,
        fischer.state.session_id: fischer,
        restored_spec.session_id: restored,
    }
    for sid, transition in cases.items():
        _xadd(stack, sid, transition, "ep", new_id())
    worker = Worker(stack.env, Path(os.devnull))
    try:

        async def landed() -> bool:
            return set(cases) <= set(await _rows(stack.database_url))

        await _wait(landed, "the three events in PostgreSQL")
    finally:
        worker.stop()
    conn = await asyncpg.connect(stack.database_url)
    try:
        used = await conn.fetchval(
            "SELECT max(total_time_active_ms) FROM sync_participants"
            " WHERE session_id = $1::text::uuid",
            count_up.session_id,
        )
        remaining = await conn.fetchval(
            "SELECT max(time_remaining_ms) FROM sync_events WHERE session_id = $1::text::uuid",
            fischer.state.session_id,
        )
        cycles = await conn.fetchval(
            "SELECT total_cycles FROM sync_sessions WHERE session_id = $1::text::uuid",
            fischer.state.session_id,
        )
        version = await conn.fetchval(
            "SELECT last_version FROM sync_sessions WHERE session_id = $1::text::uuid",
            restored_spec.session_id,
        )
    finally:
        await conn.close()
    assert used == 25 * day > 2**31
    assert remaining > 2**31
    assert cycles == 72_000
    assert version == 1_800_000_000_000_000
    assert _counter(stack, "dead_lettered") == 0


async def test_a_batch_failing_on_a_dead_database_is_logged_without_its_states(
    quiet_stack: Stack, tmp_path: Path
):
    """dramatiq logs a failing message with its arguments and a traceback: redacted."""
    from synckairos.dev.embedded import free_port

    stack = quiet_stack
    broken = {
        **stack.env,
        "SYNCKAIROS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none",
    }
    body = session_body(metadata={"patient": SECRET})
    async with httpx.AsyncClient(base_url=stack.server.url) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
    worker = Worker(broken, tmp_path / "worker.log")
    try:

        async def dead_lettered() -> bool:
            return _counter(stack, "dead_lettered") >= 1

        await _wait(dead_lettered, "the batch dead-lettered")
    finally:
        worker.stop()
    log = worker.text()
    assert "dead-lettered after its last retry" in log
    assert "ConnectionRefusedError" in log or "OSError" in log, log
    assert SECRET not in log, "a log line quotes the batch"

    # requeue while PostgreSQL is still unreachable: it says so and keeps the batch.
    down = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "synckairos", "audit", "requeue"],
        env={**os.environ, **broken},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1 and "stopped" in down.stderr, down.stderr
    assert SECRET not in down.stdout + down.stderr
    assert len(_dead_letters(stack)) == 1
    # Once it is back, the batch lands and the dead letter is gone.
    result = await _requeue(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "requeued 1 dead letter(s): 1 event(s) stored, 0 still refused" in result.stdout
    assert (await _rows(stack.database_url))[body["session_id"]] != []
    assert _dead_letters(stack) == []
