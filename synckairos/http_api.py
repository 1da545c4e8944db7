"""HTTP handlers of docs/protocol.md (everything but the WebSocket).

The route table (``synckairos.routes``) says which handler serves which path
and method, with its metrics label and admission ``Policy``. ``endpoint``
turns a row into a Starlette endpoint, the one place that canonicalizes the
path's session id, admits the request (authentication, role, rate limit:
``synckairos.admission``) before the handler runs, so a refused request
changes nothing, maps ``SyncKairosError`` to its status and ``{"error"}``
envelope, turns anything else into a logged 500, and records the request
latency under the route's label. Handlers receive an ``Admitted`` request.
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

from synckairos import __version__, metrics
from synckairos.admission import Admission, Policy
from synckairos.auth import ANONYMOUS, STALE_TOKEN, Principal, Role
from synckairos.change import splice
from synckairos.config import Rate, Settings
from synckairos.core import Command, CreateSession, Switch
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

__all__ = [
    "Admitted",
    "Endpoint",
    "Handler",
    "command_handler",
    "create_session",
    "delete_session",
    "endpoint",
    "get_session",
    "get_time",
    "health",
    "metrics_endpoint",
    "mint_token",
    "openapi",
    "ready",
    "switch_session",
]

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
"""A Starlette endpoint."""

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


class Admitted:
    """A request its route's ``Policy`` admitted: what every handler receives.

    Attributes are fixed; ``node``, ``admission`` and ``settings`` are the
    node's (``app.state``).
    """

    __slots__ = ("policy", "principal", "request", "session_id")

    def __init__(
        self,
        request: Request,
        principal: Principal,
        session_id: str | None,
        policy: Policy | None,
    ) -> None:
        self.request = request
        """The Starlette request (headers, body)."""
        self.principal = principal
        """The authenticated caller (``ANONYMOUS`` on a public route)."""
        self.session_id = session_id
        """The path's session id, canonical (None: the path has none)."""
        self.policy = policy
        """The route's admission policy (None: public)."""

    @property
    def node(self) -> Node:
        """The node that serves the request."""
        node: Node = self.request.app.state.node
        return node

    @property
    def admission(self) -> Admission:
        """The node's auth policy and rate limiters."""
        admission: Admission = self.request.app.state.admission
        return admission

    @property
    def settings(self) -> Settings:
        """The node's settings."""
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def session(self) -> str:
        """The path's session id; only on routes whose path has one."""
        assert self.session_id is not None, "the route's path has no session id"
        return self.session_id

    def authorize(self, session_id: str) -> None:
        """Authorize the policy's action on ``session_id`` (``authorize_on="body"``).

        Raises:
            Unauthorized, Forbidden: refused.
        """
        assert self.policy is not None and self.policy.action is not None
        self.admission.auth.authorize(self.principal, self.policy.action, session_id)


Handler = Callable[[Admitted], Awaitable[Response]]
"""A handler of the route table: receives an admitted request."""


def endpoint(
    label: str, handler: Handler, policy: Policy | None, *, session_in_path: bool
) -> Endpoint:
    """The Starlette endpoint of one route-table row.

    Args:
        label: the route's metrics label (its path template).
        handler: runs once the request is admitted.
        policy: the admission policy (None: public, credentials not read).
        session_in_path: the path has ``{session_id}``; it is canonicalized
            first (400 when not a UUID, before authentication).
    """

    async def wrapped(request: Request) -> Response:
        started = time.perf_counter()
        try:
            session_id = _session_id(request) if session_in_path else None
            principal = ANONYMOUS
            if policy is not None:
                admission: Admission = request.app.state.admission
                principal = await admission.admit(
                    policy, request.headers.get("authorization"), _client_ip(request), session_id
                )
            response = await handler(Admitted(request, principal, session_id, policy))
        except SyncKairosError as exc:
            response = _error(exc)
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, label)
            response = _error(SyncKairosError("internal server error"))
        metrics.REQUEST_LATENCY.labels(label, request.method, response.status_code).observe(
            time.perf_counter() - started
        )
        return response

    wrapped.__name__ = handler.__name__
    return wrapped


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session_rate(call: Admitted) -> Rate | None:
    return call.admission.session_rate()


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


async def create_session(call: Admitted) -> Response:
    """``POST /v1/sessions``: authorized on the body's session id."""
    spec = canonical_create(decode_body(await _body(call.request), CreateSession))
    call.authorize(spec.session_id)
    if call.principal.epoch is not None:
        # The token was minted for an incarnation that existed then: creating
        # the id again makes another one, over which it has no power.
        raise Unauthorized(STALE_TOKEN)
    return _result(await call.node.create(spec), 201)


async def get_session(call: Admitted) -> Response:
    """``GET /v1/sessions/{session_id}``."""
    return _json(data_envelope(await call.node.get(call.session, epoch=call.principal.epoch)))


async def delete_session(call: Admitted) -> Response:
    """``DELETE /v1/sessions/{session_id}`` (idempotent: 204)."""
    pre = _preconditions(call.request, None, None)
    await call.node.delete(call.session, pre.expected_version, epoch=call.principal.epoch)
    return Response(status_code=204)


async def switch_session(call: Admitted) -> Response:
    """``POST /v1/sessions/{session_id}/switch``."""
    principal = call.principal
    body = decode_body(await _body(call.request), SwitchRequest, optional=True)
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
    pre = _preconditions(call.request, body.expected_version, current, principal.epoch)
    result = await call.node.execute(call.session, command, pre, rate=_session_rate(call))
    expired = result.transition.event.expired_participant_id
    if expired is None:
        return _result(result)
    payload = splice(b'"expired_participant_id":"%s"' % expired.encode(), result.state_json)
    return _json(data_envelope(payload), 200, result.transition.state.version)


def command_handler(name: str, command: Command) -> Handler:
    """The handler of ``POST /v1/sessions/{session_id}/<name>``: apply ``command``."""

    async def handle(call: Admitted) -> Response:
        body = decode_body(await _body(call.request), CommandRequest, optional=True)
        pre = _preconditions(
            call.request, body.expected_version, body.current_participant_id, call.principal.epoch
        )
        rate = _session_rate(call)
        return _result(await call.node.execute(call.session, command, pre, rate=rate))

    handle.__name__ = f"{name}_session"
    return handle


async def mint_token(call: Admitted) -> Response:
    """``POST /v1/sessions/{session_id}/tokens`` (ext)."""
    session_id = call.session
    body = decode_body(await _body(call.request), TokenRequest)
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
    settings = call.settings
    admission = call.admission
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
        _, epoch = await call.node.load(session_id)
    except SessionNotFound:
        epoch = None  # not created yet: bound to the id only
    now_s = int(time.time())  # token expiry is checked against the system clock
    token = admission.auth.mint(session_id, role, body.participant_id, ttl_s, now_s, epoch)
    minted = TokenResponse(
        token, session_id, role.value, (now_s + ttl_s) * 1000, body.participant_id
    )
    return _json(data_envelope(encode(minted)), 201)


async def get_time(call: Admitted) -> Response:
    """``GET /v1/time`` and ``GET /time``: the server clock."""
    tolerance: int = call.settings.drift_tolerance_ms
    return _json(encode(TimeResponse(call.node.clock(), API_VERSION, tolerance, __version__)))


async def health(call: Admitted) -> Response:
    """``GET /health``: liveness."""
    return _json(encode(HealthResponse("ok")))


async def ready(call: Admitted) -> Response:
    """``GET /ready``: Redis reachable and the pub/sub listener running."""
    node = call.node
    redis_up = await node.store.ping()
    listening: bool = call.request.app.state.listener.alive
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


async def metrics_endpoint(call: Admitted) -> Response:
    """``GET /metrics``: Prometheus text, Redis figures refreshed on scrape."""
    node = call.node
    metrics.REDIS_UP.set(1 if await node.store.ping() else 0)
    if node.archive is None:
        metrics.POSTGRES_UP.set(-1)
    else:
        metrics.POSTGRES_UP.set(1 if await node.archive.ping() else 0)
    try:
        stats = await node.store.stats()
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
        lag_ms = 0 if stats.oldest_outbox_ms is None else node.clock() - stats.oldest_outbox_ms
        metrics.AUDIT_RELAY_LAG.set(max(0, lag_ms) / 1000)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi(call: Admitted) -> Response:
    """``GET /openapi.json``: the document built from the route table."""
    document: bytes = call.request.app.state.openapi
    return _json(document)
