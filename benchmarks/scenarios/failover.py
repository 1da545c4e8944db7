"""Scenario ``failover``: the switch load and WebSocket subscribers across a Redis failover.

Everything runs on a private Redis Sentinel topology (one primary, two
replicas, three Sentinels: ``deploy/sentinel/sentinel.sh`` on free ports, via
:class:`benchmarks.sentinel_topology.SentinelTopology`), so ``--url`` does not
apply. One run:

1. Setup: starts the topology and ``--nodes`` ``synckairos serve`` processes
   in Sentinel mode, without PostgreSQL, rate limiting off, durability mode
   on (``SYNCKAIROS_REDIS_MIN_REPLICA_ACKS=1``) unless ``--no-durable``.
   Creates ``--clients`` sessions (one per client: nothing else writes to a
   session) and starts them, reads each one's ``version``, and opens
   ``--subscribers`` WebSocket subscribers per session, spread over the nodes.
2. Load: each client switches its own session back to back on node
   ``k mod nodes``, every switch with ``{"expected_version": v}``, ``v`` the
   version of its last 2xx. After a 409 it takes ``details.actual_version``;
   after a 503 or a transport error (outcome unknown) it re-reads the version
   with ``GET``. Subscribers reconnect when a socket closes.
3. Fault, ``--before`` seconds into the load: ``--fault kill`` SIGKILLs the
   Redis primary, ``--fault failover`` asks the Sentinels for a manual
   ``SENTINEL FAILOVER`` (the split-brain window of docs/failover.md). The
   load goes on for ``--after`` seconds after the fault command returned.
4. Check: ``GET`` of every session, then waits (``--converge-timeout``) until
   every subscriber holds the final version and state.
5. Cleanup: the servers are stopped and the topology destroyed, also after
   a failure.

Reported (``fault`` = the moment the fault command returned):

- ``unavailable_s``: fault → the first 2xx of a switch *sent* after the
  fault; ``promoted_s``: fault → the Sentinels name a new primary;
  ``longest_gap_s``: longest time without any 2xx completing;
  ``slowest_request_s``.
- ``failed``: non-2xx answers (409 included) and transport errors, by kind
  in ``failures``; ``uncertain``: those whose outcome is unknown (503 with
  ``details.outcome: "unknown"``, transport errors).
- ``acknowledged_but_lost``: per session, every 2xx must leave its version.
  One writer with ``expected_version`` makes the versions a linear sequence:
  each 2xx carries a version no earlier 2xx of the session had, none above
  the final version, and ``final - start`` lies between the 2xx count and the
  2xx count + ``uncertain``; the last 2xx's state must be the final state
  when it carries the final version. The lost count is the largest deficit
  any of these rules shows (:func:`account_session`). A lost 2xx whose
  version an unknown-outcome commit happened to re-create is invisible to
  version accounting (``tests/test_failover_e2e.py`` also compares content
  with the audit trail).
- Subscribers: ``subscriber_gap_s``, the longest time any subscriber went
  without a new state during the load (the live-update counterpart of
  ``longest_gap_s``); ``convergence_s`` (the final version's 2xx → the last
  subscriber holding it); reconnects; ``STATE_SYNC`` after the fault (a
  switch-over sends every socket a full sync).

Checks: ``service_back`` (a 2xx after the fault), ``subscribers_converged``
and, in durability mode, ``no_acknowledged_change_lost``. Without durability
mode a lost acknowledged change is a documented possibility: a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from benchmarks import progress
from benchmarks.context import RunContext, Target
from benchmarks.httpclient import BaseUrl, HttpConnection, HttpError, encode_request, parse_base_url
from benchmarks.options import option
from benchmarks.registry import Scenario
from benchmarks.result import ScenarioResult
from benchmarks.sessions import JSON, SetupError, create_sessions
from benchmarks.stack import DevStack, StackError
from benchmarks.stats import LatencyRecorder
from benchmarks.wsclient import ws_url

__all__ = [
    "SCENARIO",
    "FailoverOptions",
    "FailoverResult",
    "SessionAccount",
    "account_session",
    "longest_gap_s",
    "same_state",
    "sentinel_script",
    "unavailable_s",
]

#: The script of the Sentinel topology, relative to the repository root.
SENTINEL_SCRIPT = Path("deploy/sentinel/sentinel.sh")

#: The repository this package lives in (an editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Seconds one request may take: above the server's 10 s failover budget.
REQUEST_TIMEOUT_S = 20.0

#: Pause of a client after a 503 or a transport error (as the e2e test).
ERROR_BACKOFF_S = 0.05

#: Pause of a client whose version re-read failed.
REREAD_BACKOFF_S = 0.1

#: Pause of a subscriber before it reconnects.
RECONNECT_S = 0.2

#: Seconds allowed for every node's ``GET /ready`` to answer 200.
READY_TIMEOUT_S = 30.0

#: Seconds allowed for the final reads (they may meet the tail of the failover).
FINAL_READ_S = 15.0

#: State fields that identify a change (as ``tests/test_failover_e2e.py``).
STATE_KEYS = ("version", "active_participant_id", "cycle_started_at", "participants")

_NS = 1e9


@dataclass(frozen=True, slots=True)
class FailoverOptions:
    """Options of ``failover``."""

    clients: int = option(
        8, "switching clients, one session each, every switch with expected_version", low=1
    )
    subscribers: int = option(2, "WebSocket subscribers per session, spread over the nodes", low=0)
    nodes: int = option(2, "synckairos serve processes on the topology", low=1, high=8)
    before: float = option(3.0, "seconds of load before the fault", low=0.5)
    after: float = option(10.0, "seconds of load after the fault returned", low=1)
    fault: str = option(
        "kill",
        "kill: SIGKILL the Redis primary; failover: SENTINEL FAILOVER (manual switch-over)",
        choices=("kill", "failover"),
    )
    durable: bool = option(
        True, "durability mode, SYNCKAIROS_REDIS_MIN_REPLICA_ACKS=1 (the default)"
    )
    no_durable: bool = option(
        False, "turn durability mode off (SYNCKAIROS_REDIS_MIN_REPLICA_ACKS=0)"
    )
    participants: int = option(3, "participants per session", low=1, high=1000)
    think_ms: float = option(0.0, "pause of a client between two switches", low=0)
    down_after_ms: int = option(1000, "Sentinel down-after-milliseconds", low=100)
    converge_timeout: float = option(
        15.0, "seconds allowed for every subscriber to reach the final state", low=1
    )

    @property
    def durability(self) -> bool:
        """Durability mode as the flags select it (``--no-durable`` wins)."""
        return self.durable and not self.no_durable


class SessionAccount(msgspec.Struct, frozen=True):
    """The version accounting of one session (see :func:`account_session`)."""

    session_id: str
    start_version: int
    final_version: int | None
    acknowledged: int
    """2xx switches."""
    uncertain: int
    """Switches whose outcome is unknown (503 ``unknown``, transport errors)."""
    duplicates: int
    """2xx answers carrying a version an earlier 2xx of the session had."""
    beyond_final: int
    """Distinct 2xx versions above the final version."""
    last_matches: bool | None
    """The last 2xx's state is the final state (None: it is not the final version)."""
    lost: int | None
    """Acknowledged but lost, a lower bound (None: the final version is unknown)."""


class FailoverResult(ScenarioResult, kw_only=True):
    """Result of ``failover``."""

    fault: str
    durable: bool
    nodes: int
    clients: int
    subscribers: int
    down_after_ms: int
    fault_command_s: float
    """How long the fault command (``sentinel.sh kill-primary`` / ``failover``) took."""
    promoted_s: float | None
    """Fault → the Sentinels name a new primary."""
    unavailable_s: float | None
    """Fault → first 2xx of a switch sent after the fault (None: none came)."""
    longest_gap_s: float | None
    """Longest time in the load without any 2xx completing."""
    slowest_request_s: float | None
    """Slowest request, any outcome."""
    acknowledged: int
    acknowledged_before_fault: int
    failed: int
    """Non-2xx answers (409 included) and transport errors."""
    failures: dict[str, int]
    """``failed`` by kind: status (``503 unknown`` with its outcome) or exception name."""
    conflicts: int
    uncertain: int
    acknowledged_but_lost: int | None
    duplicate_versions: int
    subscribers_open: int
    subscribers_converged: int
    subscriber_gap_s: float | None
    """Longest time any subscriber went without a new state during the load."""
    convergence_s: float | None
    """The final version's 2xx (or the end of the load) → the last subscriber holding
    the final state; 0 when they held it before."""
    subscriber_reconnects: int
    state_syncs_after_fault: int
    server_log_problems: int
    """Lines with ``Traceback``/``ERROR``/``CRITICAL`` in the servers' output."""
    accounts: list[SessionAccount]


# -- pure accounting (unit-tested) ---------------------------------------------------------


def same_state(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two session states are the same change (:data:`STATE_KEYS`)."""
    return all(a.get(key) == b.get(key) for key in STATE_KEYS)


def account_session(
    session_id: str,
    start: int,
    final: int | None,
    acked: Sequence[int],
    uncertain: int,
    last_matches: bool | None = None,
) -> SessionAccount:
    """Account one session whose only writer switches with ``expected_version``.

    Args:
        start: version before the load; final: version after it (None: unknown).
        acked: the version of every 2xx, in order.
        uncertain: failures whose outcome is unknown (each may have committed).
        last_matches: whether the last 2xx's state is the final state, when the
            last 2xx carries the final version (else None).

    Every 2xx is one committed version, so:

    - a version acknowledged twice was lost once (its number was re-used);
    - a version above the final one was lost;
    - ``final - start`` below the 2xx count lost the difference (uncertain
      failures may add versions, so this is a lower bound);
    - a last 2xx at the final version with another state was lost.

    ``lost`` is the largest of these lower bounds.
    """
    distinct = set(acked)
    duplicates = len(acked) - len(distinct)
    if final is None:
        return SessionAccount(
            session_id, start, None, len(acked), uncertain, duplicates, 0, last_matches, None
        )
    beyond = sum(1 for version in distinct if version > final)
    by_count = max(0, len(acked) - (final - start))
    lost = max(by_count, duplicates + beyond, 1 if last_matches is False else 0)
    return SessionAccount(
        session_id, start, final, len(acked), uncertain, duplicates, beyond, last_matches, lost
    )


def unavailable_s(fault_ns: int, starts: Sequence[int], latencies: Sequence[int]) -> float | None:
    """Seconds from ``fault_ns`` to the end of the first success sent at or after it.

    ``starts`` and ``latencies`` are a recorder's parallel arrays of successes.
    """
    ends = [
        start + latency
        for start, latency in zip(starts, latencies, strict=True)
        if start >= fault_ns
    ]
    return None if not ends else round((min(ends) - fault_ns) / _NS, 3)


def longest_gap_s(ends: Iterable[int], begin_ns: int, stop_ns: int) -> float:
    """Longest interval without a completion in ``[begin_ns, stop_ns]``.

    ``ends`` are completion times; those outside the interval are ignored.
    """
    points = sorted(end for end in ends if begin_ns <= end <= stop_ns)
    previous, gap = begin_ns, 0
    for point in [*points, stop_ns]:
        gap = max(gap, point - previous)
        previous = point
    return round(gap / _NS, 3)


# -- the run -------------------------------------------------------------------------------


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


class _Data(msgspec.Struct):
    version: int | None = None


class _Envelope(msgspec.Struct):
    data: _Data


class _ErrorDetails(msgspec.Struct):
    actual_version: int | None = None
    outcome: str | None = None


class _Error(msgspec.Struct):
    details: _ErrorDetails | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _Error


_decode = msgspec.json.Decoder(_Envelope).decode
_decode_error = msgspec.json.Decoder(_ErrorEnvelope).decode


def _state_of(body: bytes) -> dict[str, Any]:
    data = msgspec.json.decode(body).get("data")
    return data if isinstance(data, dict) else {}


@dataclass(slots=True)
class _Client:
    """One switching client and its session."""

    sid: str
    base: BaseUrl
    start_version: int
    version: int | None = None
    """Version the next switch expects (None: re-read it first)."""
    acked: list[int] = field(default_factory=list)
    """Version of every 2xx, in order."""
    acked_sent: list[int] = field(default_factory=list)
    """When each 2xx's request was sent (perf_counter_ns), parallel to :attr:`acked`."""
    uncertain: int = 0
    last_body: bytes = b""
    """Body of the last 2xx."""
    last_end_ns: int = 0
    """When the last 2xx completed."""


@dataclass(slots=True)
class _Follower:
    """One WebSocket subscriber slot (reconnecting)."""

    sid: str
    url: str
    version: int | None = None
    state: dict[str, Any] = field(default_factory=dict)
    arrivals: list[tuple[int, int]] = field(default_factory=list)
    """``(arrival_ns, version)`` of every message that moved the state."""
    syncs: list[int] = field(default_factory=list)
    """Arrival of every STATE_SYNC."""
    reconnects: int = 0
    open: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _Tally:
    """Shared by the clients (one event loop, no locks)."""

    recorder: LatencyRecorder
    failures: Counter[str] = field(default_factory=Counter)
    slowest_ns: int = 0
    completed: int = 0


async def _follow(follower: _Follower) -> None:
    """Keep ``follower`` subscribed; record every state it is shown. Runs until cancelled."""
    clock = time.perf_counter_ns
    while True:
        try:
            async with connect(
                follower.url, proxy=None, ping_interval=None, open_timeout=10, max_size=2**22
            ) as socket:
                follower.open = True
                async for raw in socket:
                    arrival = clock()
                    message = msgspec.json.decode(raw)
                    kind = message.get("type")
                    if kind not in ("STATE_SYNC", "STATE_UPDATE"):
                        continue
                    state = message.get("state") or {}
                    version = message.get("version", state.get("version"))
                    if not isinstance(version, int):
                        continue
                    if kind == "STATE_SYNC":
                        follower.syncs.append(arrival)
                    if (
                        kind == "STATE_SYNC"
                        or follower.version is None
                        or version > follower.version
                    ):
                        follower.version, follower.state = version, state
                        follower.arrivals.append((arrival, version))
                        follower.ready.set()
        except (ConnectionClosed, OSError, InvalidHandshake, msgspec.DecodeError):
            pass
        follower.open = False
        follower.reconnects += 1
        await asyncio.sleep(RECONNECT_S)


async def _read_version(connection: HttpConnection, request: bytes) -> int | None:
    with contextlib.suppress(HttpError, OSError, msgspec.DecodeError):
        response = await connection.roundtrip(request)
        if response.status == 200:
            return _decode(response.body).data.version
    return None


async def _switcher(client: _Client, stop: asyncio.Event, tally: _Tally, think_s: float) -> None:
    """Switch ``client``'s session with ``expected_version`` until ``stop``."""
    clock = time.perf_counter_ns
    base = client.base
    connection = HttpConnection(base, timeout=REQUEST_TIMEOUT_S)
    path = f"{base.prefix}/v1/sessions/{client.sid}"
    get = encode_request("GET", path, base.authority)
    recorder = tally.recorder
    try:
        while not stop.is_set():
            if client.version is None:
                client.version = await _read_version(connection, get)
                if client.version is None:
                    await asyncio.sleep(REREAD_BACKOFF_S)
                continue
            body = b'{"expected_version":%d}' % client.version
            request = encode_request("POST", f"{path}/switch", base.authority, body, JSON)
            start = clock()
            try:
                response = await connection.roundtrip(request)
            except (HttpError, OSError) as exc:
                tally.slowest_ns = max(tally.slowest_ns, clock() - start)
                kind = type(exc).__name__
                recorder.error(kind, start)
                tally.failures[kind] += 1
                client.uncertain += 1
                client.version = None
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            end = clock()
            tally.completed += 1
            tally.slowest_ns = max(tally.slowest_ns, end - start)
            if 200 <= response.status < 300:
                try:
                    version = _decode(response.body).data.version
                except msgspec.DecodeError:
                    version = None
                if version is None:  # committed, but which version is unknown
                    recorder.error("2xx without version", start)
                    tally.failures["2xx without version"] += 1
                    client.uncertain += 1
                    client.version = None
                    continue
                recorder.record(start, end - start)
                client.acked.append(version)
                client.acked_sent.append(start)
                client.last_body, client.last_end_ns = response.body, end
                client.version = version
            else:
                try:
                    details = _decode_error(response.body).error.details
                except msgspec.DecodeError:
                    details = None
                kind = str(response.status)
                if details is not None and details.outcome:
                    kind += f" {details.outcome}"
                recorder.error(str(response.status), start)
                tally.failures[kind] += 1
                if response.status == 409 and details is not None and details.actual_version:
                    client.version = details.actual_version
                else:
                    if details is not None and details.outcome == "unknown":
                        client.uncertain += 1
                    client.version = None
                    await asyncio.sleep(ERROR_BACKOFF_S)
            if think_s:
                await asyncio.sleep(think_s)
    finally:
        connection.close()


def _ready(base: BaseUrl) -> bool:
    conn = http.client.HTTPConnection(base.host, base.port, timeout=1.0)
    try:
        conn.request("GET", f"{base.prefix}/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _start_nodes(count: int, env: dict[str, str], stacks: contextlib.ExitStack) -> list[DevStack]:
    """Start ``count`` ``synckairos serve`` processes with ``env``; wait until all are ready."""
    nodes = []
    for _ in range(count):
        # DevStack._start: `serve` with extra environment, health wait, log tail, stop.
        node = DevStack._start("serve", env)
        stacks.callback(node.stop)
        nodes.append(node)
    deadline = time.monotonic() + READY_TIMEOUT_S
    for node in nodes:
        base = parse_base_url(node.url)
        while not _ready(base):
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise StackError(node.describe_failure("was not ready (GET /ready)"))
            time.sleep(0.1)
    return nodes


def _log_problems(nodes: Sequence[DevStack]) -> tuple[int, list[str]]:
    """Count lines of the nodes' output that report errors; return a few of them."""
    count = 0
    samples: list[str] = []
    for i, node in enumerate(nodes):
        with contextlib.suppress(OSError, ValueError):
            node.log.seek(0)
            for raw in node.log:
                line = raw.decode(errors="replace").rstrip()
                if "Traceback" in line or "ERROR" in line or "CRITICAL" in line:
                    count += 1
                    if len(samples) < 3:
                        samples.append(f"node {i}: {line[:300]}")
    return count, samples


async def _final_states(nodes: Sequence[BaseUrl], clients: Sequence[_Client]) -> dict[str, Any]:
    """GET every session (retrying, over every node in turn) within FINAL_READ_S."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + FINAL_READ_S
    connections = [HttpConnection(base, timeout=REQUEST_TIMEOUT_S) for base in nodes]
    try:
        attempt = 0
        while len(found) < len(clients) and time.monotonic() < deadline:
            connection = connections[attempt % len(connections)]
            attempt += 1
            for client in clients:
                if client.sid in found:
                    continue
                with contextlib.suppress(HttpError, OSError, msgspec.DecodeError):
                    response = await connection.request("GET", f"/v1/sessions/{client.sid}")
                    if response.status == 200:
                        found[client.sid] = _state_of(response.body)
            if len(found) < len(clients):
                await asyncio.sleep(0.2)
    finally:
        for connection in connections:
            connection.close()
    return found


async def _converge(
    followers: Sequence[_Follower], finals: Mapping[str, Any], timeout_s: float
) -> bool:
    """Wait until every follower holds its session's final state; True if they all do."""

    deadline = time.monotonic() + timeout_s
    while not all(_holds_final(f, finals) for f in followers):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _timed(call: Callable[[], object]) -> int:
    """Run the blocking ``call`` in a thread; return perf_counter_ns when it returned."""

    def run() -> int:
        call()
        return time.perf_counter_ns()

    return await asyncio.to_thread(run)


async def run_failover(options: FailoverOptions, ctx: RunContext) -> FailoverResult:
    """Run the scenario on a private Sentinel topology and return its result.

    Raises:
        SetupError: the topology, a server, a session or a subscriber could not be set up.
        StackError: a server did not start.
    """
    from benchmarks.sentinel_topology import SentinelTopology

    console = ctx.console
    durable = options.durability
    with contextlib.ExitStack() as stacks:
        try:
            topology = SentinelTopology(down_after_ms=options.down_after_ms)
        except FileNotFoundError as exc:
            raise SetupError(str(exc)) from None
        stacks.callback(topology.destroy)  # after the servers (callbacks run in reverse)
        console.print(f"starting a Sentinel topology in {topology.dir}...")
        try:
            await asyncio.to_thread(topology.start)
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"sentinel.sh start failed: {exc.stderr}") from None
        except subprocess.TimeoutExpired:
            raise SetupError("sentinel.sh start timed out") from None
        env = {
            **topology.env(),
            "SYNCKAIROS_REDIS_MIN_REPLICA_ACKS": "1" if durable else "0",
            "SYNCKAIROS_RATE_LIMITS": "off",
            # Whatever the calling shell has: no PostgreSQL, no auth, Sentinel only.
            "SYNCKAIROS_REDIS_URL": "",
            "SYNCKAIROS_DATABASE_URL": "",
            "SYNCKAIROS_API_KEYS": "",
            "SYNCKAIROS_TOKEN_SECRET": "",
        }
        console.print(
            f"topology up (primary {topology.primary()}); starting {options.nodes} "
            f"server(s), durability mode {'on' if durable else 'off'}..."
        )
        nodes = await asyncio.to_thread(_start_nodes, options.nodes, env, stacks)
        bases = tuple(parse_base_url(node.url) for node in nodes)
        for i, node in enumerate(nodes):
            console.print(f"node {i} at {node.url} (pid {node.pid})")
        ctx.target = Target("A", bases, tuple(node.pid for node in nodes))
        result = await _load(options, ctx, topology, bases, durable)
        problems, samples = _log_problems(nodes)
        died = [
            (i, n.process.returncode) for i, n in enumerate(nodes) if n.process.poll() is not None
        ]
    for i, code in died:
        ctx.warn(f"server node {i} exited during the run (status {code})", result.warnings)
    if problems:
        ctx.warn(
            f"the servers logged {problems} error line(s): " + " | ".join(samples), result.warnings
        )
    result.server_log_problems = problems
    if died:
        result.checks["servers_survived"] = False
    return result


async def _load(
    options: FailoverOptions,
    ctx: RunContext,
    topology: Any,
    bases: tuple[BaseUrl, ...],
    durable: bool,
) -> FailoverResult:
    """Sessions, subscribers, the load, the fault and the checks (servers are up)."""
    console = ctx.console
    ids = [str(uuid.uuid4()) for _ in range(options.clients)]
    await create_sessions(bases[0], ids, [], options.participants, console)
    reader = HttpConnection(bases[0])
    clients = []
    try:
        for k, sid in enumerate(ids):
            version = await _read_version(
                reader,
                encode_request("GET", f"{bases[0].prefix}/v1/sessions/{sid}", bases[0].authority),
            )
            if version is None:
                raise SetupError(f"GET /v1/sessions/{sid} gave no version after the start")
            clients.append(_Client(sid, bases[k % len(bases)], version, version))
    finally:
        reader.close()
    followers = [
        _Follower(sid, ws_url(bases[(i + j) % len(bases)], sid))
        for i, sid in enumerate(ids)
        for j in range(options.subscribers)
    ]
    following = [asyncio.create_task(_follow(f)) for f in followers]
    try:
        try:
            async with asyncio.timeout(15):
                await asyncio.gather(*(f.ready.wait() for f in followers))
        except TimeoutError:
            missing = sum(not f.ready.is_set() for f in followers)
            raise SetupError(f"{missing} subscriber(s) got no STATE_SYNC within 15 s") from None
        console.print(f"{len(followers)} subscribers synced; load starts")
        return await _measured(options, ctx, topology, bases, clients, followers, durable)
    finally:
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)


async def _measured(
    options: FailoverOptions,
    ctx: RunContext,
    topology: Any,
    bases: tuple[BaseUrl, ...],
    clients: list[_Client],
    followers: list[_Follower],
    durable: bool,
) -> FailoverResult:
    clock = time.perf_counter_ns
    recorder = ctx.recorder("switch")
    tally = _Tally(recorder)
    stop = asyncio.Event()
    fault_ns = 0
    old_primary = topology.primary()
    fault_call = topology.kill_primary if options.fault == "kill" else topology.failover

    def gauges() -> dict[str, float]:
        return {
            "after_fault": float(fault_ns > 0),
            "subscribers_open": float(sum(f.open for f in followers)),
        }

    began = time.perf_counter()
    last = [0, time.perf_counter()]

    def text() -> str:
        now = time.perf_counter()
        rate = (tally.completed - last[0]) / max(now - last[1], 1e-9)
        last[0], last[1] = tally.completed, now
        return progress.rate_text(recorder.ok, len(recorder.error_starts), rate)

    total = options.before + options.after
    switchers: list[asyncio.Task[None]] = []
    promoted: asyncio.Task[int] | None = None
    try:
        async with (
            progress.live(
                ctx.console, "before the fault", total, lambda: time.perf_counter() - began, text
            ) as live,
            ctx.measure(gauges=gauges) as window,
        ):
            think_s = options.think_ms / 1000
            switchers = [asyncio.create_task(_switcher(c, stop, tally, think_s)) for c in clients]
            await asyncio.sleep(options.before)
            live.describe(f"fault: {options.fault}")
            fault_start = clock()
            fault_ns = await _timed(fault_call)
            fault_command_s = round((fault_ns - fault_start) / _NS, 3)
            promoted = asyncio.create_task(_timed(lambda: topology.wait_primary(old_primary)))
            live.describe("after the fault")
            await asyncio.sleep(options.after)
            stop.set()
            live.describe("draining")
            stop_ns = clock()
            await asyncio.wait_for(asyncio.gather(*switchers), REQUEST_TIMEOUT_S + 5)
            load_end_ns = clock()
    finally:
        stop.set()
        for task in switchers:
            task.cancel()
        await asyncio.gather(*switchers, return_exceptions=True)
    warnings: list[str] = []
    promoted_s = None
    try:
        promoted_ns = await asyncio.wait_for(promoted, 60) if promoted else None
        if promoted_ns is not None:
            promoted_s = round(max(0, promoted_ns - fault_ns) / _NS, 3)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, TimeoutError) as exc:
        ctx.warn(f"could not time the promotion: {type(exc).__name__}: {exc}", warnings)

    finals = await _final_states(bases[::-1], clients)
    converged = await _converge(followers, finals, options.converge_timeout)
    return _summarize(
        options,
        ctx,
        durable,
        clients,
        followers,
        finals,
        tally,
        warnings,
        fault_ns=fault_ns,
        fault_command_s=fault_command_s,
        promoted_s=promoted_s,
        origin_ns=window.origin_ns,
        stop_ns=stop_ns,
        load_end_ns=load_end_ns,
        converged=converged,
    )


def _holds_final(follower: _Follower, finals: Mapping[str, Any]) -> bool:
    final = finals.get(follower.sid)
    return (
        final is not None
        and follower.version == final.get("version")
        and same_state(follower.state, final)
    )


def _subscriber_figures(
    clients: Sequence[_Client],
    followers: Sequence[_Follower],
    finals: Mapping[str, Any],
    window: tuple[int, int],
    load_end_ns: int,
) -> tuple[float | None, float | None]:
    """``subscriber_gap_s`` over ``window`` and ``convergence_s`` (see the module doc)."""
    by_sid = {client.sid: client for client in clients}
    gaps = []
    convergence = []
    for f in followers:
        gaps.append(longest_gap_s((arrival for arrival, _ in f.arrivals), *window))
        client = by_sid[f.sid]
        if _holds_final(f, finals) and f.arrivals:
            final_version = finals[f.sid].get("version")
            acked_final = bool(client.acked) and client.acked[-1] == final_version
            reference = client.last_end_ns if acked_final else load_end_ns
            convergence.append(max(0, f.arrivals[-1][0] - reference))
    gap_s = max(gaps) if gaps else None
    convergence_s = round(max(convergence) / _NS, 3) if convergence else None
    return gap_s, convergence_s


def _summarize(
    options: FailoverOptions,
    ctx: RunContext,
    durable: bool,
    clients: list[_Client],
    followers: list[_Follower],
    finals: Mapping[str, Any],
    tally: _Tally,
    warnings: list[str],
    *,
    fault_ns: int,
    fault_command_s: float,
    promoted_s: float | None,
    origin_ns: int,
    stop_ns: int,
    load_end_ns: int,
    converged: bool,
) -> FailoverResult:
    recorder = tally.recorder
    accounts = []
    for client in clients:
        final = finals.get(client.sid)
        final_version = None if final is None else final.get("version")
        last_matches = None
        if final is not None and client.acked and client.acked[-1] == final_version:
            last_matches = same_state(_state_of(client.last_body), final)
        accounts.append(
            account_session(
                client.sid,
                client.start_version,
                final_version if isinstance(final_version, int) else None,
                client.acked,
                client.uncertain,
                last_matches,
            )
        )
    unknown = any(a.lost is None for a in accounts)
    lost = None if unknown else sum(a.lost or 0 for a in accounts)
    starts, latencies = recorder.starts, recorder.latencies
    ends = [s + d for s, d in zip(starts, latencies, strict=True)]

    gap_s, convergence_s = _subscriber_figures(
        clients, followers, finals, (origin_ns, stop_ns), load_end_ns
    )
    if not converged:
        convergence_s = None
    n_converged = sum(_holds_final(f, finals) for f in followers)
    unavailable = unavailable_s(fault_ns, starts, latencies)
    failed = sum(tally.failures.values())
    if unavailable is None:
        ctx.warn("no switch sent after the fault succeeded", warnings)
    if lost:
        message = f"{lost} acknowledged switch(es) lost in the failover"
        if not durable:
            message += " (possible without durability mode: replication is asynchronous)"
        ctx.warn(message, warnings)
    if unknown:
        ctx.warn("some sessions could not be read back: accounting incomplete", warnings)
    if not converged:
        ctx.warn(
            f"{len(followers) - n_converged} subscriber(s) did not reach the final state "
            f"within {options.converge_timeout:g} s",
            warnings,
        )
    checks = {"service_back": unavailable is not None, "subscribers_converged": converged}
    if durable:
        checks["no_acknowledged_change_lost"] = lost == 0
    return FailoverResult(
        **ctx.common("failover", "switch", checks=checks, warnings=warnings),
        fault=options.fault,
        durable=durable,
        nodes=options.nodes,
        clients=options.clients,
        subscribers=len(followers),
        down_after_ms=options.down_after_ms,
        fault_command_s=fault_command_s,
        promoted_s=promoted_s,
        unavailable_s=unavailable,
        longest_gap_s=longest_gap_s(ends, origin_ns, stop_ns) if ends else None,
        slowest_request_s=round(tally.slowest_ns / _NS, 3) if tally.slowest_ns else None,
        acknowledged=recorder.ok,
        acknowledged_before_fault=sum(1 for end in ends if end < fault_ns),
        failed=failed,
        failures=dict(tally.failures),
        conflicts=recorder.errors.get("409", 0),
        uncertain=sum(c.uncertain for c in clients),
        acknowledged_but_lost=lost,
        duplicate_versions=sum(a.duplicates for a in accounts),
        subscribers_open=sum(f.open for f in followers),
        subscribers_converged=n_converged,
        subscriber_gap_s=gap_s,
        convergence_s=convergence_s,
        subscriber_reconnects=sum(f.reconnects for f in followers),
        state_syncs_after_fault=sum(1 for f in followers for t in f.syncs if t >= fault_ns),
        server_log_problems=0,
        accounts=accounts,
    )


SCENARIO = Scenario(
    name="failover",
    help="Redis Sentinel failover under the switch load: unavailability, lost acknowledged "
    "switches, subscriber convergence (own topology and servers)",
    options_type=FailoverOptions,
    run=run_failover,
    description=__doc__ or "",
    local_only=True,
    sockets=lambda o: o.clients * (o.subscribers + 2) + 100,
    available=_available,
)
