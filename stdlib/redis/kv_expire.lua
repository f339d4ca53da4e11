-- kv_expire: the expiry sweeper's round for one namespace (stdlib/kvexpire.c):
-- an expire change record for each value whose ttl ran out, in expiry order.
-- KEYS: expiry set (zset: key -> expiry ms, by Redis's clock; see kv_put),
--       namespace index, version counter, changes stream
-- ARGV: value hash key prefix (same hash tag as the KEYS), count, stream maxlen
-- Returns {records written, entries looked at}: as many looked at as count
-- means more may be due.
-- Atomic and idempotent: an entry is removed in the step that writes its
-- record, so sweepers on several nodes never write one twice. A value still
-- there is not expired: its entry is put right (a put keeps the set in step
-- with the value, so this only mends a set some other way out of step).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local written = 0
for i = 1, #due, 2 do
  local key, at = due[i], due[i + 1]
  local h = ARGV[1] .. key
  local cur = redis.call('HMGET', h, 'ver', 'exp')
  local gone = not cur[1]
  if not gone and cur[2] and tonumber(cur[2]) <= now then
    -- Due by TIME but not yet by the script's own clock (Redis expires keys
    -- by the time the script started): gone now.
    redis.call('DEL', h)
    gone, at = true, cur[2]
  end
  if gone then
    local ver = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*',
      'op', 'expire', 'key', key, 'version', ver, 'time', at)
    redis.call('ZREM', KEYS[2], key) -- the index forgets it too
    redis.call('ZREM', KEYS[1], key)
    written = written + 1
  elseif cur[2] then
    redis.call('ZADD', KEYS[1], cur[2], key)
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return {written, #due / 2}
