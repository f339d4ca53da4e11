-- kv_put: write one KV value and its change record, atomically.
-- KEYS: value hash, namespace index (zset), version counter, changes stream,
--       watched flag (set by a kv trigger: the record carries the value then),
--       expiry set (zset: key -> expiry time in ms, see kv_expire.lua)
-- ARGV: key, type, payload, ttl ms ("0": none), if absent ("1"/"0"),
--       expected version ("": any), time ms, stream maxlen
-- Returns {1, version, fresh} (fresh 1: this put made the expiry set, which
-- was empty: the caller registers the namespace for the sweeper) or
-- {0, "conflict"}.
-- Expiry times are Redis's clock (TIME), the clock PEXPIREAT is kept by, so
-- the value's expiry and its entry in the expiry set are the same instant.
local cur = redis.call('HMGET', KEYS[1], 'ver', 'exp')
local was, had_exp = cur[1], cur[2]
if ARGV[5] == '1' and was then return {0, 'conflict'} end
if ARGV[6] ~= '' and was ~= ARGV[6] then return {0, 'conflict'} end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if not was then
  -- A value that expired but was not swept yet: its expire record first
  -- (the same as kv_expire.lua writes), before this write replaces the entry.
  local at = redis.call('ZSCORE', KEYS[6], ARGV[1])
  if at then
    local n = now_ms()
    if tonumber(at) > n then at = string.format('%d', n) end -- evicted before its time
    local ev = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
      'op', 'expire', 'key', ARGV[1], 'version', ev, 'time', at)
    redis.call('ZREM', KEYS[6], ARGV[1])
  end
end
local ver = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'v', ARGV[3], 'ver', ver)
local fresh = 0
if tonumber(ARGV[4]) > 0 then
  local exp = string.format('%d', now_ms() + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], 'exp', exp)
  redis.call('PEXPIREAT', KEYS[1], exp)
  if redis.call('ZADD', KEYS[6], exp, ARGV[1]) == 1 and redis.call('ZCARD', KEYS[6]) == 1 then fresh = 1 end
else
  redis.call('PERSIST', KEYS[1]) -- (also a value from before expiry sets: a TTL, no exp)
  if had_exp then
    redis.call('HDEL', KEYS[1], 'exp')
    redis.call('ZREM', KEYS[6], ARGV[1])
  end
end
if not was then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end -- new key: index it
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
    'op', 'put', 'key', ARGV[1], 'version', ver, 'time', ARGV[7], 'type', ARGV[2], 'value', ARGV[3])
else
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
    'op', 'put', 'key', ARGV[1], 'version', ver, 'time', ARGV[7])
end
return {1, ver, fresh}
