"""Log hygiene: no per-socket noise, and no client-triggered tracebacks."""

from __future__ import annotations

import logging
import sys

from synckairos.logs import PerConnectionFilter


def _record(message: str, level: int, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord("uvicorn.error", level, __file__, 1, message, None, exc_info)


def test_a_client_invalid_utf8_frame_is_a_one_line_warning():
    record = _record(
        "Invalid UTF-8 sequence received from client",
        logging.ERROR,
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    )
    assert PerConnectionFilter().filter(record) is True
    assert record.levelno == logging.WARNING and record.exc_info is None


def test_server_errors_keep_their_traceback_and_socket_chatter_is_dropped():
    error = _record("Exception in ASGI application", logging.ERROR, RuntimeError("bug"))
    assert PerConnectionFilter().filter(error) is True
    assert error.levelno == logging.ERROR and error.exc_info is not None
    assert PerConnectionFilter().filter(_record("connection open", logging.INFO)) is False
