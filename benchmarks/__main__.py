"""Command line: ``python -m benchmarks {switch,fanout,ws-idle,deadlines} [options]``.

Prints the run's JSON summary on stdout (and to ``--json PATH``), progress and
warnings on stderr. Exit status: 0 on success, 1 when the stack or the setup
failed, 2 on bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from benchmarks.audit import AuditConfig, run_audit
from benchmarks.deadlines import (
    DEFAULT_CONCURRENCY,
    LEAD_MARGIN_S,
    MAX_BUDGET_MS,
    SETUP_RATE_ESTIMATE,
    DeadlinesConfig,
    default_lead_s,
    run_deadlines,
)
from benchmarks.fanout import FanoutConfig, run_fanout
from benchmarks.httpclient import BaseUrl, HttpError, parse_base_url, run
from benchmarks.sessions import SETUP_CONNECTIONS, SetupError
from benchmarks.stack import DevStack, StackError
from benchmarks.switch import SwitchConfig, run_switch
from benchmarks.ws_idle import WsIdleConfig, run_ws_idle
from benchmarks.wsclient import check_fd_limit


def _number(
    cast: Callable[[str], float], low: float, high: float = float("inf")
) -> Callable[[str], float]:
    """Return an argparse type that casts and checks ``low <= value <= high``."""

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _url(text: str) -> BaseUrl:
    try:
        return parse_base_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """Add the options every scenario has: --url, --json, --server-pid.

    With ``several``, --url and --server-pid may be repeated (one per node) and
    are lists.
    """
    action = "append" if several else "store"
    more = " (repeat it for each node)" if several else ""
    parser.add_argument(
        "--url",
        type=_url,
        action=action,
        help=f"server base URL{more}; default: start a private `synckairos dev` stack",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the summary here")
    parser.add_argument(
        "--server-pid",
        type=_number(int, 1),
        action=action,
        metavar="PID",
        help=f"with --url: root pid of the server's process tree{more}, for server CPU %% "
        "and memory",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="SyncKairos load benchmarks."
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    formatter = argparse.ArgumentDefaultsHelpFormatter
    switch = scenarios.add_parser(
        "switch",
        help="throughput and latency of POST /v1/sessions/{id}/switch",
        formatter_class=formatter,
    )
    _common(switch)
    switch.add_argument("--sessions", type=_number(int, 1), default=200, help="sessions to switch")
    switch.add_argument("--clients", type=_number(int, 1), default=1, help="concurrent connections")
    switch.add_argument(
        "--duration", type=_number(float, 0.001), default=10.0, help="measured seconds"
    )
    switch.add_argument("--warmup", type=_number(float, 0), default=2.0, help="unrecorded seconds")
    switch.add_argument(
        "--participants", type=_number(int, 1, 1000), default=2, help="participants per session"
    )

    audit = scenarios.add_parser(
        "audit",
        help="the switch load while watching the PostgreSQL audit backlog and its drain",
        formatter_class=formatter,
    )
    _common(audit)
    audit.add_argument("--sessions", type=_number(int, 1), default=2000, help="sessions to switch")
    audit.add_argument("--clients", type=_number(int, 1), default=64, help="concurrent connections")
    audit.add_argument(
        "--duration", type=_number(float, 0.001), default=30.0, help="measured seconds"
    )
    audit.add_argument("--warmup", type=_number(float, 0), default=2.0, help="unrecorded seconds")

    fanout = scenarios.add_parser(
        "fanout",
        help="delivery of switches to WebSocket subscribers: completeness and latency",
        formatter_class=formatter,
    )
    _common(fanout)
    fanout.add_argument("--sessions", type=_number(int, 1), default=10, help="sessions")
    fanout.add_argument(
        "--subscribers", type=_number(int, 1), default=200, help="WebSocket subscribers per session"
    )
    fanout.add_argument("--switches", type=_number(int, 1), default=10, help="switches per session")
    fanout.add_argument(
        "--interval-ms",
        type=_number(float, 0),
        default=100.0,
        help="pause between two switches of one session, ms",
    )
    _socket_options(fanout)

    idle = scenarios.add_parser(
        "ws-idle",
        help="server memory and CPU per idle WebSocket connection",
        formatter_class=formatter,
    )
    _common(idle)
    idle.add_argument("--sockets", type=_number(int, 1), default=10_000, help="sockets to open")
    idle.add_argument(
        "--sessions", type=_number(int, 1), default=100, help="sessions the sockets subscribe to"
    )
    idle.add_argument(
        "--hold", type=_number(float, 0.001), default=10.0, help="seconds the sockets stay idle"
    )
    _socket_options(idle)

    deadlines = scenarios.add_parser(
        "deadlines",
        help="server-side timer expiry: lateness, misses and duplicates seen by subscribers",
        formatter_class=formatter,
    )
    _common(deadlines, several=True)
    deadlines.add_argument(
        "--sessions", type=_number(int, 1), default=1000, help="sessions (one timer each)"
    )
    deadlines.add_argument(
        "--window-s",
        type=_number(float, 0),
        default=10.0,
        help="seconds over which the deadlines are spread uniformly",
    )
    deadlines.add_argument(
        "--lead-s",
        type=_number(float, 1),
        help="seconds from the start of setup to the first deadline (default: "
        f"{LEAD_MARGIN_S:g} + sessions / {SETUP_RATE_ESTIMATE:g}, i.e. the "
        f"estimated setup time + {LEAD_MARGIN_S:g} s)",
    )
    deadlines.add_argument(
        "--nodes",
        type=_number(int, 1, 16),
        help="server nodes on one Redis: private ones started, or the number of --url "
        "(default: 1, or the number of --url)",
    )
    deadlines.add_argument(
        "--samples",
        type=Path,
        metavar="CSV",
        help="also write one line per session: deadline, arrival, server ts",
    )
    deadlines.add_argument(
        "--concurrency",
        type=_number(int, 1),
        default=DEFAULT_CONCURRENCY,
        help="sockets opened at a time",
    )
    return parser


def _socket_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=_number(int, 1), default=100, help="sockets opened at a time"
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="offer permessage-deflate to the server",
    )


Scenario = Callable[[argparse.Namespace, BaseUrl, int | None, Console], msgspec.Struct]


def _switch(
    args: argparse.Namespace, base: BaseUrl, server_pid: int | None, console: Console
) -> msgspec.Struct:
    config = SwitchConfig(
        base=base,
        sessions=args.sessions,
        clients=args.clients,
        duration_s=args.duration,
        warmup_s=args.warmup,
        participants=args.participants,
        server_pid=server_pid,
    )
    return run(run_switch(config, console))


def _fanout(
    args: argparse.Namespace, base: BaseUrl, server_pid: int | None, console: Console
) -> msgspec.Struct:
    config = FanoutConfig(
        base=base,
        sessions=args.sessions,
        subscribers=args.subscribers,
        switches=args.switches,
        interval_ms=args.interval_ms,
        concurrency=args.concurrency,
        compression=args.compression,
        server_pid=server_pid,
    )
    return run(run_fanout(config, console))


def _ws_idle(
    args: argparse.Namespace, base: BaseUrl, server_pid: int | None, console: Console
) -> msgspec.Struct:
    config = WsIdleConfig(
        base=base,
        sockets=args.sockets,
        sessions=args.sessions,
        hold_s=args.hold,
        concurrency=args.concurrency,
        compression=args.compression,
        server_pid=server_pid,
    )
    return run(run_ws_idle(config, console))


def _audit(
    args: argparse.Namespace, base: BaseUrl, server_pid: int | None, console: Console
) -> msgspec.Struct:
    switch = SwitchConfig(
        base=base,
        sessions=args.sessions,
        clients=args.clients,
        duration_s=args.duration,
        warmup_s=args.warmup,
        server_pid=server_pid,
    )
    return run(run_audit(AuditConfig(switch), console))


SCENARIOS: dict[str, Scenario] = {
    "switch": _switch,
    "audit": _audit,
    "fanout": _fanout,
    "ws-idle": _ws_idle,
}


def _deadlines(
    args: argparse.Namespace, bases: list[BaseUrl], server_pids: list[int], console: Console
) -> msgspec.Struct:
    config = DeadlinesConfig(
        bases=tuple(bases),
        sessions=args.sessions,
        window_s=args.window_s,
        lead_s=args.lead_s,
        concurrency=args.concurrency,
        server_pids=tuple(server_pids),
        samples_path=args.samples,
    )
    return run(run_deadlines(config, console))


def _run_deadlines(args: argparse.Namespace, console: Console) -> None:
    """Run ``deadlines`` on the given nodes, or on ``--nodes`` private ones sharing one Redis."""
    nodes = args.nodes or (len(args.url) if args.url else 1)
    check_fd_limit(args.sessions + SETUP_CONNECTIONS * nodes)
    if args.url:
        _emit(_deadlines(args, args.url, args.server_pid or [], console), args.json)
        return
    console.print(f"starting a private synckairos dev stack{' and more nodes' * (nodes > 1)}...")
    with contextlib.ExitStack() as stacks:
        first = stacks.enter_context(DevStack.start())
        started = [first]
        if nodes > 1:
            redis_url = first.redis_url()
            for _ in range(nodes - 1):
                # Entered after the first: stopped before it (and its Redis).
                started.append(stacks.enter_context(DevStack.start_node(redis_url)))
        for i, stack in enumerate(started):
            console.print(f"node {i} at {stack.url} (pid {stack.pid})")
        bases = [parse_base_url(stack.url) for stack in started]
        _emit(_deadlines(args, bases, [stack.pid for stack in started], console), args.json)


def _run_scenario(args: argparse.Namespace, console: Console) -> None:
    if args.scenario == "deadlines":
        _run_deadlines(args, console)
        return
    scenario = SCENARIOS[args.scenario]
    # Before the private stack starts, so that it inherits the raised limit.
    if args.scenario == "ws-idle":
        check_fd_limit(args.sockets)
    elif args.scenario == "fanout":
        check_fd_limit(args.sessions * args.subscribers + args.sessions)
    if args.url is not None:
        _emit(scenario(args, args.url, args.server_pid, console), args.json)
        return
    console.print("starting a private synckairos dev stack...")
    with DevStack.start() as stack:
        console.print(f"stack at {stack.url} (pid {stack.pid})")
        _emit(scenario(args, parse_base_url(stack.url), stack.pid, console), args.json)


def _emit(summary: msgspec.Struct, path: Path | None) -> None:
    """Write the summary as indented JSON to stdout and, if given, to ``path``."""
    text = msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n"
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
    if path is not None:
        path.write_bytes(text)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.server_pid is not None and args.url is None:
        parser.error("--server-pid needs --url (a private stack is measured automatically)")
    if args.scenario == "deadlines":
        if args.url and args.nodes not in (None, len(args.url)):
            parser.error(f"--nodes {args.nodes} does not match the {len(args.url)} --url given")
        lead_s = default_lead_s(args.sessions) if args.lead_s is None else args.lead_s
        if (lead_s + args.window_s) * 1000 > MAX_BUDGET_MS:
            parser.error(
                f"--lead-s ({lead_s:g}) + --window-s must not exceed {MAX_BUDGET_MS // 1000} s "
                "(the longest budget the server accepts)"
            )
    console = Console(stderr=True)
    try:
        _run_scenario(args, console)
    except (StackError, SetupError, HttpError, OSError, ConnectionClosed, InvalidHandshake) as exc:
        console.print("[red]error:[/]", escape(f"{type(exc).__name__}: {exc}"), highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
