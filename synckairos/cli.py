"""Command line: ``synckairos serve`` and ``synckairos dev``.

``serve`` runs the HTTP server against the configured Redis. ``dev`` is the
embedded default: with no ``SYNCKAIROS_REDIS_URL`` it starts a private
``redis-server`` on a free loopback port, runs the server, prints the URLs and
stops everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import msgspec
import uvicorn

from synckairos import __version__
from synckairos.config import ConfigError, Settings, load_settings
from synckairos.embedded import EmbeddedRedis, EmbeddedServerError
from synckairos.logs import configure_logging

__all__ = ["main"]


def _run_server(settings: Settings, workers: int) -> None:
    """Run uvicorn (uvloop + httptools) until SIGINT/SIGTERM.

    uvicorn re-raises the signal it shut down on; SIGTERM is turned into a
    clean exit (status 0, ``finally`` blocks run, private servers stopped).
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    os.environ["SYNCKAIROS_REDIS_URL"] = settings.redis_url or ""
    uvicorn.run(
        "synckairos.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers if workers > 1 else None,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        log_config=None,
        server_header=False,
    )


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    return msgspec.structs.replace(settings, **overrides)


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level)
    _run_server(settings, args.workers)
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _dev(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level)
    redis: EmbeddedRedis | None = None
    try:
        if settings.redis_url is None:
            redis = EmbeddedRedis().start()
            settings = msgspec.structs.replace(settings, redis_url=redis.url)
            print(f"private Redis      {redis.url}", file=sys.stderr)
        base = f"http://{settings.host}:{settings.port}"
        print(f"SyncKairos {__version__}  {base}", file=sys.stderr)
        print(f"  API              {base}/v1/sessions", file=sys.stderr)
        print(f"  health / ready   {base}/health  {base}/ready", file=sys.stderr)
        print(f"  metrics          {base}/metrics", file=sys.stderr)
        print(f"  OpenAPI          {base}/openapi.json", file=sys.stderr)
        print("Ctrl-C stops everything.", file=sys.stderr, flush=True)
        _run_server(settings, 1)
    finally:
        if redis is not None:
            redis.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synckairos", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "run the server against SYNCKAIROS_REDIS_URL"),
        ("dev", "run the whole stack on private Redis (embedded default)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--host", help="interface to bind (SYNCKAIROS_HOST)")
        cmd.add_argument("--port", type=int, help="TCP port (SYNCKAIROS_PORT)")
        if name == "serve":
            cmd.add_argument("--workers", type=int, default=1, help="worker processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synckairos`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        return _dev(args)
    except (ConfigError, EmbeddedServerError) as exc:
        print(f"synckairos: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
