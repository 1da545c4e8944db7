"""``RedisRateLimiter``: GCRA limiters in Redis, shared by every node.

One Lua call per hit (``lua/rate_limit.lua``, the GCRA of ``lua/gcra.lua``,
which the commit script splices in too) checks and records it atomically
against Redis's clock; a denied hit records nothing. When Redis cannot be
reached the limiter lets the hit through (and counts it): the operation
behind it fails or retries on its own, and a limiter must never be why a
healthy request fails.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from synckairos import metrics
from synckairos.config import Rate
from synckairos.ratelimit import Verdict
from synckairos.redis.keys import Keys
from synckairos.redis.scripts import SCRIPTS

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger(__name__)


class RedisRateLimiter:
    """Limiters shared by all nodes, in Redis under ``<prefix>:rl:``."""

    def __init__(self, client: aioredis.Redis, prefix: str = "sk") -> None:
        self.client = client
        self.keys = Keys(prefix)
        self._script = client.register_script(SCRIPTS["rate_limit"])

    async def hit(self, bucket: str, identity: str, rate: Rate) -> Verdict:
        """Record one hit of ``identity`` on ``bucket``; a denied hit records nothing."""
        key = self.keys.limiter(bucket, identity)
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
