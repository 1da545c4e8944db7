"""Command line: ``python -m benchmarks <scenario> [options]`` (also ``synckairos bench``).

One sub-command per registered scenario (:mod:`benchmarks.registry`), each
with the harness options (:func:`add_harness_options`) and the scenario's own
(from its options dataclass). :func:`main` returns the exit status:

====  ==========================================================
0     the run(s) completed and every check passed
1     a server could not be started or reached, or setup failed
2     bad arguments
3     the run(s) completed but a correctness check failed
4     the scenario cannot run here (e.g. ``failover`` without deploy/sentinel)
130   interrupted
====  ==========================================================

The report's JSON goes to stdout; progress, the Markdown summary and warnings
to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from benchmarks.httpclient import BaseUrl, HttpError, parse_base_url, set_extra_headers
from benchmarks.options import add_options, from_namespace, number
from benchmarks.plot import PlotUnavailable
from benchmarks.registry import Scenario, ScenarioUnavailable, scenarios
from benchmarks.runner import HarnessConfig, execute
from benchmarks.sessions import SetupError
from benchmarks.stack import StackError

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_UNAVAILABLE",
    "add_harness_options",
    "build_parser",
    "harness_config",
    "main",
]

EXIT_ERROR = 1
EXIT_CHECK_FAILED = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130


def _url(text: str) -> BaseUrl:
    try:
        return parse_base_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_harness_options(parser: argparse.ArgumentParser) -> None:
    """Add the options every scenario has (target, repetitions, outputs)."""
    group = parser.add_argument_group("harness options")
    group.add_argument(
        "--url",
        type=_url,
        action="append",
        metavar="URL",
        help="base URL http://host[:port][/prefix] of a running server (any implementation "
        "of the protocol); repeat per node where supported. Default: start a private "
        "`synckairos dev` stack",
    )
    group.add_argument(
        "--server-pid",
        type=number(int, 1),
        action="append",
        metavar="PID",
        help="with --url: root pid of the server's process tree, for its CPU and RSS "
        "(repeat per node)",
    )
    group.add_argument(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="send this header with every HTTP request (repeatable), e.g. "
        "'Authorization: Bearer <API key>' against a server with auth on",
    )
    group.add_argument(
        "--compare",
        type=_url,
        metavar="URL",
        help="also run against this server (B), alternating rounds with A, and report B/A",
    )
    group.add_argument(
        "--compare-server-pid",
        type=number(int, 1),
        action="append",
        metavar="PID",
        help="root pid of the --compare server, for its CPU and RSS",
    )
    group.add_argument(
        "--runs",
        type=number(int, 1, 100),
        default=1,
        metavar="N",
        help="runs per target (per round with --compare); the report gives the median "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--rounds",
        type=number(int, 1, 100),
        default=3,
        metavar="N",
        help="A/B rounds with --compare (default: %(default)s)",
    )
    group.add_argument(
        "--out",
        metavar="PATH",
        help="directory (or file stem) of the JSON and Markdown results; default "
        "benchmarks/results/<scenario>-<UTC timestamp>",
    )
    group.add_argument("--no-save", action="store_true", help="write no result files (stdout only)")
    group.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the JSON report to PATH"
    )
    group.add_argument(
        "--plot",
        action="store_true",
        help="also write PNG latency histograms and a timeline chart (needs matplotlib: "
        "the `plot` extra)",
    )


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    """Return the parser with one sub-command per registered scenario."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="SyncKairos load benchmarks over the public HTTP + WebSocket protocol. "
        "See benchmarks/README.md.",
    )
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for scenario in scenarios().values():
        command = sub.add_parser(
            scenario.name,
            help=scenario.help,
            description=scenario.description or scenario.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        options = command.add_argument_group(f"{scenario.name} options")
        add_options(options, scenario.options_type, scenario.defaults)
        add_harness_options(command)
    return parser


def harness_config(
    args: argparse.Namespace, scenario: Scenario, command: Sequence[str]
) -> HarnessConfig:
    """Build the :class:`HarnessConfig` from parsed arguments.

    Raises:
        ValueError: inconsistent harness options (message for the user).
    """
    set_extra_headers(list(args.header or ()))
    urls = tuple(args.url or ())
    pids = tuple(args.server_pid or ())
    if pids and not urls:
        raise ValueError("--server-pid needs --url (a private stack is measured automatically)")
    if len(urls) > 1 and not scenario.multi_node:
        raise ValueError(f"{scenario.name} takes one --url")
    if args.compare_server_pid and args.compare is None:
        raise ValueError("--compare-server-pid needs --compare")
    if args.compare is not None and len(urls) > 1:
        raise ValueError("--compare needs a single-node target A")
    return HarnessConfig(
        urls=urls,
        server_pids=pids,
        compare=args.compare,
        compare_pids=tuple(args.compare_server_pid or ()),
        runs=args.runs,
        rounds=args.rounds,
        out=args.out,
        save=not args.no_save,
        json_path=args.json,
        plot=args.plot,
        command=tuple(command),
    )


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Run the command line and return its exit status (see the module doc).

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
        prog: program name shown in usage and help (``"synckairos bench"``).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    scenario = scenarios()[args.scenario]
    options = from_namespace(scenario.options_type, args)
    problem = scenario.validate(options)
    try:
        if problem is not None:
            raise ValueError(problem)
        config = harness_config(args, scenario, [*prog.split(), *arguments])
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    try:
        outcome = execute(scenario, options, config, console)
    except (ScenarioUnavailable, PlotUnavailable) as exc:
        console.print("[red]unavailable:[/]", escape(str(exc)), highlight=False)
        return EXIT_UNAVAILABLE
    except (StackError, SetupError, HttpError, OSError, ConnectionClosed, InvalidHandshake) as exc:
        console.print("[red]error:[/]", escape(f"{type(exc).__name__}: {exc}"), highlight=False)
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return EXIT_INTERRUPTED
    failed = [name for name, passed in outcome.report.checks.items() if not passed]
    if failed:
        console.print(f"[red]checks failed:[/] {', '.join(failed)}")
        return EXIT_CHECK_FAILED
    return 0
