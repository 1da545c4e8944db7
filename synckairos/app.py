"""``create_app``: assemble a node's ASGI application.

The lifespan opens the Redis client and builds the ``Node``; routes come from
``http_api``; Starlette's own HTTP errors (unknown path, wrong method) are
answered in the same ``{"error"}`` envelope as ours.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from synckairos.config import Settings, load_settings
from synckairos.http_api import routes
from synckairos.node import Clock, Node, wall_clock_ms
from synckairos.openapi import build_openapi
from synckairos.store.redis import RedisStore
from synckairos.wire import ErrorBody, ErrorEnvelope, encode

__all__ = ["DEFAULT_REDIS_URL", "create_app"]

logger = logging.getLogger(__name__)

#: Redis used by ``serve`` when ``SYNCKAIROS_REDIS_URL`` is not set.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    body = encode(ErrorEnvelope(ErrorBody(code, str(exc.detail))))
    return Response(body, exc.status_code, media_type="application/json", headers=exc.headers)


def create_app(settings: Settings | None = None, *, clock: Clock = wall_clock_ms) -> Starlette:
    """Build the ASGI app of one node (uvicorn: ``synckairos.app:create_app``, factory).

    Args:
        settings: configuration; default: read from the environment.
        clock: server time in epoch ms (tests inject a controllable one).
    """
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(
            settings.redis_url or DEFAULT_REDIS_URL,
            socket_connect_timeout=2,
            socket_timeout=5,
            socket_keepalive=True,
        )
        store = RedisStore(
            client,
            prefix=settings.key_prefix,
            history_maxlen=settings.history_maxlen,
            outbox_maxlen=settings.outbox_maxlen,
            finished_ttl_ms=settings.finished_ttl_s * 1000,
        )
        app.state.node = Node(store, clock=clock, commit_retries=settings.commit_retries)
        if not await store.ping():
            logger.warning("Redis at %s is not answering yet", settings.redis_url)
        try:
            yield
        finally:
            await store.close()

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.settings = settings
    app.state.openapi = build_openapi()
    return app
