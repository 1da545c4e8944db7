"""``create_app``: assemble a node's ASGI application.

The lifespan builds every collaborator once, each handed to what uses it at
construction (the ``Node`` gets its store, clock, ``Archive`` and durable
writer; the scheduler subscribes to the node's deadlines explicitly), and
starts the background services through one ``Services`` structure, which
stops them in reverse order: scheduler, sockets (1001), GC unfreezer, heap
trimmer, Sentinel watcher, pub/sub listener, then the Redis clients, the
archive's pool and the durable writer. On SIGTERM/SIGINT every socket is
closed with 1001 before uvicorn's own shutdown. Routes come from the route
table (``synckairos.routes``); Starlette's HTTP errors (unknown path, wrong
method) use the same ``{"error"}`` envelope.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from synckairos import gcwatch, heap, pages, routes, ws_api
from synckairos.admission import Admission, Limits
from synckairos.audit.archive import AuditArchive
from synckairos.audit.durable import DurableWriter
from synckairos.auth import AuthPolicy
from synckairos.config import Settings, load_settings
from synckairos.cors import CorsMiddleware, CorsPolicy
from synckairos.hub import Hub
from synckairos.node import Clock, Node, wall_clock_ms
from synckairos.redis.connection import PrimaryWatcher, describe_redis, pubsub_client
from synckairos.redis.pubsub import RedisPubSub
from synckairos.redis.ratelimit import RedisRateLimiter
from synckairos.redis.store import RedisStore
from synckairos.scheduler import DeadlineScheduler
from synckairos.services import Services
from synckairos.wire import ErrorBody, ErrorEnvelope, encode

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: Seconds the graceful shutdown waits for sockets to take their 1001 close.
SOCKET_DRAIN_TIMEOUT = 2.0

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    body = encode(ErrorEnvelope(ErrorBody(code, str(exc.detail))))
    return Response(body, exc.status_code, media_type="application/json", headers=exc.headers)


def _close_sockets_before_shutdown(hub: Hub) -> None:
    """Wrap the SIGTERM/SIGINT handlers so sockets get 1001 before uvicorn stops.

    uvicorn would close them with 1012; 1001 tells clients to reconnect
    elsewhere. Only possible in the main thread (not under a test client).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()

    async def drain_then(previous: signal.Handlers | object, signum: int) -> None:
        await ws_api.close_all(hub, drain_timeout=SOCKET_DRAIN_TIMEOUT)
        if callable(previous):
            previous(signum, None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: object = previous) -> None:
            loop.call_soon_threadsafe(lambda: loop.create_task(drain_then(previous, signum)))

        signal.signal(sig, handler)


def create_app(settings: Settings | None = None, *, clock: Clock = wall_clock_ms) -> Starlette:
    """Build the ASGI app of one node (uvicorn: ``synckairos.app:create_app``, factory).

    Raises:
        ConfigError: the settings are inconsistent (``Settings.check_durability``).

    Args:
        settings: configuration; default: read from the environment.
        clock: server time in epoch ms (tests inject a controllable one).
    """
    settings = settings or load_settings()
    settings.check_durability()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Services() as services:
            gcwatch.install(freeze=settings.gc_unfreeze_s > 0)
            audit_writer = (
                DurableWriter(settings.database_url, budget_s=settings.durability_timeout_ms / 1000)
                if settings.durability == "postgres" and settings.database_url
                else None
            )
            if audit_writer is not None:
                services.on_stop("durable-writer", audit_writer.close)
            archive = AuditArchive(settings.database_url) if settings.database_url else None
            if archive is not None:
                services.on_stop("audit-archive", archive.close)
            pubsub_redis = pubsub_client(settings)
            services.on_stop("pubsub-client", pubsub_redis.aclose)
            store = RedisStore.from_settings(settings)
            services.on_stop("store", store.close)
            hub = Hub()
            listener = RedisPubSub(
                pubsub_redis,
                hub,
                clock,
                prefix=settings.key_prefix,
                subscribe_timeout=settings.subscribe_timeout_s,
            )
            node = Node(
                store,
                clock=clock,
                commit_retries=settings.commit_retries,
                state_cache_size=settings.state_cache_size,
                max_state_bytes=settings.max_state_bytes,
                pending_ttl_ms=settings.pending_ttl_s * 1000,
                paused_ttl_ms=settings.paused_ttl_s * 1000,
                archive=archive,
                audit_writer=audit_writer,
            )
            app.state.admission = Admission(
                AuthPolicy.from_settings(
                    settings.api_keys, settings.token_secret, settings.token_max_ttl_s
                ),
                Limits.from_settings(settings),
                RedisRateLimiter(store.client, settings.key_prefix)
                if settings.rate_limits
                else None,
            )
            app.state.node = node
            app.state.hub = hub
            app.state.listener = listener
            services.run("pubsub-listener", listener.run(), stop=listener.stop)
            if settings.redis_sentinels:
                watcher = PrimaryWatcher(settings, clients=[store.client, pubsub_redis])
                watcher.listeners.append(listener.reconnect)
                services.run(
                    "primary-watcher",
                    watcher.run(),
                    stop=watcher.stop,
                    cancel=False,
                    after=watcher.close,
                )
            if settings.malloc_trim_s > 0:
                services.run("malloc-trim", heap.run_trimmer(settings.malloc_trim_s))
            if settings.gc_unfreeze_s > 0:
                services.run("gc-unfreezer", gcwatch.run_unfreezer(settings.gc_unfreeze_s))
            services.on_stop(
                "sockets", lambda: ws_api.close_all(hub, drain_timeout=SOCKET_DRAIN_TIMEOUT)
            )
            scheduler: DeadlineScheduler | None = None
            if settings.scheduler:
                scheduler = DeadlineScheduler(
                    node,
                    store,
                    lease_ms=settings.deadline_lease_ms,
                    max_idle_s=settings.scheduler_max_idle_ms / 1000,
                )
                services.on_stop("deadline-watch", node.watch_deadlines(scheduler.notify))
                services.run("deadline-scheduler", scheduler.run(), stop=scheduler.stop)
            app.state.scheduler = scheduler
            app.state.services = services
            if not await store.ping():
                logger.warning("Redis at %s is not answering yet", describe_redis(settings))
            _close_sockets_before_shutdown(hub)
            yield

    middleware = [Middleware(CorsMiddleware, policy=CorsPolicy.from_setting(settings.cors_origins))]
    app = Starlette(
        routes=routes.http_routes() + ws_api.routes() + pages.routes(),
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.settings = settings
    app.state.openapi = routes.openapi_document()
    return app
