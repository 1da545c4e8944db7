"""Structured logging: one JSON object per line on stderr.

No log line is written per request at the default level (info); the hot path
logs only at debug.
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

__all__ = ["JsonFormatter", "PerConnectionFilter", "configure_logging"]


class JsonFormatter(logging.Formatter):
    """Format a record as ``{"ts", "level", "logger", "msg", ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


class PerConnectionFilter(logging.Filter):
    """Drop uvicorn's per-WebSocket info lines (accepted, open, closed) above debug.

    A client's invalid UTF-8 text frame makes uvicorn log an error with a
    traceback (the socket is then closed with 1007): a client error, not ours.
    It is kept as a one-line warning, so a client cannot flood the log with
    tracebacks.
    """

    _NOISE = ('" [accepted]', "connection open", "connection closed")
    _CLIENT_ERRORS = ("Invalid UTF-8 sequence received from client",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "uvicorn.error":
            return True
        if record.levelno >= logging.ERROR and record.exc_info is not None:
            text = f"{record.getMessage()} {record.exc_info[1]!s}"
            if any(part in text for part in self._CLIENT_ERRORS):
                record.exc_info, record.exc_text = None, None
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(part in message for part in self._NOISE)


def configure_logging(level: str) -> None:
    """Send every logger's records at ``level`` or above to stderr as JSON lines.

    Nothing is logged per request or per socket unless ``level`` is debug.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    if level.lower() != "debug":
        handler.addFilter(PerConnectionFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
