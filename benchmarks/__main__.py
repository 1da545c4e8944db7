"""Command line: ``python -m benchmarks switch [options]``.

Prints the run's JSON summary on stdout (and to ``--json PATH``), progress and
warnings on stderr. Exit status: 0 on success, 1 when the stack or the setup
failed, 2 on bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape

from benchmarks.httpclient import BaseUrl, HttpError, parse_base_url, run
from benchmarks.stack import DevStack, StackError
from benchmarks.switch import SetupError, SwitchConfig, run_switch


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="SyncKairos load benchmarks."
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    switch = scenarios.add_parser(
        "switch",
        help="throughput and latency of POST /v1/sessions/{id}/switch",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    switch.add_argument(
        "--url", type=_url, help="server base URL; default: start a private `synckairos dev` stack"
    )
    switch.add_argument("--sessions", type=_number(int, 1), default=200, help="sessions to switch")
    switch.add_argument("--clients", type=_number(int, 1), default=1, help="concurrent connections")
    switch.add_argument(
        "--duration", type=_number(float, 0.001), default=10.0, help="measured seconds"
    )
    switch.add_argument("--warmup", type=_number(float, 0), default=2.0, help="unrecorded seconds")
    switch.add_argument(
        "--participants", type=_number(int, 1, 1000), default=2, help="participants per session"
    )
    switch.add_argument("--json", type=Path, metavar="PATH", help="also write the summary here")
    switch.add_argument(
        "--server-pid",
        type=_number(int, 1),
        metavar="PID",
        help="with --url: root pid of the server's process tree, for server CPU %%",
    )
    return parser


def _switch(args: argparse.Namespace, console: Console) -> None:
    def config(base: BaseUrl, server_pid: int | None) -> SwitchConfig:
        return SwitchConfig(
            base=base,
            sessions=args.sessions,
            clients=args.clients,
            duration_s=args.duration,
            warmup_s=args.warmup,
            participants=args.participants,
            server_pid=server_pid,
        )

    if args.url is not None:
        summary = run(run_switch(config(args.url, args.server_pid), console))
        _emit(summary, args.json)
        return
    console.print("starting a private synckairos dev stack...")
    with DevStack.start() as stack:
        console.print(f"stack at {stack.url} (pid {stack.pid})")
        summary = run(run_switch(config(parse_base_url(stack.url), stack.pid), console))
        _emit(summary, args.json)


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
    console = Console(stderr=True)
    try:
        _switch(args, console)
    except (StackError, SetupError, HttpError, OSError) as exc:
        console.print("[red]error:[/]", escape(f"{type(exc).__name__}: {exc}"), highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
