"""HTTP request/response schemas and the helpers that decode and encode them.

Request bodies are decoded straight into msgspec Structs (types and ranges are
checked in the same pass); a failure becomes ``ValidationFailed`` with a
``details`` list of ``{field, message}``. Responses are byte strings built from
the state JSON the store already holds, so a state is encoded once per change.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from synckairos.core.commands import UUID_PATTERN, Uuid
from synckairos.exceptions import SyncKairosError, ValidationFailed

__all__ = [
    "CommandRequest",
    "ErrorBody",
    "ErrorEnvelope",
    "HealthResponse",
    "ReadyResponse",
    "SwitchRequest",
    "TimeResponse",
    "TokenRequest",
    "TokenResponse",
    "data_envelope",
    "decode_body",
    "encode",
    "error_envelope",
    "is_uuid",
]

T = TypeVar("T")

Version = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]  # a JavaScript-safe integer


class CommandRequest(msgspec.Struct, frozen=True):
    """Optional body of start/pause/resume/complete/cancel (ext preconditions)."""

    expected_version: Version | None = None
    current_participant_id: Uuid | None = None


class SwitchRequest(msgspec.Struct, frozen=True):
    """Body of ``POST /v1/sessions/{id}/switch``; every field is optional."""

    next_participant_id: Uuid | None = None
    expected_version: Version | None = None
    current_participant_id: Uuid | None = None


class TokenRequest(msgspec.Struct, frozen=True):
    """Body of ``POST /v1/sessions/{id}/tokens`` (ext): the token to mint."""

    role: Literal["controller", "participant", "spectator"]
    participant_id: Uuid | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=2_592_000)] | None = None


class TokenResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """A minted session token (``Authorization: Bearer`` or ``/ws?token=``)."""

    token: str
    session_id: str
    role: str
    expires_at_ms: int
    participant_id: str | None = None


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The ``error`` object of an error response."""

    code: str
    message: str
    details: Any = None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """``{"error": {...}}``."""

    error: ErrorBody


class TimeResponse(msgspec.Struct, frozen=True):
    """Body of ``GET /v1/time`` and ``GET /time``."""

    timestamp_ms: int
    server_version: str
    drift_tolerance_ms: int


class HealthResponse(msgspec.Struct, frozen=True):
    """Body of ``GET /health``."""

    status: str


class ReadyResponse(msgspec.Struct, frozen=True):
    """Body of ``GET /ready``: overall status and each dependency's."""

    status: str
    redis: str
    pubsub: str
    audit: str


_UUID_RE = re.compile(UUID_PATTERN)
_PATH_RE = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def is_uuid(value: str) -> bool:
    """True when ``value`` is a UUID in canonical text form."""
    return _UUID_RE.match(value) is not None


def encode(value: object) -> bytes:
    """Encode ``value`` as JSON."""
    return _encoder.encode(value)


def decode_body(body: bytes, schema: type[T], *, optional: bool = False) -> T:
    """Decode a JSON request body into ``schema``.

    Args:
        body: the raw body.
        schema: a msgspec Struct type.
        optional: an empty body decodes to ``schema()``.

    Raises:
        ValidationFailed: malformed JSON, wrong types or out-of-range values.
    """
    if optional and not body.strip():
        return schema()
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders[schema] = msgspec.json.Decoder(schema)
    try:
        body.decode()  # invalid UTF-8 is refused even inside fields that are skipped
        result: T = decoder.decode(body)
    except msgspec.ValidationError as exc:
        match = _PATH_RE.match(str(exc))
        message = match.group("message") if match else str(exc)
        field = (match.group("path") if match else None) or _missing_field(message) or "body"
        raise ValidationFailed(message, [{"field": field, "message": message}]) from None
    except RecursionError:
        raise ValidationFailed(
            "request body is nested too deeply", [{"field": "body", "message": "too deep"}]
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "request body is not valid JSON (UTF-8)", [{"field": "body", "message": str(exc)}]
        ) from None
    return result


def _missing_field(message: str) -> str | None:
    found = re.search(r"missing required field `([^`]+)`", message)
    return found.group(1) if found else None


def data_envelope(payload_json: bytes) -> bytes:
    """Wrap already-encoded JSON as ``{"data": ...}``."""
    return b'{"data":' + payload_json + b"}"


def error_envelope(exc: SyncKairosError) -> bytes:
    """Encode ``exc`` as ``{"error": {code, message, details?}}``."""
    return _encoder.encode(ErrorEnvelope(ErrorBody(exc.code, exc.message, exc.details)))
