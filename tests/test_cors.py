"""Issue 15: cross-origin use of the API and ``/ws`` (``SYNCKAIROS_CORS_ORIGINS``).

``synckairos dev`` allows any origin (as the Node.js server does by default);
``serve`` allows only its own origin unless the setting lists others or says
``*``. A preflight answers 204; a refused origin gets 403 on HTTP and on the
WebSocket handshake; requests without ``Origin`` (backends, curl) are never
refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from synckairos.app import create_app
from synckairos.cli import dev_defaults
from synckairos.config import Settings, load_settings
from synckairos.dev.embedded import EmbeddedRedis
from tests.conftest import ServerProcess
from tests.helpers import FakeClock, new_id, session_body

GAME = "https://game.example"
EVIL = "https://evil.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, if-match",
}


def _client(redis_server: EmbeddedRedis, cors_origins: str | None) -> TestClient:
    settings = Settings(
        redis_url=redis_server.url,
        key_prefix=f"c{new_id()[:8]}",
        rate_limits=False,
        scheduler=False,
        gc_unfreeze_s=0,
        cors_origins=cors_origins,
    )
    return TestClient(create_app(settings, clock=FakeClock()))


@pytest.fixture
def any_origin(redis_server: EmbeddedRedis) -> Iterator[TestClient]:
    with _client(redis_server, "*") as client:
        yield client


@pytest.fixture
def same_origin(redis_server: EmbeddedRedis) -> Iterator[TestClient]:
    with _client(redis_server, None) as client:
        yield client


def test_dev_allows_any_origin_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SYNCKAIROS_CORS_ORIGINS", raising=False)
    assert load_settings({}).cors_origins is None  # serve: same-origin only
    assert dev_defaults(load_settings({})).cors_origins == "*"
    # uvicorn's app factory reads the environment again: it must say the same.
    assert load_settings().cors_origins == "*"
    monkeypatch.setenv("SYNCKAIROS_CORS_ORIGINS", GAME)
    assert dev_defaults(load_settings()).cors_origins == GAME


def test_any_origin_preflight_is_204_and_answers_carry_the_headers(any_origin: TestClient):
    client = any_origin
    preflight = client.options("/v1/sessions", headers={"Origin": GAME, **PREFLIGHT})
    assert preflight.status_code == 204
    assert preflight.content == b""
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    assert (
        preflight.headers["access-control-allow-headers"]
        == PREFLIGHT["Access-Control-Request-Headers"]
    )
    assert int(preflight.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in preflight.headers  # bearer, no cookies
    # Every route answers its preflight, the session routes and /v1/time included.
    sid = new_id()
    for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/switch", "/v1/time"):
        assert client.options(path, headers={"Origin": EVIL, **PREFLIGHT}).status_code == 204
    body = session_body()
    created = client.post("/v1/sessions", json=body, headers={"Origin": GAME})
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == "*"
    assert "ETag" in created.headers["access-control-expose-headers"]
    assert "Retry-After" in created.headers["access-control-expose-headers"]
    missing = client.get(f"/v1/sessions/{new_id()}", headers={"Origin": GAME})
    assert missing.status_code == 404  # errors carry the header too: the page reads them
    assert missing.headers["access-control-allow-origin"] == "*"


def test_any_origin_sockets_from_another_origin_are_accepted(any_origin: TestClient):
    client = any_origin
    body = session_body()
    assert client.post("/v1/sessions", json=body).status_code == 201
    url = f"/ws?sessionId={body['session_id']}"
    with client.websocket_connect(url, headers={"Origin": EVIL}) as ws:
        assert json.loads(ws.receive_text())["type"] == "CONNECTED"


def test_listed_origins_only(redis_server: EmbeddedRedis):
    with _client(redis_server, f"{GAME}, https://admin.example") as client:
        allowed = client.options("/v1/sessions", headers={"Origin": GAME, **PREFLIGHT})
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == GAME
        assert "Origin" in allowed.headers["vary"]
        simple = client.get("/v1/time", headers={"Origin": "https://admin.example"})
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == "https://admin.example"
        assert "Origin" in simple.headers["vary"]
        _refused_everywhere(client)


def test_serve_default_is_same_origin_only(same_origin: TestClient):
    client = same_origin
    _refused_everywhere(client)
    # The server's own pages (the inspector) are same-origin: allowed.
    own = "http://testserver"
    body = session_body()
    created = client.post("/v1/sessions", json=body, headers={"Origin": own})
    assert created.status_code == 201
    url = f"/ws?sessionId={body['session_id']}"
    with client.websocket_connect(url, headers={"Origin": own}) as ws:
        assert json.loads(ws.receive_text())["type"] == "CONNECTED"
    # No Origin (a backend, curl, a native client): never refused, no CORS headers.
    plain = client.get(f"/v1/sessions/{body['session_id']}")
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers


def _refused_everywhere(client: TestClient) -> None:
    preflight = client.options("/v1/sessions", headers={"Origin": EVIL, **PREFLIGHT})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.json()["error"]["code"] == "FORBIDDEN"
    # A "simple" cross-site POST is refused before it runs (no preflight protects it).
    body = session_body()
    refused = client.post("/v1/sessions", json=body, headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert client.get(f"/v1/sessions/{body['session_id']}").status_code == 404  # not created
    assert client.post("/v1/sessions", json=body).status_code == 201
    url = f"/ws?sessionId={body['session_id']}"
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(url, headers={"Origin": EVIL}),
    ):
        pass
    assert closed.value.code == 1008
    # Origin "null" (a sandboxed frame, a file:// page) is another origin too.
    assert (
        client.post("/v1/sessions", json=session_body(), headers={"Origin": "null"}).status_code
        == 403
    )


def test_a_real_server_refuses_a_foreign_socket_handshake_with_403(redis_server: EmbeddedRedis):
    server = ServerProcess(redis_server.url, SYNCKAIROS_CORS_ORIGINS=GAME)
    try:
        asyncio.run(_handshakes(server))
    finally:
        server.stop()


async def _handshakes(server: ServerProcess) -> None:

    body: dict[str, Any] = session_body()
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/v1/sessions", json=body)).status_code == 201
    url = f"{server.ws_url}/ws?sessionId={body['session_id']}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin=websockets.Origin(EVIL)):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, origin=websockets.Origin(GAME)) as ws:
        assert json.loads(await ws.recv())["type"] == "CONNECTED"
    async with websockets.connect(url) as ws:  # no Origin: not a browser
        assert json.loads(await ws.recv())["type"] == "CONNECTED"
