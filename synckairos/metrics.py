"""Prometheus metrics of a node (exposed at ``GET /metrics``).

Counters and histograms are updated on the hot path (a few microseconds each);
figures that live in Redis (active sessions, outbox) are read on scrape.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_SESSIONS",
    "AUDIT_DEAD_LETTERED",
    "AUDIT_PERSISTED",
    "AUDIT_RELAY_LAG",
    "AUDIT_RETRIES",
    "AUTH_FAILURES",
    "CLAIMS_LOST",
    "COMMITS",
    "CONFLICTS",
    "DEADLINES",
    "FIRING_LAG",
    "GC_PAUSE",
    "OUTBOX_DROPPED",
    "OUTBOX_LENGTH",
    "POSTGRES_UP",
    "PUBSUB_RESUBSCRIBES",
    "RATE_LIMITED",
    "RATE_LIMIT_ERRORS",
    "RECOVERIES",
    "REDIS_FAILOVERS",
    "REDIS_OP_LATENCY",
    "REDIS_RETRIES",
    "REDIS_UNAVAILABLE",
    "REDIS_UP",
    "REQUEST_LATENCY",
    "SCHEDULER_ERRORS",
    "TIMEOUTS_FIRED",
    "WS_DELIVERY_LATENCY",
    "WS_MESSAGES_SENT",
    "WS_OPEN",
    "WS_RESYNCS",
    "WS_SLOW_CONSUMERS",
]

#: ``route`` is the route's path template from the route table
#: (``synckairos.routes``), e.g. ``/v1/sessions/{session_id}/switch``.
REQUEST_LATENCY = Histogram(
    "synckairos_http_request_duration_seconds",
    "HTTP request latency by route, method and status.",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
COMMITS = Counter(
    "synckairos_commits_total", "Changes committed to the state store, by event type.", ["event"]
)
CONFLICTS = Counter(
    "synckairos_conflicts_total",
    "Version races: 'retry' (retried internally) or 'precondition' (answered 409).",
    ["kind"],
)
ACTIVE_SESSIONS = Gauge("synckairos_active_sessions", "Sessions not yet finished (from Redis).")
DEADLINES = Gauge(
    "synckairos_running_timers",
    "Sessions the scheduler watches: running timers, and pending or paused sessions "
    "awaiting their idle TTL (from Redis).",
)
OUTBOX_LENGTH = Gauge(
    "synckairos_outbox_length", "Audit events in the Redis outbox awaiting PostgreSQL."
)
OUTBOX_DROPPED = Gauge(
    "synckairos_outbox_dropped",
    "Audit events trimmed from the bounded outbox before being persisted (should stay 0).",
)

WS_OPEN = Gauge("synckairos_ws_open_sockets", "WebSocket connections open on this node.")
WS_MESSAGES_SENT = Counter("synckairos_ws_messages_sent_total", "WebSocket messages sent.")
WS_DELIVERY_LATENCY = Histogram(
    "synckairos_ws_delivery_latency_seconds",
    "Commit (server clock) to WebSocket send of a STATE_UPDATE.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
WS_SLOW_CONSUMERS = Counter(
    "synckairos_ws_slow_consumer_closes_total", "Sockets closed with 1013: send queue overflow."
)
WS_RESYNCS = Counter(
    "synckairos_ws_resyncs_total",
    "Catch-ups of a socket: 'replay' from the history or 'full' STATE_SYNC.",
    ["kind"],
)
RATE_LIMITED = Counter(
    "synckairos_rate_limited_total", "Requests and sockets refused by a rate limit.", ["limit"]
)
RATE_LIMIT_ERRORS = Counter(
    "synckairos_rate_limit_errors_total",
    "Rate-limit checks that could not reach Redis (the request was let through).",
)
AUTH_FAILURES = Counter(
    "synckairos_auth_failures_total",
    "Requests refused by authentication (401) or roles (403).",
    ["status"],
)
REDIS_OP_LATENCY = Histogram(
    "synckairos_redis_op_duration_seconds",
    "State store operations (one Redis round trip each, plus retries), by operation.",
    ["op"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0),
)
REDIS_UP = Gauge("synckairos_redis_up", "1 when Redis answered PING at the last scrape.")
POSTGRES_UP = Gauge(
    "synckairos_postgres_up", "1 when PostgreSQL answered at the last scrape (-1: not configured)."
)
REDIS_RETRIES = Counter(
    "synckairos_redis_retries_total",
    "Store operations retried after a Redis connection error or a missing replica ack.",
)
REDIS_UNAVAILABLE = Counter(
    "synckairos_redis_unavailable_total",
    "Store operations given up after the failover budget (answered 503).",
)
REDIS_FAILOVERS = Counter(
    "synckairos_redis_failovers_total", "Switch-overs of the Redis primary seen by this process."
)
PUBSUB_RESUBSCRIBES = Counter(
    "synckairos_pubsub_resubscribes_total",
    "Session channels re-subscribed after a pub/sub reconnect (each triggers a catch-up).",
)

TIMEOUTS_FIRED = Counter(
    "synckairos_timeouts_fired_total",
    "Timeouts committed by the scheduler, by resulting event type.",
    ["event"],
)
FIRING_LAG = Histogram(
    "synckairos_timeout_firing_lag_seconds",
    "Commit time of a timeout minus its deadline.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
CLAIMS_LOST = Counter(
    "synckairos_deadline_claims_lost_total",
    "Claimed deadlines with nothing to fire (a command or another node got there first).",
)
SCHEDULER_ERRORS = Counter(
    "synckairos_scheduler_errors_total", "Scheduler iterations or firings that failed (retried)."
)

RECOVERIES = Counter(
    "synckairos_recoveries_total", "Sessions restored from the audit store into Redis."
)
AUDIT_PERSISTED = Gauge(
    "synckairos_audit_events_persisted",
    "Audit events written to PostgreSQL (from Redis; rate() it).",
)
AUDIT_RETRIES = Gauge("synckairos_audit_retries", "Failed audit batch attempts, retried.")
AUDIT_DEAD_LETTERED = Gauge(
    "synckairos_audit_dead_lettered",
    "Audit dead letters: batches after their last retry, events PostgreSQL refused alone.",
)
AUDIT_RELAY_LAG = Gauge(
    "synckairos_audit_relay_lag_seconds", "Age of the oldest audit event not yet relayed."
)
AUDIT_SYNC_WRITES = Histogram(
    "synckairos_audit_sync_write_seconds",
    "Durability level postgres: a change's write to PostgreSQL before its answer "
    "(with retries), by result (ok, failed).",
    ["result"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0),
)

GC_PAUSE = Histogram(
    "synckairos_gc_pause_seconds",
    "Garbage-collector pauses by generation (a full collection stops the process).",
    ["generation"],
    buckets=(0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
