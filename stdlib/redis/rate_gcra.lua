-- rate_gcra: one request against a rate limit's bucket (GCRA: a bucket of
-- ARGV[2] requests refilled one per ARGV[1] microseconds), on Redis' clock
-- so every worker and node agrees (core/trigger/http/policy.c).
-- KEYS[1] the bucket (its theoretical arrival time, µs); returns
-- {allowed 1|0, remaining, retry-after µs, reset µs}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local B = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + T
local allow_at = nxt - B * T
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / T), 0, nxt - now}
