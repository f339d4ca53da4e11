-- usage_add: one worker's usage batch (core/exec/usage.c) into the hourly hashes.
-- KEYS: the writer's sequence key, the index (zset: "HOUR|FUNCTION" scored by HOUR),
--       then one hash per (function, hour) of the batch
-- ARGV: seq, retention (s), now (s), then per hash: hour, function, nfields, then nfields
--       (field, value) pairs. Fields named "mem_max" and "memory" keep the largest value
--       seen; every other one is added (HINCRBY).
-- A batch is applied once: a batch whose seq is not above the writer's last applied one
-- (a retry of a batch whose reply was lost) changes nothing and returns 0; applied: 1.
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = tonumber(ARGV[1])
if seq <= last then return 0 end
local retention, now = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SET', KEYS[1], seq, 'EX', 7 * 86400)
local a = 4
for k = 3, #KEYS do
  local hour, fn, n = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local key = KEYS[k]
  for _ = 1, n do
    local f, v = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    if f == 'mem_max' or f == 'memory' then
      local cur = tonumber(redis.call('HGET', key, f) or '-1')
      if v > cur then redis.call('HSET', key, f, v) end
    else
      redis.call('HINCRBY', key, f, v)
    end
  end
  redis.call('EXPIREAT', key, (hour + 1) * 3600 + retention)
  redis.call('ZADD', KEYS[2], hour, hour .. '|' .. fn)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. math.floor((now - retention) / 3600))
return 1
