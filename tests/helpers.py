"""Test helpers shared by the API and store tests (no test doubles of Redis)."""

from __future__ import annotations

import uuid
from typing import Any

from synckairos.config import Settings

__all__ = ["FakeClock", "app_settings", "new_id", "session_body"]


def new_id() -> str:
    """A fresh UUID string."""
    return str(uuid.uuid4())


class FakeClock:
    """A controllable server clock in epoch ms; starts at a fixed instant."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms``."""
        self.now += ms


def session_body(
    mode: str = "per_participant",
    participants: int = 2,
    budget_ms: int = 60_000,
    **extra: Any,
) -> dict[str, Any]:
    """A valid CreateSession body; ``extra`` overrides or adds top-level fields."""
    people: list[dict[str, Any]] = [
        {"participant_id": new_id(), "participant_index": i, "total_time_ms": budget_ms}
        for i in range(participants)
    ]
    if mode == "per_group":
        groups = [new_id(), new_id()]
        for i, person in enumerate(people):
            person["group_id"] = groups[i % 2]
    body: dict[str, Any] = {
        "session_id": new_id(),
        "sync_mode": mode,
        "participants": people,
        "total_time_ms": budget_ms,
    }
    if mode == "per_cycle":
        body["time_per_cycle_ms"] = 10_000
    body.update(extra)
    return body


def app_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    """Settings of an in-process app on ``redis_url``: a fresh key prefix
    (``prefix`` + 8 hex digits), no rate limits, no scheduler, no GC
    unfreezing, then ``overrides``."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "key_prefix": f"{prefix}{new_id()[:8]}",
        "rate_limits": False,
        "scheduler": False,
        "gc_unfreeze_s": 0,
    }
    values.update(overrides)
    return Settings(**values)
