"""Rate limits: the limiter contract, its verdict, and the in-memory GCRA (per socket).

The algorithm is GCRA (generic cell rate algorithm): a limit of ``n`` per
``period`` admits a burst of ``n``, then one hit every ``period / n``. The
shared limiters (every node counts against them) are ``RedisRateLimiter`` in
``synckairos.redis.ratelimit``: one Lua call per hit, against Redis's clock;
a denied hit records nothing. The per-connection limiter of WebSocket
messages runs in memory with the same rule (``LocalLimiter``): a socket lives
on one node.

A limit is written ``"<n>/<unit>"`` with unit ``s``, ``min`` or ``h``
(``SYNCKAIROS_RATE_LIMIT_*`` settings). When Redis cannot be reached the
limiter lets the hit through (and counts it): the operation behind it fails or
retries on its own, and a limiter must never be why a healthy request fails.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import msgspec

from synckairos.config import Rate, parse_rate

__all__ = [
    "LocalLimiter",
    "MemoryRateLimiter",
    "Rate",
    "RateLimiter",
    "Verdict",
    "gcra",
    "parse_rate",
]


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of one hit."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` (IETF draft) and, when denied, ``Retry-After`` (seconds)."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_ms / 1000)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_ms / 1000)))
        return headers


class RateLimiter(Protocol):
    """Limiters shared by every node (``synckairos.redis.ratelimit.RedisRateLimiter``)."""

    async def hit(self, bucket: str, identity: str, rate: Rate) -> Verdict:
        """Record one hit of ``identity`` on ``bucket``; a denied hit records nothing.

        Never raises: when the limiter cannot be reached, the hit is let through.
        """
        ...


def gcra(tat: float, now: float, rate: Rate) -> tuple[Verdict, float | None]:
    """One hit at ``now`` on a limiter at ``tat`` (ms): the rule of ``redis/lua/gcra.lua``.

    Returns:
        The verdict, and the new TAT to store (None: denied, store nothing).
    """
    interval = rate.period_ms / rate.limit
    tat = max(tat, now)
    new_tat = tat + interval
    allow_at = new_tat - rate.period_ms
    if now < allow_at:
        return Verdict(False, rate.limit, 0, math.ceil(allow_at - now), math.ceil(tat - now)), None
    remaining = math.floor((rate.period_ms - (new_tat - now)) / interval)
    return Verdict(True, rate.limit, remaining, 0, math.ceil(new_tat - now)), new_tat


class MemoryRateLimiter:
    """The ``RateLimiter`` contract in one process's memory (a test double).

    Same rule and verdicts as ``RedisRateLimiter``; ``clock`` (epoch ms)
    stands for Redis's ``TIME``.
    """

    def __init__(self, clock: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.clock = clock
        self._tats: dict[tuple[str, str], float] = {}

    async def hit(self, bucket: str, identity: str, rate: Rate) -> Verdict:
        """Record one hit of ``identity`` on ``bucket``; a denied hit records nothing."""
        now = float(int(self.clock()))
        verdict, new_tat = gcra(self._tats.get((bucket, identity), 0.0), now, rate)
        if new_tat is not None:
            self._tats[(bucket, identity)] = new_tat
        return verdict


class LocalLimiter:
    """The same GCRA rule in memory, for one connection."""

    __slots__ = ("_interval", "_tat", "rate")

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._interval = rate.period_ms / rate.limit
        self._tat = 0.0

    def hit(self, now_ms: float | None = None) -> bool:
        """Record one hit; False (and nothing recorded) when over the limit."""
        now = time.monotonic() * 1000 if now_ms is None else now_ms
        new_tat = max(self._tat, now) + self._interval
        if now < new_tat - self.rate.period_ms:
            return False
        self._tat = new_tat
        return True
