"""The Lua scripts: one GCRA, spliced into every script that rate limits."""

from __future__ import annotations

from pathlib import Path

import synckairos.redis
from synckairos.redis.scripts import SCRIPTS

_GCRA = (Path(synckairos.redis.__file__).parent / "lua" / "gcra.lua").read_text().rstrip("\n")


def test_the_scripts_are_the_lua_files_less_the_included_ones():
    assert set(SCRIPTS) == {"session_commit", "session_delete", "deadline_claim", "rate_limit"}


def test_the_commit_and_the_rate_limiter_share_the_one_gcra():
    for name in ("session_commit", "rate_limit"):
        assert SCRIPTS[name].count(_GCRA) == 1
        assert "--#include" not in SCRIPTS[name]
        assert SCRIPTS[name].count("redis.call('TIME')") == 1  # only inside gcra()
