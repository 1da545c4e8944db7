"""Command line of SyncKairos.

``serve``      the HTTP + WebSocket server (and deadline scheduler) on the configured Redis
``dev``        the whole stack on embedded defaults: private Redis and PostgreSQL
               when none are configured, migrations, an audit worker, the server
``worker``     the audit pipeline: outbox relay + dramatiq actor into PostgreSQL
``migrate``    apply the audit schema's migrations (idempotent)
``recover``    ``--all``: restore every unfinished session from PostgreSQL into Redis
``reconcile``  report Redis/PostgreSQL version differences and repair lost writes
``audit requeue``  replay dead-lettered audit events into PostgreSQL, report refusals
``bench``      the load-test harness (``benchmarks/`` of a source checkout: not in the wheel)

Every command reads ``SYNCKAIROS_*`` settings (see the README); ``dev`` stops
everything it started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from types import FrameType

import msgspec
import uvicorn
from rich.progress import Progress

from synckairos import __version__
from synckairos.audit.archive import AuditArchive
from synckairos.audit.durable import DurableWriter
from synckairos.audit.recovery import ReconcileReport
from synckairos.config import ConfigError, Settings, load_settings
from synckairos.logs import configure_logging
from synckairos.node import Node
from synckairos.redis.store import RedisStore
from synckairos.slow_clients import HeaderTimeoutProtocol

__all__ = ["dev_defaults", "main"]


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _export(settings: Settings) -> None:
    """Pass the resolved settings to uvicorn's app factory and child processes."""
    os.environ["SYNCKAIROS_REDIS_URL"] = settings.redis_url or ""
    os.environ["SYNCKAIROS_DATABASE_URL"] = settings.database_url or ""


def _run_server(settings: Settings, workers: int) -> None:
    """Run uvicorn (uvloop + httptools) until SIGINT/SIGTERM.

    uvicorn re-raises the signal it shut down on; SIGTERM is turned into a
    clean exit (status 0, ``finally`` blocks run, private servers stopped).
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _export(settings)
    uvicorn.run(
        "synckairos.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers if workers > 1 else None,
        loop="uvloop",
        http=HeaderTimeoutProtocol,
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.http_idle_timeout_s,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        h11_max_incomplete_event_size=16_384,
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        log_config=None,
        server_header=False,
    )


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    overrides = {
        k: v
        for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)))
        if v is not None
    }
    return msgspec.structs.replace(settings, **overrides)


def _require_database(settings: Settings) -> str:
    if not settings.database_url:
        raise ConfigError("SYNCKAIROS_DATABASE_URL must be set for this command")
    return settings.database_url


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings.check_durability()
    _run_server(settings, args.workers)
    return 0


def dev_defaults(settings: Settings) -> Settings:
    """What ``synckairos dev`` changes in the settings: CORS ``*`` unless set.

    A page served from another origin (a game's dev server on another port) may
    then use the API and ``/ws``, as with the Node.js server's default. Exported
    to the environment too: uvicorn's app factory reads the settings again.
    """
    if settings.cors_origins is not None:
        return settings
    os.environ["SYNCKAIROS_CORS_ORIGINS"] = "*"
    return msgspec.structs.replace(settings, cors_origins="*")


def _dev(args: argparse.Namespace) -> int:
    # The development stack is imported here only: no other command loads it.
    from synckairos.dev.embedded import EmbeddedServerError

    try:
        return _run_dev(args)
    except EmbeddedServerError as exc:
        print(f"synckairos: {exc}", file=sys.stderr)
        return 2


def _run_dev(args: argparse.Namespace) -> int:
    from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis, reserve_port

    settings = dev_defaults(_settings(args))
    # The server binds its port only after the private servers started: keep
    # them off it (a port picked at random could be the same one).
    reserve_port(settings.port)
    with ExitStack() as stack:
        if settings.redis_url is None and not settings.redis_sentinels:
            redis = stack.enter_context(EmbeddedRedis(appendonly=True))
            settings = msgspec.structs.replace(settings, redis_url=redis.url)
            print(f"private Redis      {redis.url}", file=sys.stderr)
        if settings.database_url is None:
            postgres = stack.enter_context(EmbeddedPostgres())
            settings = msgspec.structs.replace(settings, database_url=postgres.url)
            print(f"private PostgreSQL {postgres.url}", file=sys.stderr)
        _export(settings)
        applied = asyncio.run(_migrate(settings.database_url or ""))
        print(f"migrations applied {', '.join(applied) or 'none (up to date)'}", file=sys.stderr)
        worker = subprocess.Popen([sys.executable, "-m", "synckairos", "worker"])
        stack.callback(_stop_process, worker)
        base = f"http://{settings.host}:{settings.port}"
        print(f"SyncKairos {__version__}  {base}", file=sys.stderr)
        print(f"  API              {base}/v1/sessions", file=sys.stderr)
        print(
            f"  WebSocket        ws://{settings.host}:{settings.port}/ws?sessionId=…",
            file=sys.stderr,
        )
        print(f"  health / ready   {base}/health  {base}/ready", file=sys.stderr)
        print(f"  metrics          {base}/metrics", file=sys.stderr)
        print(f"  OpenAPI          {base}/openapi.json  (reference: {base}/docs)", file=sys.stderr)
        print(f"  inspector        {base}/inspector", file=sys.stderr)
        print(f"  audit worker     pid {worker.pid}", file=sys.stderr)
        print("Ctrl-C stops everything.", file=sys.stderr, flush=True)
        _run_server(settings, 1)
    return 0


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _migrate(database_url: str) -> list[str]:
    from synckairos.audit.migrate import migrate

    return await migrate(database_url)


def _migrate_command(args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate(_require_database(_settings(args))))
    print(f"applied: {', '.join(applied)}" if applied else "up to date")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from synckairos.audit.worker import run_worker

    settings = _settings(args)
    run_worker(settings, _require_database(settings))
    return 0


@asynccontextmanager
async def _node(settings: Settings) -> AsyncIterator[Node]:
    store = RedisStore.from_settings(settings)
    # Restored pending/paused sessions get their idle expiry, as on a server.
    database_url = _require_database(settings)
    archive = AuditArchive(database_url)
    # In the postgres durability level a restore is written to PostgreSQL before
    # it counts, as on a server (not left to the worker).
    writer = (
        DurableWriter(database_url, budget_s=settings.durability_timeout_ms / 1000)
        if settings.durability == "postgres"
        else None
    )
    node = Node(
        store,
        pending_ttl_ms=settings.pending_ttl_s * 1000,
        paused_ttl_ms=settings.paused_ttl_s * 1000,
        archive=archive,
        audit_writer=writer,
    )
    try:
        yield node
    finally:
        if writer is not None:
            await writer.close()
        await archive.close()
        await store.close()


def _recover(args: argparse.Namespace) -> int:
    from synckairos.audit.recovery import recover_all

    if not args.all:
        print("synckairos recover: say --all (every unfinished session)", file=sys.stderr)
        return 2

    async def run() -> list[str]:
        async with _node(_settings(args)) as node:
            with Progress(transient=True) as bar:
                task = bar.add_task("restoring", total=None)
                return await recover_all(
                    node,
                    lambda done, total: bar.update(task, completed=done, total=total),
                )

    restored = asyncio.run(run())
    print(f"restored {len(restored)} session(s)")
    for session_id in restored:
        print(f"  {session_id}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from synckairos.audit.recovery import reconcile

    async def run() -> ReconcileReport:
        async with _node(_settings(args)) as node:
            with Progress(transient=True) as bar:
                task = bar.add_task("comparing", total=None)
                return await reconcile(
                    node,
                    repair=not args.dry_run,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )

    report = asyncio.run(run())
    print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    return 0


def _audit(args: argparse.Namespace) -> int:
    """``audit requeue``: replay the dead letters into PostgreSQL and report each refusal.

    Exit status 0 when every dead letter's events are stored, 1 when some are
    still refused (or PostgreSQL cannot be reached), 2 without a database URL.
    """
    import asyncpg

    from synckairos.audit.pipeline import AuditWriter
    from synckairos.audit.requeue import ReplayReport, replay_dead_letters
    from synckairos.redis.broker import build_broker
    from synckairos.redis.connection import sync_client

    settings = _settings(args)
    if not settings.database_url:
        print("synckairos: audit requeue needs SYNCKAIROS_DATABASE_URL", file=sys.stderr)
        return 2
    database_url = settings.database_url
    broker = build_broker(sync_client(settings), prefix=settings.key_prefix)

    async def replay() -> ReplayReport:
        writer = AuditWriter(database_url)
        try:
            return await replay_dead_letters(broker, writer)
        finally:
            await writer.close()

    try:
        report = asyncio.run(replay())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # PostgreSQL unreachable or failing: say which error, never its text.
        print(
            f"synckairos: audit requeue stopped: PostgreSQL error {type(exc).__name__}; "
            "the dead letters not replayed are kept, run it again once PostgreSQL is healthy",
            file=sys.stderr,
        )
        return 1
    finally:
        broker.close()
    for line in report.lines():
        print(line)
    return 1 if report.still_refused or report.undecodable else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synckairos", description="SyncKairos timer server.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "run the server against SYNCKAIROS_REDIS_URL"),
        ("dev", "run the whole stack on private Redis and PostgreSQL (embedded default)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--host", help="interface to bind (SYNCKAIROS_HOST)")
        cmd.add_argument("--port", type=int, help="TCP port (SYNCKAIROS_PORT)")
        if name == "serve":
            cmd.add_argument("--workers", type=int, default=1, help="worker processes")
    sub.add_parser("worker", help="relay the outbox and persist it into PostgreSQL")
    sub.add_parser("migrate", help="apply the audit schema migrations")
    recover = sub.add_parser("recover", help="restore sessions from PostgreSQL into Redis")
    recover.add_argument("--all", action="store_true", help="every unfinished session")
    reconcile = sub.add_parser("reconcile", help="compare and repair Redis against PostgreSQL")
    reconcile.add_argument("--dry-run", action="store_true", help="report only, repair nothing")
    audit = sub.add_parser("audit", help="audit pipeline maintenance")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser(
        "requeue", help="replay dead-lettered audit events into PostgreSQL, report refusals"
    )
    sub.add_parser("bench", help="load-test harness: synckairos bench <scenario> (see --help)")
    return parser


_COMMANDS = {
    "serve": _serve,
    "dev": _dev,
    "worker": _worker,
    "migrate": _migrate_command,
    "recover": _recover,
    "reconcile": _reconcile,
    "audit": _audit,
}


def _checkout() -> Path | None:
    """The source checkout holding ``benchmarks/``: the current directory, or the
    folder above this package (an editable install); None from a wheel elsewhere."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    return None


def _bench(argv: Sequence[str]) -> int:
    """Hand this process over to the checkout's harness: ``python -m benchmarks argv``.

    The harness is not part of the package (nothing here imports it): the
    process becomes ``python -m benchmarks`` with the checkout on the module
    path, so its exit status, signals and output are the harness's own. Its
    help and report name it ``synckairos bench`` (``BENCHMARKS_PROG``).
    """
    root = _checkout()
    if root is None:
        print(
            "synckairos: the benchmark harness lives in benchmarks/ of a source checkout; "
            "run this from the repository root",
            file=sys.stderr,
        )
        return 2
    path = os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path, "BENCHMARKS_PROG": "synckairos bench"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *argv], env)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synckairos`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        return _bench(arguments[1:])  # the harness parses its own options
    args = _parser().parse_args(arguments)
    try:
        configure_logging(load_settings().log_level)
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"synckairos: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
