-- kv_put: write one KV value and its change record, atomically.
-- KEYS: value hash, namespace index (zset), version counter, changes stream,
--       watched flag (set by a kv trigger: the record carries the value then)
-- ARGV: key, type, payload, ttl ms ("0": none), if absent ("1"/"0"),
--       expected version ("": any), time ms, stream maxlen
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[5] == '1' and cur then return {0, 'conflict'} end
if ARGV[6] ~= '' and cur ~= ARGV[6] then return {0, 'conflict'} end
local ver = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'v', ARGV[3], 'ver', ver)
if tonumber(ARGV[4]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
end
if not cur then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end -- new key: index it
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
    'op', 'put', 'key', ARGV[1], 'version', ver, 'time', ARGV[7], 'type', ARGV[2], 'value', ARGV[3])
else
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
    'op', 'put', 'key', ARGV[1], 'version', ver, 'time', ARGV[7])
end
return {1, ver}
