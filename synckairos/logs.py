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
    """Drop uvicorn's per-WebSocket info lines (accepted, open, closed) above debug."""

    _NOISE = ('" [accepted]', "connection open", "connection closed")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or record.name != "uvicorn.error":
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
