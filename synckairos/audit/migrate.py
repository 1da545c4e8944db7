"""Schema migrations of the audit trail (PostgreSQL).

The ``*.sql`` files of ``synckairos/audit/migrations/`` are applied in name
order, each in its own transaction together with its row in
``schema_migrations``, so a migration is applied entirely or not at all.
Concurrent callers (several nodes starting at once) are serialized by a
session-level advisory lock: each migration is applied exactly once.

``python -m synckairos.audit.migrate postgresql://…`` applies them from a shell.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.parse
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "ensure_database",
    "migrate",
    "migration_files",
    "wait_for_database",
]

#: Where the migrations live (shipped as package data).
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Key of the advisory lock that serializes migrations (any constant shared by
#: every node; this one is "SYNCKAIR" in ASCII).
MIGRATION_LOCK_KEY = 0x53594E434B414952

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  name       TEXT PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migrations of ``directory``, in the order they are applied (by name)."""
    return sorted(directory.glob("*.sql"), key=lambda path: path.name)


async def migrate(dsn: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not applied yet; return their names (``001_initial.sql``).

    Idempotent: a second call returns ``[]``. Safe to call from any number of
    processes at once. A failing migration is rolled back and raises (asyncpg's
    error); the ones before it stay applied.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            rows = await conn.fetch("SELECT name FROM schema_migrations")
            done = {str(row["name"]) for row in rows}
            applied: list[str] = []
            for path in migration_files(directory):
                if path.name in done:
                    continue
                sql = path.read_text(encoding="utf-8")
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name) VALUES ($1)", path.name
                    )
                applied.append(path.name)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def wait_for_database(dsn: str, timeout_s: float = 30.0) -> None:
    """Wait until ``dsn`` accepts a connection (the server may still be starting).

    Raises:
        TimeoutError: it did not within ``timeout_s`` seconds (the last error chained).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        remaining = deadline - loop.time()
        try:
            conn = await asyncpg.connect(dsn, timeout=max(0.1, min(5.0, remaining)))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if loop.time() + 0.1 >= deadline:
                raise TimeoutError(f"PostgreSQL did not accept connections: {exc}") from exc
            await asyncio.sleep(0.1)
        else:
            await conn.close()
            return


async def ensure_database(dsn: str) -> bool:
    """Create the database that ``dsn`` names if it does not exist.

    Connects to the ``postgres`` database of the same server to do it (the
    user needs CREATEDB). Returns True if it created it.
    """
    parts = urllib.parse.urlsplit(dsn)
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError(f"no database name in {dsn!r}")
    maintenance = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(maintenance)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m synckairos.audit.migrate DSN``: apply the migrations, print them."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m synckairos.audit.migrate postgresql://…", file=sys.stderr)
        return 2
    for name in asyncio.run(migrate(args[0])):
        print(f"applied {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
