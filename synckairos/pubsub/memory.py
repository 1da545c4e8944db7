"""``MemoryPubSub``: the ``PubSub`` contract in one process (a test double).

``MemoryBroker`` stands for Redis's channels: ``MemoryStore`` publishes each
commit's payload to it (``MemoryStore(publish=broker.publish)``) and every
``MemoryPubSub`` attached to it feeds its hub, as ``RedisPubSub`` does from
Redis. A subscription is confirmed at once. ``lose_connection`` and
``reconnect`` play a dropped pub/sub connection: messages published meanwhile
are lost, and the reconnect asks the sockets to catch up from the history.
``tests/pubsub/test_pubsub_contract.py`` runs the same tests against both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from synckairos.ws_messages import decode_delivery

if TYPE_CHECKING:
    from synckairos.hub import Hub, Subscriber

__all__ = ["MemoryBroker", "MemoryPubSub"]

logger = logging.getLogger(__name__)


class MemoryBroker:
    """In-process channels: publishers call ``publish``, attached pub/subs receive."""

    def __init__(self) -> None:
        self._attached: list[MemoryPubSub] = []

    def attach(self, pubsub: MemoryPubSub) -> None:
        """Deliver to ``pubsub`` from now on."""
        self._attached.append(pubsub)

    def detach(self, pubsub: MemoryPubSub) -> None:
        """Stop delivering to ``pubsub``."""
        if pubsub in self._attached:
            self._attached.remove(pubsub)

    def publish(self, session_id: str, payload: bytes) -> int:
        """Hand ``payload`` to every attached pub/sub; returns how many took it."""
        return sum(pubsub.receive(session_id, payload) for pubsub in list(self._attached))


class MemoryPubSub:
    """Feeds ``hub`` from ``broker``; run ``run()`` as a task for the node's life."""

    def __init__(self, broker: MemoryBroker, hub: Hub, clock: Callable[[], int]) -> None:
        self.broker = broker
        self.hub = hub
        self.clock = clock
        self.connected = True
        """False between ``lose_connection`` and ``reconnect``: publishes are lost."""
        self._running = False
        self._stopped: asyncio.Event | None = None
        broker.attach(self)

    @property
    def alive(self) -> bool:
        """True while ``run()`` runs and the (simulated) connection is up."""
        return self._running and self.connected

    async def join(self, subscriber: Subscriber) -> None:
        """Register ``subscriber``; confirmed at once (never raises ``SubscribeTimeout``)."""
        self.hub.add(subscriber)

    async def leave(self, subscriber: Subscriber) -> None:
        """Unregister ``subscriber``."""
        self.hub.remove(subscriber)

    def receive(self, session_id: str, payload: bytes) -> bool:
        """One published payload (called by the broker); True when delivered to the hub."""
        if not self.connected or not self.hub.has(session_id):
            return False
        try:
            delivery = decode_delivery(session_id, payload, self.clock())
        except ValueError:
            logger.warning("skipped malformed payload of %s", session_id)
            return False
        self.hub.broadcast(session_id, delivery)
        return True

    def lose_connection(self) -> None:
        """Play a dropped connection: nothing is delivered until ``reconnect``."""
        self.connected = False

    def reconnect(self, *, full: bool = True) -> None:
        """Subscribe anew: every local session's subscribers catch up (``full``: whole state)."""
        self.connected = True
        for session_id in self.hub.session_ids():
            self.hub.resync(session_id, full=full)

    async def run(self) -> None:
        """Stay alive until ``stop()``."""
        self._stopped = asyncio.Event()
        self._running = True
        try:
            await self._stopped.wait()
        finally:
            self._running = False
            self.broker.detach(self)

    def stop(self) -> None:
        """Finish ``run()``."""
        self._running = False
        if self._stopped is not None:
            self._stopped.set()
