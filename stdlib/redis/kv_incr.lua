-- kv_incr: add to a number value (absent counts as 0), with a change record.
-- KEYS: value hash, namespace index, version counter, changes stream,
--       watched flag (see kv_put), expiry set (see kv_put)
-- ARGV: key, amount, time ms, stream maxlen
-- A value with a ttl keeps it (HSET leaves the TTL and the exp field alone).
local cur = redis.call('HMGET', KEYS[1], 't', 'v')
local v = 0
if cur[1] then
  if cur[1] ~= 'n' then return {0, 'not a number'} end
  v = tonumber(cur[2])
else
  -- Expired and not swept yet: its expire record first (as kv_expire.lua
  -- writes it); the new value has no ttl.
  local at = redis.call('ZSCORE', KEYS[6], ARGV[1])
  if at then
    local t = redis.call('TIME')
    local n = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if tonumber(at) > n then at = string.format('%d', n) end -- evicted before its time
    local ev = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
      'op', 'expire', 'key', ARGV[1], 'version', ev, 'time', at)
    redis.call('ZREM', KEYS[6], ARGV[1])
  end
end
v = v + tonumber(ARGV[2])
local s, out
if v == math.floor(v) and math.abs(v) < 1e15 then
  s = string.format('%d', v)
  out = v -- an integer reply: no string to convert on the way back
else
  s = string.format('%.17g', v)
  out = s
end
local ver = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 't', 'n', 'v', s, 'ver', ver)
if not cur[1] then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end -- new key: index it
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
    'op', 'incr', 'key', ARGV[1], 'version', ver, 'time', ARGV[3], 'type', 'n', 'value', s)
else
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
    'op', 'incr', 'key', ARGV[1], 'version', ver, 'time', ARGV[3])
end
return {1, out, ver}
