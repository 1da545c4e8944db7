"""A private ``synckairos serve`` process per fuzz module, watched for crashes and tracebacks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from synckairos.dev.embedded import EmbeddedRedis
from tests.conftest import ServerProcess
from tests.helpers import new_id, session_body

#: A turn budget no fuzz run comes near: no deadline fires while the fuzzers run.
HOUR_MS = 3_600_000


#: Logged with a traceback by uvicorn itself when a text frame is not UTF-8 (it then
#: closes the socket with 1007, as RFC 6455 wants): expected in the fatal-frame tests.
EXPECTED_LOGS = ("Invalid UTF-8 sequence received from client",)


@dataclass
class FuzzServer:
    """A real server process with its own key prefix, and a Redis client on its keys."""

    process: ServerProcess
    prefix: str
    redis: redis.Redis
    stderr: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ws_url(self) -> str:
        return self.process.ws_url

    def state_key(self, session_id: str) -> str:
        """The Redis hash holding a session's state JSON (``s``), version (``v``), epoch (``e``)."""
        return f"{self.prefix}:{{{session_id}}}"

    def versions(self, session_ids: list[str]) -> list[int | None]:
        """Stored version of each session (None: no such session), read in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hget(self.state_key(session_id), "v")
        return [None if v is None else int(v) for v in pipe.execute()]

    def stored_status(self, session_id: str) -> str | None:
        """``status`` of the stored state (None: no such session)."""
        raw = self.redis.hget(self.state_key(session_id), "s")
        if raw is None:
            return None
        status: str = json.loads(raw)["status"]
        return status

    def alive(self) -> bool:
        return self.process.process.poll() is None

    def problems(self) -> list[str]:
        """Server log lines that betray a bug: tracebacks and unhandled errors."""
        markers = ("Traceback", "unhandled error", "Exception in ASGI", "ended with")
        return [
            line
            for line in self.stderr
            if any(m in line for m in markers) and not any(ok in line for ok in EXPECTED_LOGS)
        ]

    def assert_healthy(self) -> None:
        """The process runs, ``/health`` and ``/ready`` answer 200, and it logged no traceback."""
        assert self.alive(), f"server exited with {self.process.process.returncode}"
        with httpx.Client(base_url=self.url, timeout=5, trust_env=False) as http:
            assert http.get("/health").status_code == 200
            ready = http.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
        assert not self.problems(), "".join(self.stderr[-200:])

    def create_session(
        self, http: httpx.Client, *, start: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        """Create (and start) a session whose timers cannot run out during the run."""
        body = session_body(budget_ms=HOUR_MS, **kwargs)
        response = http.post("/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        if start:
            response = http.post(f"/v1/sessions/{body['session_id']}/start")
            assert response.status_code == 200, response.text
        return body


def _drain(stream: Any, sink: list[str]) -> None:
    # The server's stderr is a pipe: read it all the time, or a chatty server blocks on it.
    for line in iter(stream.readline, b""):
        sink.append(line.decode(errors="replace"))


@pytest.fixture(scope="module")
def fuzz_server(redis_server: EmbeddedRedis) -> Iterator[FuzzServer]:
    """A ``synckairos serve`` process for one fuzz module: rate limits off, private key prefix.

    Auth is whatever the defaults are (off unless SYNCKAIROS_API_KEYS or
    SYNCKAIROS_TOKEN_SECRET are set, which this fixture never does).
    """
    prefix = f"fz{new_id()[:8]}"
    process = ServerProcess(
        redis_server.url,
        SYNCKAIROS_RATE_LIMITS="off",
        SYNCKAIROS_KEY_PREFIX=prefix,
        SYNCKAIROS_LOG_LEVEL="warning",
    )
    client = redis.Redis.from_url(redis_server.url)
    server = FuzzServer(process, prefix, client)
    assert process.process.stderr is not None
    reader = threading.Thread(
        target=_drain, args=(process.process.stderr, server.stderr), daemon=True
    )
    reader.start()
    try:
        yield server
    finally:
        process.stop()
        reader.join(timeout=5)
        client.close()
