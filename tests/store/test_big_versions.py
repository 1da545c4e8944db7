"""The Lua scripts at versions a restore assigns (~1.8e15: wall clock in µs).

A restore jumps a session's version to ``max(persisted + 1, now_us)`` (see
``Node.restore``), so every path that handles versions must stay exact above
2**31 and below 2**53. Lua's ``tostring`` (and ``..``) prints such a number as
``1.8e+15``, which is not a stream id and not an integer: these tests drive
commit, replay, the idempotent retry and delete at such versions on a real
Redis.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from synckairos.core import CreateSession, SessionState, Start, Switch
from synckairos.exceptions import Conflict
from synckairos.node import Node, Preconditions
from synckairos.redis.store import RedisStore
from synckairos.store import Change
from tests.helpers import FakeClock, session_body

#: A restored session's version: an instant in µs (above 2**31, below 2**53),
#: with 16 significant digits so that no float formatting can keep it exact.
BIG = 1_800_000_000_123_457


def _spec(**extra: Any) -> CreateSession:
    return msgspec.convert(session_body(**extra), CreateSession)


async def _jumped(store: RedisStore, clock: FakeClock) -> tuple[Node, str, str]:
    """A started session (version 2) moved to version ``BIG`` as a restore does."""
    node = Node(store, clock=clock)
    spec = _spec()
    await node.create(spec)
    clock.advance(10)
    await node.execute(spec.session_id, Start())
    stored = await store.load(spec.session_id)
    assert stored is not None
    state = msgspec.json.decode(stored.state_json, type=SessionState)
    jumped = msgspec.structs.replace(state, version=BIG, recovered=True)
    state_json = msgspec.json.encode(jumped)
    change_json = b'{"version":%d,"event":{"type":"session_recovered"},"state":%s,"ts":%d}' % (
        BIG,
        state_json,
        clock.now,
    )
    result = await store.commit(
        Change(
            spec.session_id,
            2,
            state_json,
            change_json,
            "session_recovered",
            jumped.deadline_ms,
            False,
            new_version=BIG,
            expected_epoch=stored.epoch,
        )
    )
    assert result.committed and result.epoch == stored.epoch
    return node, spec.session_id, stored.epoch


async def test_commits_above_2_to_the_31_keep_exact_versions_everywhere(store: RedisStore):
    clock = FakeClock()
    node, sid, epoch = await _jumped(store, clock)
    for _ in range(3):
        clock.advance(100)
        result = await node.execute(sid, Switch())
    assert result.transition.state.version == BIG + 3 and result.epoch == epoch
    keys = store.keys(sid)
    assert await store.client.hget(keys.state, "v") == str(BIG + 3).encode()
    ids = [entry_id for entry_id, _ in await store.client.xrange(keys.history)]
    assert ids == [b"2-0"] + [f"{v}-0".encode() for v in range(BIG, BIG + 4)]
    outbox = await store.client.xrange(store.outbox_key)
    mine = [fields[b"v"] for _, fields in outbox if fields[b"sid"] == sid.encode()]
    assert mine == [b"1", b"2"] + [str(v).encode() for v in range(BIG, BIG + 4)]
    state, _ = await node.load(sid)
    assert state.version == BIG + 3


async def test_replay_from_a_version_above_2_to_the_31(store: RedisStore):
    clock = FakeClock()
    node, sid, epoch = await _jumped(store, clock)
    for _ in range(3):
        clock.advance(100)
        await node.execute(sid, Switch())
    history = await store.read_since(sid, BIG)  # what RECONNECT {last_known_version} reads
    assert history.version == BIG + 3 and history.epoch == epoch
    assert [v for v, _ in history.changes] == [BIG + 1, BIG + 2, BIG + 3]
    assert [msgspec.json.decode(c)["version"] for _, c in history.changes] == [
        BIG + 1,
        BIG + 2,
        BIG + 3,
    ]
    assert (await store.read_since(sid, BIG + 3)).changes == []


async def test_a_retried_commit_above_2_to_the_31_is_recognised(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
):
    clock = FakeClock()
    node, sid, epoch = await _jumped(store, clock)
    state, _ = await node.load(sid)
    moved = msgspec.structs.replace(state, version=BIG + 1)
    state_json = msgspec.json.encode(moved)
    change = Change(
        sid,
        BIG,
        state_json,
        b'{"version":%d,"event":{"type":"x"},"state":%s,"ts":1}' % (BIG + 1, state_json),
        "x",
        moved.deadline_ms,
        False,
        expected_epoch=epoch,
    )
    # The same commit token on both attempts: the second is a retry after a lost reply.
    monkeypatch.setattr("synckairos.redis.store.secrets.token_hex", lambda n: "ab" * n)
    first = await store.commit(change)
    again = await store.commit(change)
    assert first.committed and again.committed and again.epoch == epoch
    ids = [entry_id for entry_id, _ in await store.client.xrange(store.keys(sid).history)]
    assert ids.count(f"{BIG + 1}-0".encode()) == 1
    assert await store.client.hget(store.keys(sid).state, "v") == str(BIG + 1).encode()


async def test_delete_and_preconditions_above_2_to_the_31(store: RedisStore):
    clock = FakeClock()
    node, sid, _ = await _jumped(store, clock)
    clock.advance(100)
    switched = await node.execute(sid, Switch(), Preconditions(expected_version=BIG))
    assert switched.transition.state.version == BIG + 1
    with pytest.raises(Conflict) as stale:
        await node.execute(sid, Switch(), Preconditions(expected_version=BIG))
    assert stale.value.details["actual_version"] == BIG + 1
    with pytest.raises(Conflict) as refused:
        await store.delete(sid, expected_version=2)
    assert refused.value.details["actual_version"] == BIG + 1
    deleted = await store.delete(sid, expected_version=BIG + 1)
    assert deleted is not None and deleted.version == BIG + 1
    last = (await store.client.xrevrange(store.outbox_key, count=1))[0][1]
    assert last[b"t"] == b"session_deleted" and last[b"v"] == str(BIG + 1).encode()
