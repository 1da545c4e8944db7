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

from synckairos.core.commands import UUID_PATTERN, CreateSession, Uuid
from synckairos.exceptions import SyncKairosError, ValidationFailed

__all__ = [
    "API_VERSION",
    "CommandRequest",
    "ErrorBody",
    "ErrorEnvelope",
    "HealthResponse",
    "ReadyResponse",
    "SwitchRequest",
    "TimeResponse",
    "TokenRequest",
    "TokenResponse",
    "canonical_create",
    "canonical_id",
    "data_envelope",
    "decode_body",
    "encode",
    "error_envelope",
    "is_uuid",
]

T = TypeVar("T")

Version = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]  # a JavaScript-safe integer


def _lower_ids(struct: msgspec.Struct, *fields: str) -> None:
    """Lowercase the given UUID fields of a freshly decoded request (canonical ids)."""
    for name in fields:
        value = getattr(struct, name)
        if isinstance(value, str):
            msgspec.structs.force_setattr(struct, name, value.lower())


class CommandRequest(msgspec.Struct, frozen=True):
    """Optional body of start/pause/resume/complete/cancel (ext preconditions).

    Ids are lowercased on decoding (canonical ids).
    """

    expected_version: Version | None = None
    current_participant_id: Uuid | None = None

    def __post_init__(self) -> None:
        _lower_ids(self, "current_participant_id")


class SwitchRequest(msgspec.Struct, frozen=True):
    """Body of ``POST /v1/sessions/{id}/switch``; every field is optional.

    Ids are lowercased on decoding (canonical ids).
    """

    next_participant_id: Uuid | None = None
    expected_version: Version | None = None
    current_participant_id: Uuid | None = None

    def __post_init__(self) -> None:
        _lower_ids(self, "next_participant_id", "current_participant_id")


class TokenRequest(msgspec.Struct, frozen=True):
    """Body of ``POST /v1/sessions/{id}/tokens`` (ext): the token to mint.

    ``ttl_s`` above ``SYNCKAIROS_TOKEN_MAX_TTL_S`` is refused (400) by the
    endpoint; the schema's bound is the largest value that setting may take.
    ``participant_id`` is lowercased on decoding (canonical ids).
    """

    role: Literal["controller", "participant", "spectator"]
    participant_id: Uuid | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=2_592_000)] | None = None

    def __post_init__(self) -> None:
        _lower_ids(self, "participant_id")


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
    #: Whole seconds to wait (429 only): the Node server's field, beside ours in ``details``.
    retry_after_seconds: int | None = None
    details: Any = None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """``{"error": {...}}``."""

    error: ErrorBody


#: The API version ``GET /v1/time`` reports in ``server_version``: the one the
#: Node.js server reports, whose API this server implements (clients may check it).
API_VERSION = "2.0.0"


class TimeResponse(msgspec.Struct, frozen=True):
    """Body of ``GET /v1/time`` and ``GET /time``.

    ``server_version`` is the API version (``API_VERSION``, as the Node.js
    server reports it); ``server_build`` (ext) is this package's version.
    """

    timestamp_ms: int
    server_version: str
    drift_tolerance_ms: int
    server_build: str


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
    """True when the whole of ``value`` is a UUID in text form (either case).

    A trailing newline or any other extra character fails (``fullmatch``).
    """
    return _UUID_RE.fullmatch(value) is not None


def canonical_id(value: str) -> str | None:
    """The canonical (lowercase) spelling of the UUID ``value``; None when not a UUID."""
    return value.lower() if is_uuid(value) else None


def canonical_create(spec: CreateSession) -> CreateSession:
    """``spec`` with every id (session, participants, groups) lowercased.

    The schema has already checked that each is a UUID; ids that differ only
    in letter case become the same id, so duplicates among them are caught by
    the core's uniqueness rule.
    """
    replace = msgspec.structs.replace
    return replace(
        spec,
        session_id=spec.session_id.lower(),
        participants=[
            replace(
                p,
                participant_id=p.participant_id.lower(),
                group_id=p.group_id.lower() if p.group_id is not None else None,
            )
            for p in spec.participants
        ],
    )


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
        message, field, code = validation_problem(str(exc))
        raise ValidationFailed(
            message, [{"field": field, "message": message, "code": code}]
        ) from None
    except RecursionError:
        raise ValidationFailed(
            "request body is nested too deeply",
            [{"field": "body", "message": "too deep", "code": "invalid_json"}],
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "request body is not valid JSON (UTF-8)",
            [{"field": "body", "message": str(exc), "code": "invalid_json"}],
        ) from None
    return result


_INDEX_RE = re.compile(r"\[(\d+)\]")


def dot_path(path: str) -> str:
    """A msgspec path (``participants[0].x``) as a dot path (``participants.0.x``)."""
    return _INDEX_RE.sub(r".\1", path).lstrip(".")


def validation_problem(error: str) -> tuple[str, str, str]:
    """``(message, field, code)`` of a msgspec ``ValidationError`` text.

    ``field`` is a dot path ("body" for the body as a whole); a missing field
    is named by its own path (``participants.0.participant_id``). ``code`` is
    one of ``exceptions.VALIDATION_CODES``.
    """
    match = _PATH_RE.match(error)
    message = match.group("message") if match else error
    path = dot_path((match.group("path") if match else None) or "")
    missing = re.search(r"missing required field `([^`]+)`", message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    field = path or "body"
    code = "invalid_value"
    if missing:
        code = "required"
    elif "unknown field" in message:
        code = "unrecognized"
    elif message.startswith("Invalid enum value"):
        code = "invalid_value"
    elif ", got `" in message:
        code = "invalid_type"
    elif "matching regex" in message or (
        field.endswith("_id") and message.startswith("Expected `str` of length")
    ):
        code = "invalid_format"
    elif " >= " in message or " > " in message:
        code = "too_small"
    elif " <= " in message or " < " in message:
        code = "too_big"
    return message, field, code


def data_envelope(payload_json: bytes) -> bytes:
    """Wrap already-encoded JSON as ``{"data": ...}``."""
    return b'{"data":' + payload_json + b"}"


def error_envelope(exc: SyncKairosError) -> bytes:
    """Encode ``exc`` as ``{"error": {code, message, details?}}``."""
    body = ErrorBody(
        exc.code,
        exc.message,
        retry_after_seconds=getattr(exc, "retry_after_seconds", None),
        details=exc.details,
    )
    return _encoder.encode(ErrorEnvelope(body))
