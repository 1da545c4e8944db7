"""Settings, read once from ``SYNCKAIROS_*`` environment variables.

Every setting, its variable and its default is declared here and listed in the
README. A malformed value raises ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

__all__ = [
    "DEFAULT_REDIS_URL",
    "DURABILITY_LEVELS",
    "ConfigError",
    "Rate",
    "Settings",
    "load_settings",
    "parse_rate",
    "parse_sentinels",
]


#: Values of ``SYNCKAIROS_DURABILITY``, weakest first.
DURABILITY_LEVELS = ("redis", "replica", "postgres")

#: Redis used when ``SYNCKAIROS_REDIS_URL`` is not set (all commands but ``dev``).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(ValueError):
    """Raised by ``load_settings`` when a variable has a malformed value."""


class Settings(msgspec.Struct, frozen=True):
    """Typed, immutable configuration of one process."""

    #: ``SYNCKAIROS_REDIS_URL``: Redis of the state store; None lets ``synckairos dev``
    #: start a private one (``serve`` then uses redis://127.0.0.1:6379/0).
    redis_url: str | None = None
    #: ``SYNCKAIROS_DATABASE_URL``: PostgreSQL of the audit trail; None lets
    #: ``synckairos dev`` start a private one (``serve``/``worker`` then run
    #: without an audit store).
    database_url: str | None = None
    #: ``SYNCKAIROS_REDIS_SENTINELS``: comma-separated ``host:port`` list of Redis
    #: Sentinels; when set, every Redis client (store, pub/sub, relay, dramatiq)
    #: follows the primary the Sentinels name (``redis_url`` then only supplies the
    #: database number and credentials).
    redis_sentinels: str | None = None
    #: ``SYNCKAIROS_REDIS_SENTINEL_MASTER``: the master name the Sentinels monitor.
    redis_sentinel_master: str = "synckairos"
    #: ``SYNCKAIROS_REDIS_FAILOVER_BUDGET_MS``: how long an operation retries a lost
    #: Redis (with backoff) before the API answers 503 ``UNAVAILABLE``.
    redis_failover_budget_ms: int = 10_000
    #: ``SYNCKAIROS_REDIS_MIN_REPLICA_ACKS``: durability mode. A commit is
    #: acknowledged only once this many replicas have it (Redis ``WAIT``); 0 (the
    #: default) acknowledges as soon as the primary has it.
    redis_min_replica_acks: int = 0
    #: ``SYNCKAIROS_DURABILITY``: when a change is acknowledged. ``redis`` (default):
    #: once the Redis primary has it; ``replica``: once ``redis_min_replica_acks``
    #: replicas also have it (at least 1); ``postgres``: once its audit row is in
    #: PostgreSQL (needs ``database_url``), so even a total Redis loss loses
    #: nothing acknowledged. See docs/audit.md, "Durability levels".
    durability: str = "redis"
    #: ``SYNCKAIROS_DURABILITY_TIMEOUT_MS``: level ``postgres``: how long a change's
    #: PostgreSQL write is retried before the answer is 503 with outcome unknown.
    durability_timeout_ms: int = 5_000
    #: ``SYNCKAIROS_REDIS_REPLICA_ACK_TIMEOUT_MS``: how long one ``WAIT`` waits for
    #: the replicas; a commit not replicated in time is retried (idempotently)
    #: until the failover budget runs out, then answers 503 with outcome unknown.
    redis_replica_ack_timeout_ms: int = 500
    #: ``SYNCKAIROS_REDIS_SENTINEL_POLL_MS``: how often a process asks the Sentinels
    #: which node is primary (a change drops connections to the old one at once).
    redis_sentinel_poll_ms: int = 250
    #: ``SYNCKAIROS_REDIS_MAX_CONNECTIONS``: Redis connections per process; a request
    #: beyond it waits (up to 5 s, then 503) for a free one instead of failing.
    redis_max_connections: int = 256
    #: ``SYNCKAIROS_API_KEYS``: comma-separated API keys; when set, the control
    #: endpoints (create, start, pause, resume, complete, cancel, delete, token
    #: minting) need ``Authorization: Bearer <key>``. Unset: no API keys (dev).
    api_keys: str | None = None
    #: ``SYNCKAIROS_TOKEN_SECRET``: HS256 secret of per-session tokens; when set,
    #: reading, switching and ``/ws`` need a token for the session (or an API key
    #: over HTTP). Unset: sessions are open (dev).
    token_secret: str | None = None
    #: ``SYNCKAIROS_TOKEN_TTL_S``: default lifetime of minted tokens.
    token_ttl_s: int = 3_600
    #: ``SYNCKAIROS_TOKEN_MAX_TTL_S``: longest lifetime of any token: minting a
    #: longer ``ttl_s`` is refused (400), and a token whose ``exp`` lies further
    #: from its ``iat`` (or from now) is refused (401).
    token_max_ttl_s: int = 86_400
    #: ``SYNCKAIROS_CORS_ORIGINS``: comma-separated origins (``https://game.example``)
    #: whose browser pages may use the API and ``/ws``, or ``*`` for any. Unset:
    #: same-origin only under ``serve`` (no CORS headers, preflights and
    #: WebSocket upgrades from other origins refused); ``synckairos dev`` uses ``*``.
    cors_origins: str | None = None
    #: ``SYNCKAIROS_TRUSTED_PROXIES``: comma-separated proxy IPs whose
    #: ``X-Forwarded-For`` gives the client IP (``*``: any; empty: none).
    trusted_proxies: str = "127.0.0.1"
    #: ``SYNCKAIROS_RATE_LIMITS``: enforce the rate limits below (on/off).
    rate_limits: bool = True
    #: ``SYNCKAIROS_RATE_LIMIT_SWITCH``: commands (switch, start, pause, ...) per session.
    #: Every limit is ``<n>/<s|min|h>`` (burst ``n``) or ``<n>/<unit> burst <b>``
    #: (``n`` per unit sustained, bursts of up to ``b``); docs/security.md says why
    #: each default is what it is.
    rate_limit_switch: str = "10/s"
    #: ``SYNCKAIROS_RATE_LIMIT_CREATE``: session creations (and token mints) per client.
    rate_limit_create: str = "100/s burst 1000"
    #: ``SYNCKAIROS_RATE_LIMIT_GET``: session reads per client.
    rate_limit_get: str = "100/s burst 1000"
    #: ``SYNCKAIROS_RATE_LIMIT_TIME``: ``/time`` and ``/v1/time`` per IP.
    rate_limit_time: str = "50/s burst 4000"
    #: ``SYNCKAIROS_RATE_LIMIT_WS_CONNECT``: WebSocket connections per IP.
    rate_limit_ws_connect: str = "20/s burst 600"
    #: ``SYNCKAIROS_RATE_LIMIT_WS_MESSAGES``: messages per WebSocket connection
    #: (beyond it the socket is closed with 1008).
    rate_limit_ws_messages: str = "100/min"
    #: ``SYNCKAIROS_MAX_CONNECTIONS``: open connections (HTTP and WebSocket) per
    #: process; beyond it new requests get 503.
    max_connections: int = 25_000
    #: ``SYNCKAIROS_HTTP_IDLE_TIMEOUT_S``: an idle keep-alive connection is closed
    #: after this many seconds.
    http_idle_timeout_s: int = 5
    #: ``SYNCKAIROS_HTTP_HEADER_TIMEOUT_S``: a request's headers must arrive within
    #: this many seconds of its first byte, or the connection is closed (slowloris).
    http_header_timeout_s: int = 10
    #: ``SYNCKAIROS_HTTP_BODY_TIMEOUT_S``: a request body must arrive within this
    #: many seconds (408 after).
    http_body_timeout_s: int = 10
    #: ``SYNCKAIROS_HOST``: interface the HTTP server binds.
    host: str = "127.0.0.1"
    #: ``SYNCKAIROS_PORT``: TCP port of the HTTP server.
    port: int = 8080
    #: ``SYNCKAIROS_LOG_LEVEL``: debug, info, warning or error.
    log_level: str = "info"
    #: ``SYNCKAIROS_KEY_PREFIX``: prefix of every Redis key and channel.
    key_prefix: str = "sk"
    #: ``SYNCKAIROS_HISTORY_MAXLEN``: changes kept per session for RECONNECT replay.
    history_maxlen: int = 200
    #: ``SYNCKAIROS_HISTORY_MAX_BYTES``: bytes of history kept per session: each
    #: commit trims the history to min(``history_maxlen``, this / size of the
    #: change) entries (at least 1), so a big session keeps fewer changes.
    history_max_bytes: int = 2_097_152
    #: ``SYNCKAIROS_MAX_STATE_BYTES``: largest state (JSON) a session may have; a
    #: create or command that would exceed it answers 413 and changes nothing.
    #: The default admits every session the schema accepts (1,000 participants
    #: and 10 KB of metadata weigh ~400 KB).
    max_state_bytes: int = 1_048_576
    #: ``SYNCKAIROS_MAX_LIVE_SESSIONS``: unfinished sessions (``sk:active``) Redis
    #: may hold; a create beyond it answers 503 ``SESSION_LIMIT_REACHED``; 0: no cap.
    max_live_sessions: int = 100_000
    #: ``SYNCKAIROS_PENDING_TTL_S``: a session pending (never started) this long
    #: after its last change is cancelled by the server (reason ``pending_ttl``); 0: never.
    pending_ttl_s: int = 86_400
    #: ``SYNCKAIROS_PAUSED_TTL_S``: a session paused this long after its last change
    #: is cancelled by the server (reason ``paused_ttl``); 0: never.
    paused_ttl_s: int = 86_400
    #: ``SYNCKAIROS_OUTBOX_MAXLEN``: audit events kept in Redis awaiting PostgreSQL;
    #: beyond it the oldest are trimmed and counted (metric ``outbox_dropped``).
    outbox_maxlen: int = 1_000_000
    #: ``SYNCKAIROS_FINISHED_TTL_S``: seconds a finished session stays in Redis.
    finished_ttl_s: int = 86_400
    #: ``SYNCKAIROS_MAX_BODY_BYTES``: largest request body accepted (413 above).
    max_body_bytes: int = 1_048_576
    #: ``SYNCKAIROS_COMMIT_RETRIES``: compare-and-set attempts for a command without
    #: preconditions before it answers 503 (never a lost update).
    commit_retries: int = 200
    #: ``SYNCKAIROS_STATE_CACHE_SIZE``: sessions whose last state a node keeps, so a
    #: command costs one Redis round trip (a stale entry only costs a retry); 0: off.
    state_cache_size: int = 4_096
    #: ``SYNCKAIROS_DRIFT_TOLERANCE_MS``: advertised by ``GET /time``.
    drift_tolerance_ms: int = 50
    #: ``SYNCKAIROS_WS_SEND_QUEUE``: messages a socket may have waiting; beyond it
    #: the socket is a slow consumer and is closed with 1013.
    ws_send_queue: int = 256
    #: ``SYNCKAIROS_WS_SEND_QUEUE_BYTES``: bytes (characters of JSON text) a socket
    #: may have waiting; beyond it the socket is a slow consumer, closed with 1013.
    ws_send_queue_bytes: int = 8_388_608
    #: ``SYNCKAIROS_WS_REPLAY_MAX_BYTES``: largest replay of missed changes (RECONNECT
    #: or gap repair); a bigger one is sent as one STATE_SYNC instead.
    ws_replay_max_bytes: int = 1_048_576
    #: ``SYNCKAIROS_WS_PING_INTERVAL_S``: seconds between server pings on each socket.
    ws_ping_interval_s: int = 20
    #: ``SYNCKAIROS_WS_PING_TIMEOUT_S``: a socket that does not answer a ping in
    #: this many seconds is dropped.
    ws_ping_timeout_s: int = 20
    #: ``SYNCKAIROS_WS_MAX_MESSAGE_BYTES``: largest client message accepted (1009 above).
    ws_max_message_bytes: int = 65_536
    #: ``SYNCKAIROS_SUBSCRIBE_TIMEOUT_S``: how long a new socket waits for Redis to
    #: confirm its subscription before it is closed with 1013.
    subscribe_timeout_s: int = 10
    #: ``SYNCKAIROS_SCHEDULER``: run the deadline scheduler in this process (on/off).
    scheduler: bool = True
    #: ``SYNCKAIROS_DEADLINE_LEASE_MS``: how long a node's claim on a due deadline
    #: holds; if the node dies, another fires the timeout after this.
    deadline_lease_ms: int = 5_000
    #: ``SYNCKAIROS_SCHEDULER_MAX_IDLE_MS``: longest the scheduler sleeps without
    #: looking for deadlines committed by other nodes.
    scheduler_max_idle_ms: int = 1_000
    #: ``SYNCKAIROS_AUDIT_BATCH``: outbox events relayed to PostgreSQL per batch.
    audit_batch: int = 500
    #: ``SYNCKAIROS_AUDIT_MAX_RETRIES``: attempts of a failing batch (exponential
    #: backoff, 0.2 s up to 30 s: about 7 minutes) before it is dead-lettered.
    audit_max_retries: int = 20
    #: ``SYNCKAIROS_WORKER_THREADS``: dramatiq worker threads of ``synckairos worker``.
    worker_threads: int = 2
    #: ``SYNCKAIROS_WORKER_HEARTBEAT_TIMEOUT_MS``: a worker silent this long is
    #: dead; the batches it held are delivered again.
    worker_heartbeat_timeout_ms: int = 10_000
    #: ``SYNCKAIROS_GC_UNFREEZE_S``: survivors of full garbage collections are frozen
    #: (large heaps then pause for milliseconds, not a second) and unfrozen this
    #: often so old reference cycles are still reclaimed; 0 disables freezing.
    gc_unfreeze_s: int = 900
    #: ``SYNCKAIROS_MALLOC_TRIM_S``: every this many seconds the process hands the
    #: heap memory it freed back to the system (glibc ``malloc_trim``), so RSS
    #: returns near its baseline after a burst of large messages; 0: never.
    malloc_trim_s: int = 10

    def redis_target(self) -> str:
        """The Redis to use: ``redis_url``, or ``DEFAULT_REDIS_URL`` when unset."""
        return self.redis_url or DEFAULT_REDIS_URL

    def replica_acks(self) -> int:
        """Replicas that must have a commit before it is acknowledged (Redis ``WAIT``).

        ``redis_min_replica_acks``, but at least 1 in the ``replica`` level.
        """
        if self.durability == "replica":
            return max(1, self.redis_min_replica_acks)
        return self.redis_min_replica_acks

    def check_durability(self) -> None:
        """Check the durability level against the rest of the configuration.

        Called when a server starts (``load_settings`` cannot: ``synckairos dev``
        fills in ``database_url`` after loading).

        Raises:
            ConfigError: the level ``postgres`` without ``database_url``.
        """
        if self.durability == "postgres" and not self.database_url:
            raise ConfigError(
                "SYNCKAIROS_DURABILITY=postgres needs SYNCKAIROS_DATABASE_URL "
                "(the audit rows are written there before a change is acknowledged)"
            )

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels of ``redis_sentinels`` as (host, port); empty: no Sentinel.

        Raises:
            ConfigError: an entry is not ``host:port``.
        """
        return parse_sentinels(self.redis_sentinels or "")


class Rate(msgspec.Struct, frozen=True):
    """A GCRA rate limit: bursts of up to ``limit`` hits, then one every ``period_ms / limit``.

    ``"20/s burst 600"`` is ``Rate(600, 30_000)``: 600 at once, then 20 per second.
    """

    limit: int
    period_ms: int


_UNITS_MS = {"s": 1_000, "sec": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000}


def _positive(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12 and int(text) > 0


def parse_rate(name: str, text: str) -> Rate:
    """Parse ``"10/s"``, ``"5/min"``, ``"100/h"`` or ``"20/s burst 600"``.

    Without ``burst`` the burst is the count (``"5/min"``: 5 at once, then one
    every 12 s). ``name`` is the setting, for errors.

    Raises:
        ConfigError: not ``<positive int>/<s|min|h>[ burst <positive int>]``.
    """
    words = text.split()
    error = ConfigError(f"{name} must look like 10/s, 5/min, 100/h or 20/s burst 600, got {text!r}")
    if len(words) not in (1, 3) or (len(words) == 3 and words[1] != "burst"):
        raise error
    count, _, unit = words[0].partition("/")
    if not _positive(count) or unit not in _UNITS_MS:
        raise error
    if len(words) == 1:
        return Rate(int(count), _UNITS_MS[unit])
    burst = words[2]
    if not _positive(burst):
        raise error
    # GCRA: one hit every unit/count ms, with a tolerance of ``burst`` hits.
    period_ms = round(int(burst) * _UNITS_MS[unit] / int(count))
    if period_ms <= 0:
        raise error
    return Rate(int(burst), period_ms)


def parse_sentinels(raw: str) -> list[tuple[str, int]]:
    """Parse ``"host:port,host:port"`` (spaces allowed) into (host, port) pairs.

    Raises:
        ConfigError: an entry has no port, or the port is not 1..65535.
    """
    addresses: list[tuple[str, int]] = []
    for entry in raw.replace(" ", ",").split(","):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"SYNCKAIROS_REDIS_SENTINELS entries must be host:port, got {entry!r}"
            )
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _cast(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"SYNCKAIROS_{name.upper()} must be on or off, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(
                f"SYNCKAIROS_{name.upper()} must be an integer, got {raw!r}"
            ) from None
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``environ`` (default: ``os.environ``).

    Raises:
        ConfigError: a variable is malformed or out of range.
    """
    env = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        raw = env.get(f"SYNCKAIROS_{field.name.upper()}")
        if raw is not None and raw != "":
            values[field.name] = _cast(field.name, raw, getattr(defaults, field.name))
    settings = msgspec.structs.replace(defaults, **values)
    if settings.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError(f"SYNCKAIROS_LOG_LEVEL must be a log level, got {settings.log_level!r}")
    for name in (
        "port",
        "history_maxlen",
        "history_max_bytes",
        "max_state_bytes",
        "ws_send_queue_bytes",
        "ws_replay_max_bytes",
        "outbox_maxlen",
        "max_body_bytes",
        "commit_retries",
        "ws_send_queue",
        "ws_ping_interval_s",
        "ws_ping_timeout_s",
        "ws_max_message_bytes",
        "subscribe_timeout_s",
        "redis_max_connections",
        "deadline_lease_ms",
        "scheduler_max_idle_ms",
        "audit_batch",
        "worker_threads",
        "worker_heartbeat_timeout_ms",
        "redis_failover_budget_ms",
        "redis_replica_ack_timeout_ms",
        "durability_timeout_ms",
        "redis_sentinel_poll_ms",
        "token_ttl_s",
        "token_max_ttl_s",
        "max_connections",
        "http_idle_timeout_s",
        "http_header_timeout_s",
        "http_body_timeout_s",
    ):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"SYNCKAIROS_{name.upper()} must be positive")
    for name in ("max_live_sessions", "pending_ttl_s", "paused_ttl_s", "malloc_trim_s"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"SYNCKAIROS_{name.upper()} must be 0 or more")
    if settings.ws_send_queue_bytes < 2 * settings.max_state_bytes + settings.ws_replay_max_bytes:
        # A greeting STATE_SYNC, a replay and one more state must fit in a queue.
        raise ConfigError(
            "SYNCKAIROS_WS_SEND_QUEUE_BYTES must be at least 2 x SYNCKAIROS_MAX_STATE_BYTES "
            "+ SYNCKAIROS_WS_REPLAY_MAX_BYTES"
        )
    if settings.token_ttl_s > settings.token_max_ttl_s:
        raise ConfigError("SYNCKAIROS_TOKEN_TTL_S must not exceed SYNCKAIROS_TOKEN_MAX_TTL_S")
    if settings.durability not in DURABILITY_LEVELS:
        raise ConfigError(
            f"SYNCKAIROS_DURABILITY must be one of {', '.join(DURABILITY_LEVELS)}, "
            f"got {settings.durability!r}"
        )
    if settings.redis_min_replica_acks < 0:
        raise ConfigError("SYNCKAIROS_REDIS_MIN_REPLICA_ACKS must be 0 or more")
    settings.sentinel_addresses()  # raises on a malformed list
    if settings.token_secret is not None and len(settings.token_secret.encode()) < 32:
        raise ConfigError("SYNCKAIROS_TOKEN_SECRET must be at least 32 bytes (HS256)")
    for name in (
        "rate_limit_switch",
        "rate_limit_create",
        "rate_limit_get",
        "rate_limit_time",
        "rate_limit_ws_connect",
        "rate_limit_ws_messages",
    ):
        parse_rate(f"SYNCKAIROS_{name.upper()}", getattr(settings, name))
    return settings
