"""Slow-client protection uvicorn lacks: a deadline for each request's headers.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``), but a
client that opens a connection and trickles its request line and headers one
byte at a time (slowloris) holds the connection forever. ``HeaderTimeoutProtocol``
is uvicorn's httptools protocol with one addition: from the first byte of a
request (or from the connection's opening) its headers must be complete
within ``SYNCKAIROS_HTTP_HEADER_TIMEOUT_S``, or the connection is closed.
Request bodies have their own deadline in the HTTP layer (408). It also lets go
of each connection it upgrades to a WebSocket (see ``handle_websocket_upgrade``).

The class is passed to uvicorn by reference (``--workers N`` pickles it into
each worker process), so it reads its deadline from the settings once per
process instead of carrying it as a parameter.
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from synckairos.config import load_settings

__all__ = ["HeaderTimeoutProtocol", "header_timeout_s"]


@functools.cache
def header_timeout_s() -> float:
    """``SYNCKAIROS_HTTP_HEADER_TIMEOUT_S`` of this process."""
    return float(load_settings().http_header_timeout_s)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """httptools protocol that closes connections whose headers arrive too slowly."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            header_timeout_s(), self._headers_too_slow
        )

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_header_timer", None) is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection to the WebSocket protocol, then let go of it.

        This HTTP protocol object is done once the WebSocket protocol owns the
        transport, but uvicorn leaves its parser holding it (parser ↔ protocol
        is a reference cycle), so it and everything it references (transport,
        flow control, socket) wait for the cyclic garbage collector. With
        ``gcwatch`` freezing long-lived objects that wait was unbounded: the
        30-minute soak grew 2 MB/min. Dropping the parser frees it by
        reference counting.
        """
        self._cancel_header_timer()
        super().handle_websocket_upgrade()
        self.parser = None  # type: ignore[assignment]
