"""The OpenAPI 3.1 document, generated from the same msgspec schemas the API decodes.

Request and response bodies come from ``msgspec.json.schema_components``, so
the document cannot drift from what the server accepts and sends.
"""

from __future__ import annotations

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

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _data(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": _ref(name)}}


def _response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = _json_content(schema)
    return out


_ERRORS = {
    "400": _response(
        "VALIDATION_ERROR (details: [{field (dot path), message, code}]) or "
        "INVALID_STATE_TRANSITION",
        _ref("ErrorEnvelope"),
    ),
    "404": _response("SESSION_NOT_FOUND", _ref("ErrorEnvelope")),
    "409": _response("CONFLICT (precondition failed)", _ref("ErrorEnvelope")),
    "401": _response("UNAUTHORIZED (credentials missing or invalid)", _ref("ErrorEnvelope")),
    "403": _response("FORBIDDEN (the credentials do not allow this)", _ref("ErrorEnvelope")),
    "408": _response("REQUEST_TIMEOUT (body too slow)", _ref("ErrorEnvelope")),
    "413": _response(
        "PAYLOAD_TOO_LARGE (request body, or a session state over SYNCKAIROS_MAX_STATE_BYTES)",
        _ref("ErrorEnvelope"),
    ),
    "429": _response(
        "RATE_LIMIT_EXCEEDED (retry_after_seconds; Retry-After and RateLimit-* headers)",
        _ref("ErrorEnvelope"),
    ),
    "503": _response(
        "UNAVAILABLE (state store unreachable; Retry-After; details.outcome may be unknown) "
        "or SESSION_LIMIT_REACHED (a create beyond SYNCKAIROS_MAX_LIVE_SESSIONS)",
        _ref("ErrorEnvelope"),
    ),
}

_SESSION_ID = {
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
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "Session version the command expects (same as expected_version), "
    "bare, quoted or weak (W/); a value above 2^53 - 1 never matches (409).",
    "schema": {"type": "string", "pattern": r'^[ \t]*(W/)?"?[0-9]+"?[ \t]*$'},
}


def _command(
    summary: str, body: str, result: str = "SessionState", answer: str = "The new state"
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_SESSION_ID, _IF_MATCH],
            "requestBody": {"required": False, "content": _json_content(_ref(body))},
            "responses": {"200": _response(answer, _data(result)), **_ERRORS},
        }
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
        _ref("SessionState"),
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


def build_openapi() -> bytes:
    """Return the OpenAPI document as JSON bytes."""
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
    time_get = {
        "get": {
            "summary": "Server time for clock synchronization",
            "responses": {"200": _response("Server clock", _ref("TimeResponse"))},
        }
    }
    session = "/v1/sessions/{session_id}"
    paths: dict[str, Any] = {
        "/v1/sessions": {
            "post": {
                "summary": "Create a session (never overwrites: 409 SESSION_EXISTS)",
                "requestBody": {"required": True, "content": _json_content(_ref("CreateSession"))},
                "responses": {
                    "201": _response("Created", _data("SessionState")),
                    "409": _response("SESSION_EXISTS", _ref("ErrorEnvelope")),
                    **{k: v for k, v in _ERRORS.items() if k != "409"},
                },
            }
        },
        session: {
            "get": {
                "summary": "Current state",
                "parameters": [_SESSION_ID],
                "responses": {"200": _response("The state", _data("SessionState")), **_ERRORS},
            },
            "delete": {
                "summary": "Delete a session and notify its subscribers",
                "parameters": [_SESSION_ID, _IF_MATCH],
                "responses": {
                    "204": _response(
                        "Deleted, or did not exist (idempotent); with If-Match a missing "
                        "session is a 404"
                    ),
                    **_ERRORS,
                },
            },
        },
        f"{session}/start": _command("Start a pending session", "CommandRequest"),
        f"{session}/switch": _command(
            "End the active turn and activate the next participant",
            "SwitchRequest",
            "SwitchResult",
            "The new state, or (the flag fell first) the unchanged state with "
            "expired_participant_id",
        ),
        f"{session}/pause": _command("Pause a running session", "CommandRequest"),
        f"{session}/resume": _command("Resume a paused session", "CommandRequest"),
        f"{session}/complete": _command(
            "Complete a session",
            "CommandRequest",
            answer="The new state; on a finished session (completed, expired, cancelled) "
            "the unchanged state (no new version)",
        ),
        f"{session}/cancel": _command("Cancel a session", "CommandRequest"),
        f"{session}/tokens": {
            "post": {
                "summary": "Mint a session token (ext; needs an API key and a token secret)",
                "parameters": [_SESSION_ID],
                "requestBody": {"required": True, "content": _json_content(_ref("TokenRequest"))},
                "responses": {"201": _response("Minted", _data("TokenResponse")), **_ERRORS},
            }
        },
        "/v1/time": time_get,
        "/time": time_get,
        "/health": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _response("Alive", _ref("HealthResponse"))},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: Redis reachable",
                "responses": {
                    "200": _response("Ready", _ref("ReadyResponse")),
                    "503": _response("Not ready", _ref("ReadyResponse")),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
    }
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
