"""Scenario ``switch-hot``: many clients switching few sessions; conflicts and lost updates.

Modelled on the Node.js suite's ``04-high-frequency-switching`` (which
accepts 409s as optimistic-locking conflicts), with the lost-update check of
``tests/test_no_lost_update.py`` done over the public protocol only:

1. Setup: create ``sessions`` per_participant sessions of ``participants``
   participants and start them; read each one's ``version`` with
   ``GET /v1/sessions/{id}`` (``start_version``, 2 on a fresh session: 1 at
   creation, +1 for the start).
2. Load: ``clients`` closed-loop clients for ``duration`` seconds, client k on
   session ``k mod sessions``, each on its own keep-alive connection.

   - ``--mode plain``: ``POST .../switch`` with body ``{}``, as the Node.js
     suite does. The protocol says such a switch applies atomically and never
     answers 409; a server that does counts a conflict.
   - ``--mode cas`` **(ext)**: body ``{"expected_version": v}`` with the
     version the client last saw (from its last 200, or the
     ``actual_version`` of a 409's details), i.e. optimistic concurrency as
     a client would do it; 409s are the conflicts of that scheme.
3. Check: ``GET`` each session. Every 2xx switch is one committed change, so
   ``final_version - start_version`` must equal the number of 2xx switches
   of that session (``no_lost_update``; transport errors whose outcome is
   unknown widen the allowed range by their number), and no two 2xx answers
   of a session may carry the same ``version`` (``no_duplicate_version``,
   when the server returns versions in switch responses).
4. Cleanup: delete the sessions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from benchmarks import progress
from benchmarks.context import RunContext
from benchmarks.httpclient import HttpConnection, HttpError, encode_request
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import JSON, SetupError, create_sessions, delete_sessions
from benchmarks.stats import LatencyRecorder

__all__ = ["SCENARIO", "SwitchHotOptions", "SwitchHotResult", "lost_updates"]

#: Pause of a client after a transport error.
ERROR_BACKOFF_S = 0.01


@dataclass(frozen=True, slots=True)
class SwitchHotOptions:
    """Options of ``switch-hot``."""

    sessions: int = option(2, "sessions shared by all clients", low=1)
    clients: int = option(32, "concurrent clients, one keep-alive connection each", low=1)
    duration: float = option(5.0, "measured seconds", low=0.001)
    participants: int = option(4, "participants per session", low=1, high=1000)
    mode: str = option(
        "plain",
        "plain: switch with {} (Node.js suite); cas: send expected_version (ext) and retry on 409",
        choices=("plain", "cas"),
    )


class SessionAccount(msgspec.Struct, frozen=True):
    """The version accounting of one session."""

    session_id: str
    start_version: int
    final_version: int | None
    ok: int
    """2xx switches."""
    uncertain: int
    """Switches that failed in transport: applied or not, unknown."""
    lost: int | None
    """``ok - (final - start)``; 0 when nothing was lost (None: final unknown)."""


class SwitchHotResult(ScenarioResult, kw_only=True):
    """Result of ``switch-hot``."""

    sessions: int
    clients: int
    mode: str
    conflicts: int
    """409 answers."""
    conflict_rate: float | None
    """409 answers / switches sent."""
    lost_updates: int
    """Sum over the sessions of 2xx switches that left no version (beyond the
    uncertain ones)."""
    duplicate_versions: int
    """2xx answers whose version another 2xx answer of the session already had."""
    cycle_counts_match: bool | None
    """Sum of the participants' ``cycle_count`` == 2xx switches, for every
    session (None if not reported); informative, not a check."""
    accounts: list[SessionAccount]


class _Data(msgspec.Struct):
    version: int | None = None
    participants: list[dict[str, object]] = []


class _Envelope(msgspec.Struct):
    data: _Data


class _ErrorDetails(msgspec.Struct):
    actual_version: int | None = None


class _Error(msgspec.Struct):
    details: _ErrorDetails | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _Error


_decode = msgspec.json.Decoder(_Envelope).decode
_decode_error = msgspec.json.Decoder(_ErrorEnvelope).decode


def lost_updates(start: int, final: int, ok: int, uncertain: int) -> int:
    """Return how many 2xx switches left no committed version.

    ``final - start`` versions were committed; each 2xx is one, and each
    uncertain failure may be one. 0 when ``ok <= final - start <= ok +
    uncertain``; positive when updates were lost; negative when more versions
    appeared than could be explained (another writer, a timeout expiring).
    """
    committed = final - start
    if committed < ok:
        return ok - committed
    if committed > ok + uncertain:
        return -(committed - ok - uncertain)
    return 0


@dataclass(slots=True)
class _Session:
    sid: str
    version: int
    ok: int = 0
    uncertain: int = 0
    versions: Counter[int] = field(default_factory=Counter)


async def _client(
    connection: HttpConnection,
    session: _Session,
    mode: str,
    stop_at_ns: int,
    recorder: LatencyRecorder,
) -> None:
    clock = time.perf_counter_ns
    base = connection.base
    path = f"{base.prefix}/v1/sessions/{session.sid}/switch"
    known = session.version
    plain = encode_request("POST", path, base.authority, b"{}", JSON)
    while (start := clock()) < stop_at_ns:
        if mode == "cas":
            body = msgspec.json.encode({"expected_version": known})
            request = encode_request("POST", path, base.authority, body, JSON)
        else:
            request = plain
        try:
            response = await connection.roundtrip(request)
        except (HttpError, OSError) as exc:
            recorder.error(type(exc).__name__, start)
            session.uncertain += 1
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        end = clock()
        if 200 <= response.status < 300:
            recorder.record(start, end - start)
            session.ok += 1
            try:
                version = _decode(response.body).data.version
            except msgspec.DecodeError:
                version = None
            if version is not None:
                session.versions[version] += 1
                known = version
            else:
                known += 1
            continue
        recorder.error(str(response.status), start)
        if response.status == 409:
            try:
                details = _decode_error(response.body).error.details
            except msgspec.DecodeError:
                details = None
            if details is not None and details.actual_version is not None:
                known = details.actual_version


async def _read(ctx: RunContext, sessions: list[_Session]) -> dict[str, _Data | None]:
    """GET every session; None for those that could not be read."""
    found: dict[str, _Data | None] = {}
    connection = HttpConnection(ctx.base)
    try:
        for session in sessions:
            try:
                response = await connection.request("GET", f"/v1/sessions/{session.sid}")
                found[session.sid] = _decode(response.body).data if response.status == 200 else None
            except (HttpError, OSError, msgspec.DecodeError):
                found[session.sid] = None
    finally:
        connection.close()
    return found


async def run_switch_hot(options: SwitchHotOptions, ctx: RunContext) -> SwitchHotResult:
    """Run the scenario against ``ctx.target`` and return its result.

    Raises:
        SetupError: a session could not be created, started or read.
    """
    ids = [str(uuid.uuid4()) for _ in range(options.sessions)]
    created: list[str] = []
    recorder = ctx.recorder("switch")
    connections = [HttpConnection(ctx.base) for _ in range(options.clients)]
    try:
        await create_sessions(ctx.base, ids, created, options.participants, ctx.console)
        sessions = []
        for sid, data in (await _read(ctx, [_Session(sid, 0) for sid in ids])).items():
            if data is None or data.version is None:
                raise SetupError(f"GET /v1/sessions/{sid} gave no version after the start")
            sessions.append(_Session(sid, data.version))
        starts = {s.sid: s.version for s in sessions}
        began = time.perf_counter()

        def text() -> str:
            conflicts = recorder.errors.get("409", 0)
            others = len(recorder.error_starts) - conflicts
            return f"{recorder.ok:>9,} ok {conflicts:>7,} conflicts {others:,} other errors"

        async with (
            progress.live(
                ctx.console,
                "switching",
                options.duration,
                lambda: time.perf_counter() - began,
                text,
            ),
            ctx.measure() as window,
        ):
            stop_at = window.origin_ns + round(options.duration * 1e9)
            async with asyncio.TaskGroup() as group:
                for k, connection in enumerate(connections):
                    session = sessions[k % len(sessions)]
                    group.create_task(_client(connection, session, options.mode, stop_at, recorder))
        finals = await _read(ctx, sessions)
    finally:
        for connection in connections:
            connection.close()
        await delete_sessions(ctx.base, created, ctx.console)
    return _summarize(options, ctx, sessions, starts, finals)


def _summarize(
    options: SwitchHotOptions,
    ctx: RunContext,
    sessions: list[_Session],
    starts: dict[str, int],
    finals: dict[str, _Data | None],
) -> SwitchHotResult:
    recorder = ctx.recorder("switch")
    accounts: list[SessionAccount] = []
    lost_total = duplicates = 0
    unknown = False
    cycles_match: bool | None = True
    for session in sessions:
        final = finals.get(session.sid)
        final_version = None if final is None else final.version
        lost = None
        if final_version is not None:
            lost = lost_updates(starts[session.sid], final_version, session.ok, session.uncertain)
            lost_total += max(0, lost)
        else:
            unknown = True
        duplicates += sum(count - 1 for count in session.versions.values() if count > 1)
        if final is not None and final.participants:
            cycles = sum(int(str(p.get("cycle_count", 0))) for p in final.participants)
            cycles_match = bool(cycles_match) and cycles == session.ok
        else:
            cycles_match = None
        accounts.append(
            SessionAccount(
                session.sid, starts[session.sid], final_version, session.ok, session.uncertain, lost
            )
        )
    conflicts = recorder.errors.get("409", 0)
    warnings: list[str] = []
    if lost_total:
        ctx.warn(f"{lost_total} switches answered 2xx left no version: lost updates", warnings)
    if unknown:
        ctx.warn("some sessions could not be read back: accounting incomplete", warnings)
    if options.mode == "plain" and conflicts:
        ctx.warn(
            f"{conflicts} plain switches (no precondition) answered 409; the protocol says "
            "such a switch applies atomically instead",
            warnings,
        )
    checks = {
        "no_lost_update": lost_total == 0 and not unknown,
        "no_duplicate_version": duplicates == 0,
    }
    return SwitchHotResult(
        **ctx.common("switch-hot", "switch", checks=checks, warnings=warnings),
        sessions=options.sessions,
        clients=options.clients,
        mode=options.mode,
        conflicts=conflicts,
        conflict_rate=round(conflicts / recorder.count, 4) if recorder.count else None,
        lost_updates=lost_total,
        duplicate_versions=duplicates,
        cycle_counts_match=cycles_match,
        accounts=accounts,
    )


SCENARIO = Scenario(
    name="switch-hot",
    help="many clients on few sessions: 409 conflicts and the lost-update check",
    options_type=SwitchHotOptions,
    run=run_switch_hot,
    description=__doc__ or "",
)
