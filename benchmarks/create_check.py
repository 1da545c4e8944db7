"""A/B: the cost of the archive check on a create (issue 14).

With an audit store configured, ``Node.create`` asks PostgreSQL whether the id
has a live incarnation before it commits (one indexed query). This starts a
private Redis and PostgreSQL, two ``synckairos serve`` processes on them (A
without ``SYNCKAIROS_DATABASE_URL``, B with it; no worker: creates only), and
sends creates one at a time, alternating A and B so both see the same machine
load, then prints p50/p99/mean of each::

    python -m benchmarks.create_check [creates per side, default 200] [concurrency]

Without a concurrency (or 1): sequential, the added latency of one create.
With a concurrency c > 1: bursts of creates from c concurrent clients, the
sides taking turns (A, B, A, B), to see whether the archive's connection pool
limits create throughput; prints creates/s and latency per burst.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

import httpx

from synckairos.audit.migrate import migrate
from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port


def _body() -> dict[str, object]:
    return {
        "session_id": str(uuid.uuid4()),
        "sync_mode": "per_participant",
        "total_time_ms": 60_000,
        "participants": [
            {"participant_id": str(uuid.uuid4()), "participant_index": i, "total_time_ms": 60_000}
            for i in range(2)
        ],
    }


def _serve(redis_url: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "synckairos", "serve", "--port", str(port)],
        env={
            **os.environ,
            "SYNCKAIROS_REDIS_URL": redis_url,
            "SYNCKAIROS_LOG_LEVEL": "warning",
            "SYNCKAIROS_RATE_LIMITS": "off",
            **env,
        },
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=0.5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{name}: n={len(samples)} p50={p50:.2f} ms p99={p99:.2f} ms "
        f"mean={statistics.fmean(samples):.2f} ms"
    )


async def _measure(urls: dict[str, str], creates: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.AsyncClient(base_url=url, timeout=10) for name, url in urls.items()}
    try:
        for round_ in range(creates + 20):  # 20 warm-up rounds, not counted
            for name, http in clients.items():
                started = time.perf_counter()
                response = await http.post("/v1/sessions", json=_body())
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 201, response.text
                if round_ >= 20:
                    samples[name].append(elapsed)
    finally:
        for http in clients.values():
            await http.aclose()
    return samples


async def _burst(url: str, creates: int, concurrency: int) -> tuple[float, list[float]]:
    """``creates`` creates from ``concurrency`` clients; returns (creates/s, latencies)."""
    samples: list[float] = []
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)
    ) as http:

        async def client(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                response = await http.post("/v1/sessions", json=_body())
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 201, response.text

        began = time.perf_counter()
        await asyncio.gather(*(client(creates // concurrency) for _ in range(concurrency)))
        return len(samples) / (time.perf_counter() - began), samples


async def _bursts(urls: dict[str, str], creates: int, concurrency: int) -> None:
    for url in urls.values():
        await _burst(url, 100, concurrency)  # warm-up
    for round_ in range(2):
        for name, url in urls.items():
            rate, samples = await _burst(url, creates, concurrency)
            print(f"round {round_ + 1} {_summary(name, samples)} {rate:.0f} creates/s")


def main() -> None:
    creates = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with EmbeddedRedis() as redis_server, EmbeddedPostgres() as postgres:
        asyncio.run(migrate(postgres.url))
        prefix = f"ab{uuid.uuid4().hex[:6]}"
        plain, plain_url = _serve(redis_server.url, {"SYNCKAIROS_KEY_PREFIX": prefix})
        checked, checked_url = _serve(
            redis_server.url,
            {"SYNCKAIROS_KEY_PREFIX": prefix, "SYNCKAIROS_DATABASE_URL": postgres.url},
        )
        urls = {"A no archive": plain_url, "B archive check": checked_url}
        try:
            if concurrency > 1:
                asyncio.run(_bursts(urls, creates, concurrency))
                return
            samples = asyncio.run(_measure(urls, creates))
        finally:
            for process in (plain, checked):
                process.terminate()
                process.wait(timeout=10)
    for name, values in samples.items():
        print(_summary(name, values))
    a, b = samples.values()
    print(
        f"added by the check: p50 {statistics.median(b) - statistics.median(a):+.2f} ms, "
        f"mean {statistics.fmean(b) - statistics.fmean(a):+.2f} ms"
    )


if __name__ == "__main__":
    main()
