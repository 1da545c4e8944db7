"""Every list of timer modes outside Python follows the one table, ``core.modes.MODES``.

When a mode is added to the table (or a row changes what it means), these tests
name each file that has not followed yet: the SQL ``CHECK`` on ``sync_mode``,
the JS client's ``SyncMode`` type and create-request notes (``types.d.ts``),
its display helpers (``display.js``), the inspector's demo form, and
docs/timer-modes.md. The files are parsed as text: no browser, no database.

The display helpers branch on mode names; each branch is checked against the
table field it stands for (which modes share a session bank, which count up,
which have a bank *and* a turn limit), so a new row with one of those traits
fails here until the JS learns it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from synckairos.core.modes import MODES

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "synckairos" / "audit" / "migrations"
TYPES = ROOT / "clients" / "js" / "src" / "types.d.ts"
DISPLAY = ROOT / "clients" / "js" / "src" / "display.js"
INSPECTOR_HTML = ROOT / "synckairos" / "static" / "inspector" / "index.html"
INSPECTOR_JS = ROOT / "synckairos" / "static" / "inspector" / "inspector.js"
TIMER_MODES_DOC = ROOT / "docs" / "timer-modes.md"

#: The table's names, in order.
NAMES = list(MODES)


SESSION_BANK = {n for n, p in MODES.items() if p.bank == "session"}
GROUP_BANK = {n for n, p in MODES.items() if p.bank == "group"}
COUNTS_UP = {n for n, p in MODES.items() if p.counts_up}
TURN_LIMIT = {n for n, p in MODES.items() if p.turn_limit != "none"}
TURN_LIMIT_REQUIRED = {n for n, p in MODES.items() if p.turn_limit == "required"}
BANK_AND_TURN_LIMIT = {n for n, p in MODES.items() if p.bank is not None} & TURN_LIMIT
INCREMENTS = {n for n, p in MODES.items() if p.increments}


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([a-z_]+)'", text)


def _function(source: str, name: str) -> str:
    """The text of top-level JS ``function name(...) { ... }`` (to its closing ``}``)."""
    match = re.search(rf"^(?:export )?function {name}\(.*?^\}}", source, re.M | re.S)
    assert match is not None, f"function {name} not found"
    return match.group(0)


def _compared(text: str) -> set[str]:
    """Mode names that ``text`` compares a mode with (``mode === 'x'``)."""
    return set(re.findall(r"(?:mode|sync_mode)\s*===\s*'([a-z_]+)'", text))


# ---------------------------------------------------------------- SQL


def test_the_sql_check_on_sync_mode_allows_exactly_the_tables_modes():
    checks: list[list[str]] = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        sql = path.read_text()
        for found in re.finditer(r"CHECK\s*\(\s*sync_mode\s+IN\s*\(([^)]*)\)", sql, re.I):
            checks.append(_quoted(found.group(1)))
    assert checks, "no CHECK on sync_mode in the migrations"
    assert checks[-1] == NAMES, "the newest migration's CHECK must list MODES (add a migration)"


# ---------------------------------------------------------------- JS client types


def test_the_js_sync_mode_type_lists_the_tables_modes():
    types = TYPES.read_text()
    match = re.search(r"export type SyncMode\s*=\s*([^;]*);", types)
    assert match is not None
    assert _quoted(match.group(1)) == NAMES


def _field_note(types: str, interface: str, field: str) -> set[str]:
    """Backquoted mode names in the doc comment of ``interface.field``."""
    body = re.search(rf"interface {interface} \{{(.*?)^\}}", types, re.S | re.M)
    assert body is not None, interface
    note = re.search(rf"/\*\*((?:(?!\*/).)*)\*/\s*{field}\??:", body.group(1), re.S)
    assert note is not None, f"{interface}.{field} has no doc comment"
    return set(re.findall(r"`([a-z_]+)`", note.group(1)))


@pytest.mark.parametrize(
    ("interface", "field", "expected"),
    [
        ("CreateSessionRequest", "time_per_cycle_ms", TURN_LIMIT),
        ("CreateSessionRequest", "increment_ms", INCREMENTS),
        ("CreateSessionRequest", "max_time_ms", COUNTS_UP),
        ("NewParticipant", "group_id", GROUP_BANK),
    ],
)
def test_the_js_create_request_notes_name_the_modes_that_use_each_field(
    interface: str, field: str, expected: set[str]
):
    assert _field_note(TYPES.read_text(), interface, field) == expected


# ---------------------------------------------------------------- JS display helpers


def test_display_js_compares_modes_only_with_the_tables_names():
    assert _compared(DISPLAY.read_text()) <= set(NAMES)


def test_display_js_shares_a_bank_as_the_table_does():
    body = _function(DISPLAY.read_text(), "sharesBank")
    shared: set[str] = set()
    grouped: set[str] = set()
    for line in body.splitlines():
        (grouped if "group_id" in line else shared).update(_compared(line))
    assert shared == SESSION_BANK
    assert grouped == GROUP_BANK


def test_display_js_knows_which_modes_count_up():
    assert _compared(_function(DISPLAY.read_text(), "uncappedCountUp")) == COUNTS_UP


def test_display_js_applies_the_turn_limit_where_a_bank_is_shown():
    # Without a bank (per_cycle) the participant's time_remaining_ms already is
    # the turn's; with a bank and a turn limit the smaller of the two is shown.
    assert _compared(_function(DISPLAY.read_text(), "staticTimeLeft")) == BANK_AND_TURN_LIMIT


def test_display_js_shows_the_sessions_time_used_for_a_session_bank():
    assert _compared(_function(DISPLAY.read_text(), "elapsedMs")) == SESSION_BANK


# ---------------------------------------------------------------- inspector


def test_the_inspector_offers_every_mode_with_its_summary():
    html = INSPECTOR_HTML.read_text()
    select = re.search(r'<select id="demo-mode"[^>]*>(.*?)</select>', html, re.S)
    assert select is not None
    options = re.findall(r'<option value="([^"]+)">([^<]*)</option>', select.group(1))
    assert options == [(name, f"{name} ({MODES[name].summary})") for name in NAMES]


def test_the_inspector_demo_fills_the_fields_each_mode_needs():
    body = _function(INSPECTOR_JS.read_text(), "demoBody")
    needs: dict[str, set[str]] = {"group_id": set(), "time_per_cycle_ms": set(), "max_time": set()}
    for line in body.splitlines():
        for field in needs:
            if field in line:
                needs[field].update(_compared(line))
    assert needs["group_id"] == GROUP_BANK
    assert needs["time_per_cycle_ms"] == TURN_LIMIT_REQUIRED
    assert needs["max_time"] == COUNTS_UP


# ---------------------------------------------------------------- docs


def test_the_timer_modes_doc_has_one_row_per_mode():
    doc = TIMER_MODES_DOC.read_text().split("## Fields")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", doc, re.M)
    assert sorted(rows) == sorted(NAMES), "one row per mode, once each"


def _shown(value: object) -> str:
    if value is None:
        return "\u2013"  # an en dash, as the doc tables write "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def test_the_timer_modes_doc_shows_the_table_as_it_is():
    section = TIMER_MODES_DOC.read_text().split("## Adding a mode")[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[2:] == NAMES
    shown: dict[str, list[str]] = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        shown[cells[0].strip("`")] = cells[2:]
    fields = [
        "bank",
        "counts_up",
        "turn_limit",
        "increments",
        "expiry",
        "default_timeout",
        "default_auto_advance",
    ]
    assert list(shown) == fields
    for field in fields:
        assert shown[field] == [_shown(getattr(MODES[n], field)) for n in NAMES], field
