-- 002_bigint_and_unique_version.sql: every value the server writes fits, and
-- one (session, epoch, version) is one change.
--
-- 1. BIGINT for every integer column that holds a version, a duration in ms or
--    a count. INTEGER overflows at 2**31 - 1, which real sessions reach:
--    versions after a restore are the restoring node's clock in microseconds
--    (~1.8e15, DESIGN decision 3); ``time_used_ms`` of a count_up session that
--    runs 25 days, or ``time_remaining_ms`` after ~34,000 Fischer increments
--    of 60 s, pass 2**31 ms. BIGINT holds 2**63 - 1 ms (292 million years):
--    nothing a session can do over its life reaches it, so no input limit is
--    needed for these columns. The API's own bounds (budgets <= 86,400,000 ms,
--    increments <= 60,000 ms, <= 1,000 participants) stay as they are.
-- 2. sync_participants.last_version: the version the row was written from,
--    so a replayed old event (``synckairos audit requeue``) never overwrites a
--    newer row.
-- 3. A unique index on (session_id, epoch, version) of the change rows
--    (the deletion row repeats the last version, so it is left out). The
--    worker's ON CONFLICT (id) still absorbs redelivery of the same event; a
--    *different* event for a version already taken is refused, and the
--    worker dead-letters that event alone (docs/audit.md).
--
-- ALTER ... TYPE BIGINT rewrites each table (an ACCESS EXCLUSIVE lock for
-- the duration); run it when the audit worker may lag for that long (the
-- API keeps serving from Redis meanwhile).

ALTER TABLE sync_sessions
  ALTER COLUMN time_per_cycle_ms TYPE BIGINT,
  ALTER COLUMN increment_ms TYPE BIGINT,
  ALTER COLUMN max_time_ms TYPE BIGINT,
  ALTER COLUMN total_cycles TYPE BIGINT,
  ALTER COLUMN total_participants TYPE BIGINT,
  ALTER COLUMN last_version TYPE BIGINT;

ALTER TABLE sync_events
  ALTER COLUMN time_remaining_ms TYPE BIGINT,
  ALTER COLUMN time_elapsed_ms TYPE BIGINT,
  ALTER COLUMN cycle_number TYPE BIGINT,
  ALTER COLUMN version TYPE BIGINT;

ALTER TABLE sync_participants
  ALTER COLUMN total_time_ms TYPE BIGINT,
  ALTER COLUMN total_cycles TYPE BIGINT,
  ALTER COLUMN total_time_active_ms TYPE BIGINT,
  ADD COLUMN last_version BIGINT NOT NULL DEFAULT 0;

-- An archive written before this migration may already hold two different
-- rows for one version (the restore bug of issue 14). Refuse to guess which
-- one is right: stop with the query that lists them.
DO $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM sync_events WHERE event_type <> 'session_deleted'
    GROUP BY session_id, epoch, version HAVING count(*) > 1
  ) THEN
    RAISE EXCEPTION 'sync_events holds several rows for one (session_id, epoch, version)'
      USING HINT = 'list them with: SELECT session_id, epoch, version, count(*) FROM sync_events '
        'WHERE event_type <> ''session_deleted'' GROUP BY 1, 2, 3 HAVING count(*) > 1; '
        'decide which row of each is the real change, delete the others, then migrate again';
  END IF;
END
$$;

CREATE UNIQUE INDEX sync_events_one_row_per_version
  ON sync_events (session_id, epoch, version)
  WHERE event_type <> 'session_deleted';
