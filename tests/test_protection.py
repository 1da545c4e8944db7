"""Issue 7: tokens and roles, rate limits, hostile input, on a real Redis.

Every refusal is checked for its status, code and headers, and for having
changed nothing (the session's version in Redis is read before and after).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from synckairos.app import create_app
from synckairos.auth import AuthPolicy, Role
from synckairos.config import Rate, Settings, parse_rate
from synckairos.dev.embedded import EmbeddedRedis
from synckairos.exceptions import Unauthorized
from synckairos.ratelimit import LocalLimiter
from tests.conftest import ServerProcess
from tests.helpers import FakeClock, app_settings, new_id, session_body

KEY = "test-api-key"
SECRET = "test-token-secret-of-at-least-32-bytes"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings(redis_server: EmbeddedRedis, **overrides: Any) -> Settings:
    return app_settings(redis_server.url, "p", **overrides)


def _version(settings: Settings, session_id: str) -> int | None:
    client = redis.Redis.from_url(settings.redis_target())
    try:
        raw = client.hget(f"{settings.key_prefix}:{{{session_id}}}", "v")
        return None if raw is None else int(raw)
    finally:
        client.close()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code
    return body


# ------------------------------------------------------------------ auth


@pytest.fixture
def secured(redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Settings]]:
    settings = _settings(redis_server, api_keys=f"other-key,{KEY}", token_secret=SECRET)
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        yield client, settings


def _started(client: TestClient) -> dict[str, Any]:
    body = session_body(participants=2)
    assert client.post("/v1/sessions", json=body, headers=AUTH).status_code == 201
    assert client.post(f"/v1/sessions/{body['session_id']}/start", headers=AUTH).status_code == 200
    return body


def _token(client: TestClient, sid: str, role: str, pid: str | None = None) -> str:
    payload: dict[str, Any] = {"role": role}
    if pid is not None:
        payload["participant_id"] = pid
    minted = client.post(f"/v1/sessions/{sid}/tokens", json=payload, headers=AUTH)
    assert minted.status_code == 201, minted.text
    token: str = minted.json()["data"]["token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_control_endpoints_need_an_api_key(secured: tuple[TestClient, Settings]):
    client, settings = secured
    body = session_body()
    refused = client.post("/v1/sessions", json=body)
    _error(refused, 401, "UNAUTHORIZED")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    _error(client.post("/v1/sessions", json=body, headers=_bearer("wrong")), 401, "UNAUTHORIZED")
    _error(
        client.post("/v1/sessions", json=body, headers={"Authorization": KEY}), 401, "UNAUTHORIZED"
    )
    assert _version(settings, body["session_id"]) is None  # nothing created
    assert client.post("/v1/sessions", json=body, headers=AUTH).status_code == 201
    sid = body["session_id"]
    for command in ("start", "pause", "resume", "complete", "cancel"):
        _error(client.post(f"/v1/sessions/{sid}/{command}"), 401, "UNAUTHORIZED")
    _error(client.delete(f"/v1/sessions/{sid}"), 401, "UNAUTHORIZED")
    assert _version(settings, sid) == 1


def test_minting_needs_an_api_key_and_a_valid_request(secured: tuple[TestClient, Settings]):
    client, _ = secured
    sid = new_id()
    _error(
        client.post(f"/v1/sessions/{sid}/tokens", json={"role": "spectator"}), 401, "UNAUTHORIZED"
    )
    _error(
        client.post(f"/v1/sessions/{sid}/tokens", json={"role": "participant"}, headers=AUTH),
        400,
        "VALIDATION_ERROR",
    )
    _error(
        client.post(f"/v1/sessions/{sid}/tokens", json={"role": "root"}, headers=AUTH),
        400,
        "VALIDATION_ERROR",
    )
    minted = client.post(
        f"/v1/sessions/{sid}/tokens", json={"role": "spectator", "ttl_s": 60}, headers=AUTH
    ).json()["data"]
    claims = jwt.decode(minted["token"], SECRET, algorithms=["HS256"])
    assert claims["sid"] == sid and claims["role"] == "spectator"
    assert claims["exp"] - claims["iat"] == 60
    spectator = _bearer(minted["token"])
    _error(
        client.post(f"/v1/sessions/{sid}/tokens", json={"role": "controller"}, headers=spectator),
        403,
        "FORBIDDEN",
    )


def test_a_participant_switches_only_its_own_turn(secured: tuple[TestClient, Settings]):
    client, settings = secured
    body = _started(client)
    sid = body["session_id"]
    first, second = (p["participant_id"] for p in body["participants"])
    as_first = _bearer(_token(client, sid, "participant", first))
    as_second = _bearer(_token(client, sid, "participant", second))
    _error(client.post(f"/v1/sessions/{sid}/switch", headers=as_second), 409, "CONFLICT")
    assert _version(settings, sid) == 2
    assert client.post(f"/v1/sessions/{sid}/switch", headers=as_first).status_code == 200
    # A double click: the same participant again is out of turn now.
    _error(client.post(f"/v1/sessions/{sid}/switch", headers=as_first), 409, "CONFLICT")
    # Claiming someone else's turn in the body is forbidden outright.
    _error(
        client.post(
            f"/v1/sessions/{sid}/switch", json={"current_participant_id": second}, headers=as_first
        ),
        403,
        "FORBIDDEN",
    )
    assert _version(settings, sid) == 3
    for command in ("pause", "complete", "cancel"):
        _error(client.post(f"/v1/sessions/{sid}/{command}", headers=as_second), 403, "FORBIDDEN")
    _error(client.delete(f"/v1/sessions/{sid}", headers=as_second), 403, "FORBIDDEN")
    assert _version(settings, sid) == 3
    assert client.get(f"/v1/sessions/{sid}", headers=as_second).status_code == 200


def test_a_token_cannot_touch_another_session(secured: tuple[TestClient, Settings]):
    client, settings = secured
    mine, other = _started(client), _started(client)
    controller = _bearer(_token(client, mine["session_id"], "controller"))
    assert (
        client.post(f"/v1/sessions/{mine['session_id']}/pause", headers=controller).status_code
        == 200
    )
    for path in ("switch", "pause"):
        _error(
            client.post(f"/v1/sessions/{other['session_id']}/{path}", headers=controller),
            403,
            "FORBIDDEN",
        )
    _error(client.get(f"/v1/sessions/{other['session_id']}", headers=controller), 403, "FORBIDDEN")
    assert _version(settings, other["session_id"]) == 2


def test_a_spectator_only_reads(secured: tuple[TestClient, Settings]):
    client, settings = secured
    sid = _started(client)["session_id"]
    spectator = _bearer(_token(client, sid, "spectator"))
    assert client.get(f"/v1/sessions/{sid}", headers=spectator).status_code == 200
    for command in ("switch", "pause", "complete"):
        _error(client.post(f"/v1/sessions/{sid}/{command}", headers=spectator), 403, "FORBIDDEN")
    assert _version(settings, sid) == 2
    # With a token secret, reading needs credentials.
    _error(client.get(f"/v1/sessions/{sid}"), 401, "UNAUTHORIZED")


def test_expired_forged_and_malformed_tokens_are_refused(secured: tuple[TestClient, Settings]):
    client, _ = secured
    sid = _started(client)["session_id"]
    policy = AuthPolicy(secret=SECRET)
    expired = policy.mint(sid, Role.CONTROLLER, None, ttl_s=10, now_s=int(time.time()) - 60)
    forged = AuthPolicy(secret="not-the-secret-but-as-long-as-it-32").mint(
        sid, Role.CONTROLLER, None, 60, int(time.time())
    )
    for token in (expired, forged, "not.a.jwt", "x" * 5000):
        _error(
            client.post(f"/v1/sessions/{sid}/pause", headers=_bearer(token)), 401, "UNAUTHORIZED"
        )
    none_alg = jwt.encode(
        {"sid": sid, "role": "controller", "exp": 2**40}, key=None, algorithm="none"
    )
    _error(client.post(f"/v1/sessions/{sid}/pause", headers=_bearer(none_alg)), 401, "UNAUTHORIZED")
    with pytest.raises(Unauthorized):
        AuthPolicy(api_keys=[KEY]).authenticate(f"Bearer {expired}")  # no secret: not a token


def test_sockets_need_a_token_for_their_session(secured: tuple[TestClient, Settings]):
    client, _ = secured
    sid, other = _started(client)["session_id"], _started(client)["session_id"]
    good = _token(client, sid, "spectator")
    for query in (
        f"sessionId={sid}",
        f"sessionId={sid}&token=bad",
        f"sessionId={other}&token={good}",
    ):
        with client.websocket_connect(f"/ws?{query}") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1008
    with client.websocket_connect(f"/ws?sessionId={sid}&token={good}") as ws:
        assert json.loads(ws.receive_text())["type"] == "CONNECTED"
        assert json.loads(ws.receive_text())["type"] == "STATE_SYNC"


def test_without_credentials_configured_everything_is_open(redis_server: EmbeddedRedis):
    with TestClient(create_app(_settings(redis_server), clock=FakeClock())) as client:
        body = session_body()
        assert client.post("/v1/sessions", json=body).status_code == 201
        assert client.get(f"/v1/sessions/{body['session_id']}").status_code == 200
        _error(
            client.post(f"/v1/sessions/{body['session_id']}/tokens", json={"role": "spectator"}),
            401,
            "UNAUTHORIZED",
        )


def test_cors_allows_only_the_configured_origins(redis_server: EmbeddedRedis):
    settings = _settings(redis_server, cors_origins="https://game.example")
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = client.options(
            "/v1/sessions", headers={"Origin": "https://game.example", **preflight}
        )
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == "https://game.example"
        denied = client.options(
            "/v1/sessions", headers={"Origin": "https://evil.example", **preflight}
        )
        assert denied.status_code == 403
        assert denied.headers.get("access-control-allow-origin") is None
        simple = client.get("/v1/time", headers={"Origin": "https://game.example"})
        assert simple.headers["access-control-allow-origin"] == "https://game.example"


# ------------------------------------------------------------------ rate limits


@pytest.fixture
def limited(redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Settings]]:
    settings = _settings(
        redis_server,
        rate_limits=True,
        rate_limit_switch="3/s",
        rate_limit_create="2/min",
        rate_limit_get="3/min",
        rate_limit_time="2/min",
        rate_limit_ws_connect="2/min",
        rate_limit_ws_messages="3/min",
    )
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        yield client, settings


def _limited(response: httpx.Response, limit: int) -> None:
    body = _error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert int(response.headers["retry-after"]) >= 1
    # The Node server's field, whole seconds, equal to Retry-After; ours in details.
    assert body["retry_after_seconds"] == int(response.headers["retry-after"])
    assert isinstance(body["details"]["limit"], str)
    assert body["details"]["retry_after_ms"] >= 1
    assert body["retry_after_seconds"] == max(1, -(-body["details"]["retry_after_ms"] // 1000))
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) >= 1


def test_create_is_limited_per_client_and_a_refused_create_creates_nothing(
    limited: tuple[TestClient, Settings],
):
    client, settings = limited
    bodies = [session_body() for _ in range(3)]
    assert [client.post("/v1/sessions", json=b).status_code for b in bodies[:2]] == [201, 201]
    _limited(client.post("/v1/sessions", json=bodies[2]), 2)
    assert _version(settings, bodies[2]["session_id"]) is None


def test_switch_is_limited_per_session(limited: tuple[TestClient, Settings]):
    client, settings = limited
    first, second = session_body(), session_body()
    for body in (first, second):
        assert client.post("/v1/sessions", json=body).status_code == 201
    sid = first["session_id"]
    assert client.post(f"/v1/sessions/{sid}/start").status_code == 200
    assert [client.post(f"/v1/sessions/{sid}/switch").status_code for _ in range(2)] == [200, 200]
    before = _version(settings, sid)
    _limited(client.post(f"/v1/sessions/{sid}/switch"), 3)
    _limited(client.post(f"/v1/sessions/{sid}/pause"), 3)
    assert _version(settings, sid) == before
    # Another session has a budget of its own.
    assert client.post(f"/v1/sessions/{second['session_id']}/start").status_code == 200
    time.sleep(0.4)  # one hit every 1/3 s comes back
    assert client.post(f"/v1/sessions/{sid}/switch").status_code == 200


def test_get_and_time_are_limited(limited: tuple[TestClient, Settings]):
    client, _ = limited
    body = session_body()
    assert client.post("/v1/sessions", json=body).status_code == 201
    statuses = [client.get(f"/v1/sessions/{body['session_id']}").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    _limited(client.get(f"/v1/sessions/{body['session_id']}"), 3)
    assert [client.get("/v1/time").status_code for _ in range(2)] == [200, 200]
    _limited(client.get("/time"), 2)
    assert client.get("/health").status_code == 200  # never limited


def test_socket_connects_and_messages_are_limited(limited: tuple[TestClient, Settings]):
    client, settings = limited
    body = session_body()
    assert client.post("/v1/sessions", json=body).status_code == 201
    url = f"/ws?sessionId={body['session_id']}"
    with client.websocket_connect(url) as ws:
        ws.receive_text(), ws.receive_text()  # CONNECTED, STATE_SYNC
        for _ in range(3):
            ws.send_text(json.dumps({"type": "PING", "t0": 1}))
            assert json.loads(ws.receive_text())["type"] == "PONG"
        ws.send_text(json.dumps({"type": "PING"}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1008
    with client.websocket_connect(url) as ws:
        assert json.loads(ws.receive_text())["type"] == "CONNECTED"
    with client.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as refused:
        ws.receive_text()
    assert refused.value.code == 1008
    assert _version(settings, body["session_id"]) == 1


def test_rate_parsing_and_the_local_limiter():
    assert parse_rate("X", "10/s") == Rate(10, 1_000)
    assert parse_rate("X", "5/min") == Rate(5, 60_000)
    # n per unit sustained, bursts of b: a GCRA limit of b per b/n units.
    assert parse_rate("X", "20/s burst 600") == Rate(600, 30_000)
    assert parse_rate("X", " 100/s  burst 1000 ") == Rate(1_000, 10_000)
    for bad in ("ten/s", "0/s", "5/fortnight", "5", "5/s burst", "5/s burst 0", "5/s bust 9"):
        with pytest.raises(ValueError):
            parse_rate("X", bad)
    limiter = LocalLimiter(Rate(2, 1_000))
    assert [limiter.hit(0), limiter.hit(0), limiter.hit(0)] == [True, True, False]
    assert limiter.hit(499) is False and limiter.hit(500) is True
    burst = LocalLimiter(parse_rate("X", "20/s burst 600"))
    assert all(burst.hit(0) for _ in range(600)) and burst.hit(0) is False
    assert burst.hit(49) is False and burst.hit(50) is True  # then one every 50 ms


# ------------------------------------------------------------------ hostile input


@pytest.fixture
def open_client(redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Settings]]:
    settings = _settings(redis_server, max_body_bytes=2_000_000)
    with TestClient(create_app(settings, clock=FakeClock())) as client:
        yield client, settings


def test_hostile_bodies_get_4xx_and_change_nothing(open_client: tuple[TestClient, Settings]):
    client, settings = open_client
    body = session_body()
    assert client.post("/v1/sessions", json=body).status_code == 201
    assert client.post(f"/v1/sessions/{body['session_id']}/start").status_code == 200
    sid = body["session_id"]
    headers = {"content-type": "application/json"}
    hostile = [
        b'{"session_id": "\xff\xfe"}',  # invalid UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"\x00\x01\x02",
        b'{"session_id": 5, "sync_mode": [], "participants": "x"}',
        b"",
    ]
    for raw in hostile:
        assert client.post("/v1/sessions", content=raw, headers=headers).status_code == 400
    for raw in [*hostile[:4], b'{"expected_version": []}', b"[]"]:
        response = client.post(f"/v1/sessions/{sid}/switch", content=raw, headers=headers)
        assert response.status_code == 400, raw[:40]
    many = session_body(participants=1)
    many["participants"] = [
        {"participant_id": new_id(), "participant_index": i, "total_time_ms": 60_000}
        for i in range(10_000)
    ]
    _error(client.post("/v1/sessions", json=many), 400, "VALIDATION_ERROR")
    wrong_types: list[dict[str, Any]] = [
        {"expected_version": "3"},
        {"expected_version": -1},
        {"expected_version": 2**70},
        {"next_participant_id": 12},
        {"current_participant_id": "not-a-uuid"},
        {"next_participant_id": None, "expected_version": 1.5},
    ]
    for wrong in wrong_types:
        _error(client.post(f"/v1/sessions/{sid}/switch", json=wrong), 400, "VALIDATION_ERROR")
    for path in ("/v1/sessions/not-a-uuid", "/v1/sessions/" + "a" * 5000):
        assert client.get(path).status_code in (400, 404)
    assert _version(settings, sid) == 2
    assert client.get("/ready").status_code == 200


def test_hostile_socket_messages_get_errors_and_keep_the_connection(
    open_client: tuple[TestClient, Settings],
):
    client, settings = open_client
    body = session_body()
    assert client.post("/v1/sessions", json=body).status_code == 201
    with client.websocket_connect(f"/ws?sessionId={body['session_id']}") as ws:
        ws.receive_text(), ws.receive_text()
        for text in (
            '{"type":"LAUNCH_MISSILES"}',
            "not json",
            "[1,2]",
            '{"type": 5}',
            "{" * 10_000,
        ):
            ws.send_text(text)
            assert json.loads(ws.receive_text())["type"] == "ERROR"
        ws.send_bytes(b"\x00\xff binary")
        assert json.loads(ws.receive_text())["type"] == "ERROR"
        ws.send_text(json.dumps({"type": "PING", "t0": 7}))
        pong = json.loads(ws.receive_text())
        assert pong["type"] == "PONG" and pong["t0"] == 7  # the connection was kept
    assert _version(settings, body["session_id"]) == 1


# ------------------------------------------------------------------ slow clients and caps


@pytest.fixture(scope="module")
def guarded(redis_server: EmbeddedRedis) -> Iterator[ServerProcess]:
    server = ServerProcess(
        redis_server.url,
        SYNCKAIROS_HTTP_HEADER_TIMEOUT_S="1",
        SYNCKAIROS_HTTP_BODY_TIMEOUT_S="3",  # the cap test holds bodies open meanwhile
        SYNCKAIROS_HTTP_IDLE_TIMEOUT_S="1",
        SYNCKAIROS_MAX_CONNECTIONS="8",
    )
    yield server
    server.stop()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False


def test_a_slowloris_client_is_disconnected(guarded: ServerProcess):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        assert _closed_within(sock, 4)
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        assert _closed_within(sock, 4)  # nothing sent at all


def test_a_slow_body_gets_408_and_an_idle_connection_is_closed(guarded: ServerProcess):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_within(sock, 4)  # keep-alive idle timeout


def test_connections_beyond_the_cap_get_503(guarded: ServerProcess):
    held = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(8)]
    try:
        for sock in held:
            sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        # The server counts the held connections once it has accepted them,
        # which takes longer on a loaded machine: ask until it refuses.
        statuses: list[int] = []
        deadline = time.monotonic() + 5
        while 503 not in statuses and time.monotonic() < deadline:
            statuses.append(httpx.get(f"{guarded.url}/health", timeout=5).status_code)
            time.sleep(0.05)
        assert 503 in statuses
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{guarded.url}/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
