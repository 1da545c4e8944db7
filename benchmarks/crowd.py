"""A crowd behind one address against the default rate limits (issue 15).

An exam hall or a LAN party puts hundreds of players behind one NAT address.
This script starts a private Redis and one ``synckairos serve`` on **default
settings** (rate limits on; ``--env NAME=VALUE`` changes one), or measures
``--url``, and runs four phases:

1. **crowd**: ``--sockets`` WebSocket clients from 127.0.0.1 over
   ``--sessions`` sessions, all opened at once (a whole hall joining the
   moment the exam starts, or reconnecting after a network blip);
2. **flood, same address**: one client behind that address opening
   ``--flood-rate`` sockets a second (each closed once answered) for
   ``--flood-s`` seconds: when it is first refused, and the rate it is held to;
3. **flood, its own address** (127.0.0.2): the same from a fresh budget;
4. **backend creates**: one client creating ``--create-rate`` sessions a second
   for ``--create-s`` seconds (a backend creating a session per game), then
   one creating ``--greedy-rate`` a second for ``--greedy-s`` seconds.

Run: ``.venv/bin/python -m benchmarks.crowd`` (about a minute with the
defaults). The figures are printed, never asserted: they depend on the
machine. ``tests/test_crowd.py`` runs phases 1 and 2 as a functional test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from synckairos.dev.embedded import EmbeddedRedis, free_port

__all__ = [
    "Flood",
    "close_all",
    "create_paced",
    "flood",
    "main",
    "new_session",
    "open_crowd",
    "open_socket",
    "ping_all",
]

#: What one connection attempt came to.
ACCEPTED, LIMITED, FAILED = "accepted", "limited", "failed"


def new_session() -> dict[str, Any]:
    """A create body: two participants, 10 minutes each."""
    return {
        "session_id": str(uuid.uuid4()),
        "sync_mode": "per_participant",
        "participants": [
            {"participant_id": str(uuid.uuid4()), "participant_index": i, "total_time_ms": 600_000}
            for i in range(2)
        ],
        "total_time_ms": 1_200_000,
    }


async def open_socket(
    ws_url: str, session_id: str, source: str = "127.0.0.1", timeout_s: float = 30.0
) -> tuple[str, ClientConnection | None, str]:
    """Open ``/ws`` from ``source``; (outcome, the open socket when accepted, close reason).

    Accepted means the server's ``CONNECTED`` arrived; limited means a 1008
    close whose reason is the connection rate limit.
    """
    try:
        ws = await connect(
            f"{ws_url}/ws?sessionId={session_id}",
            local_addr=(source, 0),
            open_timeout=timeout_s,
            ping_interval=None,
            close_timeout=2,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        return FAILED, None, type(exc).__name__
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    except ConnectionClosed as exc:
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        code = exc.rcvd.code if exc.rcvd is not None else 0
        limited = code == 1008 and "rate limit" in reason
        return (LIMITED if limited else FAILED), None, reason
    except TimeoutError:
        await ws.close()
        return FAILED, None, "no first message"
    if first.get("type") != "CONNECTED":
        await ws.close()
        return FAILED, None, str(first.get("type"))
    return ACCEPTED, ws, ""


async def open_crowd(
    ws_url: str, session_ids: list[str], sockets: int, source: str = "127.0.0.1"
) -> tuple[list[str], list[ClientConnection], float]:
    """Open ``sockets`` sockets at once over ``session_ids``; (outcomes, open sockets, seconds)."""
    started = time.perf_counter()
    results = await asyncio.gather(
        *(open_socket(ws_url, session_ids[i % len(session_ids)], source) for i in range(sockets))
    )
    elapsed = time.perf_counter() - started
    return [r[0] for r in results], [r[1] for r in results if r[1] is not None], elapsed


async def ping_all(sockets: list[ClientConnection], timeout_s: float = 30.0) -> int:
    """Send each socket a ``PING``; how many answered ``PONG`` (still open and served)."""

    async def one(ws: ClientConnection) -> bool:
        try:
            await ws.send(json.dumps({"type": "PING", "t0": 1}))
            async with asyncio.timeout(timeout_s):
                while True:
                    if json.loads(await ws.recv()).get("type") == "PONG":
                        return True
        except (ConnectionClosed, TimeoutError):
            return False

    return sum(await asyncio.gather(*(one(ws) for ws in sockets)))


async def close_all(sockets: list[ClientConnection]) -> None:
    """Close every socket (errors ignored)."""
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


@dataclass
class Flood:
    """What one client opening sockets at a fixed rate met."""

    rate: float
    outcomes: list[tuple[float, str]] = field(default_factory=list)
    """(seconds since the flood began, outcome) per attempt, in launch order."""
    first_refusal_reason: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for _, o in self.outcomes if o == outcome)

    def first_refusal(self) -> tuple[int, float] | None:
        """(attempt number from 1, seconds) of the first refused attempt, or None."""
        for i, (at, outcome) in enumerate(self.outcomes):
            if outcome == LIMITED:
                return i + 1, at
        return None

    def accepted_rate(self, after_s: float) -> float:
        """Accepted sockets per second among the attempts launched after ``after_s``."""
        late = [(at, o) for at, o in self.outcomes if at >= after_s]
        if not late:
            return 0.0
        span = max(late[-1][0] - after_s, 1e-9)
        return sum(1 for _, o in late if o == ACCEPTED) / span


async def flood(
    ws_url: str,
    session_id: str,
    rate: float,
    duration_s: float,
    source: str = "127.0.0.1",
    stop_when_refused: bool = False,
) -> Flood:
    """Open one socket every ``1/rate`` s for ``duration_s``, closing each once answered."""
    result = Flood(rate)
    started = time.perf_counter()
    refused = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    slots: list[tuple[float, str]] = []

    async def attempt(index: int, at: float) -> None:
        outcome, ws, reason = await open_socket(ws_url, session_id, source)
        slots[index] = (at, outcome)
        if ws is not None:
            await ws.close()
        if outcome == LIMITED and not result.first_refusal_reason:
            result.first_refusal_reason = reason
            refused.set()

    i = 0
    while True:
        at = i / rate
        if at >= duration_s or (stop_when_refused and refused.is_set()):
            break
        delay = started + at - time.perf_counter()
        if delay > 0:
            if stop_when_refused:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(refused.wait(), delay)
                continue  # check again: refused, or due now
            await asyncio.sleep(delay)
        slots.append((at, FAILED))
        tasks.append(asyncio.create_task(attempt(i, at)))
        i += 1
    await asyncio.gather(*tasks)
    result.outcomes = slots
    return result


async def create_paced(
    base_url: str, rate: float, duration_s: float, in_flight: int = 32
) -> tuple[dict[int, int], float]:
    """Create one session every ``1/rate`` s for ``duration_s``; (count per status, rate sent).

    At most ``in_flight`` requests are outstanding (a pool with thousands of
    waiters spends its time managing them); when the client cannot keep up,
    the rate it reached is what the second value says.
    """
    statuses: dict[int, int] = {}
    slots = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

        async def one() -> None:
            try:
                status = (await http.post("/v1/sessions", json=new_session())).status_code
            except httpx.HTTPError:
                status = 0
            finally:
                slots.release()
            statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        i = 0
        while i / rate < duration_s:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one()))
            i += 1
        sent_rate = i / max(time.perf_counter() - started, 1e-9)
        await asyncio.gather(*tasks)
    return statuses, sent_rate


def _describe_flood(name: str, result: Flood) -> None:
    first = result.first_refusal()
    when = (
        f"first refused at attempt {first[0]} ({first[1]:.1f} s in)" if first else "never refused"
    )
    late = result.accepted_rate(after_s=(first[1] if first else 0.0))
    print(
        f"{name}: {len(result.outcomes)} attempts at {result.rate:g}/s; "
        f"{result.count(ACCEPTED)} accepted, {result.count(LIMITED)} refused (1008), "
        f"{result.count(FAILED)} failed; {when}; accepted {late:.1f}/s after that"
    )
    if result.first_refusal_reason:
        print(f"  close reason: {result.first_refusal_reason!r}")


async def _run(args: argparse.Namespace, url: str) -> None:
    ws_url = url.replace("http", "ws", 1)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        session_ids = []
        for _ in range(args.sessions):
            body = new_session()
            response = await http.post("/v1/sessions", json=body)
            response.raise_for_status()
            session_ids.append(body["session_id"])
    outcomes, sockets, elapsed = await open_crowd(ws_url, session_ids, args.sockets)
    print(
        f"crowd: {args.sockets} sockets from 127.0.0.1 at once over {args.sessions} sessions: "
        f"{outcomes.count(ACCEPTED)} accepted, {outcomes.count(LIMITED)} refused, "
        f"{outcomes.count(FAILED)} failed, all answered in {elapsed:.2f} s"
    )
    try:
        same = await flood(ws_url, session_ids[0], args.flood_rate, args.flood_s)
        _describe_flood("flood from 127.0.0.1 (behind the crowd's address)", same)
        print(
            f"crowd sockets still served after the flood: {await ping_all(sockets)}/{len(sockets)}"
        )
        other = await flood(ws_url, session_ids[0], args.flood_rate, args.flood_s, "127.0.0.2")
        _describe_flood("flood from 127.0.0.2 (its own address)", other)
    finally:
        await close_all(sockets)
    for rate, duration in ((args.create_rate, args.create_s), (args.greedy_rate, args.greedy_s)):
        if duration <= 0:
            continue
        statuses, sent = await create_paced(url, rate, duration)
        print(
            f"creates from one client at {rate:g}/s (sent {sent:.0f}/s) for {duration:g} s: "
            + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
        )


def main(argv: list[str] | None = None) -> None:
    """Parse the options, start Redis and a server (unless ``--url``), print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="measure this server instead of a private one")
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--flood-rate", type=float, default=50.0)
    parser.add_argument("--flood-s", type=float, default=30.0)
    parser.add_argument("--create-rate", type=float, default=50.0)
    parser.add_argument("--create-s", type=float, default=30.0)
    parser.add_argument("--greedy-rate", type=float, default=200.0)
    parser.add_argument("--greedy-s", type=float, default=15.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args(argv)
    if args.url:
        asyncio.run(_run(args, args.url.rstrip("/")))
        return
    extra = dict(item.split("=", 1) for item in args.env)
    with EmbeddedRedis() as redis:
        port = free_port()
        env = {**os.environ, "SYNCKAIROS_REDIS_URL": redis.url, **extra}
        env = {k: v for k, v in env.items() if not k.startswith("SYNCKAIROS_RATE_LIMIT")} | extra
        env.setdefault("SYNCKAIROS_LOG_LEVEL", "warning")
        server = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "serve", "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                try:
                    if httpx.get(f"{url}/ready", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            print("server: synckairos serve on default settings" + (f" + {extra}" if extra else ""))
            asyncio.run(_run(args, url))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
