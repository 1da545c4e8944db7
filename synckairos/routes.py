"""The route table: every HTTP route of a node, declared once.

Each ``HttpRoute`` row names the path template, the method, the handler
(``synckairos.http_api``), the admission ``Policy`` (auth action and
rate-limit bucket: ``synckairos.admission``) and the OpenAPI operation. From
the table follow:

* Starlette's routing (``http_routes``);
* the metrics label of each request (``synckairos_http_request_duration_seconds``
  ``route``): the path template itself, so label and route cannot disagree;
* the OpenAPI document's paths (``openapi_document``);
* who may call the route and which limit it counts (the policy, applied by
  ``http_api.endpoint`` before the handler runs).

Adding an endpoint is one row here plus its handler. The WebSocket route and
the browser pages keep their own ``routes()`` (``ws_api``, ``pages``).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from starlette.routing import BaseRoute, Route

from synckairos import http_api, openapi
from synckairos.admission import Policy
from synckairos.auth import Action
from synckairos.core import Cancel, Command, Complete, Pause, Resume, Start
from synckairos.http_api import Handler
from synckairos.openapi import (
    ERRORS,
    IF_MATCH,
    SESSION_ID,
    Operation,
    data,
    json_content,
    ref,
    response,
)

__all__ = ["ROUTES", "HttpRoute", "http_routes", "openapi_document"]


class HttpRoute(msgspec.Struct, frozen=True):
    """One row of the route table: a path and method, and all that follows from them."""

    path: str
    """Starlette path template; also the request's metrics label."""
    method: str
    handler: Handler
    policy: Policy | None
    """Admission before the handler (None: public, credentials not read)."""
    operation: Operation
    """The OpenAPI operation object documenting the route."""

    @property
    def label(self) -> str:
        """The metrics label of the route's requests (``route``): its path template."""
        return self.path

    @property
    def session_in_path(self) -> bool:
        """True when the path names a session (``{session_id}``)."""
        return "{session_id}" in self.path


_SESSION = "/v1/sessions/{session_id}"

#: Who may do what, and which limit it counts (docs/security.md's tables).
_CREATE = Policy(Action.CREATE, "create", authorize_on="body")
_READ = Policy(Action.READ, "get")
_DELETE = Policy(Action.CONTROL, "switch", per="session")
_SWITCH = Policy(Action.SWITCH)
_CONTROL = Policy(Action.CONTROL)
"""Commands: the per-session limit is counted inside the commit, not here."""
_MINT = Policy(Action.MINT, "create")
_TIME = Policy(None, "time", per="ip")

_TIME_OPERATION: Operation = {
    "summary": "Server time for clock synchronization",
    "responses": {"200": response("Server clock", ref("TimeResponse"))},
}


def _command(name: str, summary: str, command: Command, answer: str = "The new state") -> HttpRoute:
    """The row of ``POST /v1/sessions/{session_id}/<name>``, which applies ``command``."""
    return HttpRoute(
        f"{_SESSION}/{name}",
        "POST",
        http_api.command_handler(name, command),
        _CONTROL,
        openapi.command(summary, "CommandRequest", answer=answer),
    )


ROUTES: tuple[HttpRoute, ...] = (
    HttpRoute(
        "/v1/sessions",
        "POST",
        http_api.create_session,
        _CREATE,
        {
            "summary": "Create a session (never overwrites: 409 SESSION_EXISTS)",
            "requestBody": {"required": True, "content": json_content(ref("CreateSession"))},
            "responses": {
                "201": response("Created", data("SessionState")),
                "409": response("SESSION_EXISTS", ref("ErrorEnvelope")),
                **{k: v for k, v in ERRORS.items() if k != "409"},
            },
        },
    ),
    HttpRoute(
        _SESSION,
        "GET",
        http_api.get_session,
        _READ,
        {
            "summary": "Current state",
            "parameters": [SESSION_ID],
            "responses": {"200": response("The state", data("SessionState")), **ERRORS},
        },
    ),
    HttpRoute(
        _SESSION,
        "DELETE",
        http_api.delete_session,
        _DELETE,
        {
            "summary": "Delete a session and notify its subscribers",
            "parameters": [SESSION_ID, IF_MATCH],
            "responses": {
                "204": response(
                    "Deleted, or did not exist (idempotent); with If-Match a missing "
                    "session is a 404"
                ),
                **ERRORS,
            },
        },
    ),
    _command("start", "Start a pending session", Start()),
    HttpRoute(
        f"{_SESSION}/switch",
        "POST",
        http_api.switch_session,
        _SWITCH,
        openapi.command(
            "End the active turn and activate the next participant",
            "SwitchRequest",
            "SwitchResult",
            "The new state, or (the flag fell first) the unchanged state with "
            "expired_participant_id",
        ),
    ),
    _command("pause", "Pause a running session", Pause()),
    _command("resume", "Resume a paused session", Resume()),
    _command(
        "complete",
        "Complete a session",
        Complete(),
        answer="The new state; on a finished session (completed, expired, cancelled) "
        "the unchanged state (no new version)",
    ),
    _command("cancel", "Cancel a session", Cancel()),
    HttpRoute(
        f"{_SESSION}/tokens",
        "POST",
        http_api.mint_token,
        _MINT,
        {
            "summary": "Mint a session token (ext; needs an API key and a token secret)",
            "parameters": [SESSION_ID],
            "requestBody": {"required": True, "content": json_content(ref("TokenRequest"))},
            "responses": {"201": response("Minted", data("TokenResponse")), **ERRORS},
        },
    ),
    HttpRoute("/v1/time", "GET", http_api.get_time, _TIME, _TIME_OPERATION),
    HttpRoute("/time", "GET", http_api.get_time, _TIME, _TIME_OPERATION),
    HttpRoute(
        "/health",
        "GET",
        http_api.health,
        None,
        {"summary": "Liveness", "responses": {"200": response("Alive", ref("HealthResponse"))}},
    ),
    HttpRoute(
        "/ready",
        "GET",
        http_api.ready,
        None,
        {
            "summary": "Readiness: Redis reachable",
            "responses": {
                "200": response("Ready", ref("ReadyResponse")),
                "503": response("Not ready", ref("ReadyResponse")),
            },
        },
    ),
    HttpRoute(
        "/metrics",
        "GET",
        http_api.metrics_endpoint,
        None,
        {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        },
    ),
    HttpRoute(
        "/openapi.json",
        "GET",
        http_api.openapi,
        None,
        {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document"}}},
    ),
)
"""Every HTTP route of a node, in routing order."""


def http_routes(table: tuple[HttpRoute, ...] = ROUTES) -> list[BaseRoute]:
    """Starlette routes of the table, each wrapped by ``http_api.endpoint``."""
    return [
        Route(
            row.path,
            http_api.endpoint(
                row.label, row.handler, row.policy, session_in_path=row.session_in_path
            ),
            methods=[row.method],
        )
        for row in table
    ]


def _operations(table: tuple[HttpRoute, ...]) -> Iterator[tuple[str, str, Operation]]:
    for row in table:
        yield row.path, row.method, row.operation


def openapi_document(table: tuple[HttpRoute, ...] = ROUTES) -> bytes:
    """The OpenAPI document of the table (``GET /openapi.json``)."""
    return openapi.build_openapi(_operations(table))
