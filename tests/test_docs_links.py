"""The documentation stays inside the repository, and the protocol page is complete.

Fast (no server, no Redis): it reads files and imports route tables.

- Every Markdown file of the repository links only to files of the repository
  that exist (relative links, resolved from the file's folder), and to anchors
  that exist in them; never to another host, an absolute path, or outside the
  checkout (a clone must not have broken links).
- No source or documentation file points outside the repository (the shared
  design folder of the workspace, absolute workspace paths).
- ``docs/protocol.md`` names every HTTP route the server registers, every
  WebSocket message type (both directions), every error code and every close
  code the server uses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from synckairos import exceptions, pages, routes, ws_api

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"

#: Folders never searched (installed or generated files, other projects' text).
_SKIP_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "bench-results",
    "var",
}


def _repository_files() -> list[Path]:
    """Tracked and new (not ignored) files; without git, a filtered walk."""
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        listed = subprocess.run(
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [ROOT / name for name in listed.split("\0") if name]
        return sorted(path for path in files if path.is_file())
    found: list[Path] = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in parts):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


FILES = _repository_files()
MARKDOWN = [path for path in FILES if path.suffix == ".md"]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------- Markdown parsing

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
#: Inline links and images: [text](target "title"); the text may hold one level
#: of brackets (``[`a[0]`](x)`` is rare; ``[**x**](y)`` is common).
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets
    r"\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"  # (target "title")
)
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_AUTOLINK = re.compile(r"<((?:https?|ftp|file)://[^>\s]+)>")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, code spans blanked."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        yield number, _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def _links(text: str) -> Iterator[tuple[int, str]]:
    """Every link target of a Markdown text (inline, reference definitions, autolinks)."""
    for number, line in _prose_lines(text):
        for match in _INLINE_LINK.finditer(line):
            yield number, match.group(1)
        definition = _REFERENCE_DEF.match(line)
        if definition:
            yield number, definition.group(1)
        for match in _AUTOLINK.finditer(line):
            yield number, match.group(1)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (github-slugger's rule)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "").lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "-_ " or category[0] in "LNM" or category == "Pc":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        anchors.update(_HTML_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading is None:
            continue
        slug = _slug(heading.group(2))
        seen = counts.get(slug, 0)
        counts[slug] = seen + 1
        anchors.add(slug if seen == 0 else f"{slug}-{seen}")
    return anchors


def _problem(source: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``source``) is not a valid in-repository link."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return "links to another host or scheme (keep the documentation self-contained)"
    if target.startswith("//"):
        return "links to another host"
    path_part, _, anchor = target.partition("#")
    if path_part.startswith("/"):
        return "is an absolute path (use a path relative to the file)"
    resolved = (source.parent / path_part).resolve() if path_part else source
    try:
        resolved.relative_to(ROOT)
    except ValueError:
        return "leaves the repository"
    if not resolved.exists():
        return "names a file that does not exist"
    if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
        return f"names an anchor #{anchor} that {_rel(resolved)} does not have"
    return None


def test_markdown_files_are_found() -> None:
    names = {_rel(path) for path in MARKDOWN}
    assert {"README.md", "docs/protocol.md", "docs/websocket.md"} <= names


@pytest.mark.parametrize("source", MARKDOWN, ids=_rel)
def test_markdown_links_stay_inside_the_repository(source: Path) -> None:
    problems = []
    for number, target in _links(source.read_text(encoding="utf-8")):
        why = _problem(source, target)
        if why is not None:
            problems.append(f"{_rel(source)}:{number}: ({target}) {why}")
    assert not problems, "\n".join(problems)


#: A link from docs/ to the workspace's shared folder, next to the checkout.
_LEAVING = "../../" + "shared" + "/PROTOCOL.md"


def test_the_link_checker_catches_what_it_should() -> None:
    """The parser and resolver themselves (a checker that finds nothing proves nothing)."""
    text = (
        "See [the contract](" + _LEAVING + "), [a site](https://example.org/x),\n"
        "[ok](websocket.md#close-codes), [bad anchor](websocket.md#no-such-heading),\n"
        "`[in code](nowhere.md)` and <https://example.com>.\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[ref]: /etc/passwd\n"
    )
    source = ROOT / "docs" / "example.md"
    found = [target for _, target in _links(text)]
    assert found == [
        _LEAVING,
        "https://example.org/x",
        "websocket.md#close-codes",
        "websocket.md#no-such-heading",
        "https://example.com",
        "/etc/passwd",
    ]
    verdicts = [_problem(source, target) for target in found]
    assert verdicts[0] == "leaves the repository"
    assert verdicts[1] is not None and "host" in verdicts[1]
    assert verdicts[2] is None
    assert verdicts[3] is not None and "anchor" in verdicts[3]
    assert verdicts[4] is not None and "host" in verdicts[4]
    assert verdicts[5] is not None and "absolute" in verdicts[5]
    assert _problem(source, "missing-page.md") == "names a file that does not exist"
    assert _slug("Durability mode (`SYNCKAIROS_REDIS_MIN_REPLICA_ACKS=N`)") == (
        "durability-mode-synckairos_redis_min_replica_acksn"
    )
    assert _slug("Turn integrity: what a participant could gain") == (
        "turn-integrity-what-a-participant-could-gain"
    )


# ------------------------------------------------ no pointer outside the repository

#: Text that only appears when something points outside the checkout. Built by
#: concatenation so this file does not match itself.
_OUTSIDE = [
    "../" + "shared/",
    "shared/" + "PROTOCOL.md",
    "/work" + "/",
    "DESIGN-" + "1",
    "node-" + "reference",
    "ARCHITECTURE" + ".md",
    "STYLE" + ".md",
]
_TEXT_SUFFIXES = {".md", ".py", ".js", ".mjs", ".ts", ".html", ".css", ".sh", ".toml", ".lua"}


def _text_files() -> list[Path]:
    return [
        path
        for path in FILES
        if path.suffix in _TEXT_SUFFIXES
        and "vendor" not in path.relative_to(ROOT).parts
        and path.name != "package-lock.json"
    ]


def test_no_file_points_outside_the_repository() -> None:
    problems: list[str] = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            problems.extend(
                f"{_rel(path)}:{number}: {needle!r}" for needle in _OUTSIDE if needle in line
            )
    assert not problems, "\n".join(problems)


# ------------------------------------------------------- docs/protocol.md is complete


def _protocol() -> str:
    return PROTOCOL.read_text(encoding="utf-8")


def _http_routes() -> list[tuple[str, str]]:
    """(method, path) of every HTTP route a node registers (API and pages)."""
    found: list[tuple[str, str]] = []
    for route in routes.http_routes() + pages.routes():
        if isinstance(route, Route):
            methods = sorted((route.methods or set()) - {"HEAD"}) or ["GET"]
            found.extend((method, route.path) for method in methods)
        elif isinstance(route, Mount):
            found.append(("GET", route.path + "/"))
    return found


def test_every_http_route_is_in_the_protocol() -> None:
    text = _protocol()
    routes = _http_routes()
    assert ("POST", "/v1/sessions") in routes and ("GET", "/openapi.json") in routes
    missing = [f"{method} {path}" for method, path in routes if f"{method} {path}" not in text]
    assert not missing, f"docs/protocol.md does not name: {missing}"


def test_the_websocket_route_is_in_the_protocol() -> None:
    paths = [route.path for route in ws_api.routes() if isinstance(route, WebSocketRoute)]
    assert paths == ["/ws"]
    text = _protocol()
    assert "/ws?sessionId=" in text and "token=" in text


def _server_message_types() -> set[str]:
    source = (ROOT / "synckairos" / "ws_messages.py").read_text(encoding="utf-8")
    return set(re.findall(r'"type"\s*:\s*"([A-Z_]+)"', source))


def _client_message_types() -> set[str]:
    source = (ROOT / "synckairos" / "ws_api.py").read_text(encoding="utf-8")
    return set(re.findall(r'kind\s*==\s*"([A-Z_]+)"', source))


def test_every_websocket_message_type_is_in_the_protocol() -> None:
    server = _server_message_types()
    client = _client_message_types()
    # The scrapers themselves still see what exists today.
    assert {"CONNECTED", "STATE_UPDATE", "STATE_SYNC", "SESSION_DELETED", "PONG"} <= server
    assert {"ERROR", "RECONNECT_ACK", "TIME_SYNC"} <= server
    assert {"PING", "RECONNECT", "TIME_SYNC"} <= client
    text = _protocol()
    missing = sorted(kind for kind in server | client if f"`{kind}`" not in text)
    assert not missing, f"docs/protocol.md does not name: {missing}"


def _error_codes() -> set[str]:
    codes = set()
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        if isinstance(cls, type) and issubclass(cls, exceptions.SyncKairosError):
            codes.add(cls.code)
    for path in ("ws_api.py", "ws_messages.py"):
        source = (ROOT / "synckairos" / path).read_text(encoding="utf-8")
        codes.update(re.findall(r'error\(\s*"([A-Z_]+)"', source))
    return codes


def test_every_error_code_is_in_the_protocol() -> None:
    codes = _error_codes()
    assert {"VALIDATION_ERROR", "SESSION_NOT_FOUND", "INVALID_MESSAGE"} <= codes
    text = _protocol()
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert not missing, f"docs/protocol.md does not name: {missing}"


def test_every_close_code_is_in_the_protocol() -> None:
    codes = {
        value
        for name, value in vars(ws_api).items()
        if name.startswith("CLOSE_") and isinstance(value, int) and 1000 <= value < 5000
    }
    assert {1000, 1001, 1008, 1011, 1013, 4401} <= codes
    text = _protocol()
    missing = sorted(code for code in codes if f"| {code} |" not in text)
    assert not missing, f"docs/protocol.md's close-code table does not list: {missing}"


def test_the_state_example_is_what_the_core_builds() -> None:
    """The SyncState example of docs/protocol.md, field for field and in order.

    Same session as the page says: per_participant, 2 s increment, created at
    2026-01-01T00:00:00Z, started 5 s later, switched 12 s after that.
    """
    from synckairos.core import CreateSession, NewParticipant, Start, Switch, SyncMode, apply
    from synckairos.core.machine import create_session

    found = re.search(r"```json\n(\{\n  \"session_id\".*?\n\})\n```", _protocol(), re.DOTALL)
    assert found is not None, "docs/protocol.md has no SyncState example"
    documented = json.loads(found.group(1))
    first, second = (p["participant_id"] for p in documented["participants"])
    spec = CreateSession(
        session_id=documented["session_id"],
        sync_mode=SyncMode.PER_PARTICIPANT,
        participants=[NewParticipant(first, 300_000), NewParticipant(second, 300_000)],
        total_time_ms=300_000,
        increment_ms=2_000,
    )
    created_at = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z
    state = create_session(spec, created_at).state
    state = apply(state, Start(), created_at + 5_000).state
    state = apply(state, Switch(), created_at + 17_000).state
    built = json.loads(msgspec.json.encode(state))
    assert built == documented
    assert list(built) == list(documented)
