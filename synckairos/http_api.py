"""HTTP endpoints of docs/protocol.md (everything but the WebSocket).

Each endpoint is wrapped by ``endpoint(route)``, the one place that maps
``SyncKairosError`` to its status and ``{"error"}`` envelope, turns anything
else into a logged 500, and records the request latency by route. Every
endpoint that touches a session first calls ``_admit`` (authentication, role,
rate limit: ``synckairos.admission``), so a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from synckairos import __version__, metrics
from synckairos.admission import Admission
from synckairos.auth import STALE_TOKEN, Action, Principal, Role
from synckairos.config import Rate
from synckairos.core import Cancel, Command, Complete, CreateSession, Pause, Resume, Start, Switch
from synckairos.exceptions import (
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    SessionNotFound,
    StoreUnavailable,
    SyncKairosError,
    Unauthorized,
    ValidationFailed,
)
from synckairos.node import CommandResult, Node, Preconditions
from synckairos.wire import (
    API_VERSION,
    CommandRequest,
    HealthResponse,
    ReadyResponse,
    SwitchRequest,
    TimeResponse,
    TokenRequest,
    TokenResponse,
    canonical_create,
    canonical_id,
    data_envelope,
    decode_body,
    encode,
    error_envelope,
)

__all__ = ["routes"]

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]

_JSON = "application/json"
#: ``If-Match: <version>``, ``"<version>"`` or ``W/"<version>"``: ASCII digits only
#: (``\d`` would take any Unicode digit).
_IF_MATCH_RE = re.compile(r'[ \t]*(?:W/)?"?([0-9]+)"?[ \t]*', re.ASCII)
#: The largest version a session can have (a JavaScript-safe integer).
_MAX_VERSION = 2**53 - 1
#: What an ``If-Match`` above ``_MAX_VERSION`` stands for: a version no session
#: has, so the precondition fails with the usual 409. Such a value is never
#: converted to an int (Python refuses ints of more than 4,300 digits: a 500).
_NEVER_MATCHES = _MAX_VERSION + 1


def _json(body: bytes, status: int = 200, version: int | None = None) -> Response:
    headers = {"ETag": f'"{version}"'} if version is not None else None
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


#: ``Retry-After`` (seconds) of a 503: a Sentinel failover takes a few seconds.
RETRY_AFTER_S = 1


#: What a client is told when a dependency failed: the driver's own text (which
#: may quote a query, an address or the input) goes to the log, never out.
_UNAVAILABLE_MESSAGE = "the state store is unavailable; retry after Retry-After"


def _error(exc: SyncKairosError) -> Response:
    headers: dict[str, str] | None = None
    if isinstance(exc, StoreUnavailable) and (
        exc.__cause__ is not None or exc.__context__ is not None
    ):  # raised from a driver's error: its text stays in the log
        logger.warning("answering 503: %s", exc.message)
        exc = StoreUnavailable(_UNAVAILABLE_MESSAGE, exc.details)
    if exc.status_hint == 503:
        headers = {"Retry-After": str(getattr(exc, "retry_after_s", RETRY_AFTER_S))}
    elif isinstance(exc, RateLimited):
        headers = exc.headers
    elif exc.status_hint in (401, 403):
        metrics.AUTH_FAILURES.labels(exc.status_hint).inc()
        if exc.status_hint == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="synckairos"'}
    return Response(
        error_envelope(exc), status_code=exc.status_hint, media_type=_JSON, headers=headers
    )


def endpoint(route: str) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint with error mapping and latency measurement."""

    def decorate(handler: Endpoint) -> Endpoint:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except SyncKairosError as exc:
                response = _error(exc)
            except Exception:
                logger.exception("unhandled error on %s %s", request.method, route)
                response = _error(SyncKairosError("internal server error"))
            metrics.REQUEST_LATENCY.labels(route, request.method, response.status_code).observe(
                time.perf_counter() - started
            )
            return response

        return wrapped

    return decorate


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _admit(
    request: Request,
    action: Action | None,
    session_id: str | None,
    bucket: str | None,
    per: str = "client",
) -> Principal:
    """Authenticate, authorize ``action`` on ``session_id``, then count one hit.

    ``per`` picks the rate-limit identity: ``"session"``, ``"client"`` or ``"ip"``.
    Raises Unauthorized, Forbidden or RateLimited; nothing has been done then.
    """
    admission: Admission = request.app.state.admission
    principal = admission.auth.authenticate(request.headers.get("authorization"))
    if action is not None:
        admission.auth.authorize(principal, action, session_id)
    if bucket is not None:
        ip = _client_ip(request)
        identity = (
            f"s:{session_id}"
            if per == "session"
            else f"ip:{ip}"
            if per == "ip"
            else Admission.client(principal, ip)
        )
        await admission.limit(bucket, identity)
    return principal


def _session_rate(request: Request) -> Rate | None:
    admission: Admission = request.app.state.admission
    return admission.session_rate()


def _session_id(request: Request) -> str:
    """The path's session id in canonical (lowercase) form.

    Raises:
        ValidationFailed: the whole segment is not a UUID (a percent-encoded
            newline or control character included).
    """
    session_id = canonical_id(request.path_params["session_id"])
    if session_id is None:
        raise ValidationFailed(
            "session id must be a UUID",
            [{"field": "session_id", "message": "must be a UUID", "code": "invalid_format"}],
        )
    return session_id


async def _body(request: Request) -> bytes:
    """Read the body, refusing more than the configured limit (413)."""
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes", {"limit": limit})
    chunks: list[bytes] = []
    size = 0
    timeout_s: int = request.app.state.settings.http_body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes", {"limit": limit})
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout_s} s") from None
    except ClientDisconnect:
        # The client went away mid-body (or sent a malformed framing that the
        # HTTP parser gave up on): nothing to answer, and not a server error.
        raise ValidationFailed(
            "request body incomplete: the client disconnected",
            [{"field": "body", "message": "incomplete", "code": "invalid_json"}],
        ) from None
    return b"".join(chunks)


def _preconditions(
    request: Request,
    expected_version: int | None,
    current_participant_id: str | None,
    epoch: str | None = None,
) -> Preconditions:
    header = request.headers.get("if-match")
    if header is not None:
        match = _IF_MATCH_RE.fullmatch(header)
        if match is None:
            raise ValidationFailed(
                "If-Match must be a session version",
                [
                    {
                        "field": "If-Match",
                        "message": "must be an integer version",
                        "code": "invalid_format",
                    }
                ],
            )
        digits = match.group(1).lstrip("0") or "0"
        from_header = int(digits) if len(digits) <= 16 else _NEVER_MATCHES
        from_header = min(from_header, _NEVER_MATCHES)
        if expected_version is not None and expected_version != from_header:
            raise ValidationFailed(
                "If-Match and expected_version disagree",
                [
                    {
                        "field": "expected_version",
                        "message": "differs from If-Match",
                        "code": "invalid_value",
                    }
                ],
            )
        expected_version = from_header
    return Preconditions(expected_version, current_participant_id, epoch)


def _result(result: CommandResult, status: int = 200) -> Response:
    return _json(data_envelope(result.state_json), status, result.transition.state.version)


@endpoint("/v1/sessions")
async def create_session(request: Request) -> Response:
    principal = await _admit(request, None, None, "create")
    spec = canonical_create(decode_body(await _body(request), CreateSession))
    admission: Admission = request.app.state.admission
    admission.auth.authorize(principal, Action.CREATE, spec.session_id)
    if principal.epoch is not None:
        # The token was minted for an incarnation that existed then: creating
        # the id again makes another one, over which it has no power.
        raise Unauthorized(STALE_TOKEN)
    return _result(await _node(request).create(spec), 201)


@endpoint("/v1/sessions/{id}")
async def get_session(request: Request) -> Response:
    session_id = _session_id(request)
    principal = await _admit(request, Action.READ, session_id, "get")
    return _json(data_envelope(await _node(request).get(session_id, epoch=principal.epoch)))


@endpoint("/v1/sessions/{id}")
async def delete_session(request: Request) -> Response:
    session_id = _session_id(request)
    principal = await _admit(request, Action.CONTROL, session_id, "switch", per="session")
    pre = _preconditions(request, None, None)
    await _node(request).delete(session_id, pre.expected_version, epoch=principal.epoch)
    return Response(status_code=204)


@endpoint("/v1/sessions/{id}/switch")
async def switch_session(request: Request) -> Response:
    session_id = _session_id(request)
    principal = await _admit(request, Action.SWITCH, session_id, None)
    body = decode_body(await _body(request), SwitchRequest, optional=True)
    current = body.current_participant_id
    command = Switch(body.next_participant_id)
    if principal.role is Role.PARTICIPANT:
        # A participant switches only out of its own turn: a double click or a
        # replayed request then meets a 409 instead of advancing two turns.
        if current is not None and current != principal.participant_id:
            raise Forbidden("a participant token may only switch its own turn")
        current = principal.participant_id
        # ... and the rotation order decides who plays next (docs/security.md).
        command = Switch(body.next_participant_id, rotation_only=True)
    pre = _preconditions(request, body.expected_version, current, principal.epoch)
    result = await _node(request).execute(session_id, command, pre, rate=_session_rate(request))
    expired = result.transition.event.expired_participant_id
    if expired is None:
        return _result(result)
    payload = b'{"expired_participant_id":"%s",%s' % (expired.encode(), result.state_json[1:])
    return _json(data_envelope(payload), 200, result.transition.state.version)


def _command_endpoint(name: str, command: Command) -> Endpoint:
    @endpoint(f"/v1/sessions/{{id}}/{name}")
    async def handle(request: Request) -> Response:
        session_id = _session_id(request)
        principal = await _admit(request, Action.CONTROL, session_id, None)
        body = decode_body(await _body(request), CommandRequest, optional=True)
        pre = _preconditions(
            request, body.expected_version, body.current_participant_id, principal.epoch
        )
        rate = _session_rate(request)
        return _result(await _node(request).execute(session_id, command, pre, rate=rate))

    handle.__name__ = f"{name}_session"
    return handle


@endpoint("/v1/sessions/{id}/tokens")
async def mint_token(request: Request) -> Response:
    session_id = _session_id(request)
    await _admit(request, Action.MINT, session_id, "create")
    body = decode_body(await _body(request), TokenRequest)
    role = Role(body.role)
    if (role is Role.PARTICIPANT) != (body.participant_id is not None):
        raise ValidationFailed(
            "participant_id is required for (and only for) a participant token",
            [
                {
                    "field": "participant_id",
                    "message": "required iff role is participant",
                    "code": "invalid_value",
                }
            ],
        )
    settings = request.app.state.settings
    admission: Admission = request.app.state.admission
    ttl_s = body.ttl_s or settings.token_ttl_s
    if ttl_s > admission.auth.max_ttl_s:
        raise ValidationFailed(
            f"ttl_s exceeds the maximum token lifetime ({admission.auth.max_ttl_s} s)",
            [
                {
                    "field": "ttl_s",
                    "message": f"must be at most {admission.auth.max_ttl_s}",
                    "code": "too_big",
                }
            ],
        )
    try:
        # The token names the session's current incarnation (claim ``ep``).
        _, epoch = await _node(request).load(session_id)
    except SessionNotFound:
        epoch = None  # not created yet: bound to the id only
    now_s = int(time.time())  # token expiry is checked against the system clock
    token = admission.auth.mint(session_id, role, body.participant_id, ttl_s, now_s, epoch)
    minted = TokenResponse(
        token, session_id, role.value, (now_s + ttl_s) * 1000, body.participant_id
    )
    return _json(data_envelope(encode(minted)), 201)


@endpoint("/v1/time")
async def get_time(request: Request) -> Response:
    await _admit(request, None, None, "time", per="ip")
    node = _node(request)
    tolerance: int = request.app.state.settings.drift_tolerance_ms
    return _json(encode(TimeResponse(node.clock(), API_VERSION, tolerance, __version__)))


@endpoint("/health")
async def health(request: Request) -> Response:
    return _json(encode(HealthResponse("ok")))


@endpoint("/ready")
async def ready(request: Request) -> Response:
    node = _node(request)
    redis_up = await node.store.ping()
    listening: bool = request.app.state.listener.alive
    ok = redis_up and listening
    audit = "not_configured"
    if node.archive is not None:
        audit = "up" if await node.archive.ping() else "down"
    body = ReadyResponse(
        status="ready" if ok else "not_ready",
        redis="up" if redis_up else "down",
        pubsub="listening" if listening else "down",
        audit=audit,
    )
    return _json(encode(body), 200 if ok else 503)


@endpoint("/metrics")
async def metrics_endpoint(request: Request) -> Response:
    node = _node(request)
    metrics.REDIS_UP.set(1 if await node.store.ping() else 0)
    if node.archive is None:
        metrics.POSTGRES_UP.set(-1)
    else:
        metrics.POSTGRES_UP.set(1 if await node.archive.ping() else 0)
    try:
        stats = await _node(request).store.stats()
    except SyncKairosError:
        logger.warning("metrics: state store unreachable, Redis figures not refreshed")
    else:
        metrics.ACTIVE_SESSIONS.set(stats.active_sessions)
        metrics.DEADLINES.set(stats.deadlines)
        metrics.OUTBOX_LENGTH.set(stats.outbox_length)
        metrics.OUTBOX_DROPPED.set(stats.outbox_dropped)
        metrics.AUDIT_PERSISTED.set(stats.audit_persisted)
        metrics.AUDIT_RETRIES.set(stats.audit_retries)
        metrics.AUDIT_DEAD_LETTERED.set(stats.audit_dead_lettered)
        lag_ms = (
            0 if stats.oldest_outbox_ms is None else _node(request).clock() - stats.oldest_outbox_ms
        )
        metrics.AUDIT_RELAY_LAG.set(max(0, lag_ms) / 1000)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@endpoint("/openapi.json")
async def openapi(request: Request) -> Response:
    document: bytes = request.app.state.openapi
    return _json(document)


def routes() -> list[BaseRoute]:
    """Return the HTTP routes of a node."""
    session = "/v1/sessions/{session_id}"
    return [
        Route("/v1/sessions", create_session, methods=["POST"]),
        Route(session, get_session, methods=["GET"]),
        Route(session, delete_session, methods=["DELETE"]),
        Route(f"{session}/switch", switch_session, methods=["POST"]),
        Route(f"{session}/start", _command_endpoint("start", Start()), methods=["POST"]),
        Route(f"{session}/pause", _command_endpoint("pause", Pause()), methods=["POST"]),
        Route(f"{session}/resume", _command_endpoint("resume", Resume()), methods=["POST"]),
        Route(f"{session}/complete", _command_endpoint("complete", Complete()), methods=["POST"]),
        Route(f"{session}/cancel", _command_endpoint("cancel", Cancel()), methods=["POST"]),
        Route(f"{session}/tokens", mint_token, methods=["POST"]),
        Route("/v1/time", get_time, methods=["GET"]),
        Route("/time", get_time, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
