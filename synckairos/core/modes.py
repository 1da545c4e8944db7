"""Timer modes as data: what each ``sync_mode`` means, one row per mode.

Rule 1: everything that differs between two modes is a field of ``ModePolicy``
and lives in the table ``MODES`` below. ``machine.py`` and ``deadlines.py``
look a session's row up (``policy_of(state.sync_mode)``) and never branch on
the mode's name; the SQL ``CHECK`` on ``sync_mode``, the JS client's types and
display helpers and the inspector's mode list are checked against this table
by ``tests/test_mode_list.py``.

Adding a mode
-------------
1. Add its name to ``SyncMode`` and its row to ``_ROWS`` (same file, next to
   each other; the import-time check below refuses one without the other).
2. Test it: ``tests/core`` runs the property tests on every row of the table
   (a throwaway mode is tried the same way in ``tests/core/test_modes.py``);
   add the scenarios that pin its documented behaviour.
3. ``tests/test_mode_list.py`` then names every other place that must learn
   the new name (migration, ``types.d.ts``, ``display.js``, the inspector).

The vocabulary (docs/timer-modes.md): a *bank* is a pool of milliseconds that
drains while one of its members is active; a *turn limit* caps every turn at
``time_per_cycle_ms``. The running timer's deadline is the sooner of the two.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "GLOBAL_BANK",
    "MODES",
    "BankScope",
    "Expiry",
    "ModePolicy",
    "SyncMode",
    "TimeoutActionType",
    "TurnLimit",
    "policy_of",
]


# The names of the rows of ``MODES``. The docstring is the OpenAPI description
# of ``sync_mode`` (msgspec schemas): keep it for API readers.
class SyncMode(enum.StrEnum):
    """What the timer of a session means (see docs/timer-modes.md)."""

    PER_PARTICIPANT = "per_participant"
    PER_CYCLE = "per_cycle"
    PER_GROUP = "per_group"
    GLOBAL = "global"
    COUNT_UP = "count_up"


TimeoutActionType = Literal["expire_session", "skip_cycle", "complete_session", "notify"]

#: Key of the single bank of a mode whose bank is the session's (``global``, ``count_up``).
GLOBAL_BANK = "session"

BankScope = Literal["participant", "group", "session"]
"""Whose pool a participant draws from: its own, its group's, the session's."""

TurnLimit = Literal["none", "optional", "required"]
"""Whether ``time_per_cycle_ms`` caps each turn: never (ignored when given),
when the session gives one, always (required at creation)."""

Expiry = Literal["bank", "turn"]
"""What a participant's ``has_expired`` marks: ``"bank"``, its own bank is empty
(permanent: it is out of the rotation); ``"turn"``, its turn ran out (cleared
when its next turn starts; only an empty shared bank leaves it out)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModePolicy:
    """One row of the table: everything the engine needs to know about a mode.

    Raises:
        ValueError: at construction, for a combination the engine cannot honour
            (see ``__post_init__``).
    """

    mode: str
    """The wire name (``sync_mode``); a ``SyncMode`` value for the real modes."""
    summary: str
    """A few words for people (the inspector shows ``mode (summary)``)."""
    bank: BankScope | None
    """Whose bank a participant draws from; None: no bank, only the turn limit."""
    counts_up: bool = False
    """The bank's budget is ``max_time_ms``, an optional cap: without one the bank
    has no limit and only counts the time used (a stopwatch). Otherwise the
    budget is ``total_time_ms``: the member's for participant and group banks
    (members of a group must agree), the session's for a session bank."""
    turn_limit: TurnLimit = "none"
    """Whether ``time_per_cycle_ms`` limits each turn (see ``TurnLimit``)."""
    increments: bool = False
    """A switch adds the Fischer ``increment_ms`` to the bank whose turn ends
    (unless that bank ran out)."""
    expiry: Expiry
    """What ``has_expired`` marks (see ``Expiry``)."""
    default_timeout: TimeoutActionType
    """``action_on_timeout`` of a session created without one: what a timeout does."""
    default_auto_advance: bool = True
    """``auto_advance`` of a session created without one *that has a turn
    limit* (a turn limit that runs out passes the turn on). A session without a
    turn limit defaults to false: there is no turn limit to advance on."""

    def __post_init__(self) -> None:
        """Refuse the combinations the engine does not define.

        * ``expiry="bank"`` needs a bank and no turn limit: a turn that runs out
          would otherwise mark its participant out of the game for good.
        * ``bank=None`` needs ``turn_limit="required"``: without a bank, the turn
          limit is the only clock; and nothing to count up or to increment.
        * ``counts_up`` excludes ``increments``: an uncapped bank has no size
          to grow.
        """
        problems: list[str] = []
        if self.expiry == "bank" and (self.bank is None or self.turn_limit != "none"):
            problems.append('expiry="bank" needs a bank and turn_limit="none"')
        if self.bank is None and (
            self.turn_limit != "required" or self.counts_up or self.increments
        ):
            problems.append('bank=None needs turn_limit="required", no counts_up, no increments')
        if self.counts_up and self.increments:
            problems.append("counts_up excludes increments")
        if problems:
            raise ValueError(f"mode {self.mode!r}: " + "; ".join(problems))

    def has_turn_limit(self, time_per_cycle_ms: int | None) -> bool:
        """Whether a session of this mode with ``time_per_cycle_ms`` has a turn limit."""
        return self.turn_limit != "none" and time_per_cycle_ms is not None

    def bank_key(self, participant_id: str, group_id: str | None) -> str | None:
        """Key of the bank a participant draws from, or None when the mode has no bank."""
        if self.bank == "participant":
            return participant_id
        if self.bank == "group":
            return group_id
        if self.bank == "session":
            return GLOBAL_BANK
        return None


_ROWS: Final = (
    ModePolicy(
        mode=SyncMode.PER_PARTICIPANT,
        summary="chess clock",
        bank="participant",
        increments=True,
        expiry="bank",
        default_timeout="expire_session",
    ),
    ModePolicy(
        mode=SyncMode.PER_CYCLE,
        summary="same budget every turn",
        bank=None,
        turn_limit="required",
        expiry="turn",
        default_timeout="skip_cycle",
    ),
    ModePolicy(
        mode=SyncMode.PER_GROUP,
        summary="team banks",
        bank="group",
        increments=True,
        expiry="bank",
        default_timeout="expire_session",
    ),
    ModePolicy(
        mode=SyncMode.GLOBAL,
        summary="one countdown",
        bank="session",
        turn_limit="optional",
        expiry="turn",
        default_timeout="expire_session",
    ),
    ModePolicy(
        mode=SyncMode.COUNT_UP,
        summary="stopwatch with cap",
        bank="session",
        counts_up=True,
        expiry="turn",
        default_timeout="complete_session",
    ),
)

#: The one list of modes: ``sync_mode`` → its policy, in ``SyncMode`` order.
#: Read it through ``policy_of``. Tests may add a throwaway row for the length
#: of a test (``unittest.mock.patch.dict``); nothing else writes to it.
MODES: Final[dict[str, ModePolicy]] = {row.mode: row for row in _ROWS}

if list(MODES) != [m.value for m in SyncMode] or len(MODES) != len(_ROWS):
    raise RuntimeError(
        "core/modes.py: SyncMode and the rows of MODES must name the same modes, once each"
    )


def policy_of(mode: str) -> ModePolicy:
    """Return the row of ``mode`` (a ``SyncMode``, or a name registered in ``MODES``).

    Raises:
        KeyError: no row has that name (the schema refuses such a ``sync_mode``
            before it reaches the engine).
    """
    return MODES[mode]
