"""The scenario registry: name -> :class:`Scenario` (options type, ``run()``, constraints).

Each module of :mod:`benchmarks.scenarios` declares one or more
:class:`Scenario` values; :func:`scenarios` collects them in the order of
``benchmarks.scenarios.ALL``. The CLI builds one sub-command per scenario
from it, and the runner calls :attr:`Scenario.run` once per run.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.context import RunContext
from benchmarks.result import ScenarioResult

__all__ = ["Scenario", "ScenarioUnavailable", "get", "scenarios"]


class ScenarioUnavailable(RuntimeError):
    """Raised by the runner when a scenario cannot run here (exit status 4)."""


def _one(_: Any) -> int:
    return 1


def _none(_: Any) -> int:
    return 0


def _valid(_: Any) -> str | None:
    return None


def _available() -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A benchmark scenario and what the runner must know about it."""

    name: str
    """Sub-command name (``sessions-1k``)."""
    help: str
    """One line for the scenario list."""
    options_type: type[Any]
    """Frozen dataclass of :func:`benchmarks.options.option` fields."""
    run: Callable[[Any, RunContext], Coroutine[Any, Any, ScenarioResult]]
    """``run(options, ctx)``: one run against ``ctx.target``. It raises
    :class:`~benchmarks.sessions.SetupError` (or a connection error) when the
    run cannot proceed, and reports anything else in its result."""
    description: str = ""
    """Longer text for ``--help`` (defaults to :attr:`help`)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of the option defaults (scenarios sharing one options type)."""
    local_only: bool = False
    """Starts or kills server processes itself: ``--url`` and ``--compare`` are refused."""
    multi_node: bool = False
    """Accepts ``--url`` repeated, one per node."""
    nodes: Callable[[Any], int] = _one
    """Nodes to start on one Redis when no ``--url`` is given."""
    sockets: Callable[[Any], int] = _none
    """Connections the run will hold open (checked against the descriptor limit)."""
    validate: Callable[[Any], str | None] = _valid
    """Returns an error message for inconsistent options."""
    available: Callable[[], str | None] = _available
    """Returns why the scenario cannot run on this checkout, or None."""


def scenarios() -> dict[str, Scenario]:
    """Every registered scenario by name, in display order."""
    from benchmarks.scenarios import ALL

    return {scenario.name: scenario for scenario in ALL}


def get(name: str) -> Scenario:
    """Return the scenario called ``name``.

    Raises:
        KeyError: no such scenario.
    """
    return scenarios()[name]
