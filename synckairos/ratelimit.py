"""Rate limits: GCRA limiters in Redis (shared by every node) and in memory (per socket).

The algorithm is GCRA (generic cell rate algorithm): a limit of ``n`` per
``period`` admits a burst of ``n``, then one hit every ``period / n``. One Lua
call per hit (``store/lua/rate_limit.lua``) checks and records it atomically
against Redis's clock; a denied hit records nothing. The per-connection
limiter of WebSocket messages runs in memory with the same rule: a socket
lives on one node.

A limit is written ``"<n>/<unit>"`` with unit ``s``, ``min`` or ``h``
(``SYNCKAIROS_RATE_LIMIT_*`` settings). When Redis cannot be reached the
limiter lets the hit through (and counts it): the operation behind it fails or
retries on its own, and a limiter must never be why a healthy request fails.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from synckairos import metrics
from synckairos.config import Rate, parse_rate

__all__ = ["LocalLimiter", "Rate", "RateLimiter", "Verdict", "parse_rate"]

logger = logging.getLogger(__name__)

_SCRIPT = (Path(__file__).parent / "store" / "lua" / "rate_limit.lua").read_text()


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


class RateLimiter:
    """Limiters shared by all nodes, in Redis under ``<prefix>:rl:``."""

    def __init__(self, client: aioredis.Redis, prefix: str = "sk") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_SCRIPT)

    async def hit(self, bucket: str, identity: str, rate: Rate) -> Verdict:
        """Record one hit of ``identity`` on ``bucket``; a denied hit records nothing."""
        key = f"{self.prefix}:rl:{bucket}:{identity}"
        try:
            reply: Any = await self._script(keys=[key], args=[rate.limit, rate.period_ms])
        except (redis_errors.RedisError, OSError) as exc:
            metrics.RATE_LIMIT_ERRORS.inc()
            logger.warning("rate limiter unavailable (%s); letting %s through", exc, bucket)
            return Verdict(True, rate.limit, rate.limit, 0, 0)
        allowed = int(reply[0]) == 1
        if not allowed:
            metrics.RATE_LIMITED.labels(bucket).inc()
        return Verdict(allowed, rate.limit, int(reply[1]), int(reply[2]), int(reply[3]))


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
