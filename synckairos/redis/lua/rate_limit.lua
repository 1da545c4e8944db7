-- rate_limit.lua: one hit on a GCRA limiter, atomically.
--
-- KEYS[1]  the limiter's key (P:rl:<bucket>:<identity>): holds the TAT (ms)
-- ARGV[1]  limit: requests allowed per period (also the burst)
-- ARGV[2]  period in ms
--
-- Returns {allowed (1/0), remaining, retry_after_ms, reset_ms} (see gcra.lua).
-- A denied hit changes nothing.

--#include gcra.lua

local allowed, remaining, retry_after, reset = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {allowed, remaining, retry_after, reset}
