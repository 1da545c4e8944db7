"""The timer engine: pure, no I/O, no clock (``now`` is always passed in).

Owns what a session is and every change to it:

* ``model.py``: the session as immutable msgspec Structs (its wire form);
* ``modes.py``: the timer modes as data, one ``ModePolicy`` row per
  ``sync_mode`` (the one list of modes);
* ``commands.py``: the create request and the commands, typed;
* ``machine.py``: the transition table and ``apply``/``create_session``;
* ``deadlines.py``: banks, turn limits, charging and deadlines;
* ``storable.py``/``ids.py``: what PostgreSQL can store, canonical ids.

Must import nothing from asyncio, redis or starlette, nor anything of
``synckairos`` but ``synckairos.exceptions``.
"""

from synckairos.core.commands import (
    Cancel,
    Command,
    Complete,
    CreateSession,
    NewParticipant,
    Pause,
    Resume,
    Start,
    Switch,
    Timeout,
)
from synckairos.core.deadlines import compute_deadline, iso_ms
from synckairos.core.machine import Transition, apply, create_session, is_overdue
from synckairos.core.model import (
    TERMINAL_STATUSES,
    Bank,
    Event,
    Participant,
    SessionState,
    Status,
    SyncMode,
    TimeoutAction,
)
from synckairos.core.modes import MODES, ModePolicy, policy_of

__all__ = [
    "MODES",
    "TERMINAL_STATUSES",
    "Bank",
    "Cancel",
    "Command",
    "Complete",
    "CreateSession",
    "Event",
    "ModePolicy",
    "NewParticipant",
    "Participant",
    "Pause",
    "Resume",
    "SessionState",
    "Start",
    "Status",
    "Switch",
    "SyncMode",
    "Timeout",
    "TimeoutAction",
    "Transition",
    "apply",
    "compute_deadline",
    "create_session",
    "is_overdue",
    "iso_ms",
    "policy_of",
]
