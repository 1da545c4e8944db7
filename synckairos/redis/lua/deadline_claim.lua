-- deadline_claim.lua: claim due deadlines so that one node fires each.
--
-- KEYS[1]  sk:deadlines   sorted set: member sid, score = deadline (epoch ms)
--
-- ARGV[1]  now (epoch ms)
-- ARGV[2]  maximum number of deadlines to claim
-- ARGV[3]  lease in ms
--
-- A claimed deadline is not removed: its score moves to now + lease. The node
-- that fires it commits through session_commit.lua, which overwrites the score
-- with the session's next deadline (or removes it). If that node dies, the
-- deadline comes due again when the lease ends and another node claims it.
--
-- Returns {next, sid1, deadline1, sid2, deadline2, ...}: next is the earliest
-- deadline left after claiming ("" when none), then each claimed session with
-- its original deadline.

local now = tonumber(ARGV[1])
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]), 'WITHSCORES')
local out = {''}
local lease_until = now + tonumber(ARGV[3])
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], lease_until, due[i])
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first > 0 then out[1] = first[2] end
return out
