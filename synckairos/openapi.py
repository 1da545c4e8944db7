"""The OpenAPI 3.1 document, generated from the route table and the msgspec schemas.

Request and response bodies come from ``msgspec.json.schema_components``, so
the document cannot drift from what the server accepts and sends; its paths
and operations come from the route table (``synckairos.routes``, each row's
``operation``, built with the helpers here), so it cannot drift from what the
server routes either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from synckairos import __version__
from synckairos.core.commands import UUID_PATTERN, CreateSession
from synckairos.core.model import SessionState
from synckairos.wire import (
    CommandRequest,
    ErrorEnvelope,
    HealthResponse,
    ReadyResponse,
    SwitchRequest,
    TimeResponse,
    TokenRequest,
    TokenResponse,
)

__all__ = [
    "ERRORS",
    "IF_MATCH",
    "SESSION_ID",
    "Operation",
    "build_openapi",
    "command",
    "data",
    "json_content",
    "ref",
    "response",
]

Operation = dict[str, Any]
"""One OpenAPI operation object (summary, parameters, requestBody, responses)."""

_REF = "#/components/schemas/{name}"


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": _REF.format(name=name)}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON ``content`` object of ``schema``."""
    return {"application/json": {"schema": schema}}


def data(name: str) -> dict[str, Any]:
    """The ``{"data": <name>}`` envelope of a success body."""
    return {"type": "object", "required": ["data"], "properties": {"data": ref(name)}}


def response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response object, with a JSON body of ``schema`` if given."""
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = json_content(schema)
    return out


ERRORS = {
    "400": response(
        "VALIDATION_ERROR (details: [{field (dot path), message, code}]) or "
        "INVALID_STATE_TRANSITION",
        ref("ErrorEnvelope"),
    ),
    "404": response("SESSION_NOT_FOUND", ref("ErrorEnvelope")),
    "409": response("CONFLICT (precondition failed)", ref("ErrorEnvelope")),
    "401": response("UNAUTHORIZED (credentials missing or invalid)", ref("ErrorEnvelope")),
    "403": response("FORBIDDEN (the credentials do not allow this)", ref("ErrorEnvelope")),
    "408": response("REQUEST_TIMEOUT (body too slow)", ref("ErrorEnvelope")),
    "413": response(
        "PAYLOAD_TOO_LARGE (request body, or a session state over SYNCKAIROS_MAX_STATE_BYTES)",
        ref("ErrorEnvelope"),
    ),
    "429": response(
        "RATE_LIMIT_EXCEEDED (retry_after_seconds; Retry-After and RateLimit-* headers)",
        ref("ErrorEnvelope"),
    ),
    "503": response(
        "UNAVAILABLE (state store unreachable; Retry-After; details.outcome may be unknown) "
        "or SESSION_LIMIT_REACHED (a create beyond SYNCKAIROS_MAX_LIVE_SESSIONS)",
        ref("ErrorEnvelope"),
    ),
}

SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "A UUID, either case (answered in lowercase: ids are canonical).",
    "schema": {
        "type": "string",
        "format": "uuid",
        "pattern": UUID_PATTERN,
        "minLength": 36,
        "maxLength": 36,
    },
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "Session version the command expects (same as expected_version), "
    "bare, quoted or weak (W/); a value above 2^53 - 1 never matches (409).",
    "schema": {"type": "string", "pattern": r'^[ \t]*(W/)?"?[0-9]+"?[ \t]*$'},
}


def command(
    summary: str, body: str, result: str = "SessionState", answer: str = "The new state"
) -> Operation:
    """The operation of a session command (``POST /v1/sessions/{session_id}/<command>``)."""
    return {
        "summary": summary,
        "parameters": [SESSION_ID, IF_MATCH],
        "requestBody": {"required": False, "content": json_content(ref(body))},
        "responses": {"200": response(answer, data(result)), **ERRORS},
    }


#: Response fields that are absent when unset, never null (``omit_defaults``):
#: msgspec describes them as ``T | null`` (the decoder still reads the nulls of
#: states stored before), the document as what the server sends: ``T``, optional.
_ABSENT_WHEN_UNSET = {"SessionState": ("max_time_ms", "metadata"), "Participant": ("group_id",)}


def _absent_not_null(components: dict[str, Any]) -> None:
    for name, fields in _ABSENT_WHEN_UNSET.items():
        properties = components[name]["properties"]
        for field in fields:
            schema = properties[field]
            kept = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
            schema.pop("default", None)
            schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
            schema["description"] = "Absent when unset (never null)."
            assert field not in components[name].get("required", [])


_SWITCH_RESULT = {
    "title": "SwitchResult",
    "description": "The new state; after the flag fell (the active participant's time ran "
    "out before the switch arrived), the state the timeout left, unchanged, with "
    "expired_participant_id (docs/compatibility.md).",
    "allOf": [
        ref("SessionState"),
        {
            "type": "object",
            "properties": {
                "expired_participant_id": {
                    "type": "string",
                    "description": "The participant whose time ran out, if any.",
                }
            },
        },
    ],
}


def build_openapi(operations: Iterable[tuple[str, str, Operation]]) -> bytes:
    """Return the OpenAPI document as JSON bytes.

    Args:
        operations: ``(path, method, operation)`` of every documented route, in
            order (``synckairos.routes.openapi_document`` passes the table's).
    """
    (_, components) = msgspec.json.schema_components(
        [
            CreateSession,
            SessionState,
            SwitchRequest,
            CommandRequest,
            ErrorEnvelope,
            TimeResponse,
            HealthResponse,
            ReadyResponse,
            TokenRequest,
            TokenResponse,
        ],
        ref_template=_REF,
    )
    _absent_not_null(components)
    components["SwitchResult"] = _SWITCH_RESULT
    paths: dict[str, Any] = {}
    for path, method, operation in operations:
        paths.setdefault(path, {})[method.lower()] = operation
    document = {
        "openapi": "3.1.0",
        "info": {"title": "SyncKairos", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (SYNCKAIROS_API_KEYS) or a session token "
                    "(JWT HS256, SYNCKAIROS_TOKEN_SECRET); only needed when those are set.",
                }
            },
        },
        "security": [{}, {"bearer": []}],
    }
    return msgspec.json.encode(document)
