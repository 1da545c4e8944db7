"""``synckairos audit requeue``: replay the audit trail's dead letters into PostgreSQL.

dramatiq's Redis broker keeps dead letters in the sorted set
``<namespace>:<queue>.XQ`` and their bodies in ``<namespace>:<queue>.XQ.msgs``.
There are two kinds, both ``persist_events`` messages: a *batch* that kept
failing for a reason other than its data (PostgreSQL down through every
retry), and a *single event* PostgreSQL refused (poison isolation, see
``synckairos.audit.pipeline``).

``replay_dead_letters`` writes each one's events straight into PostgreSQL
with the worker's ``AuditWriter`` (so a poisoned event still cannot hold back
its neighbours) and reports, event by event, what is still refused: the
command's answer is the outcome, not a hope that a worker will manage. A dead
letter whose events are all stored (or were already: the writes are
idempotent) is removed; the events still refused stay dead letters, one per
event; a dead letter that cannot be decoded stays untouched and is counted.
If PostgreSQL cannot be reached the replay stops, and what it did not
replay stays where it was.
"""

from __future__ import annotations

from typing import Any

import msgspec
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from synckairos.audit.pipeline import (
    AuditWriter,
    RefusedEvent,
    dead_letter,
    event_ids,
)
from synckairos.redis.broker import dead_letter_keys

__all__ = ["ReplayReport", "replay_dead_letters"]


class ReplayReport(msgspec.Struct):
    """Outcome of ``replay_dead_letters``."""

    dead_letters: int = 0
    """Dead letters replayed (read and written; whatever the outcome)."""
    stored: int = 0
    """Events now in PostgreSQL (including the ones that already were)."""
    still_refused: list[RefusedEvent] = msgspec.field(default_factory=list)
    """Events still not storable (refused by PostgreSQL, or undecodable): they stay
    dead letters."""
    undecodable: int = 0
    """Dead letters that are not a ``persist_events`` message: left untouched."""

    def lines(self) -> list[str]:
        """The report as text: a summary, then one line per event still refused.

        Ids and error classes only: never a state or a driver message.
        """
        out = [
            f"requeued {self.dead_letters} dead letter(s): {self.stored} event(s) stored, "
            f"{len(self.still_refused)} still refused"
            + (f", {self.undecodable} undecodable dead letter(s) left" if self.undecodable else "")
        ]
        for refused in self.still_refused:
            event_id, session_id, version = event_ids(refused.event)
            out.append(
                f"still refused: event {event_id} (session {session_id}, version {version}): "
                f"{refused.reason()}; it stays a dead letter"
            )
        return out


async def replay_dead_letters(
    broker: RedisBroker, writer: AuditWriter, limit: int | None = None
) -> ReplayReport:
    """Write the dead letters' events into PostgreSQL (oldest first); see the module doc.

    Args:
        broker: the audit broker (its namespace names the dead-letter set).
        writer: where the events go (the caller closes it).
        limit: replay at most this many dead letters.

    Raises:
        What ``AuditWriter.write`` raises when PostgreSQL cannot be reached;
        the dead letter being replayed and the ones after it are untouched.
    """
    xq, bodies = dead_letter_keys(broker)
    client: Any = broker.client
    ids: list[bytes] = client.zrange(xq, 0, -1 if limit is None else limit - 1)
    report = ReplayReport()
    for rid in ids:
        data: bytes | None = client.hget(bodies, rid)
        if data is None:
            client.zrem(xq, rid)  # body gone (dropped by dramatiq): nothing to replay
            continue
        try:
            message = Message.decode(data)
            events = list(message.args[0])
        except Exception:  # anything that is not one of our messages
            report.undecodable += 1
            continue
        outcome = await writer.write(events)
        report.dead_letters += 1
        report.stored += outcome.stored
        report.still_refused.extend(outcome.refused)
        if len(events) == 1 and outcome.refused:
            continue  # the same single event: it stays exactly as it was
        for refused in outcome.refused:
            dead_letter(broker, refused)
        pipe = client.pipeline(transaction=True)
        pipe.zrem(xq, rid)
        pipe.hdel(bodies, rid)
        pipe.execute()
    return report
