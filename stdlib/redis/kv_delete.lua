-- kv_delete: remove one KV value; a change record if it existed.
-- KEYS: value hash, namespace index, version counter, changes stream,
--       expiry set (see kv_put)
-- ARGV: key, expected version ("": any), time ms, stream maxlen
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'ver') ~= ARGV[2] then return {0, 'conflict'} end
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if existed == 1 then
  redis.call('ZREM', KEYS[5], ARGV[1]) -- deleted before it expired: no expire record
  local ver = redis.call('INCR', KEYS[3])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
    'op', 'delete', 'key', ARGV[1], 'version', ver, 'time', ARGV[3])
else
  -- Expired and not swept yet: its expire record now (as kv_expire.lua
  -- writes it), as the entry goes.
  local at = redis.call('ZSCORE', KEYS[5], ARGV[1])
  if at then
    local t = redis.call('TIME')
    local n = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if tonumber(at) > n then at = string.format('%d', n) end -- evicted before its time
    local ver = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
      'op', 'expire', 'key', ARGV[1], 'version', ver, 'time', at)
    redis.call('ZREM', KEYS[5], ARGV[1])
  end
end
return {1, existed}
