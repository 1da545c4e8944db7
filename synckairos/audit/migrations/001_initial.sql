-- 001_initial.sql: the audit trail of SyncKairos.
--
-- Column names follow the Node.js SyncKairos schema where it has them, so its
-- users' queries keep working; sync_mode/status are TEXT with CHECKs rather
-- than enum types (same comparisons, easier migrations). Columns marked (ext)
-- are ours. Redis is the primary store; this is the durable record, and the
-- source of recovery when Redis lost a session.

CREATE TABLE sync_sessions (
  session_id         UUID PRIMARY KEY,
  sync_mode          TEXT NOT NULL CHECK (sync_mode IN
                       ('per_participant', 'per_cycle', 'per_group', 'global', 'count_up')),
  time_per_cycle_ms  INTEGER,
  increment_ms       INTEGER DEFAULT 0,
  max_time_ms        INTEGER,
  created_at         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  started_at         TIMESTAMPTZ,
  completed_at       TIMESTAMPTZ,
  final_status       TEXT CHECK (final_status IN
                       ('pending', 'running', 'paused', 'expired', 'completed', 'cancelled')),
  total_cycles       INTEGER DEFAULT 0,
  total_participants INTEGER DEFAULT 0,
  metadata           JSONB DEFAULT '{}',
  last_updated_at    TIMESTAMPTZ DEFAULT NOW(),
  last_version       INTEGER NOT NULL DEFAULT 0,        -- (ext) newest version persisted
  deleted_at         TIMESTAMPTZ                        -- (ext) set by a session_deleted event
);

CREATE TABLE sync_events (
  id                 UUID PRIMARY KEY,                  -- the event id: redelivery is a no-op
  session_id         UUID NOT NULL,
  event_type         VARCHAR(50) NOT NULL,
  participant_id     UUID,
  group_id           UUID,
  time_remaining_ms  INTEGER,
  time_elapsed_ms    INTEGER,
  cycle_number       INTEGER,
  timestamp          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  state_snapshot     JSONB,                             -- full state after the change (null: deleted)
  metadata           JSONB DEFAULT '{}',
  version            INTEGER NOT NULL,                  -- (ext) session version of the change
  epoch              TEXT NOT NULL DEFAULT '',          -- (ext) history epoch when committed
  event              JSONB,                             -- (ext) the STATE_UPDATE event object
  committed_at_ms    BIGINT NOT NULL                    -- (ext) commit time, server epoch ms
);

-- "Latest snapshot of a session" and "events of a session in order".
CREATE INDEX sync_events_session_version ON sync_events (session_id, version DESC);
CREATE INDEX sync_events_session_time ON sync_events (session_id, timestamp);

CREATE TABLE sync_participants (
  id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  session_id           UUID NOT NULL,
  participant_id       UUID NOT NULL,
  total_time_ms        INTEGER NOT NULL,
  group_id             UUID,
  total_cycles         INTEGER DEFAULT 0,
  total_time_active_ms INTEGER DEFAULT 0,
  added_at             TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  first_active_at      TIMESTAMPTZ,
  last_active_at       TIMESTAMPTZ,
  metadata             JSONB DEFAULT '{}',
  CONSTRAINT unique_session_participant UNIQUE (session_id, participant_id)
);

COMMENT ON TABLE sync_sessions IS 'Audit trail for synchronization sessions. Redis is the primary store.';
COMMENT ON TABLE sync_events IS 'Every committed change, exactly once (id is the event id). Used for audit, analytics and recovery.';
COMMENT ON TABLE sync_participants IS 'Denormalized participant data for analytics queries.';
