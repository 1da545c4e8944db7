"""Scenario ``audit``: does the PostgreSQL audit pipeline keep up with the switch load?

Runs the ``switch`` scenario (every switch is one audit event) while sampling
the server's ``/metrics`` every ``sample_s``: ``synckairos_outbox_length`` (the
backlog of events not yet relayed) and ``synckairos_audit_events_persisted``
(events written to PostgreSQL, a counter kept in Redis by the workers). After
the load it keeps sampling until the backlog is empty and the persisted count
stops moving, and reports the drain time.

Needs a server with an audit worker behind it (the private stack of
``synckairos dev`` has one).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import msgspec
from rich.console import Console

from benchmarks.httpclient import HttpConnection, HttpError
from benchmarks.switch import SwitchConfig, SwitchSummary, run_switch

__all__ = ["AuditConfig", "AuditSummary", "run_audit"]

_OUTBOX = re.compile(rb"^synckairos_outbox_length (\S+)$", re.MULTILINE)
_PERSISTED = re.compile(rb"^synckairos_audit_events_persisted (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Parameters of one run."""

    switch: SwitchConfig
    sample_s: float = 0.25
    drain_timeout_s: float = 120.0


class AuditSummary(msgspec.Struct):
    """The JSON result; field order is the output order."""

    scenario: str
    changes_per_s: float
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
    switch: SwitchSummary


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


async def _sampler(connection: HttpConnection, period: float, into: list[_Sample]) -> None:
    while True:
        sample = await _sample(connection)
        if sample is not None:
            into.append(sample)
        await asyncio.sleep(period)


async def run_audit(config: AuditConfig, console: Console) -> AuditSummary:
    """Run the switch load while watching the audit backlog; then wait for the drain."""
    connection = HttpConnection(config.switch.base)
    first = await _sample(connection)
    if first is None:
        raise HttpError("the server's /metrics has no audit figures (is a worker running?)")
    samples: list[_Sample] = [first]
    sampling = asyncio.create_task(_sampler(connection, config.sample_s, samples))
    try:
        switch = await run_switch(config.switch, console)
        load_end = len(samples)
    finally:
        sampling.cancel()
    load_samples = samples[:load_end]
    ended = load_samples[-1]
    drain_s: float | None = None
    with console.status("waiting for the audit pipeline to drain"):
        deadline = time.monotonic() + config.drain_timeout_s
        last = ended
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(config.sample_s)
            sample = await _sample(connection)
            if sample is None:
                continue
            samples.append(sample)
            if sample.persisted != last.persisted or sample.outbox:
                stable_since = sample.at
            elif sample.at - stable_since >= 1.0:
                drain_s = max(0.0, stable_since - ended.at)
                break
            last = sample
    connection.close()
    # Persisted rate over the samples taken while the load ran (after warm-up).
    window = [s for s in load_samples if s.persisted > first.persisted]
    rate = None
    if len(window) >= 2 and window[-1].at > window[0].at:
        rate = round((window[-1].persisted - window[0].persisted) / (window[-1].at - window[0].at))
    return AuditSummary(
        scenario="audit",
        changes_per_s=switch.throughput_rps,
        persisted_per_s=rate,
        max_backlog=max(s.outbox for s in samples),
        backlog_at_load_end=ended.outbox,
        drain_s=None if drain_s is None else round(drain_s, 2),
        persisted_total=samples[-1].persisted - first.persisted,
        switch=switch,
    )
