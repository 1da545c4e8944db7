"""The timer engine: pure, no I/O, no clock (``now`` is always passed in).

Must import nothing from asyncio, redis or starlette.
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

__all__ = [
    "TERMINAL_STATUSES",
    "Bank",
    "Cancel",
    "Command",
    "Complete",
    "CreateSession",
    "Event",
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
]
