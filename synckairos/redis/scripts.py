"""The Lua scripts of the wing, read once at import from ``lua/`` beside this module.

A line ``--#include <file>.lua`` is replaced by that file's text, so a piece
of logic several scripts need (the GCRA of ``gcra.lua``) is written once.
Files that are only included (``gcra.lua``) are not scripts of their own.
Adapters register a script per client (``client.register_script``): redis-py
runs it by EVALSHA and reloads it on NOSCRIPT.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SCRIPTS"]

_LUA = Path(__file__).parent / "lua"
_INCLUDE = re.compile(r"^--#include ([\w.]+\.lua)$", re.MULTILINE)
_INCLUDED_ONLY = frozenset({"gcra"})


def _splice(text: str) -> str:
    return _INCLUDE.sub(lambda match: (_LUA / match.group(1)).read_text().rstrip("\n"), text)


#: Script sources by name (file stem), includes spliced in.
SCRIPTS: dict[str, str] = {
    path.stem: _splice(path.read_text())
    for path in sorted(_LUA.glob("*.lua"))
    if path.stem not in _INCLUDED_ONLY
}
