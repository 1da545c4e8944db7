"""The ``/ws`` endpoint: one ``SocketConnection`` per subscriber socket.

Theory of operation
-------------------
A connection sends from one bounded queue, drained by its own sender task, so
``offer`` (called by the hub for every published change) never blocks. The
queue is bounded in messages (``max_queue``) and in characters of JSON text
(``max_queue_bytes``). When it overflows either, the socket is a slow
consumer: its queue is dropped and it is closed with 1013; other sockets are
unaffected.

Ordering and gaps are decided by ``synckairos.resume`` (Sans-I/O, no I/O): a
``VersionFilter`` per connection judges each offered change (send, drop as a
duplicate, hold during a repair, or start a repair) and ``plan_repair``
decides what a repair sends (the missed changes, or a STATE_SYNC). This module
only carries those decisions out: it reads the store when a repair is due
(one background task at a time, plus RECONNECT and the initial sync, never
two at once), queues the messages, and closes. The same repair serves the
initial sync, RECONNECT, and the catch-up after a pub/sub reconnect. Because
the channel is confirmed subscribed before the first repair reads Redis, a
change committed while a socket connects or resumes is neither lost nor sent
twice.

Tokens: a socket opened with a token is closed with ``CLOSE_TOKEN_EXPIRED``
(4401) when the token's ``exp`` passes (a timer per socket, set at accept), and
with 1008 as soon as it would see another incarnation of its session than the
token's ``ep`` names (checked before any state of it is queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from synckairos import metrics, ws_messages
from synckairos.admission import Admission
from synckairos.auth import Principal
from synckairos.exceptions import RateLimited, SessionNotFound, SyncKairosError
from synckairos.hub import Hub
from synckairos.node import Clock
from synckairos.pubsub import PubSub, SubscribeTimeout
from synckairos.ratelimit import LocalLimiter
from synckairos.resume import FullSync, Plan, Refused, Replay, Verdict, VersionFilter
from synckairos.store import Store
from synckairos.wire import canonical_id
from synckairos.ws_messages import Delivery

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_TOKEN_EXPIRED", "SocketConnection", "close_all", "routes"]

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
#: The socket's token expired: get a new token, then reconnect with it.
CLOSE_TOKEN_EXPIRED = 4401

CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

#: Seconds a close frame may wait for a stalled socket to accept it.
CLOSE_TIMEOUT = 30.0


class _Close(msgspec.Struct, frozen=True):
    code: int
    reason: str


# A queue item: ready text with its commit time (0 when not a change), a text
# produced at send time (timestamps), or a close request.
_Item = tuple[str, int] | Callable[[], str] | _Close


class SocketConnection:
    """One subscriber socket of a session (the hub's ``Subscriber``).

    The I/O half of ``resume.VersionFilter``: it owns the send queue, the
    sender and repair tasks and the store reads; every gap, epoch and replay
    decision is the filter's.
    """

    def __init__(
        self,
        websocket: WebSocket,
        session_id: str,
        *,
        store: Store,
        clock: Clock,
        max_queue: int,
        message_limiter: LocalLimiter | None = None,
        max_queue_bytes: int | None = None,
        replay_max_bytes: int | None = None,
        restore: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.websocket = websocket
        self.restore = restore
        """Brings a session Redis lost back from the audit trail (raises
        ``SessionNotFound`` when it is not there either); None: no audit trail."""
        self.message_limiter = message_limiter
        """Per-connection message rate limit (None: off); beyond it, close 1008."""
        self.session_id = session_id
        """Session this socket follows."""
        self.store = store
        self.clock = clock
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        """Characters of text the queue may hold (None: bounded by count only)."""
        self.replay_max_bytes = replay_max_bytes
        """Largest replay of missed changes; beyond it a STATE_SYNC (None: no bound)."""
        self.filter: VersionFilter[Delivery] = VersionFilter(
            max_pending=4 * max_queue, max_pending_bytes=max_queue_bytes
        )
        """The Sans-I/O version filter: position, held changes, repair decisions.
        It holds changes from birth: nothing is sent ahead of the first sync."""
        self._queued_bytes = 0
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._repair_lock = asyncio.Lock()
        self._repair_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        """Set once the sender has finished (close sent, or socket gone)."""

    @property
    def last_version(self) -> int:
        """Highest version sent to the client (0: nothing yet)."""
        return self.filter.version

    @property
    def epoch(self) -> str:
        """History epoch of what was sent ("" until known)."""
        return self.filter.epoch

    @property
    def token_epoch(self) -> str | None:
        """The incarnation the socket's token names (``ep``); None: any."""
        return self.filter.token_epoch

    @token_epoch.setter
    def token_epoch(self, epoch: str | None) -> None:
        self.filter.token_epoch = epoch

    @property
    def _buffering(self) -> bool:
        """``filter.buffering`` (kept for the tests that read it here)."""
        return self.filter.buffering

    @property
    def _pending(self) -> list[Delivery]:
        """``filter.pending`` (kept for the tests that read it here)."""
        return self.filter.pending

    # ------------------------------------------------------------ sending

    def _enqueue(self, item: _Item) -> None:
        if self._closing:
            return
        size = len(item[0]) if isinstance(item, tuple) else 0
        if len(self._queue) >= self.max_queue or (
            self.max_queue_bytes is not None
            and self._queue
            and self._queued_bytes + size > self.max_queue_bytes
        ):
            metrics.WS_SLOW_CONSUMERS.inc()
            logger.warning("closing slow consumer of %s (queue full)", self.session_id)
            self.close(CLOSE_TRY_AGAIN, "send queue overflow", drop_queue=True)
            return
        self._queued_bytes += size
        self._queue.append(item)
        self._wakeup.set()

    def send_text(self, text: str) -> None:
        """Queue a message that is not a session change."""
        self._enqueue((text, 0))

    def close(self, code: int, reason: str, *, drop_queue: bool = False) -> None:
        """Close after the queued messages (or at once, dropping them)."""
        if self._closing:
            return
        if drop_queue:
            self._queue.clear()
            self._queued_bytes = 0
            self.filter.forget_pending()
        self._queue.append(_Close(code, reason))
        self._closing = True
        self._wakeup.set()

    async def run_sender(self) -> None:
        """Drain the queue to the socket until a close is sent or the socket dies."""
        try:
            await self._drain()
        finally:
            self.closed.set()

    async def _drain(self) -> None:
        websocket = self.websocket
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, _Close):
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            websocket.close(item.code, item.reason), CLOSE_TIMEOUT
                        )
                    return
                if isinstance(item, tuple):
                    text, committed_at = item
                    self._queued_bytes -= len(text)
                    await websocket.send_text(text)
                    if committed_at:
                        metrics.WS_DELIVERY_LATENCY.observe(
                            max(0, self.clock() - committed_at) / 1000
                        )
                else:
                    await websocket.send_text(item())
                metrics.WS_MESSAGES_SENT.inc()

    # ------------------------------------------------------------ changes

    def offer(self, delivery: Delivery) -> None:
        """Called by the hub for each published change of the session."""
        if self._closing:
            return
        self._act(delivery, self.filter.receive(delivery))

    def _act(self, delivery: Delivery, verdict: Verdict) -> None:
        """Carry out the filter's verdict on ``delivery``."""
        if verdict is Verdict.SEND:
            self._enqueue((delivery.text, delivery.ts))
        elif verdict is Verdict.DELETED:
            self.send_text(delivery.text)
            self.close(CLOSE_NORMAL, "session deleted")
        elif verdict is Verdict.REFUSED:
            self._refuse()
        elif verdict is Verdict.GAP:
            self._start_repair()
        # DUPLICATE: dropped; HELD: the repair under way flushes it.

    def _refuse(self) -> None:
        """Close (1008): the session is another incarnation than the token's."""
        self.close(CLOSE_POLICY, "the token is for an earlier incarnation of this session")

    def resync(self, *, full: bool = False) -> None:
        """Catch up from the history in the background (gap, epoch change, pub/sub loss).

        With ``full`` (after a Redis switch-over) a STATE_SYNC is sent even when
        the version looks current: the old primary may have published a change
        that the new one never had.
        """
        if self._closing:
            return
        self.filter.request_repair(full=full)
        self._start_repair()

    def _start_repair(self) -> None:
        """Run a background repair unless one is running (or the socket is closing)."""
        if self._closing:
            return
        if self._repair_task is None or self._repair_task.done():
            self._repair_task = asyncio.create_task(self._background_repair())

    async def _background_repair(self) -> None:
        """Repair until nothing is held back: a gap found while a repair flushed
        its held changes could not start a repair of its own (this one was
        still running), so it is handled here, with a growing pause (after a
        Redis switch-over the new primary may lag a change the old one
        published; the next repair then falls back to a STATE_SYNC)."""
        pause = 0.0
        try:
            while True:
                await self.repair(None, None, full=self.filter.take_full_request())
                if self._closing or not self.filter.buffering:
                    return
                await asyncio.sleep(pause)  # 0 the first time, then 10 ms doubling to 1 s
                pause = min(max(pause * 2, 0.01), 1.0)
        except Exception as exc:
            logger.warning("repair of a %s socket failed (%s); closing it", self.session_id, exc)
            self.close(CLOSE_TRY_AGAIN, "state store unavailable")

    async def repair(self, since: int | None, epoch: str | None, *, full: bool) -> Plan:
        """Send what the client misses after ``since``; returns what was decided.

        Args:
            since: the client's last version; None: what this connection last
                sent (read under the lock, so queued repairs never overlap).
            epoch: the client's epoch (None: not checked).
            full: send a STATE_SYNC whatever the history holds.

        The plan's ``recovered`` is True when the missed versions were replayed
        from the history (or none were missed); False when a STATE_SYNC was
        sent instead (or the session does not exist).
        """
        async with self._repair_lock:
            request = self.filter.begin_repair(since, epoch, full=full)
            try:
                history = await self.store.read_since(
                    self.session_id, request.read_from, self.replay_max_bytes
                )
                plan = self.filter.complete_repair(request, history, self.replay_max_bytes)
                self._send_plan(plan, self.clock())
                return plan
            finally:
                for delivery, verdict in self.filter.end_repair():
                    self._act(delivery, verdict)

    def _send_plan(self, plan: Plan, now: int) -> None:
        """Queue what a repair decided to send."""
        if isinstance(plan, Replay):
            for _, change in plan.changes:
                self._enqueue(
                    (
                        ws_messages.state_update_from_history(
                            self.session_id, plan.epoch, change, now
                        ),
                        0,
                    )
                )
            metrics.WS_RESYNCS.labels("replay").inc()
        elif isinstance(plan, FullSync):
            self._enqueue(
                (
                    ws_messages.state_sync(
                        self.session_id, now, plan.version, plan.epoch, plan.state_json
                    ),
                    0,
                )
            )
            metrics.WS_RESYNCS.labels("full").inc()
        elif isinstance(plan, Refused):
            self._refuse()
        # Missing: nothing to send; the socket waits for the session's creation.

    # ------------------------------------------------------------ receiving

    async def handle(self, raw: str | bytes | None, received_at: int) -> None:
        """Handle one client message (text frame, or None for a binary frame)."""
        if self.message_limiter is not None and not self.message_limiter.hit():
            metrics.RATE_LIMITED.labels("ws_message").inc()
            self.close(CLOSE_POLICY, "message rate limit exceeded")
            return
        if raw is None:
            self.send_text(ws_messages.error("INVALID_MESSAGE", "binary frames are not supported"))
            return
        try:
            message = ws_messages.decode_client_message(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            self.send_text(
                ws_messages.error("INVALID_MESSAGE", "expected a JSON object with a type")
            )
            return
        kind = message.type
        if kind == "PING":
            t0 = message.t0
            self._enqueue(lambda: ws_messages.pong(self.clock(), t0))
        elif kind == "TIME_SYNC":
            t0 = message.t0
            self._enqueue(lambda: ws_messages.time_sync(t0, received_at, self.clock()))
        elif kind == "RECONNECT":
            await self._reconnect(message)
        else:
            self.send_text(
                ws_messages.error("UNKNOWN_MESSAGE_TYPE", f"unknown message type {kind!r}")
            )

    async def _reconnect(self, message: ws_messages.ClientMessage) -> None:
        """Answer a RECONNECT; a session that does not exist gets ``ERROR SESSION_NOT_FOUND``.

        The socket stays open after that ERROR (as on the Node.js server): it
        keeps following the id and gets the session's first STATE_UPDATE if
        it is created. With ``last_known_version`` (ext) the answer is the
        RECONNECT_ACK of version 0 instead (what our clients read as "gone").
        """
        if message.last_known_version is None:
            await self.repair(0, None, full=True)  # like the Node.js reference
            if self.filter.missing and self.restore is not None:
                # Not in Redis: restored from the audit trail if it lives there.
                with contextlib.suppress(SessionNotFound):
                    await self.restore(self.session_id)
                    await self.repair(0, None, full=True)
            self._not_found_if_missing()
            return
        plan = await self.repair(message.last_known_version, message.epoch, full=False)
        ack = self.filter.ack(plan)
        self.send_text(
            ws_messages.reconnect_ack(ack.recovered, ack.replayed, ack.version, ack.epoch)
        )

    def _not_found_if_missing(self) -> None:
        if self.filter.missing and not self._closing:
            self.send_text(
                ws_messages.error("SESSION_NOT_FOUND", f"Session {self.session_id} not found")
            )


async def _receive_loop(websocket: WebSocket, connection: SocketConnection, clock: Clock) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        received_at = clock()
        text = message.get("text")
        await connection.handle(text if text is not None else None, received_at)


async def _refusal(websocket: WebSocket, session_id: str) -> tuple[str | None, Principal | None]:
    """Why this socket may not follow ``session_id`` (close 1008), or None; and its token.

    With a token secret, ``?token=`` must be a valid token for the session (any
    role); then the per-IP connection rate limit applies.
    """
    admission: Admission = websocket.app.state.admission
    principal: Principal | None = None
    if admission.auth.secret is not None:
        token = websocket.query_params.get("token")
        if not token:
            metrics.AUTH_FAILURES.labels(401).inc()
            return "a token for this session is required (?token=)", None
        try:
            principal = admission.auth.verify_token(token, session_id)
        except SyncKairosError as exc:
            metrics.AUTH_FAILURES.labels(exc.status_hint).inc()
            return exc.message[:120], None
    ip = websocket.client.host if websocket.client else "unknown"
    try:
        await admission.limit("ws_connect", f"ip:{ip}")
    except RateLimited as exc:
        return f"connection rate limit exceeded; retry after {exc.headers['Retry-After']} s", None
    return None, principal


async def ws_endpoint(websocket: WebSocket) -> None:
    """``/ws?sessionId=<uuid>``: subscribe to a session's changes."""
    state: Any = websocket.app.state
    listener: PubSub = state.listener
    clock: Clock = state.node.clock
    raw_session_id = websocket.query_params.get("sessionId", "")
    session_id = canonical_id(raw_session_id)
    await websocket.accept()
    if session_id is None:
        # The Node.js server's two reasons: absent (or empty) vs not a UUID.
        reason = "Invalid sessionId format" if raw_session_id else "Missing sessionId parameter"
        await websocket.close(CLOSE_POLICY, reason)
        return
    refusal, principal = await _refusal(websocket, session_id)
    if refusal is not None:
        await websocket.close(CLOSE_POLICY, refusal)
        return
    admission: Admission = state.admission
    connection = SocketConnection(
        websocket,
        session_id,
        store=state.node.store,
        clock=clock,
        max_queue=state.settings.ws_send_queue,
        message_limiter=admission.socket_limiter(),
        max_queue_bytes=state.settings.ws_send_queue_bytes,
        replay_max_bytes=state.settings.ws_replay_max_bytes,
        restore=state.node.load if state.node.archive is not None else None,
    )
    expiry: asyncio.TimerHandle | None = None
    if principal is not None:
        connection.token_epoch = principal.epoch
        if principal.expires_at_s is not None:
            expiry = asyncio.get_running_loop().call_later(
                max(0.0, principal.expires_at_s - time.time()),
                connection.close,
                CLOSE_TOKEN_EXPIRED,
                "token expired",
            )
    sender = asyncio.create_task(connection.run_sender())
    metrics.WS_OPEN.inc()
    joined = False
    try:
        connection.send_text(ws_messages.connected(session_id, clock()))
        try:
            await listener.join(connection)
            joined = True
            await connection.repair(0, None, full=True)
            if connection.last_version == 0 and state.node.archive is not None:
                # Not in Redis: restore it from the audit trail if it lives there
                # (as a GET would), then sync. A session that does not exist yet
                # keeps the socket waiting for its creation.
                with contextlib.suppress(SessionNotFound):
                    await state.node.load(session_id)
                    await connection.repair(0, None, full=True)
        except SubscribeTimeout:
            connection.close(CLOSE_TRY_AGAIN, "pub/sub unavailable, try again")
        except Exception as exc:
            logger.warning("initial sync of %s failed: %s", session_id, exc)
            connection.close(CLOSE_TRY_AGAIN, "state store unavailable, try again")
        receiver = asyncio.create_task(_receive_loop(websocket, connection, clock))
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if receiver not in done:
            receiver.cancel()
        for task in done:
            ended = None if task.cancelled() else task.exception()
            if ended is not None and not isinstance(
                ended, WebSocketDisconnect | OSError | RuntimeError
            ):
                logger.warning("socket of %s ended with %r", session_id, ended)
    finally:
        if expiry is not None:
            expiry.cancel()
        metrics.WS_OPEN.dec()
        if joined:
            await listener.leave(connection)
        if not sender.done():
            connection.close(CLOSE_GOING_AWAY, "")
            sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_NORMAL)


async def close_all(
    hub: Hub,
    code: int = CLOSE_GOING_AWAY,
    reason: str = "server shutting down",
    *,
    drain_timeout: float = 2.0,
) -> None:
    """Close every local socket and wait (bounded) until each has sent its close.

    Used for graceful shutdown: 1001 tells clients to reconnect elsewhere.
    """
    waits = []
    for subscriber in hub.subscribers():
        if isinstance(subscriber, SocketConnection):
            subscriber.close(code, reason, drop_queue=True)
            waits.append(subscriber.closed.wait())
    if waits:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), drain_timeout)


def routes() -> list[BaseRoute]:
    """The WebSocket route of a node."""
    return [WebSocketRoute("/ws", ws_endpoint)]
