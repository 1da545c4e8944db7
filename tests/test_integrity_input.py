"""Issue 14 (integrity), input side: canonical ids, no 5xx for hostile headers or
paths, turn integrity with tokens, and tokens bound to time and incarnation.

Everything runs on a real Redis (and PostgreSQL where the audit store matters),
through the ASGI app or a real server process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from synckairos.app import create_app
from synckairos.auth import AuthPolicy, Role
from synckairos.config import ConfigError, Settings, load_settings
from synckairos.dev.embedded import EmbeddedRedis, free_port
from tests.conftest import ServerProcess
from tests.helpers import FakeClock, app_settings, new_id, session_body

KEY = "test-api-key"
SECRET = "test-token-secret-of-at-least-32-bytes"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings(redis_server: EmbeddedRedis, **overrides: Any) -> Settings:
    return app_settings(redis_server.url, "i", **overrides)


def _hash(settings: Settings, session_id: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(settings.redis_target())
    try:
        found = client.hgetall(f"{settings.key_prefix}:{{{session_id}}}")
        return {bytes(k): bytes(v) for k, v in found.items()}  # type: ignore[arg-type]
    finally:
        client.close()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def open_app(redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Settings]]:
    settings = _settings(redis_server)
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        yield client, settings


@pytest.fixture
def secured(redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Settings]]:
    settings = _settings(redis_server, api_keys=KEY, token_secret=SECRET)
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        yield client, settings


@pytest.fixture
def short_lived(redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Settings]]:
    """Tokens live at most 2 hours."""
    settings = _settings(redis_server, api_keys=KEY, token_secret=SECRET, token_max_ttl_s=7_200)
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        yield client, settings


# ------------------------------------------------------------------ canonical ids


def test_ids_in_another_case_name_the_same_session(open_app: tuple[TestClient, Settings]):
    client, settings = open_app
    body = session_body("per_group", participants=2)
    upper = {
        **body,
        "session_id": body["session_id"].upper(),
        "participants": [
            {**p, "participant_id": p["participant_id"].upper(), "group_id": p["group_id"].upper()}
            for p in body["participants"]
        ],
    }
    sid = body["session_id"]
    created = client.post("/v1/sessions", json=upper)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["session_id"] == sid
    assert [p["participant_id"] for p in data["participants"]] == [
        p["participant_id"] for p in body["participants"]
    ]
    assert {p["group_id"] for p in data["participants"]} == {
        p["group_id"] for p in body["participants"]
    }
    # One key, in lowercase; every spelling finds it; a second create is refused.
    assert _hash(settings, sid)[b"v"] == b"1"
    assert _hash(settings, sid.upper()) == {}
    for spelling in (sid, sid.upper(), sid[:8].upper() + sid[8:]):
        got = client.get(f"/v1/sessions/{spelling}")
        assert got.status_code == 200 and got.json()["data"]["session_id"] == sid
    _error(client.post("/v1/sessions", json=body), 409, "SESSION_EXISTS")
    assert client.post(f"/v1/sessions/{sid.upper()}/start").status_code == 200
    second = body["participants"][1]["participant_id"]
    switched = client.post(
        f"/v1/sessions/{sid}/switch",
        json={
            "current_participant_id": body["participants"][0]["participant_id"].upper(),
            "next_participant_id": second.upper(),
        },
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["data"]["active_participant_id"] == second
    with client.websocket_connect(f"/ws?sessionId={sid.upper()}") as ws:
        assert json.loads(ws.receive_text())["sessionId"] == sid
        sync = json.loads(ws.receive_text())
        assert sync["type"] == "STATE_SYNC" and sync["state"]["session_id"] == sid


def test_ids_differing_only_in_case_are_one_id(open_app: tuple[TestClient, Settings]):
    client, _ = open_app
    body = session_body(participants=2)
    first = body["participants"][0]["participant_id"]
    body["participants"][1]["participant_id"] = first.upper()
    refused = _error(client.post("/v1/sessions", json=body), 400, "VALIDATION_ERROR")
    assert "unique" in json.dumps(refused["details"])


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", "\t", " ", "\x7f", "\u2028"])
def test_an_id_with_a_control_character_is_refused_everywhere(
    redis_server: EmbeddedRedis, audit_dsn: str, suffix: str
):
    """A trailing newline used to pass the pattern and reach PostgreSQL (503 with its text)."""
    settings = _settings(redis_server, database_url=audit_dsn)
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        good = session_body()
        assert client.post("/v1/sessions", json=good).status_code == 201
        sid = good["session_id"]
        for bad_id in (new_id() + suffix, sid + suffix):
            _error(client.get(f"/v1/sessions/{quote(bad_id)}"), 400, "VALIDATION_ERROR")
            _error(client.post(f"/v1/sessions/{quote(bad_id)}/start"), 400, "VALIDATION_ERROR")
        create = session_body()
        create["session_id"] += suffix
        _error(client.post("/v1/sessions", json=create), 400, "VALIDATION_ERROR")
        create = session_body()
        create["participants"][0]["participant_id"] += suffix
        _error(client.post("/v1/sessions", json=create), 400, "VALIDATION_ERROR")
        create = session_body("per_group")
        create["participants"][0]["group_id"] += suffix
        _error(client.post("/v1/sessions", json=create), 400, "VALIDATION_ERROR")
        assert client.post(f"/v1/sessions/{sid}/start").status_code == 200
        for field in ("next_participant_id", "current_participant_id"):
            wrong = {field: good["participants"][1]["participant_id"] + suffix}
            _error(client.post(f"/v1/sessions/{sid}/switch", json=wrong), 400, "VALIDATION_ERROR")
        with client.websocket_connect(f"/ws?sessionId={quote(sid + suffix)}") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1008
        assert _hash(settings, sid)[b"v"] == b"2"


def test_a_failing_audit_store_answers_503_without_its_error_text(redis_server: EmbeddedRedis):
    port = free_port()  # nothing listens there
    settings = _settings(redis_server, database_url=f"postgresql://nobody@127.0.0.1:{port}/none")
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        response = client.get(f"/v1/sessions/{new_id()}")
    error = _error(response, 503, "UNAVAILABLE")
    text = response.text
    for leak in (str(port), "127.0.0.1", "Errno", "Connect", "refused", "postgres"):
        assert leak not in text, text
    assert error["message"]
    assert response.headers["retry-after"]


# ------------------------------------------------------------------ headers and paths


def test_an_if_match_of_thousands_of_digits_never_matches(open_app: tuple[TestClient, Settings]):
    """Was a 500 (Python's int digit limit); a version above 2**53 - 1 never matches: 409."""
    client, settings = open_app
    body = session_body()
    assert client.post("/v1/sessions", json=body).status_code == 201
    sid = body["session_id"]
    for value in ("9" * 5_000, '"' + "1" * 5_000 + '"', 'W/"' + "7" * 100_000 + '"', str(2**53)):
        response = client.post(f"/v1/sessions/{sid}/start", headers={"If-Match": value})
        error = _error(response, 409, "CONFLICT")
        assert error["details"]["actual_version"] == 1
    deleted = client.delete(f"/v1/sessions/{sid}", headers={"If-Match": "7" * 5_000})
    _error(deleted, 409, "CONFLICT")
    junk: list[str | bytes] = ["0x1", "1.0", "-1", "1 2", "\u0661".encode(), "*"]
    for raw in junk:
        response = client.post(f"/v1/sessions/{sid}/start", headers={"If-Match": raw})
        assert _error(response, 400, "VALIDATION_ERROR")["details"][0]["field"] == "If-Match"
    start = client.post(f"/v1/sessions/{sid}/start", headers={"If-Match": 'W/"0001"'})
    assert start.status_code == 200
    assert _hash(settings, sid)[b"v"] == b"2"


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65_536):
                received += chunk
        except TimeoutError:
            pass
    return received


@pytest.fixture(scope="module")
def hostile_server(redis_server: EmbeddedRedis) -> Iterator[ServerProcess]:
    server = ServerProcess(
        redis_server.url, SYNCKAIROS_API_KEYS=KEY, SYNCKAIROS_TOKEN_SECRET=SECRET
    )
    yield server
    server.stop()


def test_hostile_headers_and_paths_never_get_a_5xx(hostile_server: ServerProcess):
    port = hostile_server.port
    sid = new_id()
    body = json.dumps(session_body(session_id=sid)).encode()
    created = _raw(
        port,
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (KEY.encode(), len(body), body),
    )
    assert created.startswith(b"HTTP/1.1 201"), created[:200]
    s, k = sid.encode(), KEY.encode()

    def get(path: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
        lines = b"".join(h + b"\r\n" for h in headers)
        return b"%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (method, path, lines)

    auth = b"Authorization: Bearer " + k
    cases = {
        "If-Match of 5,000 digits": get(
            b"/v1/sessions/%s/start" % s, auth, b"If-Match: " + b"9" * 5_000, method=b"POST"
        ),
        "If-Match non-ASCII": get(
            b"/v1/sessions/%s/start" % s, auth, b"If-Match: \xd9\xa1", method=b"POST"
        ),
        "If-Match on delete": get(
            b"/v1/sessions/%s" % s, auth, b"If-Match: " + b"1" * 5_000, method=b"DELETE"
        ),
        "Authorization bytes": get(b"/v1/sessions/%s" % s, b"Authorization: Bearer \xff\xfe\x80"),
        "Authorization huge": get(
            b"/v1/sessions/%s" % s, b"Authorization: Bearer " + b"a" * 60_000
        ),
        "Authorization no credential": get(b"/v1/sessions/%s" % s, b"Authorization: Bearer"),
        "Authorization odd JWT": get(
            b"/v1/sessions/%s" % s, b"Authorization: Bearer eyJ\xe9.eyJ.x"
        ),
        "Content-Length negative": get(
            b"/v1/sessions", auth, b"Content-Length: -1", method=b"POST"
        ),
        "Content-Length huge": get(
            b"/v1/sessions", auth, b"Content-Length: " + b"9" * 30, method=b"POST"
        ),
        "Content-Length twice": get(
            b"/v1/sessions", auth, b"Content-Length: 2", b"Content-Length: 3", method=b"POST"
        )
        + b"{}",
        "Content-Length and chunked": get(
            b"/v1/sessions",
            auth,
            b"Content-Length: 2",
            b"Transfer-Encoding: chunked",
            method=b"POST",
        )
        + b"0\r\n\r\n",
        "bad chunk": get(b"/v1/sessions", auth, b"Transfer-Encoding: chunked", method=b"POST")
        + b"zz\r\n{}\r\n0\r\n\r\n",
        "short body": get(b"/v1/sessions", auth, b"Content-Length: 50", method=b"POST") + b"{}",
        "percent newline": get(b"/v1/sessions/%s%%0A" % s, auth),
        "percent NUL": get(b"/v1/sessions/%s%%00" % s, auth),
        "percent invalid UTF-8": get(b"/v1/sessions/%FF%FE", auth),
        "percent malformed": get(b"/v1/sessions/%zz", auth),
        "percent slash": get(b"/v1/sessions/%s%%2Fstart" % s, auth),
        "long path": get(b"/v1/sessions/" + b"a" * 100_000),
        "long static path": get(b"/static/" + b"a/" * 5_000),
        "static traversal": get(b"/static/%2e%2e/%2e%2e/pyproject.toml"),
        "non-ASCII header": get(b"/health", b"X-Foo: \xff\xfe"),
        "non-ASCII Content-Type": get(
            b"/v1/sessions", auth, b"Content-Type: \xff/\xff", b"Content-Length: 2", method=b"POST"
        )
        + b"{}",
        "X-Forwarded-For junk": get(b"/v1/time", b"X-Forwarded-For: \xff, ::::, 999.1.1.1"),
        "query junk": get(b"/v1/sessions/%s?%%ff=%%00&a=%%zz" % s, auth),
        "unknown method": get(b"/v1/sessions", method=b"FOO"),
    }
    for name, request in cases.items():
        answer = _raw(port, request)
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 "), (name, answer[:300])
        assert 200 <= int(status.split()[1]) < 500, (name, answer[:300])
        lowered = answer.lower()
        assert b"traceback" not in lowered and b"errno" not in lowered, (name, answer[:300])
    hostile_server.stop()
    assert hostile_server.process.stderr is not None
    log = hostile_server.process.stderr.read().decode()
    assert "unhandled error" not in log, log[-2_000:]


# ------------------------------------------------------------------ turn integrity


def _mint(client: TestClient, sid: str, role: str, pid: str | None = None, **extra: Any) -> str:
    payload: dict[str, Any] = {"role": role, **extra}
    if pid is not None:
        payload["participant_id"] = pid
    minted = client.post(f"/v1/sessions/{sid}/tokens", json=payload, headers=AUTH)
    assert minted.status_code == 201, minted.text
    token: str = minted.json()["data"]["token"]
    return token


def _started(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = session_body(**extra)
    assert client.post("/v1/sessions", json=body, headers=AUTH).status_code == 201
    assert client.post(f"/v1/sessions/{body['session_id']}/start", headers=AUTH).status_code == 200
    return body


def test_a_participant_cannot_farm_increments_by_naming_itself(
    secured: tuple[TestClient, Settings],
):
    client, settings = secured
    body = _started(client, participants=2, budget_ms=300_000, increment_ms=5_000)
    sid = body["session_id"]
    me = body["participants"][0]["participant_id"]
    as_me = _bearer(_mint(client, sid, "participant", me))
    for _ in range(8):
        refused = client.post(
            f"/v1/sessions/{sid}/switch", json={"next_participant_id": me}, headers=as_me
        )
        _error(refused, 400, "VALIDATION_ERROR")
    # Nobody may: neither a controller token nor the API key.
    controller = _bearer(_mint(client, sid, "controller"))
    for headers in (controller, AUTH):
        _error(
            client.post(
                f"/v1/sessions/{sid}/switch", json={"next_participant_id": me}, headers=headers
            ),
            400,
            "VALIDATION_ERROR",
        )
    state = client.get(f"/v1/sessions/{sid}", headers=AUTH).json()["data"]
    assert state["version"] == 2 and state["active_participant_id"] == me
    mine = next(p for p in state["participants"] if p["participant_id"] == me)
    assert mine["time_remaining_ms"] == 300_000  # no increment was granted
    assert _hash(settings, sid)[b"v"] == b"2"


def test_a_participant_cannot_choose_who_plays_next(secured: tuple[TestClient, Settings]):
    client, settings = secured
    body = _started(client, participants=3)
    sid = body["session_id"]
    first, second, third = (p["participant_id"] for p in body["participants"])
    as_first = _bearer(_mint(client, sid, "participant", first))
    skip = client.post(
        f"/v1/sessions/{sid}/switch", json={"next_participant_id": third}, headers=as_first
    )
    _error(skip, 403, "FORBIDDEN")
    assert _hash(settings, sid)[b"v"] == b"2"
    # Naming whom the rotation picks anyway is accepted.
    named = client.post(
        f"/v1/sessions/{sid}/switch", json={"next_participant_id": second}, headers=as_first
    )
    assert named.status_code == 200 and named.json()["data"]["active_participant_id"] == second
    # A controller may name anyone else with time.
    controller = _bearer(_mint(client, sid, "controller"))
    jumped = client.post(
        f"/v1/sessions/{sid}/switch", json={"next_participant_id": first}, headers=controller
    )
    assert jumped.status_code == 200 and jumped.json()["data"]["active_participant_id"] == first
    # And a participant still cannot pause, resume or complete its own clock.
    for command in ("pause", "resume", "complete", "cancel", "start"):
        _error(client.post(f"/v1/sessions/{sid}/{command}", headers=as_first), 403, "FORBIDDEN")


# ------------------------------------------------------------------ tokens


def test_token_lifetime_is_bounded(short_lived: tuple[TestClient, Settings]):
    client, settings = short_lived
    sid = _started(client)["session_id"]
    _error(
        client.post(
            f"/v1/sessions/{sid}/tokens", json={"role": "spectator", "ttl_s": 7_201}, headers=AUTH
        ),
        400,
        "VALIDATION_ERROR",
    )
    token = _mint(client, sid, "spectator", ttl_s=7_200)
    assert client.get(f"/v1/sessions/{sid}", headers=_bearer(token)).status_code == 200
    now = int(time.time())
    too_long = [
        {"sid": sid, "role": "spectator", "exp": now + 30 * 86_400},  # no iat
        {"sid": sid, "role": "spectator", "iat": now - 10, "exp": now + 7_195},  # 7,205 s
        {"sid": sid, "role": "spectator", "exp": 2**40},
    ]
    for claims in too_long:
        signed = jwt.encode(claims, SECRET, algorithm="HS256")
        _error(client.get(f"/v1/sessions/{sid}", headers=_bearer(signed)), 401, "UNAUTHORIZED")
        with client.websocket_connect(f"/ws?sessionId={sid}&token={signed}") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1008
    within = jwt.encode({"sid": sid, "role": "spectator", "exp": now + 7_000}, SECRET, "HS256")
    assert client.get(f"/v1/sessions/{sid}", headers=_bearer(within)).status_code == 200
    with pytest.raises(ConfigError):
        load_settings({"SYNCKAIROS_TOKEN_TTL_S": "7200", "SYNCKAIROS_TOKEN_MAX_TTL_S": "3600"})
    assert load_settings({}).token_max_ttl_s == 86_400
    del settings


def test_a_token_dies_with_its_session_incarnation(secured: tuple[TestClient, Settings]):
    client, settings = secured
    body = _started(client, participants=2)
    sid = body["session_id"]
    first = body["participants"][0]["participant_id"]
    old = {
        "controller": _mint(client, sid, "controller"),
        "participant": _mint(client, sid, "participant", first),
        "spectator": _mint(client, sid, "spectator"),
    }
    epoch = _hash(settings, sid)[b"e"].decode()
    for token in old.values():
        assert jwt.decode(token, SECRET, algorithms=["HS256"])["ep"] == epoch
    # A token signed by a backend without ep stays bound to the id only.
    unbound = jwt.encode(
        {"sid": sid, "role": "spectator", "exp": int(time.time()) + 600}, SECRET, "HS256"
    )
    assert client.delete(f"/v1/sessions/{sid}", headers=AUTH).status_code == 204
    _error(
        client.post("/v1/sessions", json=body, headers=_bearer(old["controller"])),
        401,
        "UNAUTHORIZED",
    )
    assert client.post("/v1/sessions", json=body, headers=AUTH).status_code == 201
    assert client.post(f"/v1/sessions/{sid}/start", headers=AUTH).status_code == 200
    assert _hash(settings, sid)[b"e"].decode() != epoch
    for role, token in old.items():
        _error(client.get(f"/v1/sessions/{sid}", headers=_bearer(token)), 401, "UNAUTHORIZED")
        with client.websocket_connect(f"/ws?sessionId={sid}&token={token}") as ws:
            assert json.loads(ws.receive_text())["type"] == "CONNECTED"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()  # never the new incarnation's STATE_SYNC
            assert closed.value.code == 1008, role
    _error(
        client.post(f"/v1/sessions/{sid}/switch", headers=_bearer(old["participant"])),
        401,
        "UNAUTHORIZED",
    )
    for command in ("pause", "complete", "cancel"):
        _error(
            client.post(f"/v1/sessions/{sid}/{command}", headers=_bearer(old["controller"])),
            401,
            "UNAUTHORIZED",
        )
    _error(
        client.delete(f"/v1/sessions/{sid}", headers=_bearer(old["controller"])),
        401,
        "UNAUTHORIZED",
    )
    assert _hash(settings, sid)[b"v"] == b"2"
    assert client.get(f"/v1/sessions/{sid}", headers=_bearer(unbound)).status_code == 200
    fresh = _bearer(_mint(client, sid, "participant", first))
    assert client.post(f"/v1/sessions/{sid}/switch", headers=fresh).status_code == 200


def test_token_claims_are_canonical(secured: tuple[TestClient, Settings]):
    client, _ = secured
    body = _started(client, participants=2)
    sid = body["session_id"]
    first = body["participants"][0]["participant_id"]
    # A backend that signs upper-case ids is matched with the canonical session.
    signed = AuthPolicy(secret=SECRET).mint(
        sid.upper(), Role.PARTICIPANT, first.upper(), 600, int(time.time())
    )
    assert client.post(f"/v1/sessions/{sid}/switch", headers=_bearer(signed)).status_code == 200
    minted = client.post(
        f"/v1/sessions/{sid.upper()}/tokens",
        json={"role": "participant", "participant_id": first.upper()},
        headers=AUTH,
    ).json()["data"]
    claims = jwt.decode(minted["token"], SECRET, algorithms=["HS256"])
    assert claims["sid"] == sid and claims["pid"] == first
    assert minted["session_id"] == sid and minted["participant_id"] == first
    for bad in ({"sid": sid + "\n"}, {"sid": "x"}, {"pid": first + "\n"}):
        claims = {"sid": sid, "role": "participant", "pid": first, "exp": int(time.time()) + 60}
        forged = jwt.encode({**claims, **bad}, SECRET, "HS256")
        _error(client.get(f"/v1/sessions/{sid}", headers=_bearer(forged)), 401, "UNAUTHORIZED")


# ------------------------------------------------------------------ sockets and tokens (live)


@pytest.fixture(scope="module")
def secured_server(redis_server: EmbeddedRedis) -> Iterator[ServerProcess]:
    server = ServerProcess(
        redis_server.url, SYNCKAIROS_API_KEYS=KEY, SYNCKAIROS_TOKEN_SECRET=SECRET
    )
    yield server
    server.stop()


async def _recv(ws: ClientConnection, wait_s: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
    return message


async def _closed(ws: ClientConnection, wait_s: float = 15.0) -> tuple[int | None, list[str]]:
    """Read until the server closes; returns the close code and the message types seen."""
    seen: list[str] = []
    try:
        while True:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), wait_s))["type"])
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), seen


async def test_a_socket_is_closed_with_4401_when_its_token_expires(secured_server: ServerProcess):
    base = secured_server.url
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        body = session_body()
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        sid = body["session_id"]
        short = AuthPolicy(secret=SECRET).mint(sid, Role.SPECTATOR, None, 2, int(time.time()))
        long = AuthPolicy(secret=SECRET).mint(sid, Role.SPECTATOR, None, 600, int(time.time()))
        ws_base = secured_server.ws_url + f"/ws?sessionId={sid}&token="
        async with connect(ws_base + short) as expiring, connect(ws_base + long) as staying:
            for ws in (expiring, staying):
                assert (await _recv(ws))["type"] == "CONNECTED"
                assert (await _recv(ws))["type"] == "STATE_SYNC"
            code, _ = await _closed(expiring)
            assert code == 4401
            # The other socket is untouched and still receives changes.
            assert (await http.post(f"/v1/sessions/{sid}/start")).status_code == 200
            update = await _recv(staying)
            assert update["type"] == "STATE_UPDATE" and update["version"] == 2
        # Reconnecting with the expired token is refused at once.
        async with connect(ws_base + short) as again:
            code, seen = await _closed(again)
            assert code == 1008 and "STATE_SYNC" not in seen


async def test_a_socket_waiting_for_a_deleted_session_does_not_follow_its_successor(
    secured_server: ServerProcess,
):
    base = secured_server.url
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        body = session_body()
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
        sid = body["session_id"]
        minted = await http.post(f"/v1/sessions/{sid}/tokens", json={"role": "spectator"})
        token = minted.json()["data"]["token"]
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
        async with connect(secured_server.ws_url + f"/ws?sessionId={sid}&token={token}") as ws:
            assert (await _recv(ws))["type"] == "CONNECTED"  # waits for a creation
            await asyncio.sleep(0.2)  # let the socket subscribe (not an assertion on time)
            assert (await http.post("/v1/sessions", json=body)).status_code == 201
            code, seen = await _closed(ws)
            assert code == 1008
            assert "STATE_UPDATE" not in seen and "STATE_SYNC" not in seen


# ------------------------------------------------------------------ the real stack


async def test_after_a_redis_loss_an_id_in_another_case_restores_its_one_session(
    redis_server: EmbeddedRedis, audit_dsn: str
):
    """Issue 14: ids that differ in case were two sessions in Redis and one ``uuid`` in
    PostgreSQL; after a Redis loss the wrong snapshot came back and the session was 404.

    Server, worker, Redis and PostgreSQL are real processes.
    """
    from tests.test_audit_e2e import Stack, _wait_for_drain

    stack = Stack(redis_server.url, audit_dsn)
    try:
        async with httpx.AsyncClient(base_url=stack.server.url) as http:
            body = session_body(participants=2, budget_ms=3_600_000)
            sid = body["session_id"]
            upper = {
                **body,
                "session_id": sid.upper(),
                "participants": [
                    {**p, "participant_id": p["participant_id"].upper()}
                    for p in body["participants"]
                ],
            }
            assert (await http.post("/v1/sessions", json=upper)).status_code == 201
            impostor = session_body(participants=3, session_id=sid)
            refused = await http.post("/v1/sessions", json=impostor)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "SESSION_EXISTS"
            assert (await http.post(f"/v1/sessions/{sid.upper()}/start")).status_code == 200
            assert (await http.post(f"/v1/sessions/{sid}/switch")).status_code == 200
            await _wait_for_drain(stack, {sid: 3})
            # Redis loses the session (every spelling of its keys).
            client = aioredis.Redis.from_url(redis_server.url)
            for spelling in (sid, sid.upper()):
                base = f"{stack.prefix}:{{{spelling}}}"
                await client.delete(base, f"{base}:history")
            await client.aclose()
            for spelling in (sid.upper(), sid):
                got = await http.get(f"/v1/sessions/{spelling}")
                assert got.status_code == 200, got.text
                state = got.json()["data"]
                assert state["session_id"] == sid and state["recovered"] is True
                assert [p["participant_id"] for p in state["participants"]] == [
                    p["participant_id"] for p in body["participants"]
                ]
                assert state["active_participant_id"] == body["participants"][1]["participant_id"]
    finally:
        stack.stop()


def test_a_legacy_snapshot_with_upper_case_ids_is_restored_in_canonical_form(
    redis_server: EmbeddedRedis, audit_dsn: str
):
    """A snapshot archived by an earlier version, with upper-case ids, comes back lowercase."""
    import asyncpg

    from synckairos.core import CreateSession, NewParticipant, Start, apply, create_session
    from synckairos.core.model import SyncMode
    from tests.conftest import run_coroutine

    sid, first, second = new_id(), new_id(), new_id()
    spec = CreateSession(
        session_id=sid.upper(),
        sync_mode=SyncMode.PER_PARTICIPANT,
        participants=[
            NewParticipant(first.upper(), 60_000, 0),
            NewParticipant(second.upper(), 60_000, 1),
        ],
        total_time_ms=60_000,
    )
    clock = FakeClock()
    state = apply(create_session(spec, clock.now).state, Start(), clock.now).state
    assert state.session_id == sid.upper()

    async def archive() -> None:
        conn = await asyncpg.connect(audit_dsn)
        try:
            await conn.execute(
                "INSERT INTO sync_events (id, session_id, event_type, state_snapshot,"
                " version, epoch, committed_at_ms) VALUES ($1::text::uuid, $2::text::uuid,"
                " 'session_started', $3::jsonb, 2, 'legacy', $4)",
                new_id(),
                sid.upper(),
                msgspec.json.encode(state).decode(),
                clock.now,
            )
        finally:
            await conn.close()

    run_coroutine(archive())
    settings = _settings(redis_server, database_url=audit_dsn)
    with TestClient(create_app(settings, clock=clock)) as client:
        for spelling in (sid, sid.upper()):
            got = client.get(f"/v1/sessions/{spelling}")
            assert got.status_code == 200, got.text
            data = got.json()["data"]
            assert data["session_id"] == sid and data["recovered"] is True
            assert [p["participant_id"] for p in data["participants"]] == [first, second]
            assert data["active_participant_id"] == first
            assert set(data["banks"]) == {first, second}
        switched = client.post(
            f"/v1/sessions/{sid}/switch",
            json={"current_participant_id": first, "next_participant_id": second},
        )
        assert switched.status_code == 200, switched.text
        assert switched.json()["data"]["active_participant_id"] == second
        version = switched.json()["data"]["version"]
    assert _hash(settings, sid)[b"v"] == str(version).encode()
    assert _hash(settings, sid.upper()) == {}
