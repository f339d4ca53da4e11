-- rc_put: keeps an answer in the shared cache (core/trigger/http/scache.c),
-- unless the function or its path was purged since its request began (the
-- answer may predate the purge: it is dropped, never served).
-- KEYS as rc_get's; ARGV[1] g and ARGV[2] p as rc_get gave them, ARGV[3] the
-- entry's bytes, ARGV[4] its life in ms (ttl + staleWhileRevalidate).
-- Returns 1 when kept, 0 when dropped.
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] or (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'g', ARGV[1], 'p', ARGV[2], 'v', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
