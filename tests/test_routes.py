"""The route table: routing, metrics labels, OpenAPI and admission follow from one list."""

from __future__ import annotations

import msgspec
from prometheus_client import REGISTRY
from starlette.routing import Route
from starlette.testclient import TestClient

from synckairos import routes
from synckairos.auth import Action
from tests.helpers import session_body


def test_starlette_routes_are_the_table_rows_in_order():
    built = routes.http_routes()
    assert [(r.path, sorted(r.methods or ())) for r in built if isinstance(r, Route)] == [
        (row.path, sorted({row.method, "HEAD"} if row.method == "GET" else {row.method}))
        for row in routes.ROUTES
    ]


def test_the_openapi_document_documents_exactly_the_table():
    document = msgspec.json.decode(routes.openapi_document())
    documented = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    assert documented == {(row.path, row.method) for row in routes.ROUTES}


def test_every_route_naming_a_session_authorizes_an_action_on_it():
    for row in routes.ROUTES:
        if row.session_in_path:
            assert row.policy is not None and row.policy.action is not None, row.path
            assert row.policy.authorize_on == "path"


def test_the_public_routes_are_only_health_ready_metrics_and_the_document():
    public = {row.path for row in routes.ROUTES if row.policy is None}
    assert public == {"/health", "/ready", "/metrics", "/openapi.json"}


def test_a_create_is_authorized_on_the_session_its_body_names():
    [create] = [r for r in routes.ROUTES if r.path == "/v1/sessions"]
    assert create.policy is not None
    assert (create.policy.action, create.policy.authorize_on) == (Action.CREATE, "body")


def _count(route: str, method: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "synckairos_http_request_duration_seconds_count",
        {"route": route, "method": method, "status": str(status)},
    )
    return value or 0.0


def test_a_request_is_measured_under_its_route_template(client: TestClient):
    template = "/v1/sessions/{session_id}"
    body = session_body()
    before = _count(template, "GET", 200)
    assert client.post("/v1/sessions", json=body).status_code == 201
    assert client.get(f"/v1/sessions/{body['session_id']}").status_code == 200
    assert _count(template, "GET", 200) == before + 1
