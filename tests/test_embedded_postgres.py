"""The private PostgreSQL (EmbeddedPostgres) and the audit schema's migrations."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest

from synckairos.audit.migrate import (
    MIGRATIONS_DIR,
    ensure_database,
    migrate,
    migration_files,
    wait_for_database,
)
from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedServerError, free_port
from tests.helpers import new_id


def _fresh_database(server: EmbeddedPostgres) -> str:
    """An empty (not migrated) database on ``server``; returns its URL."""
    name = f"t{new_id()[:8]}"
    server.create_database(name)
    return server.dsn(name)


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- the server ----------------------------------------------------------------------


async def test_the_session_server_serves_the_synckairos_database(postgres_server):
    assert (
        postgres_server.url == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/synckairos"
    )
    conn = await asyncpg.connect(postgres_server.url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "synckairos"
        assert await conn.fetchval("SELECT current_user") == "postgres"
        assert await conn.fetchval("SHOW fsync") == "on"
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await conn.fetchval("SHOW server_version_num") >= "150000"
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await conn.close()


def test_it_runs_as_postgres_when_we_are_root_else_as_ourselves(postgres_server):
    assert postgres_server.process is not None and postgres_server.directory is not None
    if os.geteuid() == 0:
        expected = pwd.getpwnam("postgres").pw_uid
        assert postgres_server.directory.parent == Path("/tmp")
    else:
        expected = os.geteuid()
    assert _process_uid(postgres_server.process.pid) == expected
    assert postgres_server.directory.stat().st_uid == expected
    assert postgres_server.directory.stat().st_mode & 0o777 == 0o700
    assert (postgres_server.directory / "data" / "PG_VERSION").read_text().strip() == "15"


async def test_stop_then_start_again_keeps_the_data_and_the_port():
    with EmbeddedPostgres() as server:
        port, url = server.port, server.url
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept (x INT); INSERT INTO kept VALUES (1)")
        await conn.close()

        server.stop()
        assert not server.running and server.process is None
        with pytest.raises(OSError):
            await asyncpg.connect(url, timeout=2)

        server.start_again()
        assert server.port == port and server.url == url
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT count(*) FROM kept") == 1
        await conn.close()


async def test_a_killed_server_keeps_every_committed_transaction():
    with EmbeddedPostgres() as server:
        conn = await asyncpg.connect(server.url)
        await conn.execute("CREATE TABLE kept (x INT)")
        for i in range(50):
            await conn.execute("INSERT INTO kept VALUES ($1)", i)
        assert server.process is not None
        postmaster = server.process.pid

        server.kill()  # SIGKILL to the postmaster and every backend: a crash
        assert not _alive(postmaster)
        with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            await conn.fetchval("SELECT 1")
        conn.terminate()

        server.start_again()  # crash recovery
        conn = await asyncpg.connect(server.url)
        assert await conn.fetchval("SELECT count(*) FROM kept") == 50
        await conn.close()


def test_close_removes_the_directory_and_the_cluster():
    server = EmbeddedPostgres().start()
    directory = server.directory
    assert directory is not None and directory.is_dir()
    server.close()
    assert not directory.exists()
    assert not server.running
    with pytest.raises(EmbeddedServerError, match="start"):
        server.start_again()
    server.close()  # twice is fine


def test_missing_binaries_name_the_debian_package(tmp_path):
    with pytest.raises(EmbeddedServerError, match="postgresql-15"):
        EmbeddedPostgres(bin_dir=tmp_path).start()


def test_the_server_dies_with_the_process_that_started_it():
    """PR_SET_PDEATHSIG survives the switch to the postgres user (it is set after it)."""
    program = (
        "import time\n"
        "from synckairos.dev.embedded import EmbeddedPostgres\n"
        "server = EmbeddedPostgres().start()\n"
        "print(server.process.pid, server.directory, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert parent.stdout is not None
    line = parent.stdout.readline().split()
    try:
        postmaster = int(line[0])
        assert _alive(postmaster)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(postmaster)
    finally:
        parent.kill()
        parent.wait()
        if line:
            shutil.rmtree(line[1], ignore_errors=True)  # nobody is left to remove it


# -- migrations ----------------------------------------------------------------------


def test_the_migrations_are_the_shipped_sql_files_in_name_order():
    names = [path.name for path in migration_files()]
    assert names[0] == "001_initial.sql"
    assert names == sorted(names)


async def test_migrate_is_idempotent(postgres_server):
    url = _fresh_database(postgres_server)
    assert await migrate(url) == [path.name for path in migration_files()]
    assert await migrate(url) == []
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT name, applied_at FROM schema_migrations ORDER BY name")
    finally:
        await conn.close()
    assert [row["name"] for row in rows] == [path.name for path in migration_files()]
    assert all(row["applied_at"] is not None for row in rows)


async def test_concurrent_migrations_apply_each_migration_once(postgres_server):
    url = _fresh_database(postgres_server)
    results = await asyncio.gather(*(migrate(url) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == [path.name for path in migration_files()]
    assert sum(1 for result in results if result) == 1
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(applied)
    finally:
        await conn.close()


async def test_each_migration_is_one_transaction_applied_in_name_order(postgres_server, tmp_path):
    url = _fresh_database(postgres_server)
    (tmp_path / "002_second.sql").write_text("INSERT INTO steps VALUES ('002');")
    (tmp_path / "001_first.sql").write_text("CREATE TABLE steps (name TEXT);")
    (tmp_path / "003_broken.sql").write_text(
        "CREATE TABLE half (x INT);\nINSERT INTO steps VALUES ('003');\nSELECT * FROM nowhere;"
    )
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate(url, directory=tmp_path)
    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [row["name"] for row in names] == ["001_first.sql", "002_second.sql"]
        assert [r["name"] for r in await conn.fetch("SELECT name FROM steps")] == ["002"]
        assert await conn.fetchval("SELECT to_regclass('half')") is None  # rolled back

        (tmp_path / "003_broken.sql").write_text("INSERT INTO steps VALUES ('003');")
        assert await migrate(url, directory=tmp_path) == ["003_broken.sql"]
        assert await migrate(url, directory=tmp_path) == []
        steps = await conn.fetch("SELECT name FROM steps ORDER BY name")
        assert [r["name"] for r in steps] == ["002", "003"]
    finally:
        await conn.close()


async def test_the_schema_has_the_audit_tables_and_indexes(audit_dsn):
    conn = await asyncpg.connect(audit_dsn)
    try:
        tables = {
            row["tablename"]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        indexes = {
            (row["tablename"], row["indexname"]): row["indexdef"]
            for row in await conn.fetch(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
        columns = {
            (row["table_name"], row["column_name"]): row["data_type"]
            for row in await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public'"
            )
        }
    finally:
        await conn.close()
    assert tables == {"schema_migrations", "sync_sessions", "sync_events", "sync_participants"}
    assert set(indexes) == {
        ("schema_migrations", "schema_migrations_pkey"),
        ("sync_sessions", "sync_sessions_pkey"),
        ("sync_events", "sync_events_pkey"),
        ("sync_events", "sync_events_session_version"),
        ("sync_events", "sync_events_session_time"),
        ("sync_events", "sync_events_one_row_per_version"),
        ("sync_participants", "sync_participants_pkey"),
        ("sync_participants", "unique_session_participant"),
    }
    assert "(session_id, version DESC)" in indexes[("sync_events", "sync_events_session_version")]
    assert '(session_id, "timestamp")' in indexes[("sync_events", "sync_events_session_time")]
    assert "UNIQUE" in indexes[("sync_participants", "unique_session_participant")]
    assert columns[("sync_events", "id")] == "uuid"
    assert columns[("sync_events", "state_snapshot")] == "jsonb"
    assert columns[("sync_events", "committed_at_ms")] == "bigint"
    one_row = indexes[("sync_events", "sync_events_one_row_per_version")]
    assert "UNIQUE" in one_row and "(session_id, epoch, version)" in one_row
    assert "session_deleted" in one_row
    # 002: versions, durations and counts are BIGINT (they outgrow 2**31).
    for table, column in [
        ("sync_sessions", "last_version"),
        ("sync_sessions", "total_cycles"),
        ("sync_sessions", "time_per_cycle_ms"),
        ("sync_events", "version"),
        ("sync_events", "time_remaining_ms"),
        ("sync_events", "time_elapsed_ms"),
        ("sync_events", "cycle_number"),
        ("sync_participants", "total_time_ms"),
        ("sync_participants", "total_cycles"),
        ("sync_participants", "total_time_active_ms"),
        ("sync_participants", "last_version"),
    ]:
        assert columns[(table, column)] == "bigint", (table, column)
    assert columns[("schema_migrations", "applied_at")] == "timestamp with time zone"


async def test_an_event_id_is_stored_once(audit_dsn):
    conn = await asyncpg.connect(audit_dsn)
    try:
        event_id, session_id = new_id(), new_id()
        insert = (
            "INSERT INTO sync_events (id, session_id, event_type, version, committed_at_ms)"
            " VALUES ($1, $2, 'session_started', 1, 0) ON CONFLICT (id) DO NOTHING"
        )
        assert await conn.execute(insert, event_id, session_id) == "INSERT 0 1"
        assert await conn.execute(insert, event_id, session_id) == "INSERT 0 0"
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO sync_sessions (session_id, sync_mode) VALUES ($1, 'chess')", new_id()
            )
    finally:
        await conn.close()


async def test_one_version_of_an_incarnation_is_one_row(audit_dsn):
    conn = await asyncpg.connect(audit_dsn)
    try:
        session_id = new_id()
        insert = (
            "INSERT INTO sync_events (id, session_id, event_type, version, epoch, committed_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (id) DO NOTHING"
        )
        first = new_id()
        assert await conn.execute(insert, first, session_id, "session_created", 1, "a") == (
            "INSERT 0 1"
        )
        # A redelivery of the same event is absorbed by ON CONFLICT (id), not refused.
        assert await conn.execute(insert, first, session_id, "session_created", 1, "a") == (
            "INSERT 0 0"
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, new_id(), session_id, "session_started", 1, "a")
        # Another incarnation, and the deletion row repeating the last version: allowed.
        await conn.execute(insert, new_id(), session_id, "session_created", 1, "b")
        await conn.execute(insert, new_id(), session_id, "session_deleted", 1, "a")
    finally:
        await conn.close()


async def test_migration_002_stops_on_an_archive_with_two_rows_for_one_version(postgres_server):
    url = _fresh_database(postgres_server)
    first = MIGRATIONS_DIR / "001_initial.sql"
    with tempfile.TemporaryDirectory() as only_001:
        shutil.copy(first, only_001)
        assert await migrate(url, directory=Path(only_001)) == ["001_initial.sql"]
    conn = await asyncpg.connect(url)
    try:
        session_id = new_id()
        for _ in range(2):
            await conn.execute(
                "INSERT INTO sync_events (id, session_id, event_type, version, epoch,"
                " committed_at_ms) VALUES ($1, $2, 'cycle_switched', 7, 'e', 0)",
                new_id(),
                session_id,
            )
        with pytest.raises(asyncpg.RaiseError) as raised:
            await migrate(url)
        assert "GROUP BY" in (raised.value.hint or "")
        applied = await conn.fetch("SELECT name FROM schema_migrations")
        assert [row["name"] for row in applied] == ["001_initial.sql"]
        await conn.execute(
            "DELETE FROM sync_events WHERE id = (SELECT id FROM sync_events LIMIT 1)"
        )
    finally:
        await conn.close()
    assert await migrate(url) == ["002_bigint_and_unique_version.sql"]


# -- helpers -------------------------------------------------------------------------


async def test_wait_for_database_waits_for_a_server_that_is_starting():
    with EmbeddedPostgres() as server:
        server.stop()
        starter = threading.Timer(0.5, server.start_again)
        starter.start()
        try:
            await wait_for_database(server.url, 30)
        finally:
            starter.join()
        assert server.running


async def test_wait_for_database_gives_up_after_its_timeout():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await wait_for_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 0.5)
    assert time.monotonic() - started < 5


async def test_ensure_database_creates_a_missing_database_once(postgres_server):
    url = postgres_server.dsn(f"t{new_id()[:8]}")
    assert await ensure_database(url) is True
    assert await ensure_database(url) is False
    await wait_for_database(url, 5)
    assert await migrate(url) == [path.name for path in migration_files()]


def test_free_port_never_hands_out_a_reserved_port(monkeypatch):
    """``synckairos dev`` reserves the server's port before it starts private servers."""
    import synckairos.dev.embedded as embedded

    offered = iter([41_001, 41_002])

    class _Socket:
        def __init__(self, *args: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> _Socket:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: object) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr("synckairos.dev.embedded.socket.socket", _Socket)
    monkeypatch.setattr(embedded, "_reserved", {41_001})
    assert embedded.free_port() == 41_002
