"""Exceptions of SyncKairos: one root, one tree, one HTTP mapping.

::

    SyncKairosError                     500 INTERNAL_ERROR
    ├── ValidationFailed                400 VALIDATION_ERROR
    ├── InvalidTransition               400 INVALID_STATE_TRANSITION
    │   └── TimeoutNotDue               400 INVALID_STATE_TRANSITION
    ├── Unauthorized                    401 UNAUTHORIZED
    ├── Forbidden                       403 FORBIDDEN
    ├── SessionNotFound                 404 SESSION_NOT_FOUND
    ├── RequestTimeout                  408 REQUEST_TIMEOUT
    ├── Conflict                        409 CONFLICT
    ├── SessionExists                   409 SESSION_EXISTS
    ├── PayloadTooLarge                 413 PAYLOAD_TOO_LARGE
    ├── RateLimited                     429 RATE_LIMIT_EXCEEDED
    ├── StoreUnavailable                503 UNAVAILABLE
    └── SessionLimitReached             503 SESSION_LIMIT_REACHED

Each class carries ``status_hint`` (the HTTP status the API answers with) and
``code`` (the wire error code of docs/protocol.md). The HTTP layer maps every
``SyncKairosError`` in one place; anything else is a bug and answers 500.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidTransition",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "SessionExists",
    "SessionLimitReached",
    "SessionNotFound",
    "StoreUnavailable",
    "SyncKairosError",
    "TimeoutNotDue",
    "Unauthorized",
    "ValidationFailed",
]


class SyncKairosError(Exception):
    """Root of every error SyncKairos raises on purpose."""

    status_hint: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        """Human-readable explanation, sent to the client."""
        self.details = details
        """Machine-readable details (JSON-encodable), or None."""


#: The ``code`` of a validation problem (docs/compatibility.md).
VALIDATION_CODES = frozenset(
    {
        "invalid_json",  # the body is not JSON (UTF-8), or is nested too deeply
        "invalid_type",  # a value of the wrong JSON type
        "invalid_format",  # a string that is not a UUID (or an If-Match not a version)
        "invalid_value",  # an unknown enum value, or a value the rules refuse
        "too_small",  # a number below its minimum, an array or string too short
        "too_big",  # a number above its maximum, an array, string or object too large
        "required",  # a required field is missing
        "duplicate",  # an id or index given twice
        "unrecognized",  # an unknown field where none is allowed
    }
)


class ValidationFailed(SyncKairosError):
    """Raised by the API and the core when input is malformed or out of range.

    ``details`` is a list of ``{"field", "message", "code"}`` dicts, as the
    Node.js server reports them: ``field`` is a dot path
    (``participants.0.total_time_ms``; ``body`` for the body as a whole, the
    header's name for a header), ``code`` one of ``VALIDATION_CODES``.
    """

    status_hint = 400
    code = "VALIDATION_ERROR"


class InvalidTransition(SyncKairosError):
    """Raised by the core when a command is not allowed in the session's status.

    The session is left unchanged.
    """

    status_hint = 400
    code = "INVALID_STATE_TRANSITION"


class TimeoutNotDue(InvalidTransition):
    """Raised by the core when a timeout is applied before the timer's deadline."""


class Unauthorized(SyncKairosError):
    """Raised by the auth policy when credentials are missing, malformed or expired."""

    status_hint = 401
    code = "UNAUTHORIZED"


class Forbidden(SyncKairosError):
    """Raised by the auth policy when valid credentials do not allow the action."""

    status_hint = 403
    code = "FORBIDDEN"


class SessionNotFound(SyncKairosError):
    """Raised by the store when a session id is unknown."""

    status_hint = 404
    code = "SESSION_NOT_FOUND"


class RequestTimeout(SyncKairosError):
    """Raised by the API when a request body does not arrive in time."""

    status_hint = 408
    code = "REQUEST_TIMEOUT"


class Conflict(SyncKairosError):
    """Raised when a client precondition (version, active participant) fails.

    ``details`` holds ``expected_version`` and ``actual_version`` (and, for the
    active-participant precondition, ``expected_participant_id`` and
    ``actual_participant_id``).
    """

    status_hint = 409
    code = "CONFLICT"


class SessionExists(SyncKairosError):
    """Raised by the store when a create names a session id that exists."""

    status_hint = 409
    code = "SESSION_EXISTS"


class PayloadTooLarge(SyncKairosError):
    """Raised by the API when a request body exceeds the configured limit."""

    status_hint = 413
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(SyncKairosError):
    """Raised when a rate limit is exhausted; nothing was done.

    The code is the Node server's ``RATE_LIMIT_EXCEEDED`` (older versions of
    this server sent ``RATE_LIMITED``). ``headers`` holds ``Retry-After`` and the
    ``RateLimit-*`` headers to send; ``retry_after_seconds`` (the Node server's
    body field) is ``Retry-After``'s value, ``details`` holds ``limit`` (the
    bucket) and ``retry_after_ms``.
    """

    status_hint = 429
    code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message, details)
        self.headers = headers or {}
        retry_after = self.headers.get("Retry-After", "")
        if retry_after.isdigit():
            seconds = int(retry_after)
        else:
            retry_ms = details.get("retry_after_ms") if isinstance(details, dict) else None
            seconds = math.ceil(retry_ms / 1000) if isinstance(retry_ms, int) else 1
        self.retry_after_seconds: int = max(1, seconds)


class StoreUnavailable(SyncKairosError):
    """Raised by the store adapter when Redis cannot be reached or errs.

    Translated from the driver's exceptions at the adapter boundary.
    """

    status_hint = 503
    code = "UNAVAILABLE"


class SessionLimitReached(SyncKairosError):
    """Raised by the store when a create would exceed the cap on live sessions.

    Nothing was created. The cap (``SYNCKAIROS_MAX_LIVE_SESSIONS``) counts
    unfinished sessions; a retry succeeds once sessions finish or are deleted.
    ``retry_after_s`` is the ``Retry-After`` the API sends.
    """

    status_hint = 503
    code = "SESSION_LIMIT_REACHED"
    retry_after_s = 60
