-- session_delete.lua: remove every key of a session and announce it.
--
-- KEYS[1]  sk:{sid}           session hash
-- KEYS[2]  sk:{sid}:history   session history stream
-- KEYS[3]  sk:deadlines       sorted set of deadlines
-- KEYS[4]  sk:outbox          audit outbox stream
-- KEYS[5]  sk:outbox:dropped  counter of trimmed audit events
-- KEYS[6]  sk:active          set of unfinished sessions
--
-- ARGV[1]  session id
-- ARGV[2]  audit event id (unique)
-- ARGV[3]  maximum length of the audit outbox
-- ARGV[4]  pub/sub channel of the session
-- ARGV[5]  deletion JSON {"deleted": true, "ts": ...} (published and audited)
-- ARGV[6]  expected version, or "" for none
-- ARGV[7]  how long the tombstone lives, in ms
-- ARGV[8]  expected epoch, or "" for any: another incarnation of the id is
--          treated as absent (a token of a deleted session deletes nothing)
--
-- The session hash is replaced by a tombstone (field d = 1, no version) that
-- lives ARGV[7] ms: until the deletion has reached the audit trail, a read must
-- not restore the session from its last snapshot there.
--
-- Returns {version, epoch} of the deleted session, 0 when it did not exist, or
-- minus the actual version when ARGV[6] does not match (nothing is deleted then).

-- Versions may exceed 2^31 (a restore jumps to the clock in µs, ~1.8e15): the
-- audited version is the stored integer string itself, and a number is only
-- compared or returned (an exact integer reply below 2^53), never printed with
-- tostring() or '..' (which would give 1.8e+15).
local current = redis.call('HGET', KEYS[1], 'v')
if not current then return 0 end
local epoch = redis.call('HGET', KEYS[1], 'e') or ''
if ARGV[8] ~= nil and ARGV[8] ~= '' and ARGV[8] ~= epoch then return 0 end
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= tonumber(current) then
  return -tonumber(current)
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'd', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
local outbox_max = tonumber(ARGV[3])
if redis.call('XLEN', KEYS[4]) >= outbox_max then
  redis.call('INCR', KEYS[5])
end
redis.call('XADD', KEYS[4], 'MAXLEN', outbox_max, '*',
  'id', ARGV[2], 'sid', ARGV[1], 'v', current, 't', 'session_deleted', 'e', epoch, 'c', ARGV[5])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {tonumber(current), epoch}
