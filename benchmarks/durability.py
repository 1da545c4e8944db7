"""Cost of each durability level, A/B/C in one session (``python -m benchmarks.durability``).

Starts one stack per level of ``SYNCKAIROS_DURABILITY`` (``redis``, ``replica``,
``postgres``), all alike: a Redis primary (AOF, ``appendfsync everysec``, as
``synckairos dev``) with one replica attached, a database of its own on one
shared PostgreSQL, a ``synckairos serve`` and a ``synckairos worker``. Only the
level differs. Then it runs the ``switch`` scenario of the harness (``python -m
benchmarks switch --url … --server-pid …``) against each stack in turn, A, B,
C, A, B, C … (``--rounds``), at each concurrency of ``--clients``, and prints
the median per level of: throughput, latency p50/p99 (client side), the
server's CPU per switch and the CPU per switch of everything behind it (both
Redis servers, the worker, PostgreSQL), read from ``/proc``.

It also measures how far the audit trail is behind, two ways: it samples
``synckairos_audit_relay_lag_seconds`` from ``/metrics`` every 0.2 s while
commits happen (age of the oldest outbox entry not yet handed to dramatiq: what
an operator sees), and, once every stack has drained, for every switch of each
run it takes PostgreSQL's commit time of the transaction that inserted its row
(``track_commit_timestamp``) minus its Redis commit time (``committed_at_ms``):
the time a change acknowledged in the ``redis`` level is exposed to a total
Redis loss. It reports p50/p99/max of both.

Everything is measured here, on this machine, while it runs; nothing is
computed from assumptions. Results are also written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import redis.asyncio

from synckairos.audit.migrate import migrate
from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

__all__ = ["main"]

LEVELS = ("redis", "replica", "postgres")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (0 for a pid that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def _children(pid: int) -> list[int]:
    """``pid`` and every descendant (PostgreSQL's backends)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.extend(_children(int(entry.name)))
    return found


class Stack:
    """One level's processes."""

    def __init__(self, level: str, postgres: EmbeddedPostgres) -> None:
        self.level = level
        self.primary = EmbeddedRedis(appendonly=True).start()
        self.replica = EmbeddedRedis().start()
        replica = redis.Redis(port=self.replica.port)
        replica.replicaof("127.0.0.1", self.primary.port)
        deadline = time.monotonic() + 20
        while replica.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.05)
        replica.close()
        name = f"bench_{level}_{uuid.uuid4().hex[:6]}"
        postgres.create_database(name)
        self.database_url = postgres.dsn(name)
        asyncio.run(migrate(self.database_url))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SYNCKAIROS_REDIS_URL": self.primary.url,
            "SYNCKAIROS_DATABASE_URL": self.database_url,
            "SYNCKAIROS_DURABILITY": level,
            "SYNCKAIROS_RATE_LIMITS": "off",
            "SYNCKAIROS_LOG_LEVEL": "warning",
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.server = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "worker"],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError(f"the {level} server did not start")
            time.sleep(0.1)

    def backend_pids(self, postgres: EmbeddedPostgres) -> list[int]:
        """Redis primary and replica, the worker, PostgreSQL and its backends."""
        pids = [self.worker.pid]
        for server in (self.primary, self.replica):
            if server.process is not None:
                pids.append(server.process.pid)
        if postgres.process is not None:
            pids.extend(_children(postgres.process.pid))
        return pids

    def stop(self) -> None:
        for process in (self.server, self.worker):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.replica.stop()
        self.primary.stop()
        self.log.close()


async def _sample_relay_lag(url: str, stop: asyncio.Event) -> list[float]:
    """``synckairos_audit_relay_lag_seconds`` every 0.2 s while commits happen."""
    relay: list[float] = []
    commits_before = -1.0
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while not stop.is_set():
            metrics = (await http.get("/metrics")).text
            commits = 0.0
            relay_lag = None
            for line in metrics.splitlines():
                if line.startswith("synckairos_audit_relay_lag_seconds "):
                    relay_lag = float(line.split()[1])
                elif line.startswith("synckairos_commits_total{"):
                    commits += float(line.split()[-1])
            # Only while changes are being committed (not between runs).
            if commits_before >= 0 and commits > commits_before and relay_lag is not None:
                relay.append(relay_lag)
            commits_before = commits
            await asyncio.sleep(0.2)
    return relay


#: Per switch event of a time range: PostgreSQL's commit time of the
#: transaction that inserted its row (``track_commit_timestamp``) minus its
#: commit time in Redis (``committed_at_ms``, the node's clock), in ms.
_PERSIST_LAG = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
       max(lag) AS max, count(*) AS n
FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 - committed_at_ms AS lag
      FROM sync_events
      WHERE event_type = 'cycle_switched' AND committed_at_ms BETWEEN $1 AND $2) AS t
"""


async def _persist_lag(database_url: str, start_ms: int, end_ms: int) -> dict[str, float | None]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(_PERSIST_LAG, start_ms, end_ms)
    finally:
        await conn.close()
    return {k: (None if row[k] is None else float(row[k])) for k in ("p50", "p99", "max", "n")}


async def _drained(stack: Stack) -> None:
    """Wait until the stack's outbox is empty and PostgreSQL stops growing."""
    client = redis.asyncio.Redis.from_url(stack.primary.url)
    conn = await asyncpg.connect(stack.database_url)
    try:
        last, stable = -1, 0
        deadline = time.monotonic() + 300
        while stable < 4 and time.monotonic() < deadline:
            outbox = await client.xlen("sk:outbox")
            rows = await conn.fetchval("SELECT count(*) FROM sync_events")
            stable = stable + 1 if outbox == 0 and rows == last else 0
            last = rows
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
        await conn.close()


def _run_switch(stack: Stack, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    """One harness run of ``switch`` against ``stack``; its result (runs[0] of target A)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            "-m",
            "benchmarks",
            "switch",
            "--url",
            stack.url,
            "--server-pid",
            str(stack.server.pid),
            "--clients",
            str(clients),
            "--sessions",
            str(args.sessions),
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
            "--no-save",
            "--json",
            out.name,
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report: dict[str, Any] = json.loads(Path(out.name).read_text())
    run: dict[str, Any] = report["targets"]["A"]["runs"][0]
    return run


def _measure(
    stack: Stack, postgres: EmbeddedPostgres, clients: int, args: argparse.Namespace
) -> dict[str, Any]:
    backends = stack.backend_pids(postgres)
    cpu_before = _cpu_s(backends)
    stop = asyncio.Event()
    relay_lag: list[float] = []

    async def run() -> dict[str, Any]:
        nonlocal relay_lag
        sampling = asyncio.create_task(_sample_relay_lag(stack.url, stop))
        try:
            return await asyncio.to_thread(_run_switch, stack, clients, args)
        finally:
            stop.set()
            relay_lag = await sampling

    start_ms = time.time_ns() // 1_000_000
    started = time.monotonic()
    result = asyncio.run(run())
    elapsed = time.monotonic() - started
    end_ms = time.time_ns() // 1_000_000
    backend_cpu = _cpu_s(backends) - cpu_before
    switch = result["ops"]["switch"]
    rps = result["throughput_rps"] or 0.0
    cpu = result.get("cpu") or {}
    server_percent = cpu.get("server_percent")
    # Switches over the whole harness run (setup, warm-up, window, cleanup) are
    # not counted, so the backends' CPU is per measured switch over the run:
    # an upper bound; the server's is exact over the measured window.
    return {
        "level": stack.level,
        "clients": clients,
        "throughput_rps": rps,
        "p50_ms": switch["latency_ms"]["p50"],
        "p99_ms": switch["latency_ms"]["p99"],
        "errors": sum(switch["errors"].values()),
        "server_cpu_us_per_switch": (
            server_percent / 100 * 1e6 / rps if server_percent is not None and rps else None
        ),
        "host_percent": cpu.get("host_percent"),
        "others_percent": cpu.get("others_percent"),
        "backend_cpu_s": backend_cpu,
        "run_s": elapsed,
        "switches": switch["ok"],
        "relay_lag_s": relay_lag,
        "window_ms": [start_ms, end_ms],
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(rows: list[dict[str, Any]], clients: list[int]) -> list[str]:
    lines = [
        "| level | clients | switches/s | p50 ms | p99 ms | server CPU µs/switch | errors | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in clients:
        for level in LEVELS:
            mine = [r for r in rows if r["level"] == level and r["clients"] == c]
            if not mine:
                continue

            def med(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
                values = [r[key] for r in mine if r[key] is not None]
                return statistics.median(values) if values else None

            cpu = med("server_cpu_us_per_switch")
            lines.append(
                f"| {level} | {c} | {med('throughput_rps'):,.0f} | {med('p50_ms'):.2f} | "
                f"{med('p99_ms'):.2f} | {'?' if cpu is None else f'{cpu:,.0f}'} | "
                f"{sum(r['errors'] for r in mine)} | {len(mine)} |"
            )
    lines.append("")
    lines.append(
        "| level | clients | relay lag p50 / p99 / max s (sampled) | "
        "Redis commit → PostgreSQL commit p50 / p99 / max ms (every switch) |"
    )
    lines.append("|---|---:|---|---|")
    for c in clients:
        for level in LEVELS:
            mine = [r for r in rows if r["level"] == level and r["clients"] == c]
            if not mine:
                continue
            relay = [v for r in mine for v in r["relay_lag_s"]]
            lag = [r["persist_lag_ms"] for r in mine if r.get("persist_lag_ms")]
            p50 = statistics.median([x["p50"] for x in lag if x["p50"] is not None] or [0])
            p99 = statistics.median([x["p99"] for x in lag if x["p99"] is not None] or [0])
            worst = max([x["max"] for x in lag if x["max"] is not None] or [0])
            lines.append(
                f"| {level} | {c} | {_fmt(_quantile(relay, 0.5))} / "
                f"{_fmt(_quantile(relay, 0.99))} / {_fmt(max(relay, default=None))} "
                f"({len(relay)} samples) | {p50:,.0f} / {p99:,.0f} / {worst:,.0f} "
                f"(median of the runs' p50 and p99; max of all) |"
            )
    return lines


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run the A/B/C comparison; print the table; return 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.durability", description=__doc__)
    parser.add_argument("--clients", default="8,64", help="concurrencies, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="A,B,C repetitions")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--levels", default=",".join(LEVELS))
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    levels = [level for level in args.levels.split(",") if level]
    rows: list[dict[str, Any]] = []
    with EmbeddedPostgres(settings={"track_commit_timestamp": "on"}) as postgres:
        stacks = [Stack(level, postgres) for level in levels]
        try:
            for round_ in range(args.rounds):
                for c in clients:
                    for stack in stacks:
                        row = _measure(stack, postgres, c, args)
                        row["round"] = round_
                        rows.append(row)
                        print(
                            f"round {round_ + 1} {stack.level:8} {c:3} clients: "
                            f"{row['throughput_rps']:8,.0f}/s p50 {row['p50_ms']:.2f} ms "
                            f"p99 {row['p99_ms']:.2f} ms server "
                            f"{_fmt(row['server_cpu_us_per_switch'])} µs/switch "
                            f"host {row['host_percent']}% errors {row['errors']}",
                            flush=True,
                        )
            for stack in stacks:
                asyncio.run(_drained(stack))
                for row in rows:
                    if row["level"] == stack.level:
                        row["persist_lag_ms"] = asyncio.run(
                            _persist_lag(stack.database_url, *row["window_ms"])
                        )
        finally:
            for stack in stacks:
                stack.stop()
    for line in _summary(rows, clients):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
