"""Browser pages served by the server: the live session inspector and the API docs.

``/inspector`` follows one session live with the JavaScript client's own modules;
``/docs`` renders ``/openapi.json`` with a vendored Swagger UI. Everything they
load is package data under ``synckairos/static/`` and is served from
``/static/``: no CDN, nothing fetched at run time, so a pip-installed server
works offline. ``scripts/vendor-assets.sh`` refreshes the copies
(``static/client/`` is a link to ``clients/js/src``, ``static/vendor/`` comes from npm).

The pages carry a Content-Security-Policy that allows only this origin, so a
stray external reference fails loudly in the browser tests instead of working
by accident online. The pages hold no secrets and need no credentials; the
API calls they make are authorized like any other client's (the token field).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["STATIC_DIR", "routes"]

#: Package data served at ``/static/``.
STATIC_DIR = Path(__file__).parent / "static"

#: Only this origin: scripts, styles, images, fetch and the WebSocket
#: (``'self'`` covers ``ws:``/``wss:`` to the same host). Swagger UI sets
#: inline styles and uses ``data:`` SVG icons.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)

_PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _page(route: str, relative: str) -> Route:
    """Serve the HTML file ``static/<relative>`` at ``route``."""
    path = STATIC_DIR / relative

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    return Route(route, endpoint, methods=["GET", "HEAD"])


_ASSET_HEADERS = [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")]


class _Assets(StaticFiles):
    """``StaticFiles`` that revalidates (``no-cache``) and never sniffs types.

    Assets are not versioned by name, so a browser must check its copy after
    an upgrade; the ETag makes that a 304.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_ASSET_HEADERS]}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def routes() -> list[BaseRoute]:
    """``/inspector``, ``/docs`` and ``/static/`` (the assets they load)."""
    return [
        _page("/inspector", "inspector/index.html"),
        _page("/docs", "docs/index.html"),
        # static/client links to clients/js/src in a checkout (one copy of the
        # client); a wheel holds the files themselves.
        Mount("/static", app=_Assets(directory=STATIC_DIR, follow_symlink=True), name="static"),
    ]
