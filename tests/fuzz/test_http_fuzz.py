"""Schemathesis against a real server's ``/openapi.json`` (issue 7).

Every operation of the document gets schemathesis' coverage cases (boundary
values, missing and mistyped fields, unexpected methods and content types)
and a bounded, derandomized run of positive and negative hypothesis cases.
Requests that name a session often hit one of a small pool of real sessions
(running, paused, pending...), kept alive between cases, instead of an
unknown id that can only give 404.

For every response: no 5xx, the status code, content type, headers and body
conform to the document. For every rejected request (4xx): the version of
every pool session, and of the session a create named, is what it was
before. At the end the server is healthy and logged no traceback.

Failures are collected (one repro per operation and failure kind), not raised
at the first one, so one run reports every distinct problem.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from synckairos.exceptions import VALIDATION_CODES
from tests.fuzz.conftest import FuzzServer

#: Hypothesis examples per operation and generation mode (positive, negative).
EXAMPLES = 40
#: ... for ``POST /v1/sessions``, whose body is by far the richest.
CREATE_EXAMPLES = 100
#: The acceptance floor of issue 7.
MIN_CASES = 1_000

AnyCase = Case[Any]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

TERMINAL = {"completed", "cancelled", "expired"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class Pool:
    """A few real sessions the fuzzer aims at; recreated when a case ends or deletes one."""

    def __init__(self, server: FuzzServer, http: httpx.Client) -> None:
        self.server = server
        self.http = http
        # (create body, start it?)
        self.specs: list[tuple[dict[str, Any], bool]] = []
        for mode, participants, start in (
            ("per_participant", 2, True),
            ("per_group", 4, True),
            ("count_up", 3, False),
        ):
            body = server.create_session(http, mode=mode, participants=participants, start=start)
            self.specs.append((body, start))
        self.ids: list[str] = [body["session_id"] for body, _ in self.specs]
        self.recreated = 0

    def refresh(self) -> None:
        """Bring back every pool session that was deleted or has finished."""
        for body, start in self.specs:
            sid = body["session_id"]
            status = self.server.stored_status(sid)
            if status is not None and status not in TERMINAL:
                continue
            if status is not None:
                assert self.http.delete(f"/v1/sessions/{sid}").status_code == 204
            assert self.http.post("/v1/sessions", json=body).status_code == 201
            if start:
                assert self.http.post(f"/v1/sessions/{sid}/start").status_code == 200
            self.recreated += 1


def _named_session(case: AnyCase) -> str | None:
    """The session id a create request names, when it is a UUID."""
    body = case.body
    if case.operation.label == "POST /v1/sessions" and isinstance(body, dict):
        sid = body.get("session_id")
        if isinstance(sid, str) and _UUID.match(sid):
            return sid
    return None


class Fuzzer:
    """Sends cases, runs the checks, and records every distinct failure."""

    def __init__(self, server: FuzzServer, pool: Pool) -> None:
        self.server = server
        self.pool = pool
        self.session = requests.Session()
        self.session.trust_env = False
        self.cases: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.failures: dict[tuple[str, str], str] = {}

    def fail(self, case: AnyCase, kind: str, detail: str) -> None:
        key = (case.operation.label, kind)
        if key not in self.failures:
            curl = case.as_curl_command(base_url=self.server.url)
            self.failures[key] = f"{kind}\n{detail}\n    {curl}"

    def run(self, case: AnyCase) -> None:
        self.pool.refresh()
        watched = list(self.pool.ids)
        named = _named_session(case)
        if named is not None and named not in watched:
            watched.append(named)
        before = self.server.versions(watched)
        label = case.operation.label
        try:
            response = case.call(base_url=self.server.url, session=self.session, timeout=10)
        except requests.RequestException as exc:
            self.fail(case, f"no response ({type(exc).__name__})", str(exc))
            return
        self.cases[label] += 1
        self.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                self.fail(case, failure.title, f"{response.status_code} {response.text[:300]}")
        if response.status_code == 400:
            self.check_details(case, response.text)
        if 400 <= response.status_code < 500:
            after = self.server.versions(watched)
            if after != before:
                changed = {
                    sid: (old, new)
                    for sid, old, new in zip(watched, before, after, strict=True)
                    if old != new
                }
                self.fail(
                    case,
                    "state changed by a rejected request",
                    f"{response.status_code} {response.text[:300]}; versions {changed}",
                )

    def check_details(self, case: AnyCase, text: str) -> None:
        """Details of a VALIDATION_ERROR: ``{field, message, code}``, dot paths."""
        error = json.loads(text).get("error", {})
        if error.get("code") != "VALIDATION_ERROR":
            return
        details = error.get("details")
        if not isinstance(details, list) or not details:
            self.fail(case, "validation error without details", text[:300])
            return
        for detail in details:
            if (
                set(detail) != {"field", "message", "code"}
                or "[" in detail["field"]
                or detail["code"] not in VALIDATION_CODES
            ):
                self.fail(
                    case, "validation detail not {field (dot path), message, code}", text[:300]
                )

    def tweak(self, case: AnyCase, if_match: str) -> None:
        """Replace a generated ``If-Match`` by none, or by the target's current or last version."""
        headers = case.headers
        if headers is None or "If-Match" not in headers or if_match == "as generated":
            return
        del headers["If-Match"]
        sid = case.path_parameters.get("session_id") if case.path_parameters else None
        if if_match == "absent" or not isinstance(sid, str):
            return
        (version,) = self.server.versions([sid])
        if version is not None:
            headers["If-Match"] = (
                f'"{version}"' if if_match == "current version" else str(version - 1)
            )

    def retarget(self, case: AnyCase, index: int) -> AnyCase:
        """Aim every other coverage case that names a session at a pool session."""
        sid = case.path_parameters.get("session_id") if case.path_parameters else None
        if index % 2 == 0 and isinstance(sid, str) and _UUID.match(sid):
            assert case.path_parameters is not None
            case.path_parameters["session_id"] = self.pool.ids[(index // 2) % len(self.pool.ids)]
            if case.headers is not None and case.headers.get("If-Match") == "":
                # An empty If-Match is always a 400: let the command itself be tried.
                del case.headers["If-Match"]
        return case


#: What a positive hypothesis case does to its ``If-Match`` (the document types it as a
#: plain string, so most generated values are 400s that never reach the command).
IF_MATCH = ["as generated", "absent", "current version", "stale version"]


def _integral(value: Any) -> Any:
    """``value`` with every integral float made an int (``1000.0`` -> ``1000``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


def _hypothesis_run(
    strategy: st.SearchStrategy[AnyCase],
    examples: int,
    positive: bool,
    fuzzer: Fuzzer,
) -> None:
    """Up to ``examples`` cases of ``strategy``: derandomized, no database, no shrinking.

    A positive case gets a realistic ``If-Match`` in half the cases, and its
    integral floats sent as ints in half (JSON Schema's ``integer`` admits
    ``1000.0``, the server's decoder does not): more of them then reach the
    state machine instead of stopping at validation.
    """

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
    )
    @given(case=strategy, if_match=st.sampled_from(IF_MATCH), integral=st.booleans())
    def fuzz(case: AnyCase, if_match: str, integral: bool) -> None:
        if positive:
            fuzzer.tweak(case, if_match)
            if integral and case.body is not None:
                case.body = _integral(case.body)
        fuzzer.run(case)

    fuzz()


@pytest.fixture(scope="module")
def http(fuzz_server: FuzzServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=10, trust_env=False) as client:
        yield client


def test_schemathesis_finds_no_5xx_no_schema_violation_and_no_state_change_from_rejected_input(
    fuzz_server: FuzzServer, http: httpx.Client
) -> None:
    started = time.monotonic()
    # from_dict, not from_url: from_url leaves out the operation that serves the document.
    document = http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [operation for methods in schema.values() for operation in methods.values()]
    documented = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    }
    assert {operation.label for operation in operations} == documented

    pool = Pool(fuzz_server, http)
    fuzzer = Fuzzer(fuzz_server, pool)
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    for operation in operations:
        # 1. Coverage cases: deterministic boundary and mutation cases.
        coverage = schema.iter_coverage_cases(
            operation,
            generation_modes=modes,
            generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        )
        for index, case in enumerate(coverage):
            fuzzer.run(fuzzer.retarget(case, index))

        # 2. Hypothesis cases, positive then negative; a session path parameter is
        # one of the pool sessions in 3 cases out of 4.
        examples = CREATE_EXAMPLES if operation.label == "POST /v1/sessions" else EXAMPLES
        has_session = any(p.name == "session_id" for p in operation.path_parameters)
        for mode in modes:
            if mode is GenerationMode.NEGATIVE and not (
                operation.path_parameters or operation.body or operation.headers
            ):
                continue  # nothing to make invalid (GET /health ...)
            strategies = [operation.as_strategy(generation_mode=mode)]
            if has_session:
                strategies += [
                    operation.as_strategy(generation_mode=mode, path_parameters={"session_id": sid})
                    for sid in pool.ids
                ]
            positive = mode is GenerationMode.POSITIVE
            _hypothesis_run(st.one_of(strategies), examples, positive, fuzzer)
    fuzzer.session.close()

    elapsed = time.monotonic() - started
    total = sum(fuzzer.cases.values())
    summary = "\n".join(f"  {label}: {n}" for label, n in sorted(fuzzer.cases.items()))
    print(f"\nschemathesis: {total} cases in {elapsed:.1f} s, pool recreated {pool.recreated}x")
    for label in sorted(fuzzer.cases):
        by_status = {s: n for (op, s), n in sorted(fuzzer.statuses.items()) if op == label}
        print(f"  {label}: {fuzzer.cases[label]} {by_status}")

    assert not fuzzer.failures, "\n\n".join(
        f"{label}: {text}" for (label, _), text in sorted(fuzzer.failures.items())
    )
    assert total >= MIN_CASES, summary
    for operation in operations:
        assert fuzzer.cases[operation.label] > 0, operation.label
    assert not any(status >= 500 for (_, status) in fuzzer.statuses)
    fuzz_server.assert_healthy()


def _hostile_requests(
    sid: str, body: dict[str, Any]
) -> list[tuple[str, str, str, dict[str, Any], int]]:
    """(what, method, path, httpx arguments, expected status)."""
    session = f"/v1/sessions/{sid}"
    people = [p["participant_id"] for p in body["participants"]]
    nested = b"[" * 100_000 + b"]" * 100_000
    deep_metadata = {**body, "session_id": "00000000-0000-4000-8000-000000000001"}
    deep_metadata["metadata"] = "NESTED"
    deep_create = json.dumps(deep_metadata).replace('"NESTED"', '{"a":' * 5_000 + "1" + "}" * 5_000)

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65_536

    return [
        ("malformed JSON", "POST", f"{session}/switch", {"content": b'{"next_'}, 400),
        ("invalid UTF-8", "POST", f"{session}/pause", {"content": b'{"x": "\xff\xfe"}'}, 400),
        ("JSON nested 100,000 deep", "POST", f"{session}/switch", {"content": nested}, 400),
        ("metadata nested 5,000 deep", "POST", "/v1/sessions", {"content": deep_create}, 400),
        ("2 MB body", "POST", f"{session}/switch", {"content": b" " * 2_000_000}, 413),
        ("2.5 MB chunked body", "POST", f"{session}/switch", {"content": chunks()}, 413),
        ("body is a JSON array", "POST", f"{session}/switch", {"json": [1, 2]}, 400),
        ("If-Match garbage", "POST", f"{session}/switch", {"headers": {"If-Match": "abc"}}, 400),
        ("If-Match stale", "POST", f"{session}/switch", {"headers": {"If-Match": '"1"'}}, 409),
        ("If-Match 10**30", "POST", f"{session}/switch", {"headers": {"If-Match": "1" * 31}}, 409),
        ("If-Match 0", "POST", f"{session}/complete", {"headers": {"If-Match": "0"}}, 409),
        ("If-Match -1", "POST", f"{session}/cancel", {"headers": {"If-Match": "-1"}}, 400),
        (
            "If-Match and expected_version disagree",
            "POST",
            f"{session}/switch",
            {"headers": {"If-Match": "2"}, "json": {"expected_version": 3}},
            400,
        ),
        (
            "expected_version 2**64",
            "POST",
            f"{session}/switch",
            {"json": {"expected_version": 2**64}},
            400,
        ),
        (
            "expected_version 1.5",
            "POST",
            f"{session}/pause",
            {"json": {"expected_version": 1.5}},
            400,
        ),
        (
            "expected_version true",
            "POST",
            f"{session}/pause",
            {"json": {"expected_version": True}},
            400,
        ),
        (
            "current_participant_id not the active one",
            "POST",
            f"{session}/switch",
            {"json": {"current_participant_id": people[1]}},
            409,
        ),
        (
            "next_participant_id not a participant",
            "POST",
            f"{session}/switch",
            {"json": {"next_participant_id": "00000000-0000-4000-8000-000000000002"}},
            400,
        ),
        (
            "next_participant_id not a UUID",
            "POST",
            f"{session}/switch",
            {"json": {"next_participant_id": "x"}},
            400,
        ),
        ("start a running session", "POST", f"{session}/start", {}, 400),
        ("resume a running session", "POST", f"{session}/resume", {}, 400),
        ("create over an existing session", "POST", "/v1/sessions", {"json": body}, 409),
        (
            "create over an existing session, other body",
            "POST",
            "/v1/sessions",
            {"json": {**body, "sync_mode": "count_up", "total_time_ms": 1_000}},
            409,
        ),
        ("delete with a stale If-Match", "DELETE", session, {"headers": {"If-Match": "1"}}, 409),
        ("delete with If-Match garbage", "DELETE", session, {"headers": {"If-Match": "v2"}}, 400),
        ("id with a NUL", "POST", f"/v1/sessions/{sid[:-1]}%00/pause", {}, 400),
        ("id of 10,000 characters", "POST", f"/v1/sessions/{'a' * 10_000}/pause", {}, 400),
        ("unknown command", "POST", f"{session}/rewind", {}, 404),
        ("PUT a session", "PUT", session, {"json": body}, 405),
    ]


def test_hand_written_hostile_requests_are_refused_with_4xx_and_change_nothing(
    fuzz_server: FuzzServer, http: httpx.Client
) -> None:
    body = fuzz_server.create_session(http, participants=2)
    sid = body["session_id"]
    watched = [sid, "00000000-0000-4000-8000-000000000001"]
    problems = []
    for what, method, path, kwargs, expected in _hostile_requests(sid, body):
        before = fuzz_server.versions(watched)
        response = http.request(method, path, **kwargs)
        after = fuzz_server.versions(watched)
        if response.status_code != expected:
            problems.append(f"{what}: {response.status_code} {response.text[:200]}")
        if after != before:
            problems.append(f"{what}: versions {before} -> {after}")
    assert not problems, "\n".join(problems)
    assert fuzz_server.versions([sid]) == [2]
    fuzz_server.assert_healthy()
