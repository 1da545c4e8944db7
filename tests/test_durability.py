"""Durability levels (``SYNCKAIROS_DURABILITY``): configuration and the ``postgres`` level.

Real Redis and PostgreSQL. In the ``postgres`` level every acknowledged change
(and deletion) is already in ``sync_events`` when the answer arrives, under the
event id of its outbox entry (so the worker's later insert is a no-op); a
change whose PostgreSQL write fails is answered 503 ``UNAVAILABLE`` with
``details.outcome = "unknown"`` and without the driver's text.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY

import asyncpg
import pytest
import redis
from starlette.testclient import TestClient

from synckairos.app import create_app
from synckairos.audit.durable import DurableWriter
from synckairos.audit.pipeline import AuditWriter
from synckairos.audit.records import from_stream_fields
from synckairos.config import ConfigError, Settings, load_settings
from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from synckairos.exceptions import StoreUnavailable
from tests.conftest import run_coroutine
from tests.helpers import FakeClock, new_id, session_body


def test_durability_defaults_to_redis_and_rejects_unknown_levels() -> None:
    assert load_settings({}).durability == "redis"
    assert load_settings({"SYNCKAIROS_DURABILITY": "postgres"}).durability == "postgres"
    with pytest.raises(ConfigError, match="SYNCKAIROS_DURABILITY"):
        load_settings({"SYNCKAIROS_DURABILITY": "disk"})
    with pytest.raises(ConfigError, match="SYNCKAIROS_DURABILITY_TIMEOUT_MS"):
        load_settings({"SYNCKAIROS_DURABILITY_TIMEOUT_MS": "0"})


def test_replica_level_waits_for_at_least_one_replica_and_keeps_the_old_setting() -> None:
    assert Settings().replica_acks() == 0
    assert Settings(durability="replica").replica_acks() == 1
    assert Settings(durability="replica", redis_min_replica_acks=2).replica_acks() == 2
    # The pre-existing "durability mode" variable keeps working on its own.
    env = {"SYNCKAIROS_REDIS_MIN_REPLICA_ACKS": "1"}
    assert load_settings(env).replica_acks() == 1


def test_postgres_level_without_a_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SYNCKAIROS_DATABASE_URL"):
        create_app(Settings(durability="postgres"))
    create_app(Settings(durability="postgres", database_url="postgresql://x@127.0.0.1/x"))


@pytest.fixture
def durable(
    redis_server: EmbeddedRedis, audit_dsn: str, clock: FakeClock
) -> Iterator[tuple[TestClient, Settings]]:
    """The app in the postgres level on the real Redis and a fresh audit database."""
    settings = Settings(
        redis_url=redis_server.url,
        database_url=audit_dsn,
        key_prefix=f"t{new_id()[:8]}",
        rate_limits=False,
        durability="postgres",
        durability_timeout_ms=300,
    )
    with TestClient(create_app(settings, clock=clock)) as client:
        yield client, settings


def _rows(dsn: str, sid: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT replace(id::text, '-', '') AS id, version, event_type,"
                " state_snapshot::text AS state FROM sync_events"
                " WHERE session_id = $1::text::uuid ORDER BY committed_at_ms, version",
                sid,
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return run_coroutine(fetch())


def _outbox(settings: Settings) -> list[Any]:
    client = redis.Redis.from_url(settings.redis_target())
    try:
        entries: Any = client.xrange(f"{settings.key_prefix}:outbox")
        return [from_stream_fields(fields) for _, fields in entries]
    finally:
        client.close()


def test_postgres_level_answers_only_once_the_change_is_in_postgresql(
    durable: tuple[TestClient, Settings],
) -> None:
    client, settings = durable
    body = session_body()
    sid = body["session_id"]
    assert client.post("/v1/sessions", json=body).status_code == 201
    assert client.post(f"/v1/sessions/{sid}/start").status_code == 200
    switched = client.post(f"/v1/sessions/{sid}/switch")
    assert switched.status_code == 200
    # No worker runs: the rows were written by the node before it answered.
    rows = _rows(settings.database_url or "", sid)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert json.loads(rows[-1]["state"]) == switched.json()["data"]
    # Same event ids as the outbox entries: the worker's inserts are no-ops.
    outbox = _outbox(settings)
    assert sorted(e[0] for e in outbox if e[1] == sid) == sorted(r["id"] for r in rows)

    async def replay() -> int:
        writer = AuditWriter(settings.database_url or "")  # the worker's write
        outcome = await writer.write([e for e in outbox if e[1] == sid])
        await writer.close()
        assert outcome.stored == 3 and not outcome.refused
        conn = await asyncpg.connect(settings.database_url or "")
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM sync_events WHERE session_id = $1::text::uuid", sid
            )
            return count
        finally:
            await conn.close()

    assert run_coroutine(replay()) == 3
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    rows = _rows(settings.database_url or "", sid)
    assert [(r["version"], r["event_type"]) for r in rows][-1] == (3, "session_deleted")
    deletion = [e for e in _outbox(settings) if e[1] == sid and e[3] == "session_deleted"]
    assert [e[0] for e in deletion] == [rows[-1]["id"]]


def test_postgres_level_answers_503_outcome_unknown_when_postgresql_refuses(
    durable: tuple[TestClient, Settings],
) -> None:
    client, settings = durable
    body = session_body()
    sid = body["session_id"]
    assert client.post("/v1/sessions", json=body).status_code == 201

    async def break_table() -> None:
        conn = await asyncpg.connect(settings.database_url or "")
        try:
            await conn.execute("ALTER TABLE sync_events RENAME TO sync_events_away")
        finally:
            await conn.close()

    run_coroutine(break_table())
    response = client.post(f"/v1/sessions/{sid}/start")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "UNAVAILABLE"
    assert error["details"]["outcome"] == "unknown"
    assert "sync_events" not in response.text  # no driver text
    deleted = client.delete(f"/v1/sessions/{sid}")
    assert deleted.status_code == 503
    assert deleted.json()["error"]["details"]["outcome"] == "unknown"


def test_postgres_level_answers_503_outcome_unknown_when_postgresql_is_down(
    durable: tuple[TestClient, Settings], postgres_server: EmbeddedPostgres
) -> None:
    client, settings = durable
    body = session_body()
    sid = body["session_id"]
    assert client.post("/v1/sessions", json=body).status_code == 201
    postgres_server.stop()
    try:
        response = client.post(f"/v1/sessions/{sid}/start")
    finally:
        postgres_server.start_again()
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "UNAVAILABLE"
    assert error["details"]["outcome"] == "unknown"
    assert "errno" not in response.text.lower()  # the error class at most, never its text
    assert "connect call" not in response.text.lower()
    # The change is in Redis (outcome unknown means exactly that) ...
    assert [e[3] for e in _outbox(settings) if e[1] == sid][-1] == "session_started"
    # ... and the next change is acknowledged once PostgreSQL is back.
    switched = client.post(f"/v1/sessions/{sid}/switch")
    assert switched.status_code == 200
    assert _rows(settings.database_url or "", sid)[-1]["version"] == 3


def _event(sid: str, version: int, metadata: Any = None) -> tuple[str, str, int, str, str, str]:
    state: dict[str, Any] = {
        "session_id": sid,
        "version": version,
        "sync_mode": "per_participant",
        "status": "pending",
        "participants": [],
        "metadata": metadata or {},
    }
    change = {"version": version, "event": {"type": "session_created"}, "state": state, "ts": 1}
    return (new_id().replace("-", ""), sid, version, "session_created", "e1", json.dumps(change))


async def test_concurrent_writes_share_transactions_and_a_refused_change_fails_alone(
    audit_dsn: str,
) -> None:
    writer = DurableWriter(audit_dsn, budget_s=2)
    good = [_event(new_id(), 1) for _ in range(40)]
    bad = _event(new_id(), 1, {"x": "\u0000"})  # PostgreSQL's jsonb refuses NUL
    results = await asyncio.gather(
        *(writer.write([e]) for e in good[:20]),
        writer.write([bad]),
        *(writer.write([e]) for e in good[20:]),
        return_exceptions=True,
    )
    await writer.close()
    refused = results[20]
    assert isinstance(refused, StoreUnavailable)
    assert refused.details is not None and refused.details["outcome"] == "unknown"
    assert results[:20] + results[21:] == [None] * 40
    conn = await asyncpg.connect(audit_dsn)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM sync_events WHERE session_id = ANY($1::text[]::uuid[])",
            [e[1] for e in [*good, bad]],
        )
    finally:
        await conn.close()
    assert stored == 40


async def test_a_change_blocked_by_a_stalled_transaction_fails_alone(audit_dsn: str) -> None:
    """A worker stalled mid-batch holding a change's row: only that change waits (and fails)."""
    writer = DurableWriter(audit_dsn, budget_s=1.5)
    held, free = _event(new_id(), 1), _event(new_id(), 1)
    stalled = await asyncpg.connect(audit_dsn)
    transaction = stalled.transaction()
    await transaction.start()
    await stalled.execute(
        "INSERT INTO sync_events (id, session_id, event_type, version, epoch, committed_at_ms)"
        " VALUES ($1::text::uuid, $2::text::uuid, 'session_created', 1, 'e1', 1)",
        held[0],
        held[1],
    )
    try:
        results = await asyncio.gather(
            writer.write([held]), writer.write([free]), return_exceptions=True
        )
    finally:
        await transaction.rollback()
        await stalled.close()
        await writer.close()
    blocked, passed = results
    assert isinstance(blocked, StoreUnavailable)
    assert blocked.details is not None and blocked.details["outcome"] == "unknown"
    assert passed is None


def test_recover_in_the_postgres_level_writes_its_restores_before_it_counts_them(
    durable: tuple[TestClient, Settings],
) -> None:
    client, settings = durable
    body = session_body()
    sid = body["session_id"]
    assert client.post("/v1/sessions", json=body).status_code == 201
    assert client.post(f"/v1/sessions/{sid}/start").status_code == 200

    redis.Redis.from_url(settings.redis_target()).flushall()  # a total Redis loss
    env = {
        **os.environ,
        "SYNCKAIROS_REDIS_URL": settings.redis_url or "",
        "SYNCKAIROS_DATABASE_URL": settings.database_url or "",
        "SYNCKAIROS_KEY_PREFIX": settings.key_prefix,
        "SYNCKAIROS_DURABILITY": "postgres",
    }
    done = subprocess.run(
        [sys.executable, "-m", "synckairos", "recover", "--all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # No worker runs: the restore's own row is there because the command wrote it.
    recovered = [
        r for r in _rows(settings.database_url or "", sid) if r["event_type"] == "session_recovered"
    ]
    assert len(recovered) == 1
    restored = client.get(f"/v1/sessions/{sid}").json()["data"]
    assert restored["version"] == recovered[0]["version"]
    assert json.loads(recovered[0]["state"]) == {**restored, "server_time_ms": ANY}
