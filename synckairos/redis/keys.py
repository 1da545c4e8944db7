"""Every Redis key and channel name of SyncKairos, in one place.

``P`` is the key prefix (``SYNCKAIROS_KEY_PREFIX``, ``sk`` by default).
``{sid}`` is a hash tag, so one session's keys share a Redis Cluster slot.

==========================  ==========  =============================================
key                         type        content
==========================  ==========  =============================================
``P:{sid}``                 hash        ``s`` state JSON, ``v`` version, ``e`` epoch;
                                        a tombstone ``d`` = 1 after a delete
``P:{sid}:history``         stream      recent changes, entry id ``<version>-0``
``P:{sid}:rl``              string      the session's command rate limiter (GCRA)
``P:{sid}:updates``         channel     the session's changes (pub/sub)
``P:nodes``                 channel     never published; keeps a listener subscribed
``P:deadlines``             zset        member sid, score = deadline / idle expiry (ms)
``P:outbox``                stream      audit events awaiting PostgreSQL (bounded)
``P:outbox:dropped``        string      audit events trimmed unread
``P:active``                set         unfinished sessions
``P:rl:<bucket>:<id>``      string      per-client / per-IP rate limiters (GCRA)
``P:audit:<name>``          string      shared audit counters (persisted, retries, ...)
``P:dramatiq``              namespace   dramatiq's queues of the audit batches
==========================  ==========  =============================================

Nothing outside ``synckairos.redis`` builds one of these names.
"""

from __future__ import annotations

import re

__all__ = [
    "Keys",
    "SessionKeys",
    "audit_counter",
    "dramatiq_namespace",
    "outbox",
    "session_channel",
    "session_of_channel",
]

_CHANNEL_RE = re.compile(rb"\{([^}]+)\}:updates$")


class SessionKeys:
    """Names of the Redis keys and channel of one session."""

    __slots__ = ("channel", "history", "rate", "state")

    def __init__(self, prefix: str, session_id: str) -> None:
        base = f"{prefix}:{{{session_id}}}"
        self.state = base
        """Hash holding the state JSON, version and epoch."""
        self.history = f"{base}:history"
        """Stream of the session's recent changes."""
        self.channel = f"{base}:updates"
        """Pub/sub channel of the session's changes."""
        self.rate = f"{base}:rl"
        """The session's command rate limiter (GCRA "TAT", ms)."""


class Keys:
    """The names under one prefix (one deployment)."""

    __slots__ = ("active", "deadlines", "dropped", "nodes", "outbox", "prefix")

    def __init__(self, prefix: str = "sk") -> None:
        self.prefix = prefix
        self.deadlines = f"{prefix}:deadlines"
        """Sorted set of deadlines and idle expiries."""
        self.outbox = outbox(prefix)
        """Stream of audit events awaiting the relay."""
        self.dropped = f"{prefix}:outbox:dropped"
        """Counter of audit events trimmed before anyone read them."""
        self.active = f"{prefix}:active"
        """Set of unfinished sessions."""
        self.nodes = f"{prefix}:nodes"
        """Control channel every pub/sub listener holds."""

    def session(self, session_id: str) -> SessionKeys:
        """The keys of ``session_id``."""
        return SessionKeys(self.prefix, session_id)

    def limiter(self, bucket: str, identity: str) -> str:
        """A shared rate limiter of ``identity`` (client or IP) on ``bucket``."""
        return f"{self.prefix}:rl:{bucket}:{identity}"

    def audit_counter(self, name: str) -> str:
        """A shared audit counter (persisted, retries, dead_lettered, relayed)."""
        return audit_counter(self.prefix, name)


def outbox(prefix: str) -> str:
    """The audit outbox stream."""
    return f"{prefix}:outbox"


def audit_counter(prefix: str, name: str) -> str:
    """Redis key of a shared audit counter (persisted, retries, dead_lettered, ...)."""
    return f"{prefix}:audit:{name}"


def dramatiq_namespace(prefix: str) -> str:
    """dramatiq's key namespace: deployments with other prefixes never share batches."""
    return f"{prefix}:dramatiq"


def session_channel(prefix: str, session_id: str) -> bytes:
    """Pub/sub channel of ``session_id``, as the listener sends it."""
    return SessionKeys(prefix, session_id).channel.encode()


def session_of_channel(channel: bytes) -> str | None:
    """The session id of a session channel (any prefix); None for other channels."""
    match = _CHANNEL_RE.search(channel)
    return match.group(1).decode() if match else None
