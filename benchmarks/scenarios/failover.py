"""Scenario ``failover``: PLACEHOLDER, to be finished with issue 6 (Redis Sentinel).

Intended measurement (not implemented yet): the switch load and WebSocket
subscribers against a server on the Redis Sentinel topology of
``deploy/sentinel/``, the Redis primary killed mid-run, then: the
unavailability window (first to last failed switch), 503 ``UNAVAILABLE``
answers and their ``details.outcome``, the time until throughput is back,
no lost update (as ``switch-hot``), and no subscriber that misses a version
silently across the failover.

Until ``deploy/sentinel/sentinel.sh`` exists the scenario refuses to run
(exit status 4, "needs deploy/sentinel (issue 6)"). When it exists the
scenario still stops with "not implemented yet": the driver that starts the
topology and kills the primary is to be written against that script.
It starts and kills processes itself, so ``--url`` does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.context import RunContext
from benchmarks.options import option
from benchmarks.registry import Scenario, ScenarioUnavailable
from benchmarks.result import ScenarioResult

__all__ = ["SCENARIO", "FailoverOptions", "sentinel_script"]

#: The script of the Sentinel topology, relative to the repository root.
SENTINEL_SCRIPT = Path("deploy/sentinel/sentinel.sh")

#: The repository this package lives in (an editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class FailoverOptions:
    """Options of ``failover`` (provisional)."""

    duration: float = option(30.0, "seconds of load", low=1)
    kill_after: float = option(10.0, "seconds into the load when the Redis primary is killed")
    clients: int = option(16, "closed-loop switch clients", low=1)


def sentinel_script() -> Path | None:
    """The Sentinel topology script, in the repository or the current directory, if any."""
    for root in (REPO_ROOT, Path.cwd()):
        if (root / SENTINEL_SCRIPT).is_file():
            return root / SENTINEL_SCRIPT
    return None


def _available() -> str | None:
    if sentinel_script() is None:
        return "failover needs deploy/sentinel (issue 6): deploy/sentinel/sentinel.sh not found"
    return None


async def run_failover(options: FailoverOptions, ctx: RunContext) -> ScenarioResult:
    """Not implemented yet (see the module doc).

    Raises:
        ScenarioUnavailable: always, for now.
    """
    # TODO(issue 9, failover): start the topology with sentinel_script(), run the
    # switch load (benchmarks.scenarios.switch.closed_loop) and subscribers,
    # kill the primary at kill_after, and report the unavailability window.
    raise ScenarioUnavailable(
        f"failover is a placeholder: {sentinel_script()} exists, but the failover driver "
        "is not implemented yet (benchmarks/scenarios/failover.py)"
    )


SCENARIO = Scenario(
    name="failover",
    help="PLACEHOLDER: Redis Sentinel failover under load; needs deploy/sentinel (issue 6)",
    options_type=FailoverOptions,
    run=run_failover,
    description=__doc__ or "",
    local_only=True,
    available=_available,
)
