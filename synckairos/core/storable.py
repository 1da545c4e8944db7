"""What the audit trail can store: checks of client-supplied values against PostgreSQL.

Every accepted change is written to PostgreSQL (``sync_events.state_snapshot``
and ``sync_sessions.metadata`` are JSONB) and read back from there when a
session is restored, so the API refuses, with 400 ``VALIDATION_ERROR``, any
value that PostgreSQL would refuse or that would not come back the same. Ids
must be whole UUIDs (``id_problems``: PostgreSQL's ``uuid`` refuses a
trailing newline that a regex ``$`` lets through). The only free-form input
is ``metadata`` (every other field is an enum or a bounded integer). What is
refused there, and why:

* **NUL** (``\\u0000``) in any string, key or value, at any depth: JSONB
  refuses it (``unsupported Unicode escape sequence``, SQLSTATE 22P05).
* **Nesting deeper than** ``MAX_METADATA_DEPTH``: the JSON decoders stop at
  the interpreter's recursion limit, which depends on how deep the caller's
  own stack already is; a depth one process decodes could fail in the worker
  or in a restore. A fixed bound well below it makes acceptance the same
  everywhere.
* **Non-finite numbers**: JSONB has no NaN or Infinity (the request decoder
  already refuses ``1e400``; this guards every other way in).

Accepted as they are, because PostgreSQL keeps them exactly:

* lone UTF-16 surrogates never get this far: the JSON decoder refuses
  ``"\\ud800"`` (400 before any check); other control characters and
  non-characters are stored and read back unchanged;
* integers of any size (JSONB ``numeric`` is exact; the 10 KB cap on metadata
  bounds their digits);
* floats: kept as the exact decimal of their shortest form, so the same
  double comes back; only the *spelling* may change (``1e16`` is read back as
  ``10000000000000000``, keys come back in JSONB's order), which JSON does not
  distinguish.

Integer fields of the session (budgets, increments, versions, times used,
cycle counts) need no check here: the audit columns are BIGINT (migration
002), which nothing a session does over its life can overflow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_METADATA_DEPTH", "id_problems", "storable_problems"]

#: Deepest nesting accepted in ``metadata`` (the object itself is depth 1).
MAX_METADATA_DEPTH = 32


def storable_problems(value: Any, field: str = "metadata") -> list[dict[str, str]]:
    """``{field, message, code}`` for each reason PostgreSQL could not store ``value`` as JSONB.

    ``value`` is what the JSON decoder produced (dicts with str keys, lists,
    str, int, float, bool, None). Returns ``[]`` when it can be stored and
    read back equal. Reports at most one problem per kind (the first found,
    with its path), so an answer stays small whatever the input. Iterative:
    never raises ``RecursionError``.
    """
    problems: list[dict[str, str]] = []
    seen: set[str] = set()

    def report(kind: str, path: str, message: str) -> None:
        if kind not in seen:
            seen.add(kind)
            code = "too_big" if kind == "depth" else "invalid_value"
            problems.append({"field": path, "message": message, "code": code})

    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_METADATA_DEPTH:
                report("depth", path, f"nested deeper than {MAX_METADATA_DEPTH} levels")
                continue
            for key, child in item.items():
                child_path = f"{path}.{_printable(key)}"
                if isinstance(key, str) and "\x00" in key:
                    report("nul", child_path, "keys and strings must not contain NUL (\\u0000)")
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, list | tuple):
            if depth > MAX_METADATA_DEPTH:
                report("depth", path, f"nested deeper than {MAX_METADATA_DEPTH} levels")
                continue
            stack.extend((child, f"{path}.{i}", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                report("nul", path, "keys and strings must not contain NUL (\\u0000)")
        elif isinstance(item, float) and not math.isfinite(item):
            report("number", path, "numbers must be finite")
    return problems


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def id_problems(ids: Iterable[tuple[str, str | None]]) -> list[dict[str, str]]:
    """``{field, message, code}`` for each ``(field, id)`` PostgreSQL's ``uuid`` type refuses.

    The whole string must be a UUID: a regex ``$`` also matches before a
    trailing newline, and ``'<uuid>\n'::uuid`` fails (SQLSTATE 22P02), so
    such an id would be accepted by Redis and refused by the audit trail.
    None (an absent optional id) is fine.
    """
    return [
        {
            "field": field,
            "message": "must be a UUID, nothing before or after it",
            "code": "invalid_format",
        }
        for field, value in ids
        if value is not None and _UUID.fullmatch(value) is None
    ]


def _printable(key: object) -> str:
    """A key as it appears in a ``field`` path: NULs shown escaped, long keys cut."""
    text = str(key).replace("\x00", "\\u0000")
    return text if len(text) <= 64 else text[:61] + "..."
