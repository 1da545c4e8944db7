"""Every input the API accepts is storable (issue 14): a property test through the real pipeline.

Hypothesis drives random sessions (mode, participants, budgets, increments,
and metadata drawn from all of JSON: NUL, lone surrogates, control
characters, huge integers, extreme floats, deep nesting; now and then an id
with a trailing newline) and random command
sequences at a real server; a real worker relays them into a real
PostgreSQL. The API may refuse an input (400): then nothing may change. For
what it accepts, every acknowledged version must land in PostgreSQL, read
back into a ``SessionState`` (what a restore does) with the metadata the
client sent, and there must be 0 dead letters.

Bounded: a fixed (derandomized) set of examples, a few seconds of requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synckairos.core.model import SessionState
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.redis.keys import audit_counter as counter_key
from tests.conftest import run_coroutine
from tests.helpers import session_body
from tests.test_audit_e2e import Stack

EXAMPLES = 60
MODES = ["per_participant", "per_cycle", "per_group", "global", "count_up"]

_ODD_CHARACTERS = st.sampled_from(["\x00", "\ud800", "\udfff", "\x01", "\u2028", "\uffff", "😀"])
_CHARACTERS = st.one_of(st.characters(exclude_categories=()), _ODD_CHARACTERS)
_TEXT = st.text(_CHARACTERS, max_size=8)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(),  # NaN and infinities too: not JSON, refused
    _TEXT,
)


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = {"n": value}
    return value


_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=16,
)
_METADATA = st.one_of(
    st.none(),
    st.dictionaries(_TEXT, _JSON, max_size=5),
    st.builds(lambda depth, leaf: {"deep": _nest(leaf, depth)}, st.integers(25, 40), _SCALARS),
)

_COMMAND = st.tuples(
    st.sampled_from(["start", "switch", "switch", "switch_to", "pause", "resume", "complete"]),
    st.integers(0, 3),
)
# Most sessions are started first, so the other commands have something to do.
_COMMANDS = st.builds(
    lambda start, rest: [("start", 0), *rest] if start else rest,
    st.integers(0, 4).map(bool),
    st.lists(_COMMAND, max_size=8),
)


@st.composite
def _sessions(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(MODES))
    participants = draw(st.integers(2 if mode == "per_group" else 1, 4))
    body = session_body(
        mode=mode,
        participants=participants,
        budget_ms=draw(st.integers(1_000, 86_400_000)),
        increment_ms=draw(st.integers(0, 60_000)),
    )
    metadata = draw(_METADATA)
    if metadata is not None:
        body["metadata"] = metadata
    if draw(st.integers(0, 9)) == 0:  # a regex "$" lets a trailing newline through
        body["participants"][0]["participant_id"] += "\n"
    return body


def _same(sent: Any, stored: Any) -> bool:
    """JSON equality: numbers by value (JSONB may spell 1e16 as 10000000000000000)."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        return sent.keys() == stored.keys() and all(_same(sent[k], stored[k]) for k in sent)
    if isinstance(sent, list) and isinstance(stored, list):
        return len(sent) == len(stored) and all(map(_same, sent, stored))
    if isinstance(sent, bool) or isinstance(stored, bool):
        return sent is stored
    if isinstance(sent, float) or isinstance(stored, float):
        return isinstance(stored, int | float) and float(sent) == float(stored)
    return bool(sent == stored)


@pytest.fixture
def stack(redis_server: EmbeddedRedis, audit_dsn: str) -> Iterator[Stack]:
    running = Stack(redis_server.url, audit_dsn)
    yield running
    running.stop()


async def _persisted(database_url: str) -> dict[str, dict[int, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT session_id::text AS sid, version, state_snapshot::text AS state"
            " FROM sync_events"
        )
    finally:
        await conn.close()
    found: dict[str, dict[int, str]] = {}
    for row in rows:
        versions = found.setdefault(row["sid"], {})
        assert row["version"] not in versions, f"two rows for {row['sid']} v{row['version']}"
        versions[row["version"]] = row["state"]
    return found


def test_every_version_the_api_acknowledges_lands_in_postgres(stack: Stack) -> None:
    acked: dict[str, int] = {}
    sent_metadata: dict[str, Any] = {}
    tally = {"accepted": 0, "refused": 0, "commands": 0}
    http = httpx.Client(base_url=stack.server.url, timeout=10, trust_env=False)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=_sessions(), commands=_COMMANDS)
    def drive(body: dict[str, Any], commands: list[tuple[str, int]]) -> None:
        sid = body["session_id"]
        raw = json.dumps(body).encode()  # lone surrogates become "\ud800" escapes
        response = http.post(
            "/v1/sessions", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code in (201, 400), response.text
        if response.status_code == 400:
            tally["refused"] += 1
            assert response.json()["error"]["code"] == "VALIDATION_ERROR"
            assert http.get(f"/v1/sessions/{sid}").status_code == 404
            return
        tally["accepted"] += 1
        acked[sid] = response.json()["data"]["version"]
        sent_metadata[sid] = body.get("metadata")
        people = [p["participant_id"] for p in body["participants"]]
        for name, pick in commands:
            payload: dict[str, Any] = {}
            if name == "switch_to":
                name, payload = "switch", {"next_participant_id": people[pick % len(people)]}
            answer = http.post(f"/v1/sessions/{sid}/{name}", json=payload)
            assert answer.status_code < 500, answer.text
            tally["commands"] += 1
            if answer.status_code == 200:
                acked[sid] = max(acked[sid], answer.json()["data"]["version"])

    try:
        drive()
    finally:
        http.close()

    deadline = time.monotonic() + 60
    while True:
        persisted = run_coroutine(_persisted(stack.database_url))
        missing = {
            sid: sorted(set(range(1, n + 1)) - set(persisted.get(sid, {})))
            for sid, n in acked.items()
        }
        missing = {sid: versions for sid, versions in missing.items() if versions}
        if not missing:
            break
        assert time.monotonic() < deadline, f"acknowledged versions never persisted: {missing}"
        time.sleep(0.25)
    for sid, versions in persisted.items():
        if sid not in acked:
            continue
        state = msgspec.json.decode(versions[1].encode(), type=SessionState)  # as a restore reads
        assert _same(sent_metadata[sid], state.metadata), (sent_metadata[sid], state.metadata)
    client = redis.Redis.from_url(stack.redis_url)
    dead = int(client.get(counter_key(stack.prefix, "dead_lettered")) or 0)
    letters = client.zcard(f"{stack.prefix}:dramatiq:synckairos_audit.XQ")
    client.close()
    assert dead == 0 and letters == 0, f"{dead} dead-lettered, {letters} dead letters"
    # The generator reaches both sides of the line.
    assert tally["accepted"] >= EXAMPLES // 4, tally
    assert tally["refused"] >= 1, tally
    print(
        f"\naudit fuzz: {tally['accepted']} sessions accepted, {tally['refused']} refused, "
        f"{tally['commands']} commands, {sum(acked.values())} acknowledged versions, all persisted"
    )
