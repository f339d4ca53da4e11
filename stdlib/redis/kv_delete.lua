-- kv_delete: remove one KV value; a change record if it existed.
-- KEYS: value hash, namespace index, version counter, changes stream
-- ARGV: key, expected version ("": any), time ms, stream maxlen
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'ver') ~= ARGV[2] then return {0, 'conflict'} end
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if existed == 1 then
  local ver = redis.call('INCR', KEYS[3])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
    'op', 'delete', 'key', ARGV[1], 'version', ver, 'time', ARGV[3])
end
return {1, existed}
