"""Hypothesis-generated WebSocket client messages against a real server (issue 7).

A few sockets follow one running session. Each generated frame is followed by
a sentinel ``PING`` with a unique ``t0``; everything the server sends before
the sentinel's ``PONG`` is its answer to the frame, which must be exactly what
docs/protocol.md documents for it:

- a well-formed ``PING`` / ``TIME_SYNC``: ``PONG`` / ``TIME_SYNC`` echoing ``t0``;
- a well-formed ``RECONNECT``: ``STATE_SYNC`` without ``last_known_version``,
  else the missed ``STATE_UPDATE``s (or a ``STATE_SYNC``) then ``RECONNECT_ACK``;
- anything else (not JSON, not an object, no string ``type``, an unknown type,
  a mistyped field, a binary frame, JSON nested too deep): one ``ERROR``;
- values a server may reasonably take either way (integers beyond 2**53, an
  integral float for an integer, duplicate keys, lone surrogates in escapes):
  the ``ERROR`` or the documented answer, never silence or a close.

The socket stays open, the session's version never moves, and at the end the
server is ready, every fuzz socket still answers, and a fresh socket gets its
``STATE_SYNC``. Input that is fatal by RFC 6455 (invalid UTF-8 in a text frame:
1007, a message over ``SYNCKAIROS_WS_MAX_MESSAGE_BYTES``: 1009) has its own
test. Generation is derandomized and bounded; every wait has a timeout.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fuzz.conftest import FuzzServer

#: Generated frames sent per run (the acceptance floor of issue 7 is 1,000).
MESSAGES = 1_200
MIN_MESSAGES = 1_000
#: Sockets the frames are spread over (half with permessage-deflate).
SOCKETS = 4
#: Longest wait for any one reply.
REPLY_TIMEOUT_S = 5.0
#: Switches made before the fuzzing, so RECONNECT has history to replay.
SWITCHES = 5

KNOWN_TYPES = ("PING", "TIME_SYNC", "RECONNECT")
FIELDS = ("t0", "last_known_version", "epoch", "reconnect_attempt")
SAFE_INT = 2**53
EDGE_INTS = [
    0,
    1,
    -1,
    2**31,
    SAFE_INT - 1,
    SAFE_INT + 1,
    2**63 - 1,
    2**63,
    2**64 - 2,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**30,
    10**300,
]

# ---------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One client message as it goes on the wire."""

    data: str | bytes
    binary: bool = False
    fragments: int = 1

    def send(self, ws: ClientConnection) -> None:
        if self.binary:
            ws.send(self.data if isinstance(self.data, bytes) else self.data.encode(), text=False)
        elif self.fragments > 1 and isinstance(self.data, str) and len(self.data) >= self.fragments:
            step = math.ceil(len(self.data) / self.fragments)
            ws.send([self.data[i : i + step] for i in range(0, len(self.data), step)])
        else:
            ws.send(self.data)

    def __str__(self) -> str:
        kind = "binary" if self.binary else f"text/{self.fragments} fragment(s)"
        data = self.data if len(self.data) <= 300 else self.data[:300]
        return f"{kind} {data!r}{' ...' if len(self.data) > 300 else ''} ({len(self.data)} long)"


@functools.cache
def _json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.sampled_from(EDGE_INTS)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=16)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=max_leaves,
    )


_WEIRD_TEXT = st.text(
    st.characters(codec=None, categories=["Cs", "Cc", "Co", "Cn", "Zs", "So", "Mn"]), max_size=12
)


_UNKNOWN_KEYS = st.text(max_size=10).filter(lambda key: key != "type" and key not in FIELDS)
_TYPES = st.one_of(
    st.sampled_from(KNOWN_TYPES),
    st.sampled_from(KNOWN_TYPES),
    st.sampled_from(["ping", "PONG", "STATE_SYNC", "ERROR", "", "PING "]),
    st.text(max_size=12) | _WEIRD_TEXT,
    _json_values(3),
)


@functools.cache
def _field(name: str, epoch: str, version: int) -> st.SearchStrategy[Any]:
    """Values of one field: mostly the right type, often not."""
    wrong = _json_values(4) | _WEIRD_TEXT | st.floats()  # floats(): NaN and infinities too
    if name == "epoch":
        right: st.SearchStrategy[Any] = st.sampled_from([epoch, "", "0" * 16]) | st.text(
            max_size=20
        )
    elif name == "t0":
        right = (
            st.integers(0, 2 * 10**12)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from(EDGE_INTS)
        )
    else:
        right = st.integers(-2, version + 3) | st.sampled_from(EDGE_INTS) | st.integers()
    return st.one_of(right, right, right, st.none(), wrong)


@st.composite
def _objects(draw: st.DrawFn, epoch: str, version: int) -> dict[str, Any]:
    """A client message object: any type, any subset of the fields, unknown fields too."""
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["type"] = draw(_TYPES)
    for name in FIELDS:
        if draw(st.booleans()):
            message[name] = draw(_field(name, epoch, version))
    extra = draw(st.dictionaries(_UNKNOWN_KEYS, _json_values(6), max_size=3))
    return {**message, **extra} if draw(st.booleans()) else {**extra, **message}


@functools.cache
def _well_typed(kind: str, epoch: str, version: int) -> dict[str, st.SearchStrategy[Any]]:
    """The fields of ``kind`` and well-typed values for them (some huge)."""
    if kind != "RECONNECT":
        return {"t0": st.integers(0, 2 * 10**12) | st.floats(allow_nan=False, allow_infinity=False)}
    return {
        "last_known_version": st.integers(-2, version + 3) | st.none() | st.sampled_from(EDGE_INTS),
        "epoch": st.sampled_from([epoch, epoch, "", "0" * 16]) | st.text(max_size=20),
        "reconnect_attempt": st.integers(0, 100),
    }


@st.composite
def _well_formed(draw: st.DrawFn, epoch: str, version: int) -> dict[str, Any]:
    """A message docs/protocol.md documents, every field well typed, unknown fields too."""
    kind = draw(st.sampled_from(KNOWN_TYPES))
    message: dict[str, Any] = {"type": kind}
    for name, values in _well_typed(kind, epoch, version).items():
        if draw(st.integers(0, 3)):
            message[name] = draw(values)
    extra = draw(st.dictionaries(_UNKNOWN_KEYS, _json_values(4), max_size=2))
    return {**extra, **message}


def _dumps(value: Any, ascii_only: bool) -> str:
    """JSON text of ``value`` (NaN and infinities as their non-JSON tokens)."""
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: only its \\u escape fits a text frame
        text = json.dumps(value, ensure_ascii=True)
    return text


def _nested(depth: int, shape: str) -> str:
    if shape == "arrays":
        return "[" * depth + "]" * depth
    if shape == "objects":
        return '{"a":' * depth + "1" + "}" * depth
    if shape == "in a PING":
        return '{"type":"PING","x":' + "[" * depth + "]" * depth + "}"
    return '{"type":"RECONNECT","x":' + '{"a":' * depth + "null" + "}" * depth + "}"


@st.composite
def frames(draw: st.DrawFn, epoch: str, version: int) -> Frame:
    """Any client frame: objects, other JSON, text, mutated text, binary, deep nesting."""
    family = draw(
        st.sampled_from(
            ["valid"] * 6 + ["object"] * 8 + ["json", "text", "mutant", "mutant", "binary", "deep"]
        )
    )
    fragments = draw(st.sampled_from([1, 1, 1, 2, 3]))
    if family == "valid":
        text = _dumps(draw(_well_formed(epoch, version)), draw(st.booleans()))
    elif family == "object":
        text = _dumps(draw(_objects(epoch, version)), draw(st.booleans()))
    elif family == "json":
        text = _dumps(draw(_json_values(12)), draw(st.booleans()))
    elif family == "text":
        text = draw(
            st.text(max_size=200) | _WEIRD_TEXT.map(lambda s: s.encode(errors="replace").decode())
        )
    elif family == "mutant":
        text = _dumps(draw(_well_formed(epoch, version) | _objects(epoch, version)), True)
        at = draw(st.integers(0, len(text)))
        text = draw(
            st.sampled_from(
                [
                    text[:at],
                    text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:],
                    text[:at] + text[at + 1 :],
                    text.replace('"type"', '"type":"PING","type"', 1),
                    " \t\n" + text + "\r\n",
                ]
            )
        )
    elif family == "binary":
        data = draw(
            st.binary(max_size=300)
            | _objects(epoch, version).map(lambda o: _dumps(o, True).encode())
        )
        return Frame(data, binary=True)
    else:
        depth = draw(st.sampled_from([2, 50, 500, 900, 1_000, 1_100, 5_000, 10_000]))
        text = _nested(
            depth, draw(st.sampled_from(["arrays", "objects", "in a PING", "in a RECONNECT"]))
        )
    return Frame(text, fragments=fragments)


# ---------------------------------------------------------------- the oracle


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey
    return dict(pairs)


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value, key and item nested in ``value``, with its depth (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((inner, depth + 1) for inner in item.values())


def _has_surrogate(value: Any) -> bool:
    return any(
        isinstance(item, str) and any("\ud800" <= char <= "\udfff" for char in item)
        for item, _ in _walk(value)
    )


def _depth(value: Any) -> int:
    return max(depth for _, depth in _walk(value))


def _judge(value: Any, name: str) -> str:
    """``"ok"``, ``"bad"`` or ``"either"`` for one declared field's value."""
    if value is None:
        return "ok"
    if name == "epoch":
        return "ok" if isinstance(value, str) else "bad"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "bad"
    if isinstance(value, float) and not math.isfinite(value):
        return "bad"  # an out-of-range literal (1e400)
    if isinstance(value, int) and abs(value) >= SAFE_INT:
        return "either"  # beyond what a JavaScript client can send exactly
    if name == "t0":
        return "ok"
    if isinstance(value, float):
        return "either" if value.is_integer() else "bad"
    return "ok"


#: The answers a frame may get: ERROR, PONG, TIME_SYNC, SYNC (a lone STATE_SYNC),
#: RECONNECT (replayed STATE_UPDATEs or a STATE_SYNC, then RECONNECT_ACK).
ANY_ANSWER = frozenset({"ERROR", "PONG", "TIME_SYNC", "SYNC", "RECONNECT"})
#: The fields each message type uses; a mistyped field another type uses may be ignored.
USES = {"PING": {"t0"}, "TIME_SYNC": {"t0"}, "RECONNECT": set(FIELDS) - {"t0"}}


def _parse(frame: Frame) -> tuple[str, Any]:
    """How a strict JSON parser sees the frame: (outcome, message).

    ``outcome`` is ``binary``, ``invalid``, ``deep`` (too deep for Python's
    parser), ``duplicate`` (a key twice: parsers differ on which wins) or ``ok``.
    """
    if frame.binary:
        return "binary", None
    try:
        return "ok", json.loads(
            frame.data, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except _DuplicateKey:
        return "duplicate", None
    except RecursionError:
        return "deep", None
    except ValueError:
        return "invalid", None


def expected_answers(frame: Frame) -> frozenset[str]:
    """What docs/protocol.md allows the server to answer to ``frame``."""
    outcome, message = _parse(frame)
    if outcome in ("duplicate", "deep"):
        text = frame.data if isinstance(frame.data, str) else ""
        return ANY_ANSWER if text.lstrip().startswith("{") else frozenset({"ERROR"})
    if outcome != "ok":
        return frozenset({"ERROR"})
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return frozenset({"ERROR"})
    kind = message["type"]
    if kind not in KNOWN_TYPES:
        return frozenset({"ERROR"})
    if kind == "RECONNECT":
        answer = "SYNC" if message.get("last_known_version") is None else "RECONNECT"
    else:
        answer = "PONG" if kind == "PING" else "TIME_SYNC"
    verdicts = {
        _judge(message[name], name) if name in USES[kind] else "ok"
        for name in FIELDS
        if name in message
    }
    unused_wrong = any(
        _judge(message[name], name) != "ok"
        for name in FIELDS
        if name in message and name not in USES[kind]
    )
    if "bad" in verdicts:
        return frozenset({"ERROR"})
    if "either" in verdicts or unused_wrong or _has_surrogate(message) or _depth(message) > 200:
        return frozenset({"ERROR", answer})
    return frozenset({answer})


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(reversed(pairs))


# ---------------------------------------------------------------- the driver


@dataclass
class Session:
    session_id: str
    version: int
    epoch: str


def open_socket(server: FuzzServer, session: Session, *, compress: bool = True) -> ClientConnection:
    """A socket on ``session``, past its CONNECTED and STATE_SYNC (checked)."""
    ws = connect(
        f"{server.ws_url}/ws?sessionId={session.session_id}",
        proxy=None,
        compression="deflate" if compress else None,
        open_timeout=REPLY_TIMEOUT_S,
        close_timeout=2,
        max_size=None,
        legacy=True,
    )
    first = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))
    sync = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))
    assert first["type"] == "CONNECTED", first
    assert sync["type"] == "STATE_SYNC", sync
    assert (sync["version"], sync["epoch"]) == (session.version, session.epoch)
    return ws


class Sockets:
    """The fuzz sockets, the sentinel exchange, and the record of what went wrong."""

    def __init__(self, server: FuzzServer, session: Session) -> None:
        self.server = server
        self.session = session
        self.sockets = [self.open(compress=i % 2 == 0) for i in range(SOCKETS)]
        self.turn = itertools.count()
        self.sentinels = itertools.count(1)
        self.sent = 0
        self.skipped = 0
        self.answers: Counter[str] = Counter()
        self.failures: dict[str, str] = {}

    def open(self, *, compress: bool = True) -> ClientConnection:
        return open_socket(self.server, self.session, compress=compress)

    def close(self) -> None:
        for ws in self.sockets:
            ws.close()

    def fail(self, kind: str, frame: Frame, detail: str) -> None:
        # Keep the shortest repro of each kind of failure.
        known = self.failures.get(kind)
        repro = f"{kind}: {detail}\n    frame: {frame}"
        if known is None or len(repro) < len(known):
            self.failures[kind] = repro

    def exchange(self, frame: Frame) -> None:
        index = next(self.turn) % SOCKETS
        ws = self.sockets[index]
        marker = -(10**15) - next(self.sentinels)
        allowed = expected_answers(frame)
        replies: list[dict[str, Any]] = []
        try:
            frame.send(ws)
            self.sent += 1
            ws.send(json.dumps({"type": "PING", "t0": marker}))
            while True:
                reply = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))
                if reply.get("type") == "PONG" and reply.get("t0") == marker:
                    break
                replies.append(reply)
        except ConnectionClosed as exc:
            self.fail(f"socket closed ({exc.rcvd.code if exc.rcvd else None})", frame, str(exc))
            self.sockets[index] = self.open()
            return
        except TimeoutError:
            self.fail("no answer", frame, f"after {replies}")
            ws.close()
            self.sockets[index] = self.open()
            return
        answer, problem = classify(self.session, frame, replies)
        self.answers[answer] += 1
        if problem:
            self.fail(f"malformed {answer}", frame, f"{problem}: {replies}")
        elif answer not in allowed:
            self.fail(
                f"{answer} where {'/'.join(sorted(allowed))} was expected",
                frame,
                json.dumps(replies)[:500],
            )
        (version,) = self.server.versions([self.session.session_id])
        if version != self.session.version:
            self.fail("session version changed", frame, f"{self.session.version} -> {version}")
            self.session.version = version if version is not None else 0


_UNKNOWN = object()


def _sent_t0(frame: Frame) -> Any:
    """The ``t0`` the server should echo (None when absent, ``_UNKNOWN`` when ambiguous)."""
    outcome, message = _parse(frame)
    if outcome != "ok":
        return _UNKNOWN
    return message.get("t0") if isinstance(message, dict) else None


def classify(session: Session, frame: Frame, replies: list[dict[str, Any]]) -> tuple[str, str]:
    """What the server answered to ``frame``, and what is wrong with the answer ("" if nothing)."""
    types = [reply.get("type") for reply in replies]
    if types == ["ERROR"]:
        error = replies[0]
        if error.get("code") not in ("INVALID_MESSAGE", "UNKNOWN_MESSAGE_TYPE"):
            return "ERROR", "unexpected code"
        return "ERROR", "" if isinstance(error.get("message"), str) else "no message"
    sent = _sent_t0(frame)
    if types == ["PONG"]:
        pong = replies[0]
        if isinstance(pong.get("timestamp"), int) and sent in (_UNKNOWN, pong.get("t0")):
            return "PONG", ""
        return "PONG", "t0 not echoed"
    if types == ["TIME_SYNC"]:
        sync = replies[0]
        t1, t2 = sync.get("t1"), sync.get("t2")
        echoed = sent in (_UNKNOWN, sync.get("t0"))
        if echoed and isinstance(t1, int) and isinstance(t2, int) and t1 <= t2:
            return "TIME_SYNC", ""
        return "TIME_SYNC", "t0 not echoed or t1 > t2"
    if types == ["STATE_SYNC"]:
        state = replies[0]
        ok = state.get("version") == session.version and state.get("epoch") == session.epoch
        return "SYNC", "" if ok else "wrong version or epoch"
    if types and types[-1] == "RECONNECT_ACK":
        ack, before = replies[-1], types[:-1]
        updates = [reply.get("version") for reply in replies[:-1]]
        replayed = before == ["STATE_UPDATE"] * len(before)
        consecutive = updates == list(
            range(session.version - len(updates) + 1, session.version + 1)
        )
        ok = (
            ack.get("success") is True
            and ack.get("version") == session.version
            and ack.get("epoch") == session.epoch
            and (
                (
                    replayed
                    and consecutive
                    and ack.get("recovered") is True
                    and ack.get("replayed") == len(updates)
                )
                or (
                    before == ["STATE_SYNC"]
                    and ack.get("recovered") is False
                    and ack.get("replayed") == 0
                )
            )
        )
        return "RECONNECT", "" if ok else "inconsistent replay or ack"
    return "UNEXPECTED", "not a documented answer"


@pytest.fixture(scope="module")
def session(fuzz_server: FuzzServer) -> Iterator[Session]:
    """A running session with some history; its version must not move during the fuzzing."""
    with httpx.Client(base_url=fuzz_server.url, timeout=10, trust_env=False) as http:
        body = fuzz_server.create_session(http, participants=3)
        sid = body["session_id"]
        for _ in range(SWITCHES):
            assert http.post(f"/v1/sessions/{sid}/switch").status_code == 200
    with connect(f"{fuzz_server.ws_url}/ws?sessionId={sid}", proxy=None, legacy=False) as ws:
        json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))
        sync = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))
    assert sync["version"] == 2 + SWITCHES
    yield Session(sid, sync["version"], sync["epoch"])


def test_generated_websocket_messages_get_their_documented_answer_and_change_nothing(
    fuzz_server: FuzzServer, session: Session, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    sockets = Sockets(fuzz_server, session)
    request.addfinalizer(sockets.close)

    @settings(
        max_examples=MESSAGES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(frame=frames(session.epoch, session.version))
    def fuzz(frame: Frame) -> None:
        sockets.exchange(frame)

    fuzz()
    elapsed = time.monotonic() - started
    print(
        f"\nwebsocket: {sockets.sent} frames in {elapsed:.1f} s over {SOCKETS} sockets; "
        f"answers {dict(sockets.answers)}"
    )
    assert not sockets.failures, "\n\n".join(sorted(sockets.failures.values()))
    assert sockets.sent >= MIN_MESSAGES

    # Every fuzz socket still answers; a fresh one gets the unchanged state.
    for ws in sockets.sockets:
        ws.send('{"type":"PING","t0":7}')
        assert json.loads(ws.recv(timeout=REPLY_TIMEOUT_S)) == {
            "type": "PONG",
            "timestamp": pytest.approx(int(time.time() * 1000), abs=60_000),
            "t0": 7,
        }
    sockets.open().close()
    assert fuzz_server.versions([session.session_id]) == [session.version]
    fuzz_server.assert_healthy()


def _close_code(ws: ClientConnection) -> int | None:
    """Wait (bounded) for the server's close; its code (None if it never closed)."""
    try:
        while True:
            ws.recv(timeout=REPLY_TIMEOUT_S)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return None


@pytest.mark.parametrize(
    ("what", "payload", "code"),
    [
        ("lone surrogate", '{"type":"PING","t0":"\ud800"}'.encode(errors="surrogatepass"), 1007),
        ("overlong encoding", b'{"type":"PING\xc0\xaf"}', 1007),
        ("truncated sequence", b'{"type":"PING","x":"\xe2\x82"}', 1007),
        ("byte 0xff", b"\xff", 1007),
        ("over the size limit", ('{"type":"PING","x":"' + "a" * 70_000 + '"}').encode(), 1009),
    ],
)
def test_fatal_frames_close_the_socket_with_their_rfc_6455_code_and_change_nothing(
    fuzz_server: FuzzServer, session: Session, what: str, payload: bytes, code: int
) -> None:
    with open_socket(fuzz_server, session) as ws:
        ws.send(payload, text=True)  # sent as a text frame, UTF-8 or not
        assert _close_code(ws) == code, what
    assert fuzz_server.versions([session.session_id]) == [session.version]
    fuzz_server.assert_healthy()


@pytest.mark.parametrize("version", [2**64 - 1, 2**64, 10**30])
def test_reconnect_with_a_version_beyond_redis_stream_ids_keeps_the_socket(
    fuzz_server: FuzzServer, session: Session, version: int
) -> None:
    frame = Frame(json.dumps({"type": "RECONNECT", "last_known_version": version}))
    with open_socket(fuzz_server, session) as ws:
        frame.send(ws)
        ws.send('{"type":"PING","t0":-1}')
        replies: list[dict[str, Any]] = []
        while not replies or replies[-1].get("type") != "PONG":
            replies.append(json.loads(ws.recv(timeout=REPLY_TIMEOUT_S)))
    answer, problem = classify(session, frame, replies[:-1])
    assert answer in expected_answers(frame) and not problem, replies
