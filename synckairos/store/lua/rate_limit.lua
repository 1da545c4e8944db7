-- rate_limit.lua: one hit on a GCRA limiter (generic cell rate algorithm), atomically.
--
-- KEYS[1]  the limiter's key: holds the "theoretical arrival time" (TAT, ms)
-- ARGV[1]  limit: requests allowed per period (also the burst)
-- ARGV[2]  period in ms
--
-- The clock is Redis's own (TIME), so every node shares one view of time.
-- Returns {allowed (1/0), remaining, retry_after_ms, reset_ms}: remaining hits
-- in the current burst, how long until a denied hit would be allowed, and how
-- long until the limiter is fully reset. A denied hit changes nothing.

local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local interval = period / limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now))
local remaining = math.floor((period - (new_tat - now)) / interval)
return {1, remaining, 0, math.ceil(new_tat - now)}
