"""Cross-origin policy of the HTTP API and ``/ws`` (``SYNCKAIROS_CORS_ORIGINS``).

One policy decides, from a request's ``Origin`` header, whether a browser page
of another origin may use the server:

- ``*``: any origin (the Node.js server's default; ``synckairos dev`` uses it).
- a comma-separated list of origins (``https://game.example``): those, and the
  server's own origin.
- unset (``serve``'s default): the server's own origin only.

A request without ``Origin`` (curl, a backend, a native client) is never
refused: only browsers send one, and CORS exists to protect browser users.
A request whose ``Origin`` is the server's own host is same-origin and allowed.

For an allowed other origin, every answer carries
``Access-Control-Allow-Origin`` and ``Access-Control-Expose-Headers`` (ETag,
Retry-After, RateLimit-*), and a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) answers **204** with the allowed methods,
the requested headers and ``Access-Control-Max-Age``. No
``Access-Control-Allow-Credentials``: the API authenticates with bearer
headers and query tokens, never cookies.

A refused origin gets **403** ``FORBIDDEN`` on any HTTP request (preflight or
not: a "simple" cross-site POST would otherwise still run), and a WebSocket
upgrade is refused before the handshake (HTTP 403). Browsers do not apply CORS
to WebSockets, so this Origin check is what stops a foreign page from opening
sockets with its visitors' network position (cross-site WebSocket hijacking).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synckairos.wire import ErrorBody, ErrorEnvelope, encode

__all__ = ["CorsMiddleware", "CorsPolicy"]

#: Methods a preflight allows (every method the API has, and HEAD).
ALLOW_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
#: Headers a page may read from an answer besides the CORS-safelisted ones.
EXPOSE_HEADERS = "ETag, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
#: Seconds a browser may cache a preflight's answer.
MAX_AGE_S = 600


class CorsPolicy:
    """Which origins may use the server (see the module docstring)."""

    def __init__(self, origins: Iterable[str] = (), *, any_origin: bool = False) -> None:
        self.any_origin = any_origin
        self.origins = frozenset(o.strip().rstrip("/").lower() for o in origins if o.strip())

    @classmethod
    def from_setting(cls, value: str | None) -> CorsPolicy:
        """``SYNCKAIROS_CORS_ORIGINS``: ``*``, a comma-separated list, or None (same-origin)."""
        entries = [e.strip() for e in (value or "").split(",") if e.strip()]
        return cls((e for e in entries if e != "*"), any_origin="*" in entries)

    def allows(self, origin: str, host: str | None) -> bool:
        """May a page of ``origin`` use this server, reached as ``host`` (Host header)?"""
        if self.any_origin or origin.rstrip("/").lower() in self.origins:
            return True
        return host is not None and _same_host(origin, host)

    def allow_origin_value(self, origin: str) -> str:
        """``Access-Control-Allow-Origin``: ``*`` when any origin may, else the origin."""
        return "*" if self.any_origin else origin


def _same_host(origin: str, host: str) -> bool:
    """Is ``origin`` (``scheme://host[:port]``) this server, reached as ``host``?"""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.strip().lower()


class CorsMiddleware:
    """ASGI middleware applying a ``CorsPolicy`` to HTTP requests and WebSocket upgrades."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.policy.allows(origin, headers.get("host"))
        if scope["type"] == "websocket":
            if allowed:
                await self.app(scope, receive, send)
            else:  # before the handshake: the server answers HTTP 403
                await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if not allowed:
            await _refuse(send, origin)
            return
        if preflight:
            await self._preflight(send, origin, headers)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = self.policy.allow_origin_value(
                    origin
                )
                response_headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                if not self.policy.any_origin:
                    response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: str, headers: Headers) -> None:
        answer = [
            (b"access-control-allow-origin", self.policy.allow_origin_value(origin).encode()),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
            (b"content-length", b"0"),
        ]
        requested = headers.get("access-control-request-headers")
        if requested:  # any header the page asks for, as the Node server's `cors` does
            answer.append((b"access-control-allow-headers", requested.encode("latin-1")))
        if not self.policy.any_origin:
            answer.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Send, origin: str) -> None:
    body = encode(
        ErrorEnvelope(
            ErrorBody(
                "FORBIDDEN",
                "this origin may not use the server (SYNCKAIROS_CORS_ORIGINS)",
                details={"origin": origin[:200]},
            )
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", b"Origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
