"""``Hub``: the subscribers of each session on this node (local only).

The hub knows nothing of Redis or of sockets: a subscriber is anything with
``session_id``, ``offer(delivery)`` and ``resync()``. ``broadcast`` is
synchronous and never raises: each subscriber queues the message itself, and a
slow one is closed by its own bounded queue, never delaying the others. Most
callers want the pub/sub (``synckairos.pubsub.PubSub``), which feeds the hubs of every node.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from synckairos.ws_messages import Delivery

__all__ = ["Hub", "Subscriber"]

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What the hub needs from a connected socket."""

    session_id: str

    def offer(self, delivery: Delivery) -> None:
        """Queue ``delivery`` for sending; must not block or raise."""
        ...

    def resync(self, *, full: bool = False) -> None:
        """Bring the socket up to date from the history (pub/sub may have lost messages).

        With ``full``, send the whole state even when the version looks current.
        """
        ...


class Hub:
    """Local registry session id → subscribers."""

    def __init__(self) -> None:
        self._groups: dict[str, set[Subscriber]] = {}

    def add(self, subscriber: Subscriber) -> bool:
        """Register ``subscriber``; True when it is the session's first on this node."""
        group = self._groups.setdefault(subscriber.session_id, set())
        group.add(subscriber)
        return len(group) == 1

    def remove(self, subscriber: Subscriber) -> bool:
        """Unregister ``subscriber``; True when it was the session's last on this node."""
        group = self._groups.get(subscriber.session_id)
        if group is None or subscriber not in group:
            return False
        group.discard(subscriber)
        if group:
            return False
        del self._groups[subscriber.session_id]
        return True

    def has(self, session_id: str) -> bool:
        """True when the session has subscribers on this node."""
        return session_id in self._groups

    def session_ids(self) -> list[str]:
        """Sessions with at least one local subscriber."""
        return list(self._groups)

    def subscribers(self) -> Iterator[Subscriber]:
        """Every local subscriber."""
        for group in list(self._groups.values()):
            yield from list(group)

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def broadcast(self, session_id: str, delivery: Delivery) -> int:
        """Offer ``delivery`` to every local subscriber of the session.

        Returns the number of subscribers it was offered to. Never raises: a
        subscriber that fails is logged and skipped.
        """
        group = self._groups.get(session_id)
        if not group:
            return 0
        for subscriber in list(group):
            try:
                subscriber.offer(delivery)
            except Exception:
                logger.exception("skipped broadcast to a subscriber of %s", session_id)
        return len(group)

    def resync(self, session_id: str, *, full: bool = False) -> None:
        """Ask every local subscriber of the session to catch up (``full``: whole state)."""
        for subscriber in list(self._groups.get(session_id, ())):
            subscriber.resync(full=full)
