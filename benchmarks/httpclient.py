"""A minimal, fast asyncio HTTP/1.1 keep-alive client for load generation.

General-purpose clients (httpx, aiohttp) spend tens of microseconds per request
on features a load generator does not need. This one does the least that is
correct for talking to our own server:

- one TCP connection per :class:`HttpConnection`, one request in flight at a time
  (no pipelining), kept alive between requests;
- requests are bytes built once by :func:`encode_request` and reused in the hot
  loop;
- responses are framed by ``Content-Length`` only (204 and 304 have no body);
  ``Transfer-Encoding`` and responses to ``HEAD`` are not supported and raise
  :class:`HttpProtocolError`;
- when the server closes the connection (``Connection: close``, HTTP/1.0, or EOF
  while idle) the next request opens a new one. A request that is cut off is
  never retried: the caller sees :class:`ConnectionClosedError` and decides.

Parsing is Sans-I/O (:class:`ResponseParser`), the asyncio layer is
:class:`HttpConnection`. :func:`run` runs a coroutine on uvloop when it is
importable.

Exceptions::

    HttpError
    ├── HttpProtocolError       the server sent something this client cannot frame
    └── ConnectionClosedError   the connection closed before the response was complete

Timeouts raise the builtin :class:`TimeoutError`; connection failures raise
:class:`OSError` (e.g. ``ConnectionRefusedError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

__all__ = [
    "BaseUrl",
    "ConnectionClosedError",
    "HttpConnection",
    "HttpError",
    "HttpProtocolError",
    "Response",
    "ResponseParser",
    "encode_request",
    "parse_base_url",
    "run",
]

T = TypeVar("T")

#: Seconds a request may wait for its complete response before TimeoutError.
DEFAULT_TIMEOUT_S = 30.0

#: Largest response head (status line + headers) accepted, in bytes.
MAX_HEAD_BYTES = 64 * 1024


class HttpError(Exception):
    """Root of this client's errors."""


class HttpProtocolError(HttpError):
    """Raised by :class:`ResponseParser` when a response cannot be framed."""


class ConnectionClosedError(HttpError):
    """Raised by :meth:`HttpConnection.roundtrip` when the connection closed mid-request."""


@dataclass(frozen=True, slots=True)
class BaseUrl:
    """Where the server is: ``http://host:port`` plus an optional path prefix."""

    host: str
    port: int
    prefix: str
    """Path prepended to every request target, without a trailing slash ("" for none)."""

    @property
    def authority(self) -> str:
        """Value of the ``Host`` header."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"http://{self.authority}{self.prefix}"


def parse_base_url(url: str) -> BaseUrl:
    """Parse ``http://host[:port][/prefix]``.

    Raises:
        ValueError: the scheme is not ``http`` or the host is missing.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected an http://host[:port] URL, got {url!r}")
    return BaseUrl(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP response."""

    status: int
    body: bytes
    keep_alive: bool
    """False when the server will close the connection after this response."""


#: Header lines added to every request (``--header``), e.g. ``Authorization: Bearer k``.
_extra_head = ""


def set_extra_headers(lines: list[str]) -> None:
    """Send ``lines`` (``"Name: value"``) with every request of this process.

    Raises:
        ValueError: a line is not ``Name: value`` or holds a line break.
    """
    global _extra_head
    for line in lines:
        name, sep, _ = line.partition(":")
        if not sep or not name.strip() or "\r" in line or "\n" in line:
            raise ValueError(f"--header must be 'Name: value', got {line!r}")
    _extra_head = "".join(f"{line}\r\n" for line in lines)


def encode_request(
    method: str,
    target: str,
    authority: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> bytes:
    """Build the bytes of one HTTP/1.1 request.

    Args:
        method: e.g. ``"POST"``.
        target: origin-form path, e.g. ``"/v1/sessions"``.
        authority: value of the ``Host`` header (:attr:`BaseUrl.authority`).
        body: request body; ``None`` sends no ``Content-Length``, ``b""`` sends 0.
        content_type: ``Content-Type`` header value, if any.
    """
    head = f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n{_extra_head}"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if body is None:
        return (head + "\r\n").encode("latin-1")
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Sans-I/O framing of HTTP/1.1 responses.

    Call :meth:`receive_data` with every chunk read from the socket, then
    :meth:`next_response` until it returns ``None``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._head: tuple[int, int, bool] | None = None
        """(status, body length, keep_alive) of a response whose body is incomplete."""

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the connection."""
        self._buffer += data

    def next_response(self) -> Response | None:
        """Return the next complete response, or ``None`` if more data is needed.

        Raises:
            HttpProtocolError: malformed or unsupported response.
        """
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise HttpProtocolError("response head too large")
                return None
            self._head = _parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
        status, length, keep_alive = self._head
        if len(buffer) < length:
            return None
        body = bytes(buffer[:length])
        del buffer[:length]
        self._head = None
        return Response(status, body, keep_alive)


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Return (status, body length, keep_alive) from a status line and headers."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise HttpProtocolError(f"bad status line {lines[0][:100]!r}")
    status = int(code)
    keep_alive = version == b"HTTP/1.1"
    length = 0 if status in (204, 304) else -1
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise HttpProtocolError(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
        elif name == b"transfer-encoding":
            raise HttpProtocolError("Transfer-Encoding is not supported")
    if length < 0:
        raise HttpProtocolError(f"{status} response without Content-Length")
    return status, length, keep_alive


class _ClientProtocol(asyncio.Protocol):
    """asyncio side of one connection: feeds the parser, resolves the waiter."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Response] | None = None
        self._parser = ResponseParser()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._parser.receive_data(data)
        try:
            while (response := self._parser.next_response()) is not None:
                waiter, self.waiter = self.waiter, None
                if waiter is None or waiter.done():
                    raise HttpProtocolError("response without a request")
                waiter.set_result(response)
        except HttpProtocolError as exc:
            self.fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosedError(str(exc or "closed by server")))

    def fail(self, exc: BaseException) -> None:
        """Resolve the pending request with ``exc`` and abort the connection."""
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def time_out(self) -> None:
        """Timer callback: the pending request took too long."""
        self.fail(TimeoutError("no response in time"))

    def close(self) -> None:
        """Close the connection gracefully (no request may be pending)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to ``base``, connected lazily.

    Not safe for concurrent use: await one :meth:`roundtrip` at a time (one
    connection per client coroutine). Call :meth:`close` when done.
    """

    def __init__(self, base: BaseUrl, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base = base
        self.timeout = timeout
        self._protocol: _ClientProtocol | None = None

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Response:
        """Send one request to ``base.prefix + path``; see :meth:`roundtrip`."""
        target = self.base.prefix + path
        return await self.roundtrip(
            encode_request(method, target, self.base.authority, body, content_type)
        )

    async def roundtrip(self, request: bytes) -> Response:
        """Send encoded request bytes and return the complete response.

        Connects first if there is no open connection.

        Raises:
            OSError: the connection could not be opened.
            TimeoutError: no complete response within ``timeout`` seconds.
            ConnectionClosedError: the connection closed before the response was complete.
            HttpProtocolError: the response could not be framed.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        protocol.waiter = waiter
        protocol.transport.write(request)
        timer = loop.call_later(self.timeout, protocol.time_out)
        try:
            response = await waiter
        finally:
            timer.cancel()
            if waiter.cancelled():
                protocol.fail(ConnectionClosedError("request cancelled"))
        if not response.keep_alive:
            protocol.close()
        return response

    def close(self) -> None:
        """Close the connection, if open. The object may be used again afterwards."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    async def _connect(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_ClientProtocol, self.base.host, self.base.port)
        self._protocol = protocol
        return protocol


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop: uvloop if importable."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
