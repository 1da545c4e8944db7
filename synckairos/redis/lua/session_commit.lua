-- session_commit.lua: commit one change of a session atomically (one round trip).
--
-- KEYS[1]  sk:{sid}           hash: s = state JSON, v = version, e = epoch
-- KEYS[2]  sk:{sid}:history   stream of changes, entry id "<version>-0", fields c = change
--                             JSON, k = commit token
-- KEYS[3]  sk:deadlines       sorted set: member sid, score = deadline (epoch ms)
-- KEYS[4]  sk:outbox          stream of audit events (fields id, sid, v, t, e, c)
-- KEYS[5]  sk:outbox:dropped  counter of audit events trimmed before anyone read them
-- KEYS[6]  sk:active          set of sessions that are not finished
-- KEYS[7]  sk:{sid}:rl        the session's command rate limiter (GCRA "TAT", ms)
--
-- ARGV[1]  expected version: "0" creates the session only if it is absent
-- ARGV[2]  new state JSON (its "version" field is ARGV[1] + 1)
-- ARGV[3]  change JSON {"version", "event", "state", "ts"} (history, outbox, publish)
-- ARGV[4]  deadline in epoch ms, or "" when no timer runs
-- ARGV[5]  session id
-- ARGV[6]  epoch to use when the session is created (ARGV[1] = "0"): random for a
--          new incarnation, the archived one for a restore (the same incarnation)
-- ARGV[7]  maximum length of the session history
-- ARGV[8]  maximum length of the audit outbox
-- ARGV[9]  audit event id (unique)
-- ARGV[10] TTL in ms for a finished session, "0" while it is not finished
-- ARGV[11] pub/sub channel of the session
-- ARGV[12] event type
-- ARGV[13] version to write instead of ARGV[1] + 1, or "": a restore from the audit
--          trail writes max(persisted + 1, now in µs), above every version this
--          incarnation was ever given (see Node.restore)
-- ARGV[14] commit token: unique per change, the same on every retry of it
-- ARGV[15] rate limit: commands allowed per period on this session, or "" for none
-- ARGV[16] rate limit period in ms
-- ARGV[17] expected epoch, or "": the change was computed from this incarnation
--          of the session (a session deleted and created again under the same
--          id restarts its versions; its epoch differs)
-- ARGV[18] cap on unfinished sessions (SCARD of KEYS[6]) for a create, or "" / "0"
--          for none (restores pass "")
--
-- Returns {1, epoch} when committed, {2, epoch} when this very change (same
-- token) was committed by an earlier attempt whose reply was lost, {0,
-- actual_version, state, epoch} on a version mismatch (the current state), {-1} when creating a session that
-- exists, {-2} when the session is missing, {-3, retry_after_ms, reset_ms} when
-- the session's rate limit is exhausted (nothing written), {-4} when a create
-- would exceed the cap on unfinished sessions (nothing written).
--
-- A retry is thereby idempotent: it never applies a change twice. The
-- already-committed path rewrites the hash's token field, so that a WAIT
-- after this call also covers the original write (replication is in order).

--#include gcra.lua

local expected = tonumber(ARGV[1])
local current = redis.call('HGET', KEYS[1], 'v')
local version = expected + 1
if ARGV[13] ~= nil and ARGV[13] ~= '' then version = tonumber(ARGV[13]) end
-- Versions may exceed 2^31 (a restore jumps to the clock in µs, ~1.8e15) and
-- stay below 2^53, exact in Lua's doubles. They are written only through
-- this integer string: tostring() and '..' would print 1.8e+15.
local vstr = string.format('%d', version)
if current and tonumber(current) >= version then
  local mine = redis.call('XRANGE', KEYS[2], vstr .. '-0', vstr .. '-0')
  if mine[1] and mine[1][2][3] == 'k' and mine[1][2][4] == ARGV[14] then
    redis.call('HSET', KEYS[1], 'k', ARGV[14])
    return {2, redis.call('HGET', KEYS[1], 'e')}
  end
end
if expected == 0 then
  if current then return {-1} end
  local cap = tonumber(ARGV[18] or '') or 0
  if cap > 0 and redis.call('SCARD', KEYS[6]) >= cap then return {-4} end
  redis.call('DEL', KEYS[2])
  redis.call('HDEL', KEYS[1], 'd')    -- a tombstone of an earlier session with this id
  redis.call('PERSIST', KEYS[1])
  redis.call('HSET', KEYS[1], 'e', ARGV[6])
else
  if not current then return {-2} end
  if tonumber(current) ~= expected
      or (ARGV[17] ~= nil and ARGV[17] ~= '' and redis.call('HGET', KEYS[1], 'e') ~= ARGV[17]) then
    -- The caller retries on the current state: hand it over (saves a read).
    return {0, tonumber(current), redis.call('HGET', KEYS[1], 's'), redis.call('HGET', KEYS[1], 'e')}
  end
end

-- The rate limit counts committed commands only (a version race retried by the
-- caller is not counted twice): the GCRA of gcra.lua, on Redis's clock.
if ARGV[15] ~= nil and ARGV[15] ~= '' then
  local allowed, _, retry_after, reset = gcra(KEYS[7], tonumber(ARGV[15]), tonumber(ARGV[16]))
  if allowed == 0 then return {-3, retry_after, reset} end
end

redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', vstr)
local epoch = redis.call('HGET', KEYS[1], 'e')

redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[7], vstr .. '-0', 'c', ARGV[3], 'k', ARGV[14])

if ARGV[4] == '' then
  redis.call('ZREM', KEYS[3], ARGV[5])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end

local outbox_max = tonumber(ARGV[8])
if redis.call('XLEN', KEYS[4]) >= outbox_max then
  redis.call('INCR', KEYS[5])
end
redis.call('XADD', KEYS[4], 'MAXLEN', outbox_max, '*',
  'id', ARGV[9], 'sid', ARGV[5], 'v', vstr, 't', ARGV[12], 'e', epoch, 'c', ARGV[3])

local ttl = tonumber(ARGV[10])
if ttl > 0 then
  redis.call('SREM', KEYS[6], ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('SADD', KEYS[6], ARGV[5])
end

redis.call('PUBLISH', ARGV[11], '{"epoch":"' .. epoch .. '",' .. string.sub(ARGV[3], 2))
return {1, epoch}
