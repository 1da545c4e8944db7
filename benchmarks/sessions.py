"""Session setup and cleanup shared by the scenarios.

- :func:`create_sessions` creates ``per_participant`` sessions (one-hour banks,
  no increment) and starts them; any answer other than 201 / 200 raises
  :class:`SetupError`.
- :func:`delete_sessions` deletes sessions; failures are reported on the
  console, never raised (it runs in ``finally`` blocks).

Both work over :data:`SETUP_CONNECTIONS` keep-alive connections and show a
progress bar on the given (stderr) console.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from rich.console import Console
from rich.progress import Progress

from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, Response

__all__ = [
    "BANK_MS",
    "JSON",
    "SETUP_CONNECTIONS",
    "SetupError",
    "create_body",
    "create_sessions",
    "delete_sessions",
    "expect",
    "for_each",
]

#: Concurrent connections used to create, start and delete sessions.
SETUP_CONNECTIONS = 16

#: Bank of every participant and total time of every session, in ms (one hour).
BANK_MS = 3_600_000

JSON = "application/json"


class SetupError(RuntimeError):
    """Raised when the run cannot be set up (a session or socket could not be opened)."""


async def for_each(
    base: BaseUrl,
    items: Sequence[str],
    action: Callable[[HttpConnection, str], Awaitable[None]],
    console: Console,
    description: str,
    *,
    route: Callable[[str], BaseUrl] | None = None,
) -> None:
    """Await ``action(connection, item)`` for every item over SETUP_CONNECTIONS workers.

    Items are taken in order. Each worker has one keep-alive connection per
    server: to ``base``, or with ``route``, to ``route(item)`` (several nodes).
    Shows a progress bar. The first exception stops all workers and is re-raised.
    """
    pending = iter(items)
    with Progress(console=console) as progress:
        task = progress.add_task(description, total=len(items))

        async def worker() -> None:
            connections: dict[BaseUrl, HttpConnection] = {}
            try:
                for item in pending:
                    target = base if route is None else route(item)
                    connection = connections.get(target)
                    if connection is None:
                        connection = connections[target] = HttpConnection(target)
                    await action(connection, item)
                    progress.advance(task)
            finally:
                for connection in connections.values():
                    connection.close()

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(SETUP_CONNECTIONS, len(items))):
                    group.create_task(worker())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None


def create_body(session_id: str, participants: int, bank_ms: int = BANK_MS) -> bytes:
    """JSON body creating a ``per_participant`` session: ``participants`` banks of
    ``bank_ms`` each, no increment (SyncKairos fields only)."""
    body = {
        "session_id": session_id,
        "sync_mode": "per_participant",
        "participants": [
            {
                "participant_id": str(uuid.uuid4()),
                "participant_index": i,
                "total_time_ms": bank_ms,
            }
            for i in range(participants)
        ],
        "total_time_ms": bank_ms,
        "increment_ms": 0,
    }
    return msgspec.json.encode(body)


def expect(response: Response, status: int, what: str) -> None:
    """Raise :class:`SetupError` unless ``response`` has ``status``."""
    if response.status != status:
        raise SetupError(
            f"{what} returned {response.status}, expected {status}: {response.body[:500]!r}"
        )


async def create_sessions(
    base: BaseUrl,
    session_ids: Sequence[str],
    created: list[str],
    participants: int,
    console: Console,
) -> None:
    """Create and start every session; append each created id to ``created``.

    Raises:
        SetupError: a create did not answer 201 or a start did not answer 200.
        OSError, HttpError: the server could not be reached.
    """

    async def create_and_start(connection: HttpConnection, session_id: str) -> None:
        body = create_body(session_id, participants)
        response = await connection.request("POST", "/v1/sessions", body, JSON)
        expect(response, 201, "POST /v1/sessions")
        created.append(session_id)
        response = await connection.request("POST", f"/v1/sessions/{session_id}/start", b"")
        expect(response, 200, f"POST /v1/sessions/{session_id}/start")

    await for_each(base, session_ids, create_and_start, console, "setup")


async def delete_sessions(base: BaseUrl, session_ids: Sequence[str], console: Console) -> None:
    """Delete every session; report failures on the console."""
    if not session_ids:
        return
    failures: Counter[str] = Counter()

    async def delete(connection: HttpConnection, session_id: str) -> None:
        try:
            response = await connection.request("DELETE", f"/v1/sessions/{session_id}")
        except (HttpError, OSError) as exc:
            failures[type(exc).__name__] += 1
            return
        if response.status != 204:
            failures[str(response.status)] += 1

    await for_each(base, session_ids, delete, console, "cleanup")
    if failures:
        console.print(f"[yellow]warning:[/] some deletions failed: {dict(failures)}")
