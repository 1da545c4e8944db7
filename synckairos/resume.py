"""Sans-I/O resume: what a subscriber socket sends next, decided without I/O.

This module owns every gap, epoch and replay decision of a socket that
follows a session. It has no sockets, no queues, no clock, no asyncio and no
store: its inputs are values (a published change, a history read, a budget)
and its outputs are values (a ``Verdict``, a ``Plan``, a ``ReconnectAck``).
``ws_api.SocketConnection`` is its I/O wrapper: it feeds changes in, reads the
store when asked, and turns the answers into queued messages, closes and
background repair tasks.

Theory of operation
-------------------
A subscriber's *position* is the last version it was sent and the epoch (the
incarnation of the session id) that version belongs to; ``Position(0, "")``
means nothing was sent yet (or the session does not exist).

The version filter (``classify``) judges each published change against the
position: the next version of the same epoch is sent; an older or equal one
of the same epoch is a duplicate and dropped; anything else (a version that
jumps, e.g. to ~1.8e15 after a restore, or another epoch) is a *gap* and
starts a *repair*. A deletion is always delivered (then the socket closes),
and a change of another incarnation than the socket's token names is refused
(the socket closes with 1008 before any of that incarnation's state is sent).

While a repair runs, changes are held (``VersionFilter.receive`` answers
``HELD``), bounded by count and by characters of text; beyond either bound the
buffer is forgotten and the position set to ``FORGOTTEN``, so the repair ends
in a full STATE_SYNC. A repair is one consistent read of the state and of the
history after the position (``RepairRequest.read_from``), then a decision
(``plan_repair``): replay the missed changes in order (``Replay``), send the
whole state (``FullSync``), nothing (``Missing``: the session does not exist),
or close (``Refused``: another incarnation than the token's). The held changes
are then judged again, in version order, by the same filter
(``VersionFilter.end_repair``); whichever copy of a change is a duplicate is
dropped, so a change committed while a socket connects or resumes is neither
lost nor sent twice (the channel is subscribed before the first read).

A replay is chosen only when the client's epoch matches the history's (or is
not given), the client's version is between 1 and the current one, the
history holds every missed version (the first is ``since + 1`` and the last
the current one) and the estimated replay, (missed versions) x (size of the
current state), fits the byte budget. Otherwise a STATE_SYNC is cheaper or the
only correct answer.

Calling rules for ``VersionFilter`` (one per socket):

- ``receive(change)`` for every published change, unless the socket is
  closing; act on the verdict (``GAP``: make sure a repair will run).
- ``request_repair(full=...)`` when pub/sub may have lost changes;
  ``take_full_request()`` when that background repair starts.
- For each repair, in this order and never two at once: ``begin_repair()``,
  read the store at ``request.read_from``, ``complete_repair(request, history)``
  (skip it when the read failed), then always ``end_repair()`` and act on each
  verdict it returns, in order.
"""

from __future__ import annotations

import enum
from typing import Generic, Protocol, TypeVar

import msgspec

from synckairos.store import HistorySlice, replay_fits

__all__ = [
    "FORGOTTEN",
    "MAX_VERSION",
    "Arrival",
    "FullSync",
    "Missing",
    "Plan",
    "Position",
    "ReconnectAck",
    "Refused",
    "RepairRequest",
    "Replay",
    "Verdict",
    "VersionFilter",
    "classify",
    "plan_repair",
    "read_from",
    "refuses_epoch",
    "replay_fits",
]

#: The largest version a client can meaningfully name (a JavaScript-safe
#: integer); a claimed version beyond it is read as this one.
MAX_VERSION = 2**53 - 1

#: The position's version after held changes were forgotten: below every real
#: version, so the next repair sends a full STATE_SYNC.
FORGOTTEN = -1


class Arrival(Protocol):
    """What the filter reads of a published change (``ws_messages.Delivery``)."""

    @property
    def version(self) -> int:
        """Session version the change produced (0 for a deletion)."""
        ...

    @property
    def epoch(self) -> str:
        """Epoch of the session when the change was committed."""
        ...

    @property
    def deleted(self) -> bool:
        """True when the change is the session's deletion."""
        ...

    @property
    def text(self) -> str:
        """The message to send; its length counts against the held-changes bound."""
        ...


A = TypeVar("A", bound=Arrival)


class Position(msgspec.Struct, frozen=True):
    """Where a subscriber is: the last version it was sent, and that version's epoch."""

    version: int = 0
    """Last version sent (0: none; ``FORGOTTEN``: held changes were dropped)."""
    epoch: str = ""
    """Epoch of ``version`` ("" until known)."""


class Verdict(enum.Enum):
    """What to do with one published change (``classify``, ``VersionFilter.receive``)."""

    SEND = "send"
    """The next version: send it; the position moved to it."""
    DUPLICATE = "duplicate"
    """Already sent (same epoch, not newer): drop it."""
    GAP = "gap"
    """Versions are missing or the epoch changed: the change is held and a
    repair must run (start one unless one is running)."""
    HELD = "held"
    """A repair is under way: the change is held until it ends."""
    DELETED = "deleted"
    """The session was deleted: send the change, then close (1000)."""
    REFUSED = "refused"
    """Another incarnation than the token's: close (1008), send nothing."""


def refuses_epoch(token_epoch: str | None, epoch: str) -> bool:
    """True when ``epoch`` is another incarnation than the token's ``ep`` names.

    Args:
        token_epoch: the epoch the socket's token names (None: any, no token
            or a token without ``ep``).
        epoch: the epoch of what would be sent ("" is never refused).
    """
    return token_epoch is not None and bool(epoch) and epoch != token_epoch


def classify(position: Position, arrival: Arrival, token_epoch: str | None = None) -> Verdict:
    """Judge one published change against ``position`` (the version filter).

    Pure: the caller moves the position on ``SEND`` (``VersionFilter`` does).

    Returns:
        ``REFUSED`` (a change of another incarnation than the token's),
        ``DELETED``, ``DUPLICATE``, ``SEND`` (the next version of the same
        epoch; any epoch when nothing was sent yet), or ``GAP``. Never ``HELD``.
    """
    if not arrival.deleted and refuses_epoch(token_epoch, arrival.epoch):
        return Verdict.REFUSED
    if arrival.deleted:
        return Verdict.DELETED
    if arrival.version <= position.version and arrival.epoch == position.epoch:
        return Verdict.DUPLICATE
    same_epoch = arrival.epoch == position.epoch or position == Position(0, "")
    if same_epoch and arrival.version == position.version + 1:
        return Verdict.SEND
    return Verdict.GAP


def read_from(since: int, full: bool) -> int:
    """The version to read the history after (``Store.read_since``'s ``since``).

    0 for a full sync; otherwise ``since`` clamped to ``[0, MAX_VERSION]`` (a
    client may claim any version; beyond every real one it gets a STATE_SYNC).
    """
    return 0 if full else min(max(since, 0), MAX_VERSION)


class RepairRequest(msgspec.Struct, frozen=True):
    """One repair to run: what the client has, and whether to skip the replay."""

    since: int
    """The client's last version (0 or less: it has nothing usable)."""
    epoch: str | None
    """The client's epoch (None or "": not checked)."""
    full: bool
    """Send the whole state whatever the history holds."""

    @property
    def read_from(self) -> int:
        """The ``since`` to read the store at (see ``read_from``)."""
        return read_from(self.since, self.full)


class Replay(msgspec.Struct, frozen=True):
    """Send ``changes`` as STATE_UPDATEs, in order; the client is then at ``version``."""

    version: int
    epoch: str
    changes: list[tuple[int, bytes]]
    """``(version, change_json)`` history entries, oldest first (may be empty:
    the client was already current)."""

    @property
    def recovered(self) -> bool:
        """RECONNECT_ACK's ``recovered``: True, nothing was lost."""
        return True

    @property
    def replayed(self) -> int:
        """RECONNECT_ACK's ``replayed``: how many changes are sent."""
        return len(self.changes)


class FullSync(msgspec.Struct, frozen=True):
    """Send one STATE_SYNC of ``state_json`` at ``version``, ``epoch``."""

    version: int
    epoch: str
    state_json: bytes

    @property
    def recovered(self) -> bool:
        """RECONNECT_ACK's ``recovered``: False, the client must replace its state."""
        return False

    @property
    def replayed(self) -> int:
        """RECONNECT_ACK's ``replayed``: 0."""
        return 0


class Missing(msgspec.Struct, frozen=True):
    """The session does not exist: send nothing; the position is reset to nothing."""

    @property
    def recovered(self) -> bool:
        """RECONNECT_ACK's ``recovered``: False."""
        return False

    @property
    def replayed(self) -> int:
        """RECONNECT_ACK's ``replayed``: 0."""
        return 0


class Refused(msgspec.Struct, frozen=True):
    """The session is another incarnation (``epoch``) than the token's: close with 1008."""

    epoch: str

    @property
    def recovered(self) -> bool:
        """RECONNECT_ACK's ``recovered``: False (the socket is closing anyway)."""
        return False

    @property
    def replayed(self) -> int:
        """RECONNECT_ACK's ``replayed``: 0."""
        return 0


Plan = Replay | FullSync | Missing | Refused
"""What a repair sends (``plan_repair``)."""


def plan_repair(
    request: RepairRequest,
    history: HistorySlice,
    *,
    replay_max_bytes: int | None = None,
    token_epoch: str | None = None,
) -> Plan:
    """Decide between a replay and a full sync, from one consistent history read.

    Args:
        request: what the client has (``since``, ``epoch``) and ``full``.
        history: the store's read at ``request.read_from`` (the state, its
            version and epoch, and the changes after ``since`` it still holds
            and was willing to read).
        replay_max_bytes: the replay budget (None: no bound); see ``replay_fits``.
        token_epoch: the incarnation the socket's token names (None: any).

    Returns:
        ``Missing`` when the session does not exist (empty state); ``Refused``
        when it is another incarnation than the token's; ``Replay`` when every
        missed version is in ``history`` within the budget and the epoch
        matches (or nothing was missed); else ``FullSync``.
    """
    if not history.state_json:
        return Missing()
    if refuses_epoch(token_epoch, history.epoch):
        return Refused(history.epoch)
    since, changes = request.since, history.changes
    epoch_ok = request.epoch is None or request.epoch == "" or request.epoch == history.epoch
    replayable = (
        not request.full
        and epoch_ok
        and 0 < since <= history.version
        and replay_fits(since, history.version, len(history.state_json), replay_max_bytes)
        and (
            since == history.version
            or (bool(changes) and changes[0][0] == since + 1 and changes[-1][0] == history.version)
        )
    )
    if replayable:
        return Replay(history.version, history.epoch, changes)
    return FullSync(history.version, history.epoch, history.state_json)


class ReconnectAck(msgspec.Struct, frozen=True):
    """The fields of a RECONNECT_ACK (``VersionFilter.ack``)."""

    recovered: bool
    replayed: int
    version: int
    epoch: str


class VersionFilter(Generic[A]):
    """The Sans-I/O state of one subscriber: position, held changes, repair requests.

    Paired with ``ws_api.SocketConnection`` (its I/O). See the module
    docstring for the calling rules. A new filter holds changes from birth
    (``buffering``): nothing is sent ahead of the first sync.
    """

    def __init__(
        self,
        *,
        max_pending: int,
        max_pending_bytes: int | None = None,
        token_epoch: str | None = None,
    ) -> None:
        self.position = Position()
        """Last version sent and its epoch."""
        self.token_epoch = token_epoch
        """The incarnation the socket's token names (``ep``); None: any."""
        self.max_pending = max_pending
        """Changes that may be held during a repair; beyond it they are forgotten."""
        self.max_pending_bytes = max_pending_bytes
        """Characters of text that may be held (None: bounded by count only)."""
        self.buffering = True
        """True while changes are held (a repair is due or under way)."""
        self.pending: list[A] = []
        """Changes held until the repair ends, in arrival order."""
        self.pending_bytes = 0
        """Characters of text in ``pending``."""
        self.full_requested = False
        """A full STATE_SYNC was asked for (``request_repair(full=True)``)."""

    @property
    def version(self) -> int:
        """Last version sent (0: none)."""
        return self.position.version

    @property
    def epoch(self) -> str:
        """Epoch of what was sent ("" until known)."""
        return self.position.epoch

    @property
    def missing(self) -> bool:
        """True when nothing of the session was sent (it does not exist, as far as known)."""
        return self.position.version == 0

    # ------------------------------------------------------------ changes

    def receive(self, arrival: A) -> Verdict:
        """Judge one published change; hold it when a repair is due or under way.

        Returns:
            ``HELD`` while buffering; else ``classify``'s verdict, with the
            position moved on ``SEND`` and the change held (and buffering
            started) on ``GAP``.
        """
        if self.buffering:
            self._hold(arrival)
            return Verdict.HELD
        return self._accept(arrival)

    def _accept(self, arrival: A) -> Verdict:
        verdict = classify(self.position, arrival, self.token_epoch)
        if verdict is Verdict.SEND:
            self.position = Position(arrival.version, arrival.epoch)
        elif verdict is Verdict.GAP:
            self._hold(arrival)
            self.buffering = True
        return verdict

    def _hold(self, arrival: A) -> None:
        self.pending.append(arrival)
        self.pending_bytes += len(arrival.text)
        if len(self.pending) > self.max_pending or (
            self.max_pending_bytes is not None and self.pending_bytes > self.max_pending_bytes
        ):
            # Far behind: forget the buffer, the repair will STATE_SYNC.
            self.forget_pending()
            self.position = Position(FORGOTTEN, self.position.epoch)

    def forget_pending(self) -> None:
        """Drop every held change (the socket is closing, or far behind)."""
        self.pending = []
        self.pending_bytes = 0

    # ------------------------------------------------------------ repairs

    def request_repair(self, *, full: bool = False) -> None:
        """Note that pub/sub may have lost changes: hold changes until a repair ends.

        The caller starts a background repair unless one is running. With
        ``full`` (after a Redis switch-over) that repair sends a STATE_SYNC
        even when the version looks current.
        """
        self.buffering = True
        self.full_requested = self.full_requested or full

    def take_full_request(self) -> bool:
        """Whether a full STATE_SYNC was requested; clears the request.

        Call this when a background repair starts.
        """
        full, self.full_requested = self.full_requested, False
        return full

    def begin_repair(
        self, since: int | None = None, epoch: str | None = None, *, full: bool = False
    ) -> RepairRequest:
        """Start a repair: hold changes from now until ``end_repair``.

        Args:
            since: the client's last version; None: this filter's position
                (a full sync when nothing usable was sent).
            epoch: the client's epoch (None: not checked); ignored when
                ``since`` is None (the position's epoch is used).
            full: send a STATE_SYNC whatever the history holds.

        Returns:
            What to read (``read_from``) and to pass to ``complete_repair``.
        """
        self.buffering = True
        if since is None:
            since, epoch = self.position.version, self.position.epoch
            full = full or since <= 0
        return RepairRequest(since, epoch, full)

    def complete_repair(
        self, request: RepairRequest, history: HistorySlice, replay_max_bytes: int | None = None
    ) -> Plan:
        """Decide the repair (``plan_repair``) and move the position to what it sends.

        ``Replay`` and ``FullSync`` move it to the history's version and epoch;
        ``Missing`` resets it to nothing; ``Refused`` leaves it.
        """
        plan = plan_repair(
            request, history, replay_max_bytes=replay_max_bytes, token_epoch=self.token_epoch
        )
        if isinstance(plan, Replay | FullSync):
            self.position = Position(plan.version, plan.epoch)
        elif isinstance(plan, Missing):
            self.position = Position()
        return plan

    def end_repair(self) -> list[tuple[A, Verdict]]:
        """End a repair (also a failed one): judge the held changes, in version order.

        Returns:
            Each held change with its verdict, in the order to act on them.
            After a ``GAP`` the rest are ``HELD`` again (a new repair is due).
        """
        self.buffering = False
        held = sorted(self.pending, key=lambda arrival: arrival.version)
        self.forget_pending()
        verdicts: list[tuple[A, Verdict]] = []
        for arrival in held:
            if self.buffering:
                self._hold(arrival)
                verdicts.append((arrival, Verdict.HELD))
            else:
                verdicts.append((arrival, self._accept(arrival)))
        return verdicts

    def ack(self, plan: Plan) -> ReconnectAck:
        """The RECONNECT_ACK after ``plan``: its outcome and the current position.

        Call it after ``end_repair``: the position then includes the held
        changes that were sent.
        """
        return ReconnectAck(plan.recovered, plan.replayed, self.version, self.epoch)
