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
from typing import Protocol

import msgspec

from synckairos.config import Rate, parse_rate

__all__ = ["LocalLimiter", "Rate", "RateLimiter", "Verdict", "parse_rate"]


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
