"""WebSocket subscribers for the ``fanout`` and ``ws-idle`` scenarios.

A :class:`Subscriber` is a ``websockets`` client connection
(:class:`websockets.asyncio.client.ClientConnection`) whose receive path is cut
to the minimum, because one Python process has to keep up with thousands of
sockets:

- incoming frames never go through ``recv()`` (no message queue, no coroutine
  wake-up per message): :meth:`Subscriber.process_event`, called by the
  connection's ``data_received`` for every frame parsed from the socket,
  handles data frames itself;
- each message is decoded with msgspec into a small struct (:class:`Head`:
  ``type`` and ``version``, or ``state.version`` when the server has no
  top-level version), skipping the rest of the JSON;
- a ``STATE_UPDATE`` appends ``(version, arrival_ns)`` to
  :attr:`Subscriber.updates`, where ``arrival_ns`` is the
  :func:`time.perf_counter_ns` read when the bytes carrying it were handed to
  the connection (before any frame of that chunk was parsed).

Scenarios that need other fields subclass :class:`Subscriber` and override
:meth:`Subscriber.handle_message` (and :attr:`Subscriber.clock` /
:attr:`Subscriber.ready_message`), then pass the subclass to
:func:`open_subscribers`.

Control frames (ping, pong, close) and the opening handshake keep the library's
behaviour. The hook relies on ``ClientConnection.process_event``, an internal
method of websockets' asyncio implementation (checked with websockets 17).

:func:`open_subscribers` opens many subscribers with bounded concurrency and a
progress bar; each counts as open once the server's ``STATE_SYNC`` arrived (its
:attr:`Subscriber.ready_message`).
:func:`close_subscribers` closes them. :func:`raise_fd_limit` lifts this
process's file-descriptor limit to its hard limit and :func:`check_fd_limit`
fails early when the sockets would not fit in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from benchmarks.httpclient import BaseUrl
from benchmarks.sessions import SetupError

__all__ = [
    "FD_MARGIN",
    "Head",
    "NoStateSyncError",
    "OpenFailures",
    "StateVersion",
    "Subscriber",
    "check_fd_limit",
    "close_subscribers",
    "describe_failure",
    "open_subscriber",
    "open_subscribers",
    "raise_fd_limit",
    "ws_url",
]

#: Seconds allowed to open one socket and receive its STATE_SYNC.
OPEN_TIMEOUT_S = 10.0

#: Seconds allowed for the closing handshake of one socket before it is aborted.
CLOSE_TIMEOUT_S = 2.0

#: File descriptors kept free for everything that is not a subscriber.
FD_MARGIN = 200

#: Longest message accepted, in bytes (a state of 1,000 participants fits).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class StateVersion(msgspec.Struct, gc=False):
    """The ``version`` of a message's ``state`` (the rest of the state is skipped)."""

    version: int | None = None


class Head(msgspec.Struct, gc=False):
    """The fields of a server message the benchmarks read; the rest is skipped.

    ``version`` is our top-level **(ext)** field; a server without it (the
    Node.js reference) still has ``state.version``, used as a fallback.
    """

    type: str = ""
    version: int | None = None
    state: StateVersion | None = None

    @property
    def state_version(self) -> int | None:
        """``version``, or else ``state.version``."""
        if self.version is not None:
            return self.version
        return None if self.state is None else self.state.version


_decode_head: Callable[[Any], Head] = msgspec.json.Decoder(Head).decode


def ws_url(base: BaseUrl, session_id: str) -> str:
    """Return the WebSocket URL subscribing to ``session_id`` on ``base``'s server."""
    return f"ws://{base.authority}{base.prefix}/ws?sessionId={session_id}"


class Subscriber(ClientConnection):
    """A client connection that records what the server pushes (see the module doc).

    Created by :func:`open_subscribers`; do not call ``recv()`` on it (data
    frames never reach the library's message queue).
    """

    clock = staticmethod(time.perf_counter_ns)
    """Clock read when bytes arrive (the ``arrival`` of every message they carry)."""
    ready_message: ClassVar[str] = "STATE_SYNC"
    """Message type whose arrival resolves :attr:`synced`; named in timeout errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = -1
        """Caller's label, e.g. the index of the session subscribed to."""
        self.synced: asyncio.Future[int] = self.loop.create_future()
        """Resolves to the STATE_SYNC version (see :attr:`ready_message`); fails if the
        server refuses or closes."""
        self.synced.add_done_callback(_consume)
        self.updates: list[tuple[int, int]] = []
        """``(version, arrival perf_counter_ns)`` of every STATE_UPDATE, in arrival order."""
        self.fresh = 0
        """Distinct STATE_UPDATE versions received (progress of a run)."""
        self.other: Counter[str] = Counter()
        """Messages other than CONNECTED, STATE_SYNC and STATE_UPDATE, by type."""
        self._seen: set[int] = set()
        self._fragments: bytearray | None = None
        self._arrival_ns = 0

    @property
    def arrival_ns(self) -> int:
        """:attr:`clock` when the bytes carrying the message being handled arrived."""
        return self._arrival_ns

    def data_received(self, data: bytes) -> None:
        self._arrival_ns = self.clock()
        super().data_received(data)

    def process_event(self, event: Event) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # opening handshake
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not event.fin:
                self._fragments = bytearray(event.data)
                return
            self.handle_message(event.data)
        elif opcode is Opcode.CONT:
            # The protocol layer rejects a continuation without a first fragment.
            fragments = self._fragments
            if fragments is not None:
                fragments += event.data
                if event.fin:
                    self._fragments = None
                    self.handle_message(fragments)
        else:
            super().process_event(event)  # ping, pong, close

    def handle_message(self, data: bytes | bytearray | memoryview) -> None:
        """Handle one complete data message (override point for other scenarios)."""
        try:
            head = _decode_head(data)
        except msgspec.DecodeError:
            self.other["<undecodable>"] += 1
            return
        kind = head.type
        version = head.state_version
        if kind == "STATE_UPDATE" and version is not None:
            self.updates.append((version, self._arrival_ns))
            if version not in self._seen:
                self._seen.add(version)
                self.fresh += 1
        elif kind == "STATE_SYNC" and version is not None:
            if not self.synced.done():
                self.synced.set_result(version)
        elif kind != "CONNECTED":
            self.other[kind] += 1
            if kind == "ERROR" and not self.synced.done():
                detail = bytes(data[:300]).decode(errors="replace")
                self.synced.set_exception(ConnectionError(f"server sent {detail}"))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.synced.done():
            self.synced.set_exception(self.protocol.close_exc)

    @property
    def is_open(self) -> bool:
        """True while the connection is open (no close started by either side)."""
        return self.state is State.OPEN


def _consume(future: asyncio.Future[int]) -> None:
    """Retrieve a failure nobody awaited, so asyncio does not log it."""
    if not future.cancelled():
        future.exception()


class NoStateSyncError(TimeoutError):
    """Raised by :func:`open_subscribers` when a socket opened but no STATE_SYNC came.

    (Or whichever :attr:`Subscriber.ready_message` the subscriber waits for.)
    """

    def __init__(self, message: str, awaited: str = "STATE_SYNC") -> None:
        super().__init__(message)
        self.awaited = awaited
        """Type of the message that did not come."""


async def open_subscriber(
    url: str, compression: bool = False, connection_class: type[Subscriber] = Subscriber
) -> Subscriber:
    """Open one subscriber and wait for its ready message (OPEN_TIMEOUT_S in all).

    Raises:
        OSError, TimeoutError, ConnectionClosed, InvalidHandshake: it did not open.
        NoStateSyncError: it opened, but the ready message did not come.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OPEN_TIMEOUT_S
    async with asyncio.timeout_at(deadline):
        connection = cast(
            Subscriber,
            await connect(
                url,
                create_connection=connection_class,
                compression="deflate" if compression else None,
                proxy=None,
                ping_interval=None,
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=MAX_MESSAGE_BYTES,
            ),
        )
    try:
        async with asyncio.timeout_at(deadline):
            await connection.synced
    except TimeoutError:
        connection.transport.abort()
        awaited = connection_class.ready_message
        hint = " (does the session exist?)" if awaited == "STATE_SYNC" else ""
        raise NoStateSyncError(
            f"no {awaited} within {OPEN_TIMEOUT_S:g} s of connecting{hint}", awaited
        ) from None
    except BaseException:
        connection.transport.abort()
        raise
    return connection


@dataclass(slots=True)
class OpenFailures:
    """Sockets that could not be opened, by cause."""

    counts: Counter[str] = field(default_factory=Counter)
    first: str | None = None
    """Description of the first failure."""

    def add(self, exc: BaseException) -> None:
        """Count ``exc`` and remember it if it is the first."""
        self.counts[_describe(exc)] += 1
        if self.first is None:
            self.first = f"{type(exc).__name__}: {exc}"


def describe_failure(exc: BaseException) -> str:
    """Short cause of a failed open: ``closed 1013``, ``no STATE_SYNC``, ``TimeoutError``..."""
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else "none"
        return f"closed {code}"
    if isinstance(exc, NoStateSyncError):
        return f"no {exc.awaited}"
    if isinstance(exc, InvalidHandshake):
        return type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} errno {exc.errno}"
    return type(exc).__name__


async def open_subscribers(
    targets: Sequence[tuple[int, str]],
    opened: list[Subscriber],
    *,
    concurrency: int,
    compression: bool,
    console: Console,
    stop_on_error: bool,
    connection_class: type[Subscriber] = Subscriber,
) -> OpenFailures:
    """Open a subscriber per ``(tag, url)`` target, ``concurrency`` at a time.

    Every subscriber that opened is appended to ``opened`` (also when this
    raises, so the caller can close them) with its ``tag`` set. Shows a
    progress bar.

    Args:
        stop_on_error: stop at the first failure (raise it) instead of counting
            failures and going on.
        connection_class: :class:`Subscriber` or a subclass, instantiated per socket.

    Raises:
        InvalidURI: a URL is malformed (always raised).
        Exception: with ``stop_on_error``, the first failure.
    """
    failures = OpenFailures()
    pending = iter(targets)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("opening sockets", total=len(targets), failed=0)

        async def worker() -> None:
            for tag, url in pending:
                try:
                    subscriber = await open_subscriber(url, compression, connection_class)
                except InvalidURI:
                    raise
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    if stop_on_error:
                        raise
                    failures.add(exc)
                    progress.update(task, failed=sum(failures.counts.values()))
                else:
                    subscriber.tag = tag
                    opened.append(subscriber)
                progress.advance(task)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, len(targets))):
                    group.create_task(worker())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
    return failures


async def close_subscribers(
    subscribers: Sequence[Subscriber], *, concurrency: int, console: Console
) -> None:
    """Close every subscriber (closing handshake, abort after CLOSE_TIMEOUT_S)."""
    if not subscribers:
        return
    pending = iter(subscribers)
    with Progress(console=console) as progress:
        task = progress.add_task("closing sockets", total=len(subscribers))

        async def worker() -> None:
            for subscriber in pending:
                with contextlib.suppress(OSError, ConnectionClosed):
                    await subscriber.close()
                progress.advance(task)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(subscribers))):
                group.create_task(worker())


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit.

    Processes started afterwards (e.g. the private stack) inherit it. An
    unlimited soft limit is returned as :data:`sys.maxsize`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


def check_fd_limit(descriptors: int) -> int:
    """Raise the file-descriptor limit and check that ``descriptors`` more fit in it.

    Returns the limit. Call before starting a private stack, so the stack
    inherits it.

    Raises:
        SetupError: ``descriptors`` + FD_MARGIN exceed the (raised) limit.
    """
    limit = raise_fd_limit()
    needed = descriptors + FD_MARGIN
    if needed > limit:
        raise SetupError(
            f"{descriptors} connections need about {needed} file descriptors, but this process "
            f"may open only {limit} (`ulimit -Hn` caps it); raise the hard limit (e.g. "
            f"`ulimit -n {needed}` as root, or in /etc/security/limits.conf) or open fewer sockets"
        )
    return limit
