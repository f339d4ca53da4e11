-- rc_purge: purges a function's shared cache entries (core/trigger/http/scache.c).
-- KEYS[1] the function's generation; KEYS[2] its stamp counter and KEYS[3] a
-- path's stamp, for a purge of one path. The generation only grows. A path's
-- stamp is the counter's next value, never one it held before, so the stamp
-- may expire (ARGV[1] seconds, past any entry's life) without an entry of an
-- earlier purge matching again. Returns 1.
if not KEYS[2] then
  redis.call('INCR', KEYS[1])
  return 1
end
local n = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], n, 'EX', ARGV[1])
return 1
