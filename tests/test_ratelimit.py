"""The ``RateLimiter`` contract over ``MemoryRateLimiter`` and ``RedisRateLimiter``."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from synckairos.config import Rate
from synckairos.ratelimit import MemoryRateLimiter, RateLimiter, gcra
from synckairos.redis.ratelimit import RedisRateLimiter
from tests.helpers import new_id


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter()
    server = request.getfixturevalue("redis_server")
    return RedisRateLimiter(aioredis.Redis.from_url(server.url), prefix=f"r{new_id()[:8]}")


async def test_a_burst_is_admitted_then_refused_with_a_retry_time(limiter: RateLimiter):
    rate = Rate(3, 60_000)
    identity = new_id()
    verdicts = [await limiter.hit("create", identity, rate) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert 19_000 < verdicts[3].retry_after_ms <= 20_000
    assert verdicts[3].headers()["Retry-After"] == "20"


async def test_identities_and_buckets_are_counted_apart(limiter: RateLimiter):
    rate = Rate(1, 60_000)
    identity = new_id()
    assert (await limiter.hit("create", identity, rate)).allowed
    assert (await limiter.hit("get", identity, rate)).allowed
    assert (await limiter.hit("create", new_id(), rate)).allowed
    assert not (await limiter.hit("create", identity, rate)).allowed


def test_the_rule_refills_one_hit_per_interval():
    rate = Rate(2, 1_000)
    verdict, tat = gcra(0.0, 10_000.0, rate)
    assert verdict.allowed and tat == 10_500.0
    verdict, tat = gcra(10_500.0, 10_000.0, rate)
    assert verdict.allowed and tat == 11_000.0 and verdict.remaining == 0
    verdict, tat = gcra(11_000.0, 10_000.0, rate)
    assert not verdict.allowed and tat is None and verdict.retry_after_ms == 500
    assert gcra(11_000.0, 10_500.0, rate)[0].allowed
