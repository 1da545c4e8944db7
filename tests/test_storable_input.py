"""The API accepts only what PostgreSQL stores (issue 14): refusals are 400 and change nothing.

The HTTP tests run the app on the real Redis; the checks of
``core.storable`` are pure.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from dramatiq import Message
from starlette.testclient import TestClient

from tests.helpers import session_body

#: ``synckairos.core.storable.MAX_METADATA_DEPTH`` (the HTTP tests do not import it,
#: so they also run, and fail, on a server without the checks).
MAX_METADATA_DEPTH = 32


def _nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep (the object itself is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


UNSTORABLE: dict[str, tuple[str, str]] = {
    # name: (raw JSON of metadata, field named in the answer)
    "nul in a value": ('{"name": "Al\\u0000ice"}', "metadata.name"),
    "nul in a key": ('{"na\\u0000me": "Alice"}', "metadata.na\\u0000me"),
    "nul deep in a list": ('{"a": [1, {"b": ["x", "\\u0000"]}]}', "metadata.a.1.b.1"),
    "too deep": (json.dumps(_nested(MAX_METADATA_DEPTH + 1)), "metadata" + ".k" * 32),
}


@pytest.mark.parametrize("name", list(UNSTORABLE))
def test_metadata_postgres_cannot_store_is_refused_and_nothing_is_created(
    client: TestClient, name: str
):
    raw, field = UNSTORABLE[name]
    body = session_body()
    text = json.dumps({**body, "metadata": "PLACEHOLDER"}).replace('"PLACEHOLDER"', raw)
    response = client.post(
        "/v1/sessions", content=text, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in error["details"]], error
    assert client.get(f"/v1/sessions/{body['session_id']}").status_code == 404


@pytest.mark.parametrize(
    "raw", ['{"a": "\\ud800"}', '{"\\udfff": 1}', '{"a": "x\\udc00y"}', '{"a": 1e400}']
)
def test_lone_surrogates_and_infinite_numbers_are_refused_by_the_decoder(
    client: TestClient, raw: str
):
    body = session_body()
    text = json.dumps({**body, "metadata": "PLACEHOLDER"}).replace('"PLACEHOLDER"', raw)
    response = client.post(
        "/v1/sessions", content=text, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get(f"/v1/sessions/{body['session_id']}").status_code == 404


@pytest.mark.parametrize("where", ["session_id", "participant_id", "group_id"])
def test_an_id_with_a_trailing_newline_is_refused(client: TestClient, where: str):
    """``'<uuid>\\n'::uuid`` fails in PostgreSQL: such an id would poison the audit trail."""
    body = session_body(mode="per_group", participants=2)
    sid = body["session_id"]
    if where == "session_id":
        body["session_id"] = sid + "\n"
    else:
        body["participants"][0][where] += "\n"
    response = client.post("/v1/sessions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get(f"/v1/sessions/{sid}").status_code == 404


def test_storable_metadata_at_the_limits_is_accepted(client: TestClient):
    metadata = {
        "deep": _nested(MAX_METADATA_DEPTH - 1),
        "big": 10**40,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "controls": "\x01\x1f\x7f\u2028\ufeff\uffff\U0010ffff",
        "emoji": "\U0001f600",
    }
    body = session_body(metadata=metadata)
    response = client.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["metadata"] == metadata


def test_storable_problems_reports_each_kind_once_with_its_path():
    from synckairos.core import storable

    assert storable.MAX_METADATA_DEPTH == MAX_METADATA_DEPTH
    storable_problems = storable.storable_problems
    value = {"a\x00": ["\x00", "\x00"], "b": _nested(MAX_METADATA_DEPTH + 5), "c": float("nan")}
    problems = storable_problems(value)
    assert sorted(p["field"] for p in problems) == sorted(
        ["metadata.a\\u0000", "metadata.c", "metadata.b" + ".k" * 31]
    )
    assert storable_problems({"ok": [1, 2.5, "x", None, True, {"y": []}]}) == []


def test_storable_problems_never_recurses():
    from synckairos.core.storable import storable_problems

    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert storable_problems({"d": deep})[0]["message"].startswith("nested deeper")


def test_dramatiq_log_records_lose_message_arguments_and_exception_text(
    caplog: pytest.LogCaptureFixture,
):
    """What dramatiq logs for a failing batch: the message (every event) and a traceback."""
    from synckairos.audit.pipeline import redact_dramatiq_logs

    secret = "PERSONAL-DATA-e9c4"
    message: Message[Any] = Message(
        queue_name="synckairos_audit",
        actor_name="persist_events",
        args=([["id-1", "sid-1", 1, "session_created", "ep", f'{{"metadata":"{secret}"}}']],),
        kwargs={},
        options={},
    )
    caplog.set_level(logging.DEBUG)
    redact_dramatiq_logs()  # on the root logger's handlers, caplog's among them
    assert caplog.handler.filters
    dramatiq_logger = logging.getLogger("dramatiq.worker.WorkerThread")
    try:
        raise ValueError(f"Failing row contains ({secret})")
    except ValueError:
        dramatiq_logger.error(
            "Failed to process message %s with unhandled exception.", message, exc_info=True
        )
    logging.getLogger("dramatiq.actor.Actor").debug("Received args=%r kwargs=%r.", (1,), {})
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert secret not in text
    assert message.message_id in text and "ValueError" in text
