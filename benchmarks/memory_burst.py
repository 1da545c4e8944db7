"""RSS of a server process before, during and after a burst of RECONNECTs of a big session.

Issue 14, item 6: one session with 1,000 participants and ~10 KB of metadata
(a ~360 KB state) whose history holds its last changes; sockets that resume it
from an old version ask the server to replay every missed change. This script
starts a private Redis and one ``synckairos serve`` process, builds that
session, then sends ``--rounds`` bursts of ``--sockets`` concurrent RECONNECTs
and prints the server's RSS (``VmRSS``) before, at its peak during, and after
the bursts, with what the sockets received.

Run: ``.venv/bin/python -m benchmarks.memory_burst`` (about a minute). Extra
settings of the server can be passed as ``--env NAME=VALUE``. The figures are
printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
from websockets.asyncio.client import connect

from benchmarks.procstat import rss_kb
from synckairos.dev.embedded import EmbeddedRedis, free_port

__all__ = ["main"]


def _big_session(participants: int, metadata_bytes: int) -> dict[str, Any]:
    return {
        "session_id": str(uuid.uuid4()),
        "sync_mode": "per_participant",
        "participants": [
            {
                "participant_id": str(uuid.uuid4()),
                "participant_index": i,
                "total_time_ms": 86_400_000,
            }
            for i in range(participants)
        ],
        "total_time_ms": 86_400_000,
        "metadata": {"pad": "x" * (metadata_bytes - 20)},
    }


class _Sampler:
    """Samples a process's RSS every ``interval_s`` in a thread; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid) or 0)
            time.sleep(self.interval_s)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def _resume(ws_url: str, since: int, epoch: str) -> tuple[int, int, str]:
    """One socket: connect, RECONNECT from ``since``; returns (messages, bytes, outcome)."""
    messages = size = 0
    async with connect(ws_url, max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "RECONNECT", "last_known_version": since, "epoch": epoch})
        )
        while True:
            raw = await asyncio.wait_for(ws.recv(), 60)
            messages += 1
            size += len(raw)
            message = json.loads(raw)
            if message["type"] == "RECONNECT_ACK":
                outcome = "replay" if message["recovered"] else "state_sync"
                return messages, size, outcome


async def _run(args: argparse.Namespace, url: str, pid: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        body = _big_session(args.participants, args.metadata_bytes)
        sid = body["session_id"]
        created = await http.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        print(f"state: {len(created.content):,} bytes")
        assert (await http.post(f"/v1/sessions/{sid}/start")).status_code == 200
        for _ in range(args.switches):
            switched = await http.post(f"/v1/sessions/{sid}/switch")
            assert switched.status_code == 200, switched.text
        epoch = ""
        ws_url = url.replace("http://", "ws://") + f"/ws?sessionId={sid}"
        async with connect(ws_url, max_size=None) as ws:
            for _ in range(2):
                message = json.loads(await ws.recv())
                epoch = message.get("epoch", epoch)
        await asyncio.sleep(2)
        baseline = rss_kb(pid) or 0
        print(f"RSS baseline (after setup, {args.switches} switches): {baseline / 1024:.1f} MB")
        with _Sampler(pid) as sampler:
            started = time.perf_counter()
            for _ in range(args.rounds):
                results = await asyncio.gather(
                    *(_resume(ws_url, 2, epoch) for _ in range(args.sockets))
                )
            elapsed = time.perf_counter() - started
        messages, size, outcome = results[0]
        print(
            f"burst: {args.rounds} x {args.sockets} RECONNECTs in {elapsed:.1f} s; per socket "
            f"{messages} messages, {size / 1e6:.1f} MB ({outcome})"
        )
        print(f"RSS peak during the burst: {sampler.peak_kb / 1024:.1f} MB")
        waited = 0
        for wait_s in (1, 5, 15):
            await asyncio.sleep(wait_s - waited)
            waited = wait_s
            print(f"RSS {wait_s:>2} s after the burst: {(rss_kb(pid) or 0) / 1024:.1f} MB")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, start Redis and a server, run the bursts, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1_000)
    parser.add_argument("--metadata-bytes", type=int, default=10_000)
    parser.add_argument("--switches", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    with EmbeddedRedis() as redis:
        port = free_port()
        env = {
            **os.environ,
            "SYNCKAIROS_REDIS_URL": redis.url,
            "SYNCKAIROS_RATE_LIMITS": "off",
            "SYNCKAIROS_LOG_LEVEL": "warning",
            **extra,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "serve", "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/ready", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            print(f"RSS at start: {(rss_kb(server.pid) or 0) / 1024:.1f} MB")
            asyncio.run(_run(args, url, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
