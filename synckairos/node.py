"""``Node``: the one place that reads the clock, runs the core and commits.

Every command goes load → ``core.apply(state, command, now)`` → ``store.commit``
(compare-and-set on the version). A command without preconditions is retried on
a version race (bounded by ``commit_retries``), so it is applied atomically to
the current state: it never loses a concurrent update and never fails merely
because another writer was faster. A command with ``expected_version`` or
``current_participant_id`` answers ``Conflict`` instead when the state moved.

A session whose deadline has passed is first brought up to date: the timeout
(computed as of the deadline) is committed as its own version, then the
command is applied to the result. The server owns time: a switch that arrives
after the deadline does not undo a timeout that already happened.

Bounds: a create or command whose state would exceed ``max_state_bytes``
answers 413 and changes nothing (server-side transitions, which never grow a
state much, are not refused). A pending or paused session idle for its TTL is
cancelled by the server (``session_cancelled``, reason ``pending_ttl`` or
``paused_ttl``), committed like any change: its wake-up time is the score of
the session in the scheduler's sorted set, where a running session has its
deadline. The state's ``deadline_ms`` is untouched (None while not running).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import msgspec
from msgspec.structs import replace

from synckairos import metrics
from synckairos.audit.contract import Archive, DurableSink, Snapshot
from synckairos.auth import STALE_TOKEN
from synckairos.change import decode_change, decode_event, encode_change, encode_deletion
from synckairos.config import Rate
from synckairos.core import (
    TERMINAL_STATUSES,
    Cancel,
    Command,
    Complete,
    CreateSession,
    Event,
    SessionState,
    Status,
    Switch,
    Timeout,
    Transition,
    apply,
    create_session,
    is_overdue,
    iso_ms,
)
from synckairos.core.ids import canonical_state
from synckairos.exceptions import (
    Conflict,
    InvalidTransition,
    PayloadTooLarge,
    SessionExists,
    SessionNotFound,
    StoreUnavailable,
    SyncKairosError,
    Unauthorized,
)
from synckairos.store import Change, Store

__all__ = [
    "Clock",
    "CommandResult",
    "DeadlineWatcher",
    "Node",
    "Preconditions",
    "restore_version",
    "wall_clock_ms",
]

Clock = Callable[[], int]
DeadlineWatcher = Callable[[int], None]
"""Called with each wake-up time (epoch ms) a node commits; must not block or raise."""


def wall_clock_ms() -> int:
    """Server time in epoch milliseconds (the clock every node shares)."""
    return time.time_ns() // 1_000_000


#: Bound on consecutive overdue timeouts applied before one command.
MAX_CATCH_UP = 100_000


def restore_version(persisted_version: int, now_ms: int) -> int:
    """The version a restore writes: ``max(persisted_version + 1, now_ms * 1000)``.

    A restore brings back the newest *persisted* change of an incarnation,
    but Redis may have acknowledged later versions that never reached
    PostgreSQL, and clients may hold them. The restored state must not take
    any of those numbers, or a stale ``expected_version``/``If-Match`` would
    match a different state (and PostgreSQL would get two rows for one
    version). The restoring node cannot know how far Redis had got, so the
    version jumps above every number the incarnation can have been given:

    * every persisted version is below ``persisted_version + 1``;
    * every version assigned since the incarnation was created (version 1)
      or last restored (version ``V0 = 1000 * t0``, ``t0`` that restore's
      clock in ms) is ``V0 + k``, ``k`` the commits since. One Redis commits
      one session at most once per microsecond (a commit is a Lua script of
      several writes, tens of µs), so ``k`` is below the microseconds
      elapsed, and ``V0 + k < 1000 * now_ms`` once the clock has moved on
      by more than 1 ms (``now_ms * 1000`` truncates up to 999 µs).

    The microseconds are the node clock's milliseconds times 1000: the same
    injectable clock as everything else (tests pin it), and the truncation
    costs only that 1 ms, far below the time a Redis loss takes to notice
    and repair. The argument assumes the nodes' clocks agree (NTP) to better
    than the time between two losses of one session, the assumption the
    server already makes for deadlines. The result (~1.8e15) stays below
    2**53, so JavaScript clients hold it exactly, until the year 2255.
    """
    return max(persisted_version + 1, now_ms * 1000)


class Preconditions(msgspec.Struct, frozen=True):
    """Optional client preconditions of a command (409 ``CONFLICT`` when false).

    ``epoch`` is the incarnation a session token names (claim ``ep``): on
    another one the command is refused with 401 ``UNAUTHORIZED``.
    """

    expected_version: int | None = None
    current_participant_id: str | None = None
    epoch: str | None = None


class CommandResult(msgspec.Struct, frozen=True):
    """A committed change: the transition, its encoded state and history epoch."""

    transition: Transition
    state_json: bytes
    epoch: str


_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(SessionState)


class _SessionLock:
    """A per-session lock and how many commands hold or await it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Node:
    """Applies commands to sessions held in a ``Store``.

    A command needs the session's state. The node keeps the last state it read
    or committed of up to ``state_cache_size`` sessions, so a command usually
    costs one Redis round trip (the commit) instead of two (read, then commit).
    A cached state may be stale (another node committed since); the commit's
    version check then fails and hands back the current state, on which the
    command is applied again: never a lost update, and a precondition or
    transition that fails on a cached state is checked again on a fresh one
    before it is reported. Reads (``get``) always go to Redis.

    Every collaborator is given at construction (the store, the clock, the
    ``Archive``, the ``DurableSink``) and fixed for the node's life; the one
    subscription is ``watch_deadlines`` (the local scheduler's wake-up).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = wall_clock_ms,
        commit_retries: int = 200,
        state_cache_size: int = 4096,
        max_state_bytes: int | None = None,
        pending_ttl_ms: int = 0,
        paused_ttl_ms: int = 0,
        archive: Archive | None = None,
        audit_writer: DurableSink | None = None,
    ):
        self.store = store
        self.clock = clock
        """Returns the current server time in epoch ms. The only clock read."""
        self.commit_retries = commit_retries
        self._archive = archive
        self._deadline_watchers: list[DeadlineWatcher] = []
        self.state_cache_size = state_cache_size
        self.max_state_bytes = max_state_bytes
        """Largest state JSON a create or command may produce (None: unbounded)."""
        self.idle_ttl_ms = {Status.PENDING: pending_ttl_ms, Status.PAUSED: paused_ttl_ms}
        """Idle time after which the server cancels a session in that status (0: never)."""
        self.audit_writer = audit_writer
        """Durability level postgres: every change (and deletion) is written to
        PostgreSQL through it, with its outbox entry's event id, before the
        caller gets an answer (None: Redis answers for durability)."""
        self._states: dict[str, tuple[SessionState, str]] = {}
        self._locks: dict[str, _SessionLock] = {}

    @property
    def archive(self) -> Archive | None:
        """Where sessions Redis lost are restored from (None: no audit store)."""
        return self._archive

    def watch_deadlines(self, watcher: DeadlineWatcher) -> Callable[[], None]:
        """Call ``watcher`` with the wake-up time of every change this node commits.

        The local scheduler subscribes so it wakes for a deadline earlier than
        the one it sleeps towards. Call the returned function to unsubscribe.
        """
        self._deadline_watchers.append(watcher)

        def unsubscribe() -> None:
            if watcher in self._deadline_watchers:
                self._deadline_watchers.remove(watcher)

        return unsubscribe

    def _remember(self, state: SessionState, epoch: str) -> None:
        if self.state_cache_size <= 0 or not epoch:
            return
        states = self._states
        states.pop(state.session_id, None)
        states[state.session_id] = (state, epoch)
        if len(states) > self.state_cache_size:
            del states[next(iter(states))]  # the least recently used

    def _forget(self, session_id: str) -> None:
        self._states.pop(session_id, None)

    async def load(self, session_id: str) -> tuple[SessionState, str]:
        """Return the session's state and history epoch.

        Raises:
            SessionNotFound: no such session.
        """
        stored = await self.store.load(session_id)
        if stored is None and self.archive is not None and await self.restore(session_id):
            stored = await self.store.load(session_id)
        if stored is None or stored.deleted:
            self._forget(session_id)
            raise SessionNotFound(f"session {session_id} not found", {"session_id": session_id})
        state = _state_decoder.decode(stored.state_json)
        self._remember(state, stored.epoch)
        return state, stored.epoch

    async def restore(self, session_id: str, *, over_version: int = 0) -> bool:
        """Restore the session from its latest snapshot in the audit store.

        The restore is the same incarnation: it keeps the snapshot's epoch
        (``sync_events.epoch``). Its own change is the event
        ``session_recovered`` whose state is the snapshot as of the last
        persisted change, unchanged but for ``recovered: true``,
        ``updated_at`` and the version, which jumps to
        ``restore_version(persisted, now)`` (~ the clock in µs): above every
        version Redis can have given the incarnation, persisted or lost, so
        no version is ever reused, a precondition naming a lost version
        fails with 409 forever, and PostgreSQL gets one row per version.
        Subscribers see the version jump forward in the same epoch (a gap:
        they get a STATE_SYNC). A running timer keeps counting from its
        last persisted ``cycle_started_ms``, and a deadline that passed
        meanwhile is fired by the scheduler as of the deadline.

        Args:
            over_version: 0 restores only if Redis lacks the session (create if
                absent: two nodes restoring at once are harmless); otherwise the
                Redis version being replaced (reconcile), compare-and-set on
                that version and the snapshot's epoch.

        Returns:
            True when the session is in Redis afterwards (restored by this call
            or by a concurrent one); False when the archive has no live
            snapshot, or (``over_version``) Redis moved on meanwhile.

        Raises:
            StoreUnavailable: Redis or PostgreSQL cannot be reached.
        """
        if self._archive is None:
            return False
        snapshot = await self._archive.latest_snapshot(session_id)
        if snapshot is None:
            return False
        return await self._restore(snapshot, over_version)

    async def _restore(self, snapshot: Snapshot, over_version: int = 0) -> bool:
        persisted = canonical_state(_state_decoder.decode(snapshot.state_json))  # legacy upper case
        now = self.clock()
        version = restore_version(max(persisted.version, snapshot.version, over_version), now)
        restored = replace(
            persisted,
            version=version,
            recovered=True,
            updated_at=iso_ms(now),
            server_time_ms=now,
        )
        transition = Transition(restored, Event(type="session_recovered"))
        try:
            result = await self._commit(
                over_version, transition, now, version, epoch=snapshot.epoch
            )
        except SessionExists:
            return True
        if result is not None:
            metrics.RECOVERIES.inc()
        return result is not None

    async def get(self, session_id: str, *, epoch: str | None = None) -> bytes:
        """Return the session's state JSON with ``server_time_ms`` set to now.

        Raises:
            SessionNotFound: no such session.
            Unauthorized: ``epoch`` (a token's) is not the session's incarnation.
        """
        state, current = await self.load(session_id)
        _check_epoch(epoch, current)
        return _encoder.encode(replace(state, server_time_ms=self.clock()))

    async def create(self, spec: CreateSession) -> CommandResult:
        """Create a session (version 1, a new incarnation: a new epoch).

        With an audit store, the archive is asked first (one indexed
        PostgreSQL query): an id whose newest persisted incarnation is live
        is taken even when Redis lost it. That session is restored into
        Redis (so reads work) and the create answers ``SessionExists``. An id
        whose newest persisted event is its deletion, or whose Redis entry is
        a tombstone (deleted, the deletion not yet in PostgreSQL), is free.

        Raises:
            ValidationFailed: the definition breaks a rule of the core.
            SessionExists: the id is taken; the existing session is untouched.
            StoreUnavailable: Redis, or PostgreSQL when an audit store is
                configured, cannot be reached; nothing was created.
        """
        now = self.clock()
        transition = create_session(spec, now)
        if self.archive is not None:
            await self._refuse_archived(spec.session_id)
        result = await self._commit(0, transition, now, check_size=True)
        assert result is not None, "create-if-absent never reports a version race"
        return result

    async def _refuse_archived(self, session_id: str) -> None:
        """Raise ``SessionExists`` when the archive holds a live incarnation of the id."""
        assert self._archive is not None
        snapshot = await self._archive.latest_snapshot(session_id)
        if snapshot is None:
            return
        stored = await self.store.load(session_id)
        if stored is not None and stored.deleted:
            return
        if stored is None:
            await self._restore(snapshot)
        raise SessionExists(f"session {session_id} already exists", {"session_id": session_id})

    async def execute(
        self,
        session_id: str,
        command: Command,
        preconditions: Preconditions | None = None,
        *,
        rate: Rate | None = None,
    ) -> CommandResult:
        """Apply ``command`` to the session's current state and commit it.

        ``rate`` is the session's command rate limit, checked and counted in the
        commit itself (no extra round trip); catch-up timeouts are not counted.

        Raises:
            RateLimited: the session's rate limit is exhausted; nothing changed.
            SessionNotFound: no such session.
            InvalidTransition: the command is not allowed now.
            ValidationFailed: the command names an unknown participant.
            Conflict: a precondition failed; nothing changed.
            StoreUnavailable: Redis is unreachable, or the retries ran out.
        """
        # Commands on one session queue on this node instead of racing each
        # other's compare-and-set: N concurrent commands then cost N commits
        # (each on the state the previous one cached), not O(N²) retries.
        entry = self._locks.get(session_id)
        if entry is None:
            entry = self._locks[session_id] = _SessionLock()
        entry.users += 1
        try:
            async with entry.lock:
                return await self._execute(session_id, command, preconditions, rate)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[session_id]

    async def _execute(
        self,
        session_id: str,
        command: Command,
        preconditions: Preconditions | None,
        rate: Rate | None,
    ) -> CommandResult:
        pre = preconditions or Preconditions()
        cached = self._states.get(session_id)
        fresh = cached is None
        state, epoch = cached if cached is not None else await self.load(session_id)
        races = 0
        catch_ups = 0
        while True:
            now = self.clock()
            if not isinstance(command, Timeout) and is_overdue(state, now):
                catch_ups += 1
                if catch_ups > MAX_CATCH_UP:
                    raise StoreUnavailable("too many overdue timeouts to apply")
                timeout = apply(state, Timeout(), now)
                caught_up = await self._commit(state.version, timeout, now, epoch=epoch)
                if caught_up is not None:
                    state, epoch = timeout.state, caught_up.epoch
                    continue
            else:
                try:
                    _check(pre, state, epoch)
                    transition = apply(state, command, now)
                except SyncKairosError as exc:
                    if fresh:
                        answer = await self._answer_finished(session_id, command, pre, exc, state)
                        if answer is None:
                            raise
                        return CommandResult(answer, _encoder.encode(answer.state), epoch)
                    (state, epoch), fresh = await self.load(session_id), True
                    continue
                try:
                    result = await self._commit(
                        state.version, transition, now, rate=rate, epoch=epoch, check_size=True
                    )
                except SessionNotFound:
                    if fresh:
                        raise
                    # Gone from Redis since it was cached: read it (restore-on-miss).
                    (state, epoch), fresh = await self.load(session_id), True
                    continue
                if result is not None:
                    return result
            races += 1
            metrics.CONFLICTS.labels("retry").inc()
            if races >= self.commit_retries:
                raise StoreUnavailable(
                    "the session changed too often to apply the command; retry",
                    {"attempts": races},
                )
            # The failed commit handed back the current state (cached), else read it.
            handed_back = self._states.get(session_id)
            if handed_back is not None and handed_back != (state, epoch):
                state, epoch = handed_back
            else:
                state, epoch = await self.load(session_id)
            fresh = True

    async def _answer_finished(
        self,
        session_id: str,
        command: Command,
        pre: Preconditions,
        exc: SyncKairosError,
        state: SessionState,
    ) -> Transition | None:
        """The answer to a command a finished session makes moot, or None (raise ``exc``).

        Both answers leave the session as it is (no commit, no new version, no
        event published); the returned transition carries the state, with
        ``server_time_ms`` set to now as a read would, and an event naming
        what the client is told (docs/compatibility.md):

        * ``complete`` on a completed, expired or cancelled session: the
          session is already finished, which is what the client asked for
          (the Node.js server answers 200 there too). Preconditions still
          apply: a wrong ``expected_version`` is a 409 as usual.
        * ``switch`` after the flag fell: the session was ended by the timeout
          of its active participant (``session_expired``, or
          ``session_completed`` of a capped count-up, with reason
          ``timeout``): the answer carries ``expired_participant_id`` like
          the Node.js server's switch result; the timeout stays in force and
          the switch does not apply. A precondition is honoured if it
          describes the session just before or after that timeout
          (``expected_version`` of either version, ``current_participant_id``
          of the participant whose time ran out): that is the turn the
          switch meant to end. Any other precondition is still a 409.
        """
        if isinstance(exc, InvalidTransition | Conflict) and state.status in TERMINAL_STATUSES:
            if isinstance(command, Complete):
                if isinstance(exc, Conflict):
                    return None
                event = Event(type="session_unchanged", reason=f"already_{state.status.value}")
                return Transition(replace(state, server_time_ms=self.clock()), event)
            if isinstance(command, Switch):
                expired = await self._timed_out(session_id, state)
                if expired is None:
                    return None
                if pre.expected_version not in (None, state.version, state.version - 1):
                    return None
                if pre.current_participant_id not in (None, expired):
                    return None
                event = Event(
                    type="session_unchanged", expired_participant_id=expired, reason="timeout"
                )
                return Transition(replace(state, server_time_ms=self.clock()), event)
        return None

    async def _timed_out(self, session_id: str, state: SessionState) -> str | None:
        """Whose timeout ended ``state`` (its last change), or None if not a timeout.

        Read from the session's event history: the last change must be the one
        that produced ``state`` and have reason ``timeout``.
        """
        if state.status not in (Status.EXPIRED, Status.COMPLETED):
            return None
        history = await self.store.read_since(session_id, state.version - 1)
        for version, change_json in history.changes:
            if version != state.version:
                continue
            event = decode_event(decode_change(change_json))
            if event.reason == "timeout" and event.participant_id is not None:
                return event.participant_id
        return None

    async def fire_timeouts(self, session_id: str) -> list[tuple[Transition, int]]:
        """Apply every timeout of the session that is due now, each as of its deadline.

        Called by the scheduler after it claimed the session's deadline. A
        pending or paused session idle for its TTL (``idle_expiry``) is
        cancelled instead, with the reason ``pending_ttl`` / ``paused_ttl``. Each
        timeout is its own version-checked commit, so a command that won the
        race is honoured and the timeout is recomputed from the new state (and
        usually no longer due). Deadlines that passed while no node ran (a
        restart) fire here one after another, each computed as of its deadline.

        Returns:
            ``(transition, lag_ms)`` for each committed timeout, where lag is
            commit time minus deadline. Empty when nothing was due any more.
        """
        fired: list[tuple[Transition, int]] = []
        stored = await self.store.load(session_id)
        if stored is None or stored.deleted:
            return fired
        state = _state_decoder.decode(stored.state_json)
        races = 0
        while True:
            now = self.clock()
            deadline = state.deadline_ms
            expiry = self.idle_expiry(state)
            if expiry is not None:
                if expiry > now:
                    return fired
                cancelled = apply(state, Cancel(), now)
                transition = Transition(
                    cancelled.state, replace(cancelled.event, reason=f"{state.status}_ttl")
                )
                if await self._commit(state.version, transition, now) is not None:
                    fired.append((transition, now - expiry))
                    return fired
            else:
                if deadline is None or deadline > now:
                    return fired
                if len(fired) >= MAX_CATCH_UP:
                    raise StoreUnavailable("too many overdue timeouts to apply")
                transition = apply(state, Timeout(), now)
                if await self._commit(state.version, transition, now) is not None:
                    fired.append((transition, now - deadline))
                    state = transition.state
                    continue
            races += 1
            metrics.CONFLICTS.labels("retry").inc()
            if races >= self.commit_retries:
                raise StoreUnavailable("the session changed too often to apply its timeout")
            state, _ = await self.load(session_id)

    def idle_expiry(self, state: SessionState) -> int | None:
        """When the server cancels ``state`` for idling (epoch ms), or None.

        A pending or paused session expires its status's TTL after its last
        committed change (``server_time_ms`` of the stored state is the commit
        time); other statuses never idle-expire.
        """
        ttl = self.idle_ttl_ms.get(state.status, 0)
        return state.server_time_ms + ttl if ttl > 0 else None

    async def delete(
        self, session_id: str, expected_version: int | None = None, *, epoch: str | None = None
    ) -> None:
        """Delete the session and announce it to its subscribers.

        Deleting a session that does not exist (never created, already
        deleted, expired from Redis and not in the audit store) succeeds and
        changes nothing: DELETE is idempotent (204), as on the Node.js
        server. With ``expected_version`` (``If-Match``) it is a 404: the
        precondition names a state, and there is none.

        Raises:
            SessionNotFound: with ``expected_version``, no such session; or, in
                a race, a live incarnation other than the one ``epoch`` names.
            Unauthorized: ``epoch`` (a token's) is not the session's incarnation.
            Conflict: ``expected_version`` is given and differs; nothing deleted.
        """
        if epoch is not None:
            stored = await self.store.load(session_id)
            if stored is not None and not stored.deleted:
                _check_epoch(epoch, stored.epoch)
        deletion = encode_deletion(self.clock())
        self._forget(session_id)
        event_id = uuid.uuid4().hex
        deleted = await self.store.delete(
            session_id, deletion, expected_version, expected_epoch=epoch or "", event_id=event_id
        )
        if deleted is None:
            # Not in Redis: a session Redis lost is restored first (as a read
            # would), so it is deleted for good and ``expected_version`` is
            # checked on it.
            stored = await self.store.load(session_id)
            if stored is None and await self.restore(session_id):
                deleted = await self.store.delete(
                    session_id,
                    deletion,
                    expected_version,
                    expected_epoch=epoch or "",
                    event_id=event_id,
                )
        if deleted is None:
            if expected_version is None and (stored is None or stored.deleted):
                return  # already gone: a delete is idempotent (204), as on the Node.js server
            raise SessionNotFound(f"session {session_id} not found", {"session_id": session_id})
        if self.audit_writer is not None:
            await self.audit_writer.write(
                [
                    (
                        event_id,
                        session_id,
                        deleted.version,
                        "session_deleted",
                        deleted.epoch,
                        deletion.decode(),
                    )
                ]
            )

    async def _commit(
        self,
        expected_version: int,
        transition: Transition,
        now: int,
        new_version: int | None = None,
        *,
        rate: Rate | None = None,
        epoch: str = "",
        check_size: bool = False,
    ) -> CommandResult | None:
        """Commit ``transition``; None when the stored version (or ``epoch``) moved on.

        On a mismatch the store hands back the current state, which is cached
        for the caller's retry. The scheduler's wake-up time of the session is
        its deadline while it runs, else its idle expiry (``idle_expiry``).
        With an ``audit_writer`` a committed change is also written to
        PostgreSQL (same event id as its outbox entry) before this returns.

        Raises:
            PayloadTooLarge: with ``check_size``, the state exceeds
                ``max_state_bytes``; nothing was written.
            StoreUnavailable: Redis failed, or (level postgres) the change is in
                Redis but its PostgreSQL write failed: outcome unknown.
        """
        state = transition.state
        state_json = _encoder.encode(state)
        if (
            check_size
            and self.max_state_bytes is not None
            and len(state_json) > self.max_state_bytes
        ):
            raise PayloadTooLarge(
                f"the session state would be {len(state_json)} bytes, "
                f"more than the limit of {self.max_state_bytes}",
                {"limit": self.max_state_bytes, "size": len(state_json)},
            )
        wake_ms = state.deadline_ms
        if wake_ms is None:
            wake_ms = self.idle_expiry(state)
        change_json = encode_change(state.version, transition.event, state_json, now)
        event_id = uuid.uuid4().hex
        try:
            result = await self.store.commit(
                Change(
                    session_id=state.session_id,
                    expected_version=expected_version,
                    state_json=state_json,
                    change_json=change_json,
                    event_type=transition.event.type,
                    deadline_ms=wake_ms,
                    finished=state.status in TERMINAL_STATUSES,
                    new_version=new_version,
                    rate=rate,
                    expected_epoch=epoch,
                    event_id=event_id,
                )
            )
        except SessionNotFound:
            self._forget(state.session_id)
            raise
        if not result.committed:
            if result.state_json:
                self._remember(_state_decoder.decode(result.state_json), result.epoch)
            else:
                self._forget(state.session_id)
            return None
        self._remember(state, result.epoch)
        metrics.COMMITS.labels(transition.event.type).inc()
        if wake_ms is not None:
            for watch in self._deadline_watchers:
                watch(wake_ms)
        if self.audit_writer is not None:
            await self.audit_writer.write(
                [
                    (
                        event_id,
                        state.session_id,
                        state.version,
                        transition.event.type,
                        result.epoch,
                        change_json.decode(),
                    )
                ]
            )
        return CommandResult(transition=transition, state_json=state_json, epoch=result.epoch)


def _check_epoch(expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise Unauthorized(STALE_TOKEN)


def _check(pre: Preconditions, state: SessionState, epoch: str) -> None:
    _check_epoch(pre.epoch, epoch)
    if pre.expected_version is not None and pre.expected_version != state.version:
        metrics.CONFLICTS.labels("precondition").inc()
        raise Conflict(
            "the session is not at the expected version",
            {"expected_version": pre.expected_version, "actual_version": state.version},
        )
    if (
        pre.current_participant_id is not None
        and pre.current_participant_id != state.active_participant_id
    ):
        metrics.CONFLICTS.labels("precondition").inc()
        raise Conflict(
            "the active participant is not the expected one",
            {
                "expected_version": pre.expected_version,
                "actual_version": state.version,
                "expected_participant_id": pre.current_participant_id,
                "actual_participant_id": state.active_participant_id,
            },
        )
