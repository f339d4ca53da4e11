-- rc_get: a shared cache lookup (core/trigger/http/scache.c). An entry is a
-- hash {g, p, v}: the function's purge generation and its path's purge stamp
-- when the answer's request began, and the entry's bytes (rcache.h's
-- encoding). It is served only while both are still the current ones, so a
-- purge makes every older entry miss at once, on every node.
-- KEYS[1] the entry, KEYS[2] the function's generation, KEYS[3] the path's
-- stamp; returns {g, p} (a miss: what a later rc_put must see unchanged) or
-- {g, p, bytes} (a hit).
local g = redis.call('GET', KEYS[2]) or '0'
local p = redis.call('GET', KEYS[3]) or '0'
local e = redis.call('HMGET', KEYS[1], 'g', 'p', 'v')
if e[3] and e[1] == g and e[2] == p then
  return {g, p, e[3]}
end
return {g, p}
