"""Conformance with the Node.js SyncKairos, as its clients see it (issue 15).

One real server process and one real audit worker per test, on **default**
settings (rate limits on, every limit at its default; only the addresses of
Redis and PostgreSQL and a key prefix are set), and a client written to the
Node.js server's documented API: its response schemas (``SyncState``,
``SyncParticipant``, ``SwitchCycleResult``, the error envelope), its socket
protocol and its HTTP codes. Each test is one row of the issue's table
(docs/compatibility.md names the test of each row).

The Node.js server's schemas are Zod objects; they are written here as msgspec
Structs with the same meaning: a Zod ``.optional()`` field may be absent but
not null (``T | UnsetType = UNSET``), a ``.nullable()`` one must be present
and may be null (``T | None`` without default), and unknown keys are
ignored (Zod strips them: our extensions pass). Decoding a response with
the Struct is validating it against the schema.

Each test stays within the default rate limits (a few creates and sockets).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from msgspec import UNSET, UnsetType
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from synckairos import __version__
from synckairos.audit.migrate import migrate
from synckairos.core.model import SessionState
from synckairos.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.conftest import run_coroutine
from tests.helpers import new_id, session_body

# ------------------------------------------------------- the Node.js schemas

#: The codes docs/compatibility.md documents for validation ``details``.
VALIDATION_CODES = {
    "invalid_json",
    "invalid_type",
    "invalid_format",
    "invalid_value",
    "too_small",
    "too_big",
    "required",
    "duplicate",
    "unrecognized",
}

IsoInstant = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")]
Mode = Literal["per_participant", "per_cycle", "per_group", "global", "count_up"]
StatusName = Literal["pending", "running", "paused", "expired", "completed", "cancelled"]


class NodeParticipant(msgspec.Struct, frozen=True):
    """``SyncParticipantResponseSchema`` (src/api/schemas/session.ts)."""

    participant_id: str
    participant_index: int
    total_time_ms: int
    time_used_ms: int
    time_remaining_ms: int
    cycle_count: int
    is_active: bool
    has_expired: bool
    group_id: str | UnsetType = UNSET  # z.string().optional(): absent, never null


class NodeSyncState(msgspec.Struct, frozen=True):
    """``SyncStateResponseSchema``."""

    session_id: str
    sync_mode: Mode
    status: StatusName
    version: int
    participants: list[NodeParticipant]
    active_participant_id: str | None  # nullable
    total_time_ms: int
    time_per_cycle_ms: int | None  # nullable
    cycle_started_at: IsoInstant | None
    session_started_at: IsoInstant | None
    session_completed_at: IsoInstant | None
    created_at: IsoInstant
    updated_at: IsoInstant
    increment_ms: int | UnsetType = UNSET  # optional
    max_time_ms: int | UnsetType = UNSET  # optional


class NodeSessionResponse(msgspec.Struct, frozen=True):
    """``SessionResponseSchema``: ``{data: SyncState}``."""

    data: NodeSyncState


class NodeSwitchResult(msgspec.Struct, frozen=True):
    """``SwitchCycleResultSchema``."""

    session_id: str
    active_participant_id: str
    cycle_started_at: IsoInstant
    participants: list[NodeParticipant]
    status: str
    expired_participant_id: str | UnsetType = UNSET


class NodeSwitchResponse(msgspec.Struct, frozen=True):
    data: NodeSwitchResult


class NodeSwitchResultAfterTimeout(msgspec.Struct, frozen=True):
    """The ``SwitchCycleResult`` TypeScript interface (src/types/switch-result.ts):
    ``active_participant_id`` is ``string | null`` ("or null if session ended").
    ``cycle_started_at`` is null here too: the session ended (a documented
    difference, docs/compatibility.md)."""

    session_id: str
    active_participant_id: str | None
    cycle_started_at: IsoInstant | None
    participants: list[NodeParticipant]
    status: str
    expired_participant_id: str


class NodeSwitchResponseAfterTimeout(msgspec.Struct, frozen=True):
    data: NodeSwitchResultAfterTimeout


class NodeFieldError(msgspec.Struct, frozen=True):
    """One entry of a VALIDATION_ERROR's details (``formatZodErrors``)."""

    field: str
    message: str
    code: str


class NodeErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: Any = UNSET


class NodeError(msgspec.Struct, frozen=True):
    """``ErrorResponseSchema``."""

    error: NodeErrorBody


class NodeTime(msgspec.Struct, frozen=True):
    """``GET /v1/time`` (src/api/routes/time.ts)."""

    timestamp_ms: int
    server_version: str
    drift_tolerance_ms: int


class NodeStateMessage(msgspec.Struct, frozen=True):
    """``STATE_UPDATE`` / ``STATE_SYNC`` (src/types/websocket.ts)."""

    type: Literal["STATE_UPDATE", "STATE_SYNC"]
    sessionId: str  # the Node.js field name
    timestamp: int
    state: NodeSyncState


class NodeErrorMessage(msgspec.Struct, frozen=True):
    type: Literal["ERROR"]
    code: str
    message: str


def _valid(schema: type[Any], payload: bytes | str) -> Any:
    """``payload`` decoded with ``schema``; fails the test with the schema's complaint."""
    try:
        return msgspec.json.decode(payload, type=schema)
    except msgspec.ValidationError as exc:
        raise AssertionError(
            f"{schema.__name__} rejects the response: {exc}\n{payload!r}"
        ) from None


# ------------------------------------------------------------------ the stack


def _default_env(**extra: str) -> dict[str, str]:
    """The environment without any SYNCKAIROS_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCKAIROS_")}
    return {**env, "SYNCKAIROS_LOG_LEVEL": "warning", **extra}


class DefaultStack:
    """``synckairos serve`` and ``synckairos worker`` on default settings."""

    def __init__(self, redis_url: str, database_url: str) -> None:
        self.redis_url = redis_url
        self.database_url = database_url
        self.prefix = f"conf{new_id()[:8]}"
        self.env = _default_env(
            SYNCKAIROS_REDIS_URL=redis_url,
            SYNCKAIROS_DATABASE_URL=database_url,
            SYNCKAIROS_KEY_PREFIX=self.prefix,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "synckairos", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                err = self.server.stderr.read().decode() if self.server.stderr else ""
                raise RuntimeError(f"server did not start: {err}")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in (self.worker, self.server):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def stack(redis_server: EmbeddedRedis, postgres_server: EmbeddedPostgres) -> Iterator[DefaultStack]:
    name = f"c{new_id()[:8]}"
    postgres_server.create_database(name)
    run_coroutine(migrate(postgres_server.dsn(name)))
    running = DefaultStack(redis_server.url, postgres_server.dsn(name))
    yield running
    running.stop()


@pytest.fixture
async def http(stack: DefaultStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        yield client


async def _create(http: httpx.AsyncClient, body: dict[str, Any]) -> NodeSyncState:
    response = await http.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    state: NodeSyncState = _valid(NodeSessionResponse, response.content).data
    return state


async def _command(http: httpx.AsyncClient, sid: str, action: str) -> httpx.Response:
    return await http.post(f"/v1/sessions/{sid}/{action}")


async def _recv(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = msgspec.json.decode(await asyncio.wait_for(socket.recv(), 10))
    return message


async def _next_of(socket: ClientConnection, *types: str) -> tuple[dict[str, Any], bytes]:
    """The next message of one of ``types`` (others skipped), and its raw text."""
    while True:
        raw = await asyncio.wait_for(socket.recv(), 10)
        message: dict[str, Any] = msgspec.json.decode(raw)
        if message["type"] in types:
            return message, raw.encode() if isinstance(raw, str) else raw


def _is_absent(state: dict[str, Any], *fields: str) -> None:
    for name in fields:
        assert name not in state, f"{name} should be absent when unset: {state.get(name)!r}"


# ------------------------------------------------------------------------ rows


async def test_row_session_responses_validate_against_the_node_schema(
    stack: DefaultStack, http: httpx.AsyncClient
) -> None:
    """Row 1: HTTP states, STATE_SYNC, STATE_UPDATE and replays validate; unset
    ``group_id`` / ``max_time_ms`` / ``metadata`` are absent, never null."""
    body = session_body()
    sid = body["session_id"]
    async with connect(f"{stack.ws_url}/ws?sessionId={sid}") as socket:
        assert (await _recv(socket))["type"] == "CONNECTED"
        created = await _create(http, body)
        assert created.version == 1 and created.max_time_ms is UNSET
        raw_created = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
        _is_absent(raw_created, "max_time_ms", "metadata")
        for p in raw_created["participants"]:
            _is_absent(p, "group_id")
        for action in ("start", "pause", "resume"):
            response = await _command(http, sid, action)
            assert response.status_code == 200, response.text
            _valid(NodeSessionResponse, response.content)
        switched = await _command(http, sid, "switch")
        assert switched.status_code == 200, switched.text
        _valid(NodeSwitchResponse, switched.content)
        _valid(NodeSessionResponse, (await http.get(f"/v1/sessions/{sid}")).content)
        completed = await _command(http, sid, "complete")
        assert completed.status_code == 200, completed.text
        final = _valid(NodeSessionResponse, completed.content).data
        assert final.status == "completed" and final.version == 6
        # Every change reached the socket as a STATE_UPDATE the Node schema accepts.
        versions = [0]
        while versions[-1] < 6:
            _, raw = await _next_of(socket, "STATE_UPDATE", "STATE_SYNC")
            versions.append(_valid(NodeStateMessage, raw).state.version)
        assert versions == sorted(set(versions))
        # A Node-era RECONNECT gets a STATE_SYNC the schema accepts ...
        await socket.send(msgspec.json.encode({"type": "RECONNECT"}).decode())
        _, raw = await _next_of(socket, "STATE_SYNC")
        assert _valid(NodeStateMessage, raw).state.version == 6
        # ... and a replay (ext RECONNECT with a version) STATE_UPDATEs that do too.
        await socket.send(
            msgspec.json.encode({"type": "RECONNECT", "last_known_version": 3}).decode()
        )
        for version in (4, 5, 6):
            _, raw = await _next_of(socket, "STATE_UPDATE")
            assert _valid(NodeStateMessage, raw).state.version == version
        _is_absent(msgspec.json.decode(raw)["state"], "max_time_ms", "metadata")

    # Optional fields that are set are present (and valid): groups of a
    # per_group session, the cap of a count-up, metadata.
    grouped = await _create(http, session_body("per_group", participants=4))
    assert all(isinstance(p.group_id, str) for p in grouped.participants)
    capped = session_body("count_up", max_time_ms=60_000, metadata={"table": 7})
    state = await _create(http, capped)
    assert state.max_time_ms == 60_000

    # /openapi.json says the same: what is required is always sent, what may
    # be absent is optional and not nullable.
    schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
    for name, sent, unset in (
        ("SessionState", raw_created, ("max_time_ms", "metadata")),
        ("Participant", raw_created["participants"][0], ("group_id",)),
    ):
        assert set(schemas[name]["required"]) <= set(sent), name
        for field in unset:
            assert field not in schemas[name]["required"]
            assert "'type': 'null'" not in str(schemas[name]["properties"][field]), field

    # The audit trail stores the same shape, and it reads back as a state.
    snapshot = await _snapshot(stack, sid, 6)
    _is_absent(msgspec.json.decode(snapshot), "max_time_ms", "metadata")
    assert msgspec.json.decode(snapshot, type=SessionState).version == 6


async def _snapshot(stack: DefaultStack, sid: str, version: int) -> bytes:
    """The persisted state snapshot of ``version`` (waits for the worker)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        for _ in range(600):
            found: str | None = await conn.fetchval(
                "SELECT state_snapshot::text FROM sync_events"
                " WHERE session_id = $1::text::uuid AND version = $2",
                sid,
                version,
            )
            if found is not None:
                return found.encode()
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"version {version} of {sid} never reached PostgreSQL")


@pytest.mark.parametrize("snapshot_form", ["new (fields absent)", "old (fields null)"])
async def test_row_restore_reads_old_and_new_snapshots(
    stack: DefaultStack, http: httpx.AsyncClient, snapshot_form: str
) -> None:
    """Row 1 (audit): a session Redis lost is restored from a snapshot written
    before this change (``"max_time_ms": null``, ``"group_id": null``) or
    after it (absent); the restored state is answered without nulls."""
    body = session_body()
    sid = body["session_id"]
    await _create(http, body)
    assert (await _command(http, sid, "start")).status_code == 200
    await _snapshot(stack, sid, 2)
    if snapshot_form.startswith("old"):
        conn = await asyncpg.connect(stack.database_url)
        try:
            await conn.execute(
                "UPDATE sync_events SET state_snapshot = jsonb_set(jsonb_set(jsonb_set("
                " state_snapshot, '{max_time_ms}', 'null'), '{metadata}', 'null'),"
                " '{participants,0,group_id}', 'null')"
                " WHERE session_id = $1::text::uuid",
                sid,
            )
        finally:
            await conn.close()
    redis = aioredis.Redis.from_url(stack.redis_url)
    try:
        assert await redis.delete(f"{stack.prefix}:{{{sid}}}") == 1  # Redis lost it
    finally:
        await redis.aclose()
    response = await http.get(f"/v1/sessions/{sid}")
    assert response.status_code == 200, response.text
    restored = _valid(NodeSessionResponse, response.content).data
    assert restored.status == "running" and restored.version > 2
    raw = response.json()["data"]
    assert raw["recovered"] is True
    _is_absent(raw, "max_time_ms", "metadata")
    _is_absent(raw["participants"][0], "group_id")


async def test_row_delete_of_a_missing_session_is_204(http: httpx.AsyncClient) -> None:
    """Row 2: DELETE is idempotent (204); with a precondition it is a 404."""
    never = new_id()
    assert (await http.delete(f"/v1/sessions/{never}")).status_code == 204
    body = session_body()
    sid = body["session_id"]
    await _create(http, body)
    assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
    assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
    assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404
    guarded = await http.delete(f"/v1/sessions/{sid}", headers={"If-Match": "1"})
    assert guarded.status_code == 404
    assert _valid(NodeError, guarded.content).error.code == "SESSION_NOT_FOUND"


async def test_row_reconnect_on_a_missing_session_answers_session_not_found(
    stack: DefaultStack, http: httpx.AsyncClient
) -> None:
    """Row 3: RECONNECT (no last_known_version) on a session that does not exist
    answers ERROR SESSION_NOT_FOUND; the socket stays open and still follows
    the id (it gets the session once created)."""
    body = session_body()
    sid = body["session_id"]
    async with connect(f"{stack.ws_url}/ws?sessionId={sid}") as socket:
        assert (await _recv(socket))["type"] == "CONNECTED"
        await socket.send('{"type":"RECONNECT"}')
        _, raw = await _next_of(socket, "ERROR", "STATE_SYNC", "STATE_UPDATE")
        error = _valid(NodeErrorMessage, raw)
        assert error.code == "SESSION_NOT_FOUND" and sid in error.message
        await socket.send('{"type":"PING"}')
        assert (await _next_of(socket, "PONG"))[0]["type"] == "PONG"  # still open
        await _create(http, body)
        _, raw = await _next_of(socket, "STATE_UPDATE", "STATE_SYNC")
        assert _valid(NodeStateMessage, raw).state.version == 1


async def test_row_socket_without_session_id_is_closed_with_the_node_reason(
    stack: DefaultStack,
) -> None:
    """Row 4: no sessionId: close 1008 "Missing sessionId parameter"; a bad one
    keeps "Invalid sessionId format"."""
    for query, reason in (
        ("", "Missing sessionId parameter"),
        ("?sessionId=", "Missing sessionId parameter"),
        ("?sessionId=not-a-uuid", "Invalid sessionId format"),
    ):
        async with connect(f"{stack.ws_url}/ws{query}") as socket:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason)


async def test_row_switch_after_the_flag_fell_answers_200_with_expired_participant(
    stack: DefaultStack, http: httpx.AsyncClient
) -> None:
    """Row 5: a switch that arrives after the active participant's time ran out
    answers 200 with ``expired_participant_id`` and the state the server's
    timeout left (expired); the timeout stays, the switch does not apply."""
    body = session_body(budget_ms=1_000)
    sid = body["session_id"]
    first = body["participants"][0]["participant_id"]
    await _create(http, body)
    started = _valid(NodeSessionResponse, (await _command(http, sid, "start")).content).data
    async with connect(f"{stack.ws_url}/ws?sessionId={sid}") as socket:
        # The server's own timeout (scheduler) ends the session at the deadline.
        while True:
            message, _ = await _next_of(socket, "STATE_UPDATE", "STATE_SYNC")
            if message["state"]["status"] == "expired":
                break
        expired_version = message["state"]["version"]
        assert expired_version == started.version + 1
        late = await _command(http, sid, "switch")
        assert late.status_code == 200, late.text
        result = _valid(NodeSwitchResponseAfterTimeout, late.content).data
        assert result.expired_participant_id == first
        assert result.status == "expired" and result.active_participant_id is None
        assert late.json()["data"]["version"] == expired_version
        # With the precondition of the turn it meant to end: the same answer.
        guarded = await http.post(
            f"/v1/sessions/{sid}/switch",
            json={"expected_version": started.version, "current_participant_id": first},
        )
        assert guarded.status_code == 200, guarded.text
        assert guarded.json()["data"]["expired_participant_id"] == first
        # Nothing was committed: no new version, no event.
        await socket.send('{"type":"PING"}')
        message, _ = await _next_of(socket, "PONG", "STATE_UPDATE")
        assert message["type"] == "PONG", message
    after = _valid(NodeSessionResponse, (await http.get(f"/v1/sessions/{sid}")).content).data
    assert after.status == "expired" and after.version == expired_version


@pytest.mark.parametrize("ending", ["complete", "cancel", "timeout"])
async def test_row_complete_on_a_finished_session_is_a_200_no_op(
    stack: DefaultStack, http: httpx.AsyncClient, ending: str
) -> None:
    """Row 6: ``complete`` on a completed, cancelled or expired session answers
    200 with the unchanged state: no new version, no event."""
    body = session_body(budget_ms=1_000)
    sid = body["session_id"]
    await _create(http, body)
    assert (await _command(http, sid, "start")).status_code == 200
    if ending != "timeout":
        assert (await _command(http, sid, ending)).status_code == 200
    async with connect(f"{stack.ws_url}/ws?sessionId={sid}") as socket:
        while True:
            message, _ = await _next_of(socket, "STATE_UPDATE", "STATE_SYNC")
            if message["state"]["status"] not in ("pending", "running"):
                break
        before = message["state"]
        again = await _command(http, sid, "complete")
        assert again.status_code == 200, again.text
        state = _valid(NodeSessionResponse, again.content).data
        assert state.version == before["version"] and state.status == before["status"]
        assert state.session_completed_at == before["session_completed_at"]
        await socket.send('{"type":"PING"}')
        message, _ = await _next_of(socket, "PONG", "STATE_UPDATE")
        assert message["type"] == "PONG", message


async def test_row_time_reports_the_api_version(http: httpx.AsyncClient) -> None:
    """Row 7: ``server_version`` is the API version "2.0.0"; ours is ``server_build``."""
    for path in ("/v1/time", "/time"):
        response = await http.get(path)
        assert response.status_code == 200
        assert _valid(NodeTime, response.content).server_version == "2.0.0"
        assert response.json()["server_build"] == __version__


def _details(response: httpx.Response) -> list[NodeFieldError]:
    assert response.status_code == 400, response.text
    error = _valid(NodeError, response.content).error
    assert error.code == "VALIDATION_ERROR"
    details: list[NodeFieldError] = msgspec.convert(error.details, list[NodeFieldError])
    assert details, error
    for detail in details:
        assert "[" not in detail.field, detail
        assert detail.code in VALIDATION_CODES, detail
    return details


async def test_row_validation_details_of_the_body_are_dot_paths_with_a_code(
    http: httpx.AsyncClient,
) -> None:
    """Row 9 (schema): errors the request schema finds (5 creates: the default limit)."""
    short = session_body()
    short["participants"][0]["total_time_ms"] = 5
    no_id = session_body()
    del no_id["participants"][1]["participant_id"]
    twins = session_body()
    twins["participants"][1]["participant_id"] = twins["participants"][0]["participant_id"]
    lost = session_body("per_group")
    del lost["participants"][1]["group_id"]
    cases = [
        (short, "participants.0.total_time_ms", "too_small"),
        (no_id, "participants.1.participant_id", "required"),
        ({**session_body(), "sync_mode": "chess"}, "sync_mode", "invalid_value"),
        (twins, "participants", "duplicate"),
        (lost, "participants.1.group_id", "required"),
    ]
    for body, field, code in cases:
        details = _details(await http.post("/v1/sessions", json=body))
        assert (details[0].field, details[0].code) == (field, code), details


async def test_row_validation_details_of_rules_and_ids_are_dot_paths_with_a_code(
    http: httpx.AsyncClient,
) -> None:
    """Row 9 (rules): storable-input and id rules, types, path ids, headers."""
    nul = session_body(metadata={"a": [{"b": "x\u0000"}]})
    assert [(d.field, d.code) for d in _details(await http.post("/v1/sessions", json=nul))] == [
        ("metadata.a.0.b", "invalid_value")
    ]
    typed = session_body(increment_ms="1000")
    assert [(d.field, d.code) for d in _details(await http.post("/v1/sessions", json=typed))] == [
        ("increment_ms", "invalid_type")
    ]
    body = session_body()
    sid = body["session_id"]
    await _create(http, body)
    assert (await _command(http, sid, "start")).status_code == 200
    cases: list[tuple[httpx.Response, str, str]] = [
        (await http.get("/v1/sessions/not-a-uuid"), "session_id", "invalid_format"),
        (
            await http.post(f"/v1/sessions/{sid}/switch", json={"next_participant_id": "x"}),
            "next_participant_id",
            "invalid_format",
        ),
        (
            await http.post(f"/v1/sessions/{sid}/switch", json={"next_participant_id": new_id()}),
            "next_participant_id",
            "invalid_value",
        ),
        (
            await http.post(f"/v1/sessions/{sid}/pause", headers={"If-Match": "two"}),
            "If-Match",
            "invalid_format",
        ),
        (
            await http.post(
                f"/v1/sessions/{sid}/switch",
                content=b"{",
                headers={"content-type": "application/json"},
            ),
            "body",
            "invalid_json",
        ),
    ]
    for response, field, code in cases:
        details = _details(response)
        assert (details[0].field, details[0].code) == (field, code), details


async def test_row_reconnect_restores_a_session_redis_lost_instead_of_not_found(
    stack: DefaultStack, http: httpx.AsyncClient
) -> None:
    """Row 3 (audit): RECONNECT on a session Redis lost but the audit trail
    holds restores it (as a GET would) and answers STATE_SYNC, not
    SESSION_NOT_FOUND."""
    body = session_body()
    sid = body["session_id"]
    await _create(http, body)
    await _snapshot(stack, sid, 1)
    async with connect(f"{stack.ws_url}/ws?sessionId={sid}") as socket:
        await _next_of(socket, "STATE_SYNC")
        redis = aioredis.Redis.from_url(stack.redis_url)
        try:
            assert await redis.delete(f"{stack.prefix}:{{{sid}}}") == 1  # Redis lost it
        finally:
            await redis.aclose()
        await socket.send('{"type":"RECONNECT"}')
        message, raw = await _next_of(socket, "STATE_SYNC", "STATE_UPDATE", "ERROR")
        assert message["type"] != "ERROR", message
        assert _valid(NodeStateMessage, raw).state.status == "pending"
        assert message["state"]["recovered"] is True
