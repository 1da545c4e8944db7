-- gcra.lua: the one GCRA (generic cell rate algorithm), spliced into every
-- script that rate limits (rate_limit.lua, session_commit.lua) at their include
-- line (see synckairos/redis/scripts.py). Not a script of its own.
--
-- gcra(key, limit, period): one hit on the limiter at KEYS `key`, which holds
-- the "theoretical arrival time" (TAT, ms). A limit of `limit` per `period` ms
-- admits a burst of `limit`, then one hit every period / limit. The clock is
-- Redis's own (TIME), so every node shares one view of time. A denied hit
-- changes nothing.
--
-- Returns allowed (1/0), remaining hits in the current burst, how long (ms)
-- until a denied hit would be allowed, and how long until the limiter is
-- fully reset.
local function gcra(key, limit, period)
  local interval = period / limit
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if now < allow_at then
    return 0, 0, math.ceil(allow_at - now), math.ceil(tat - now)
  end
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now))
  return 1, math.floor((period - (new_tat - now)) / interval), 0, math.ceil(new_tat - now)
end
