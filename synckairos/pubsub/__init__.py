"""The pub/sub contract: what the hub and the sockets need from session fan-out.

A node subscribes to a session while it has a local socket of it, and the
pub/sub implementation feeds the node's ``Hub`` with every change committed
afterwards (``Hub.broadcast``). ``PubSub`` is the contract the WebSocket
layer and the app rely on; ``RedisPubSub`` (``synckairos.redis.pubsub``) is the
production implementation, ``MemoryPubSub`` (``synckairos.pubsub.memory``) the
in-process one that tests run the same contract against.

Guarantees every implementation gives:

* ``join`` returns only once the subscription is *confirmed*: a state read
  after ``join`` misses nothing, every later commit is delivered.
* after a lost connection, when a subscription is confirmed again, the
  session's subscribers are asked to catch up (``Hub.resync``).
* ``alive`` is False while the implementation cannot deliver (``/ready``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: the contract does not import the hub at run time
    from synckairos.hub import Subscriber

__all__ = ["PubSub", "SubscribeTimeout"]


class SubscribeTimeout(Exception):
    """Raised by ``PubSub.join`` when the subscription was not confirmed in time."""


class PubSub(Protocol):
    """Session fan-out into one node's hub; run ``run()`` as a task for the node's life."""

    @property
    def alive(self) -> bool:
        """True while subscriptions are held and deliveries flow."""
        ...

    async def join(self, subscriber: Subscriber) -> None:
        """Register ``subscriber`` in the hub and wait until its session is subscribed.

        Raises:
            SubscribeTimeout: not confirmed in time; the subscriber is
                unregistered again.
        """
        ...

    async def leave(self, subscriber: Subscriber) -> None:
        """Unregister ``subscriber``; unsubscribe when it was the session's last local one."""
        ...

    async def run(self) -> None:
        """Deliver until ``stop()``."""
        ...

    def reconnect(self, *, full: bool = True) -> None:
        """Subscribe anew (the primary moved); with ``full`` sockets get a whole STATE_SYNC."""
        ...

    def stop(self) -> None:
        """Ask ``run()`` to finish."""
        ...
