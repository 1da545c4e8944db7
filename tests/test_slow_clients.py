"""The httptools protocol subclass: header deadline and no reference cycle after an upgrade."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from synckairos.slow_clients import HeaderTimeoutProtocol


class _Transport(asyncio.Transport):
    """Just enough of a transport for uvicorn's protocols."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def test_an_upgraded_http_protocol_is_freed_by_reference_counting():
    config = uvicorn.Config(_app, ws="websockets-sansio", lifespan="off", log_level="error")
    config.load()
    transport = _Transport()
    protocol = HeaderTimeoutProtocol(config=config, server_state=ServerState(), app_state={})
    gc.disable()  # only reference counting may free it
    try:
        protocol.connection_made(transport)
        protocol.data_received(UPGRADE)
        assert transport.protocol is not protocol  # the WebSocket protocol took over
        gone = weakref.ref(protocol)
        del protocol
        assert gone() is None, "the upgraded HTTP protocol is kept alive by a cycle"
    finally:
        gc.enable()
        if transport.protocol is not None:
            transport.protocol.connection_lost(None)
