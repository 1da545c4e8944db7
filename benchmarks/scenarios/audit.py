"""Scenario ``audit``: does the PostgreSQL audit pipeline keep up with the switch load?

Runs the ``switch`` load (every switch is one audit event) while sampling
the server's ``/metrics`` every :data:`SAMPLE_S`: ``synckairos_outbox_length``
(the backlog of events not yet relayed) and
``synckairos_audit_events_persisted`` (events written to PostgreSQL, a
counter kept in Redis by the workers). After the load it keeps sampling until
the backlog is empty and the persisted count has not moved for 1 s, and
reports the drain time.

Needs a SyncKairos server with an audit worker behind it (the private stack
of ``synckairos dev`` has one): ``/metrics`` and these two series are ours,
not part of the Node.js reference's protocol.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass

import msgspec

from benchmarks.context import RunContext
from benchmarks.httpclient import HttpConnection, HttpError
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.scenarios.switch import closed_loop
from benchmarks.sessions import create_sessions, delete_sessions

__all__ = ["SCENARIO", "AuditOptions", "AuditResult", "run_audit"]

#: Seconds between two reads of /metrics.
SAMPLE_S = 0.25

#: Seconds to wait for the pipeline to drain after the load.
DRAIN_TIMEOUT_S = 120.0

_OUTBOX = re.compile(rb"^synckairos_outbox_length (\S+)$", re.MULTILINE)
_PERSISTED = re.compile(rb"^synckairos_audit_events_persisted (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """Options of ``audit``."""

    sessions: int = option(2000, "sessions created and switched", low=1)
    clients: int = option(64, "concurrent clients, one keep-alive connection each", low=1)
    duration: float = option(30.0, "measured seconds", low=0.001)
    warmup: float = option(2.0, "seconds of load before measuring (not recorded)", low=0)


class AuditResult(ScenarioResult, kw_only=True):
    """Result of ``audit``."""

    changes_per_s: float | None
    """Switch throughput of the load (one audit event each)."""
    persisted_per_s: float | None
    """Events written to PostgreSQL per second while the load ran."""
    max_backlog: int
    """Largest outbox length seen."""
    backlog_at_load_end: int
    drain_s: float | None
    """Seconds from the end of the load until everything was persisted (None: timed out)."""
    persisted_total: int
    """Events persisted from the start of the load until drained."""


class _Sample(msgspec.Struct, frozen=True):
    at: float
    outbox: int
    persisted: int


async def _sample(connection: HttpConnection) -> _Sample | None:
    try:
        response = await connection.request("GET", "/metrics")
    except (OSError, TimeoutError, HttpError):
        connection.close()
        return None
    outbox = _OUTBOX.search(response.body)
    persisted = _PERSISTED.search(response.body)
    if outbox is None or persisted is None:
        return None
    return _Sample(time.monotonic(), int(float(outbox.group(1))), int(float(persisted.group(1))))


async def _sampler(connection: HttpConnection, into: list[_Sample]) -> None:
    while True:
        sample = await _sample(connection)
        if sample is not None:
            into.append(sample)
        await asyncio.sleep(SAMPLE_S)


async def _drain(
    connection: HttpConnection, ended: _Sample, samples: list[_Sample]
) -> float | None:
    """Sample until the outbox is empty and the persisted count is stable for 1 s."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last = ended
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(SAMPLE_S)
        sample = await _sample(connection)
        if sample is None:
            continue
        samples.append(sample)
        if sample.persisted != last.persisted or sample.outbox:
            stable_since = sample.at
        elif sample.at - stable_since >= 1.0:
            return max(0.0, stable_since - ended.at)
        last = sample
    return None


async def run_audit(options: AuditOptions, ctx: RunContext) -> AuditResult:
    """Run the switch load while watching the audit backlog; then wait for the drain.

    Raises:
        HttpError: the server's /metrics has no audit figures.
        SetupError: a session could not be created or started.
    """
    connection = HttpConnection(ctx.base)
    try:
        first = await _sample(connection)
        if first is None:
            raise HttpError("the server's /metrics has no audit figures (is a worker running?)")
        samples: list[_Sample] = [first]
        session_ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
        created: list[str] = []
        try:
            await create_sessions(ctx.base, session_ids, created, 2, ctx.console)
            sampling = asyncio.create_task(_sampler(connection, samples))
            try:
                await closed_loop(
                    ctx, session_ids, options.clients, options.warmup, options.duration
                )
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
        finally:
            await delete_sessions(ctx.base, created, ctx.console)
        load_samples = list(samples)
        ended = load_samples[-1]
        with ctx.console.status("waiting for the audit pipeline to drain"):
            drain_s = await _drain(connection, ended, samples)
    finally:
        connection.close()
    window = [s for s in load_samples if s.persisted > first.persisted]
    rate = None
    if len(window) >= 2 and window[-1].at > window[0].at:
        rate = round((window[-1].persisted - window[0].persisted) / (window[-1].at - window[0].at))
    common = ctx.common("audit", "switch")
    return AuditResult(
        **common,
        changes_per_s=common["throughput_rps"],
        persisted_per_s=rate,
        max_backlog=max(s.outbox for s in samples),
        backlog_at_load_end=ended.outbox,
        drain_s=None if drain_s is None else round(drain_s, 2),
        persisted_total=samples[-1].persisted - first.persisted,
    )


SCENARIO = Scenario(
    name="audit",
    help="the switch load while watching the PostgreSQL audit backlog and its drain "
    "(SyncKairos only)",
    options_type=AuditOptions,
    run=run_audit,
    description=__doc__ or "",
)
