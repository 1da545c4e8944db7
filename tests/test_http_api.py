"""HTTP API against a real Redis: every endpoint, every mode, every error code."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from synckairos.app import create_app
from synckairos.config import Settings
from synckairos.dev.embedded import free_port
from tests.helpers import FakeClock, new_id, session_body

MODES = ["per_participant", "per_cycle", "per_group", "global", "count_up"]


def _create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _post(client: TestClient, sid: str, action: str, **kwargs: Any) -> Any:
    return client.post(f"/v1/sessions/{sid}/{action}", **kwargs)


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


# ------------------------------------------------------------------ happy paths


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs_its_whole_lifecycle_over_http(
    client: TestClient, clock: FakeClock, mode: str
):
    body = session_body(mode, participants=3, max_time_ms=120_000)
    sid = body["session_id"]
    created = _create(client, body)
    assert created["status"] == "pending" and created["version"] == 1
    assert created["sync_mode"] == mode
    assert created["created_at"].endswith("Z") and len(created["created_at"]) == 24

    clock.advance(100)
    started = _post(client, sid, "start").json()["data"]
    assert started["status"] == "running" and started["version"] == 2
    first = body["participants"][0]["participant_id"]
    assert started["active_participant_id"] == first
    assert started["cycle_started_ms"] == clock.now
    assert started["deadline_ms"] is not None

    clock.advance(1_000)
    switched = _post(client, sid, "switch").json()["data"]
    assert switched["version"] == 3
    assert switched["active_participant_id"] == body["participants"][1]["participant_id"]
    mover = next(p for p in switched["participants"] if p["participant_id"] == first)
    assert mover["time_used_ms"] == 1_000 and mover["cycle_count"] == 1

    clock.advance(500)
    paused = _post(client, sid, "pause").json()["data"]
    assert paused["status"] == "paused" and paused["deadline_ms"] is None
    clock.advance(10_000)
    resumed = _post(client, sid, "resume").json()["data"]
    assert resumed["status"] == "running" and resumed["cycle_started_ms"] == clock.now
    assert [p["time_remaining_ms"] for p in resumed["participants"]] == [
        p["time_remaining_ms"] for p in paused["participants"]
    ]

    completed = _post(client, sid, "complete").json()["data"]
    assert completed["status"] == "completed"
    assert completed["session_completed_at"] is not None
    assert completed["active_participant_id"] is None and completed["deadline_ms"] is None

    got = client.get(f"/v1/sessions/{sid}")
    assert got.status_code == 200
    assert got.json()["data"]["version"] == completed["version"] == 6


def test_per_participant_switch_charges_time_and_grants_increment(
    client: TestClient, clock: FakeClock
):
    body = session_body(budget_ms=60_000, increment_ms=2_000)
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    clock.advance(1_500)
    data = _post(client, sid, "switch").json()["data"]
    first, second = data["participants"]
    assert first["time_used_ms"] == 1_500
    assert first["time_remaining_ms"] == first["total_time_ms"] == 60_500
    assert second["is_active"] and data["deadline_ms"] == clock.now + 60_000
    assert data["banks"][first["participant_id"]]["increments_ms"] == 2_000


def test_switch_to_a_named_participant(client: TestClient):
    body = session_body(participants=3)
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    target = body["participants"][2]["participant_id"]
    data = _post(client, sid, "switch", json={"next_participant_id": target}).json()["data"]
    assert data["active_participant_id"] == target


def test_cancel_ends_a_session(client: TestClient):
    body = session_body()
    _create(client, body)
    data = _post(client, body["session_id"], "cancel").json()["data"]
    assert data["status"] == "cancelled"


def test_delete_answers_204_then_the_session_is_gone(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    _error(client.get(f"/v1/sessions/{sid}"), 404, "SESSION_NOT_FOUND")
    # Idempotent, as on the Node.js server: deleting again (or an id never
    # created) is a 204 that changes nothing ...
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert client.delete(f"/v1/sessions/{new_id()}").status_code == 204
    # ... but a precondition names a state, and there is none.
    _error(
        client.delete(f"/v1/sessions/{sid}", headers={"If-Match": "1"}), 404, "SESSION_NOT_FOUND"
    )


def test_get_reports_the_current_server_time(client: TestClient, clock: FakeClock):
    body = session_body()
    _create(client, body)
    clock.advance(5_000)
    data = client.get(f"/v1/sessions/{body['session_id']}").json()["data"]
    assert data["server_time_ms"] == clock.now


def test_unknown_fields_are_ignored_and_not_stored(client: TestClient):
    body = session_body(colour="blue")
    body["participants"][0]["nickname"] = "x"
    data = _create(client, body)
    assert "colour" not in data and "nickname" not in data["participants"][0]
    stored = client.get(f"/v1/sessions/{body['session_id']}").json()["data"]
    assert "colour" not in stored


def test_metadata_and_extensions_round_trip(client: TestClient):
    body = session_body(
        metadata={"table": 7},
        auto_advance=True,
        action_on_timeout={"type": "notify"},
    )
    data = _create(client, body)
    assert data["metadata"] == {"table": 7}
    assert data["auto_advance"] is True
    assert data["action_on_timeout"] == {"type": "notify"}
    assert data["recovered"] is False


def test_a_timer_past_its_deadline_times_out_before_the_next_command(
    client: TestClient, clock: FakeClock
):
    body = session_body(budget_ms=1_000)
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    started_at = clock.now
    clock.advance(1_700)
    # The flag fell first: the switch answers like the Node.js server (200,
    # expired_participant_id) with the state the timeout left; it does not apply.
    late = _post(client, sid, "switch")
    assert late.status_code == 200, late.text
    answered = late.json()["data"]
    assert answered["expired_participant_id"] == body["participants"][0]["participant_id"]
    assert answered["status"] == "expired" and answered["version"] == 3
    state = client.get(f"/v1/sessions/{sid}").json()["data"]
    assert state["status"] == "expired" and state["version"] == 3
    first = state["participants"][0]
    assert first["has_expired"] and first["time_used_ms"] == 1_000
    assert first["time_remaining_ms"] == 0
    assert state["session_completed_at"] is not None
    assert state["deadline_ms"] is None
    assert started_at + 1_000 <= clock.now


def test_a_switch_after_the_flag_fell_honours_only_preconditions_of_the_turn_that_ran_out(
    client: TestClient, clock: FakeClock
):
    body = session_body(budget_ms=1_000)
    sid = body["session_id"]
    first, second = (p["participant_id"] for p in body["participants"])
    _create(client, body)
    _post(client, sid, "start")  # version 2
    clock.advance(1_500)
    # A version older than the turn that ran out, or another participant's
    # turn: the usual 409 (the timeout is committed by the first of them).
    _error(_post(client, sid, "switch", json={"expected_version": 1}), 409, "CONFLICT")
    stale = _post(client, sid, "switch", json={"current_participant_id": second})
    _error(stale, 409, "CONFLICT")
    # The turn that ran out, by its version before or after the timeout, or
    # by its participant: 200 with expired_participant_id, nothing committed.
    for precondition in (
        {"expected_version": 2},
        {"expected_version": 3},
        {"current_participant_id": first},
    ):
        late = _post(client, sid, "switch", json=precondition)
        assert late.status_code == 200, late.text
        data = late.json()["data"]
        assert data["expired_participant_id"] == first and data["version"] == 3
    assert client.get(f"/v1/sessions/{sid}").json()["data"]["version"] == 3


@pytest.mark.parametrize("ending", ["complete", "cancel", "timeout"])
def test_complete_on_a_finished_session_is_a_no_op_but_keeps_its_preconditions(
    client: TestClient, clock: FakeClock, ending: str
):
    body = session_body(budget_ms=1_000)
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    if ending == "timeout":
        clock.advance(1_500)
        _post(client, sid, "pause")  # commits the overdue timeout first, then refuses
    else:
        _post(client, sid, ending)
    finished = client.get(f"/v1/sessions/{sid}").json()["data"]
    assert finished["status"] in ("completed", "cancelled", "expired")
    clock.advance(10)
    again = _post(client, sid, "complete")
    assert again.status_code == 200, again.text
    data = again.json()["data"]
    assert data["version"] == finished["version"] and data["status"] == finished["status"]
    assert data["updated_at"] == finished["updated_at"]
    assert again.headers["etag"] == f'"{finished["version"]}"'
    wrong = _post(client, sid, "complete", headers={"If-Match": "1"})
    _error(wrong, 409, "CONFLICT")


def test_per_cycle_timeouts_skip_to_the_next_participant(client: TestClient, clock: FakeClock):
    body = session_body("per_cycle", participants=3)
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    clock.advance(25_000)  # two 10 s turns ran out: now in the third turn
    data = _post(client, sid, "switch").json()["data"]
    # versions: start=2, two timeouts=3,4, switch=5
    assert data["version"] == 5
    assert data["active_participant_id"] == body["participants"][0]["participant_id"]


# ------------------------------------------------------------------ preconditions


def test_if_match_with_the_current_version_applies(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    response = _post(client, sid, "switch", headers={"If-Match": '"2"'})
    assert response.status_code == 200
    assert response.headers["etag"] == '"3"'


@pytest.mark.parametrize("where", ["header", "body"])
def test_stale_version_precondition_answers_409_and_changes_nothing(client: TestClient, where):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    before = client.get(f"/v1/sessions/{sid}").json()["data"]
    kwargs: dict[str, Any] = (
        {"headers": {"If-Match": "1"}} if where == "header" else {"json": {"expected_version": 1}}
    )
    error = _error(_post(client, sid, "switch", **kwargs), 409, "CONFLICT")
    assert error["details"]["expected_version"] == 1
    assert error["details"]["actual_version"] == 2
    after = client.get(f"/v1/sessions/{sid}").json()["data"]
    assert after["version"] == before["version"]
    assert after["participants"] == before["participants"]


def test_current_participant_precondition_stops_a_double_switch(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    first = body["participants"][0]["participant_id"]
    _create(client, body)
    _post(client, sid, "start")
    ok = _post(client, sid, "switch", json={"current_participant_id": first})
    assert ok.status_code == 200
    again = _post(client, sid, "switch", json={"current_participant_id": first})
    error = _error(again, 409, "CONFLICT")
    assert error["details"]["actual_participant_id"] == body["participants"][1]["participant_id"]
    assert client.get(f"/v1/sessions/{sid}").json()["data"]["version"] == 3


def test_preconditions_apply_to_every_mutating_endpoint(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    for action in ("start", "pause", "resume", "complete", "cancel"):
        _error(_post(client, sid, action, headers={"If-Match": "7"}), 409, "CONFLICT")
    _error(client.delete(f"/v1/sessions/{sid}", headers={"If-Match": "7"}), 409, "CONFLICT")
    assert client.get(f"/v1/sessions/{sid}").json()["data"]["version"] == 1


def test_malformed_if_match_is_a_validation_error(client: TestClient):
    body = session_body()
    _create(client, body)
    _error(_post(client, body["session_id"], "start", headers={"If-Match": "abc"}), 400,
           "VALIDATION_ERROR")  # fmt: skip


# ------------------------------------------------------------------ errors


def test_duplicate_create_answers_409_and_leaves_the_original_untouched(client: TestClient):
    body = session_body()
    original = _create(client, body)
    clash = session_body(budget_ms=5_000, session_id=body["session_id"])
    _error(client.post("/v1/sessions", json=clash), 409, "SESSION_EXISTS")
    stored = client.get(f"/v1/sessions/{body['session_id']}").json()["data"]
    assert stored["participants"] == original["participants"]
    assert stored["version"] == 1


INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("budget below 1 s", session_body(total_time_ms=999), "total_time_ms"),
    ("budget above 24 h", session_body(total_time_ms=86_400_001), "total_time_ms"),
    ("increment above 60 s", session_body(increment_ms=60_001), "increment_ms"),
    ("negative increment", session_body(increment_ms=-1), "increment_ms"),
    ("bad max_time_ms", session_body(max_time_ms=10), "max_time_ms"),
    ("no participants", session_body(participants=0), "participants"),
    ("wrong type", session_body(total_time_ms="60000"), "total_time_ms"),
    ("session id not a uuid", session_body(session_id="abc"), "session_id"),
    ("unknown mode", session_body(sync_mode="chess"), "sync_mode"),
    (
        "unknown timeout action",
        session_body(action_on_timeout={"type": "explode"}),
        "action_on_timeout",
    ),
    ("metadata over 10 KB", session_body(metadata={"x": "y" * 11_000}), "metadata"),
    (
        "per_cycle without a turn budget",
        session_body("per_cycle", time_per_cycle_ms=None),
        "time_per_cycle_ms",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "field"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES]
)
def test_invalid_create_answers_400_with_the_field_and_stores_nothing(
    client: TestClient, case: str, body: dict[str, Any], field: str
):
    if body.get("time_per_cycle_ms", 0) is None:
        del body["time_per_cycle_ms"]
    error = _error(client.post("/v1/sessions", json=body), 400, "VALIDATION_ERROR")
    assert any(field in d["field"] for d in error["details"]), error
    sid = body["session_id"]
    if isinstance(sid, str) and len(sid) == 36:
        _error(client.get(f"/v1/sessions/{sid}"), 404, "SESSION_NOT_FOUND")


def test_participant_limits(client: TestClient):
    too_many = session_body(participants=1001, budget_ms=1_000)
    error = _error(client.post("/v1/sessions", json=too_many), 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "participants"
    _create(client, session_body(participants=1000, budget_ms=1_000))
    duplicate = session_body(participants=2)
    duplicate["participants"][1]["participant_id"] = duplicate["participants"][0]["participant_id"]
    _error(client.post("/v1/sessions", json=duplicate), 400, "VALIDATION_ERROR")


def test_malformed_json_is_a_validation_error(client: TestClient):
    for raw in (b"{", b"not json", b"\xff\xfe", b"[]", b"null"):
        response = client.post(
            "/v1/sessions", content=raw, headers={"content-type": "application/json"}
        )
        _error(response, 400, "VALIDATION_ERROR")


def test_invalid_transitions_answer_400_and_change_nothing(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    for action in ("switch", "pause", "resume"):
        error = _error(_post(client, sid, action), 400, "INVALID_STATE_TRANSITION")
        assert error["details"]["status"] == "pending"
    _post(client, sid, "start")
    _error(_post(client, sid, "start"), 400, "INVALID_STATE_TRANSITION")
    _error(_post(client, sid, "resume"), 400, "INVALID_STATE_TRANSITION")
    _post(client, sid, "pause")
    _error(_post(client, sid, "switch"), 400, "INVALID_STATE_TRANSITION")
    _post(client, sid, "cancel")
    for action in ("start", "switch", "pause", "resume", "cancel"):
        _error(_post(client, sid, action), 400, "INVALID_STATE_TRANSITION")
    # complete on a finished session is a no-op 200 (docs/compatibility.md)
    noop = _post(client, sid, "complete")
    assert noop.status_code == 200 and noop.json()["data"]["status"] == "cancelled"
    assert client.get(f"/v1/sessions/{sid}").json()["data"]["version"] == 4


def test_switch_to_an_unknown_participant_is_a_validation_error(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    response = _post(client, sid, "switch", json={"next_participant_id": new_id()})
    _error(response, 400, "VALIDATION_ERROR")
    bad_type = _post(client, sid, "switch", json={"expected_version": "two"})
    _error(bad_type, 400, "VALIDATION_ERROR")
    assert client.get(f"/v1/sessions/{sid}").json()["data"]["version"] == 2


@pytest.mark.parametrize("action", ["start", "switch", "pause", "resume", "complete", "cancel"])
def test_commands_on_an_unknown_session_answer_404(client: TestClient, action: str):
    _error(_post(client, new_id(), action), 404, "SESSION_NOT_FOUND")


def test_a_malformed_session_id_is_a_validation_error(client: TestClient):
    _error(client.get("/v1/sessions/not-a-uuid"), 400, "VALIDATION_ERROR")
    _error(_post(client, "not-a-uuid", "start"), 400, "VALIDATION_ERROR")


def test_oversized_bodies_answer_413(settings: Settings, clock: FakeClock):
    small = msgspec.structs.replace(settings, max_body_bytes=1_000)
    with TestClient(create_app(small, clock=clock)) as client:
        body = session_body(metadata={"pad": "x" * 2_000})
        _error(client.post("/v1/sessions", json=body), 413, "PAYLOAD_TOO_LARGE")
        _error(client.get(f"/v1/sessions/{body['session_id']}"), 404, "SESSION_NOT_FOUND")


def test_unknown_routes_and_methods_use_the_error_envelope(client: TestClient):
    _error(client.get("/v2/nothing"), 404, "NOT_FOUND")
    _error(client.put("/v1/sessions"), 405, "METHOD_NOT_ALLOWED")


def test_an_unreachable_redis_answers_503_and_ready_fails(clock: FakeClock):
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_failover_budget_ms=500
    )
    with TestClient(create_app(settings, clock=clock)) as client:
        _error(client.post("/v1/sessions", json=session_body()), 503, "UNAVAILABLE")
        _error(client.get(f"/v1/sessions/{new_id()}"), 503, "UNAVAILABLE")
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready" and ready.json()["redis"] == "down"
        assert ready.json()["pubsub"] == "down"
        assert client.get("/health").status_code == 200


# ------------------------------------------------------------------ service endpoints


@pytest.mark.parametrize("path", ["/v1/time", "/time"])
def test_time_endpoints_report_the_server_clock(client: TestClient, clock: FakeClock, path: str):
    data = client.get(path).json()
    assert data["timestamp_ms"] == clock.now
    assert data["server_version"] and data["drift_tolerance_ms"] >= 0


def test_health_and_ready(client: TestClient):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_metrics_expose_latency_commits_conflicts_and_active_sessions(client: TestClient):
    body = session_body()
    sid = body["session_id"]
    _create(client, body)
    _post(client, sid, "start")
    _post(client, sid, "switch", headers={"If-Match": "1"})
    text = client.get("/metrics").text
    assert (
        'synckairos_http_request_duration_seconds_count{method="POST",route="/v1/sessions"' in text
    )
    assert 'synckairos_commits_total{event="session_started"}' in text
    assert 'synckairos_conflicts_total{kind="precondition"}' in text
    assert "synckairos_active_sessions 1.0" in text
    assert "synckairos_outbox_length 2.0" in text
    assert "synckairos_running_timers 1.0" in text


def test_openapi_documents_every_endpoint_from_the_real_schemas(client: TestClient):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/start",
        "/v1/sessions/{session_id}/switch",
        "/v1/sessions/{session_id}/pause",
        "/v1/sessions/{session_id}/resume",
        "/v1/sessions/{session_id}/complete",
        "/v1/sessions/{session_id}/cancel",
        "/v1/time",
        "/time",
        "/health",
        "/ready",
        "/metrics",
    ):
        assert path in doc["paths"], path
    create = doc["components"]["schemas"]["CreateSession"]
    assert create["properties"]["total_time_ms"]["minimum"] == 1000
    assert create["properties"]["participants"]["maxItems"] == 1000
    assert "SessionState" in doc["components"]["schemas"]
