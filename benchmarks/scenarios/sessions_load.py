"""Scenarios ``baseline``, ``sessions-1k``, ``sessions-10k``: many live sessions, every operation.

Modelled on the Node.js SyncKairos load suite (``01-baseline``,
``02-concurrent-sessions-1k``, ``03-concurrent-sessions-10k``): each session
is created, started, switched a few times, read and completed. Here the work
is done in phases, so that all N sessions are live at the same time and each
operation gets its own latency and throughput:

1. ``create``: ``POST /v1/sessions`` for N ``per_participant`` sessions
   (``participants`` one-hour banks);
2. ``start``: ``POST /v1/sessions/{id}/start`` for each created session;
3. ``switch``: ``switches`` passes over the started sessions, one
   ``POST /v1/sessions/{id}/switch`` (body ``{}``) per session per pass, so
   switches of one session are a pass apart;
4. ``get``: ``GET /v1/sessions/{id}`` for each session;
5. ``complete``: ``POST /v1/sessions/{id}/complete`` for each session;
6. ``delete`` (cleanup, also after a failure): ``DELETE /v1/sessions/{id}``.

Every phase runs ``clients`` closed-loop clients on keep-alive connections,
with ``think-ms`` between a client's requests. Failed requests are counted
per operation and never stop the run; a session whose create failed is left
out of the later phases. Throughput of an operation is over its own phase;
the headline is the switch phase's. The measured window spans phases 1-5.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from benchmarks.context import RunContext
from benchmarks.options import option
from benchmarks.phases import Request, run_phase
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import create_body

__all__ = ["BASELINE", "SESSIONS_1K", "SESSIONS_10K", "SessionsOptions", "SessionsResult"]


@dataclass(frozen=True, slots=True)
class SessionsOptions:
    """Options of ``baseline`` / ``sessions-1k`` / ``sessions-10k`` (defaults differ)."""

    sessions: int = option(100, "sessions created (all live at once)", low=1)
    clients: int = option(10, "concurrent clients, one keep-alive connection each", low=1)
    switches: int = option(5, "switches per session", low=0)
    participants: int = option(2, "participants per session", low=1, high=1000)
    think_ms: float = option(0.0, "pause of a client between two requests, ms", low=0)


class SessionsResult(ScenarioResult, kw_only=True):
    """Result of the session-lifecycle scenarios."""

    sessions: int
    clients: int
    switches_per_session: int
    participants: int
    sessions_created: int
    """Sessions whose create answered 2xx (the later phases use only those)."""
    phase_s: dict[str, float]
    """Wall time of each phase, seconds."""


async def run_sessions(options: SessionsOptions, ctx: RunContext, name: str) -> SessionsResult:
    """Run the phases against ``ctx.target`` and return the result."""
    base = ctx.base
    ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
    think_s = options.think_ms / 1000
    walls: dict[str, float] = {}
    created: list[str] = []

    async def phase(op: str, items: list[str], request: Request | None = None) -> list[str]:
        def build(sid: str) -> Request:
            if op == "create":
                return ("POST", "/v1/sessions", create_body(sid, options.participants))
            if op == "get":
                return ("GET", f"/v1/sessions/{sid}", None)
            if op == "delete":
                return ("DELETE", f"/v1/sessions/{sid}", None)
            return ("POST", f"/v1/sessions/{sid}/{op}", b"{}" if op == "switch" else b"")

        result = await run_phase(
            base,
            op,
            items,
            build,
            ctx.recorder(op),
            clients=options.clients,
            console=ctx.console,
            think_s=think_s,
        )
        walls[op] = round(result.wall_s, 3)
        return [items[i] for i in sorted(result.succeeded)]

    try:
        async with ctx.measure():
            created = await phase("create", ids)
            started = await phase("start", created)
            await phase("switch", [sid for _ in range(options.switches) for sid in started])
            await phase("get", created)
            await phase("complete", started)
    finally:
        # Not in the measured window; recorded all the same.
        await phase("delete", created)
    warnings: list[str] = []
    failed = {op: r.count - r.ok for op, r in ctx.recorders.items() if r.count > r.ok}
    if failed:
        ctx.warn(f"failed requests by operation: {failed}", warnings)
    return SessionsResult(
        **ctx.common(name, "switch", walls=walls, warnings=warnings),
        sessions=options.sessions,
        clients=options.clients,
        switches_per_session=options.switches,
        participants=options.participants,
        sessions_created=len(created),
        phase_s=walls,
    )


async def _baseline(options: SessionsOptions, ctx: RunContext) -> SessionsResult:
    return await run_sessions(options, ctx, "baseline")


async def _sessions_1k(options: SessionsOptions, ctx: RunContext) -> SessionsResult:
    return await run_sessions(options, ctx, "sessions-1k")


async def _sessions_10k(options: SessionsOptions, ctx: RunContext) -> SessionsResult:
    return await run_sessions(options, ctx, "sessions-10k")


BASELINE = Scenario(
    name="baseline",
    help="100 sessions: create, start, 5 switches each, get, complete; latency per operation",
    options_type=SessionsOptions,
    run=_baseline,
    description=__doc__ or "",
)

SESSIONS_1K = Scenario(
    name="sessions-1k",
    help="1,000 live sessions, 50 clients, 10 switches each: latency and throughput per op",
    options_type=SessionsOptions,
    run=_sessions_1k,
    description=__doc__ or "",
    defaults={"sessions": 1000, "clients": 50, "switches": 10},
)

SESSIONS_10K = Scenario(
    name="sessions-10k",
    help="10,000 live sessions, 100 clients, 10 switches each: latency and throughput per op",
    options_type=SessionsOptions,
    run=_sessions_10k,
    description=__doc__ or "",
    defaults={"sessions": 10_000, "clients": 100, "switches": 10},
)
