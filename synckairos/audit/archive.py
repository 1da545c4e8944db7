"""``AuditArchive``: what recovery reads from PostgreSQL.

A session's *latest* event is the one committed last (``committed_at_ms``,
then ``version``), so a session deleted and created again is judged by its
newest incarnation. A latest event of type ``session_deleted`` means the
session is gone for good: it is never resurrected.

The snapshot a restore starts from is the highest version of that newest
incarnation (its epoch): within one incarnation versions only grow, whereas
commit times come from the committing nodes' clocks and may disagree by their
skew.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from synckairos.audit.contract import LatestEvent, Snapshot
from synckairos.exceptions import StoreUnavailable

__all__ = ["AuditArchive", "LatestEvent", "Snapshot"]

_LATEST_OF_ONE = """
WITH newest AS (
    SELECT epoch FROM sync_events WHERE session_id = $1::text::uuid
    ORDER BY committed_at_ms DESC, version DESC LIMIT 1
)
SELECT e.event_type, e.version, e.epoch, e.state_snapshot::text AS state
FROM sync_events e JOIN newest ON e.epoch = newest.epoch
WHERE e.session_id = $1::text::uuid
ORDER BY e.version DESC, (e.event_type = 'session_deleted') DESC LIMIT 1
"""

_LATEST_OF_ALL = """
SELECT DISTINCT ON (session_id) session_id::text AS session_id, event_type, version,
    epoch, state_snapshot->>'status' AS status
FROM sync_events
ORDER BY session_id, committed_at_ms DESC, version DESC
"""


class AuditArchive:
    """The ``Archive`` on PostgreSQL; the pool is opened in the caller's loop."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pool: Any = None

    async def _conn_pool(self) -> Any:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.database_url, min_size=0, max_size=4, timeout=5, command_timeout=10
                )
            except (OSError, asyncpg.PostgresError) as exc:
                # The class only: a driver message may quote the row or the DSN.
                raise StoreUnavailable(f"audit store unreachable ({type(exc).__name__})") from exc
        return self._pool

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        pool = await self._conn_pool()
        try:
            rows: list[Any] = await pool.fetch(query, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"audit store error ({type(exc).__name__})") from exc
        return rows

    async def latest_snapshot(self, session_id: str) -> Snapshot | None:
        """The newest state of the session's newest incarnation; None if none or deleted.

        One indexed query (``sync_events_session_version``).

        Raises:
            StoreUnavailable: PostgreSQL cannot be reached.
        """
        rows = await self._fetch(_LATEST_OF_ONE, session_id)
        if not rows or rows[0]["event_type"] == "session_deleted" or rows[0]["state"] is None:
            return None
        row = rows[0]
        return Snapshot(str(row["state"]).encode(), int(row["version"]), str(row["epoch"]))

    async def latest_events(self) -> list[LatestEvent]:
        """The newest event of every session in the archive."""
        rows = await self._fetch(_LATEST_OF_ALL)
        return [
            LatestEvent(r["session_id"], r["event_type"], r["version"], r["status"], r["epoch"])
            for r in rows
        ]

    async def ping(self) -> bool:
        """True when PostgreSQL answers."""
        try:
            await self._fetch("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
