-- users_delete: removes a user, its login, its pending codes and revokes its
-- refresh-token families. 1, or 0 when there was no such user.
-- KEYS[1] the login index; ARGV: base, id.
local base, id = ARGV[1], ARGV[2]
local uk = base .. 'u:' .. id
local login = redis.call('HGET', uk, 'login')
if not login then return 0 end
if redis.call('HGET', KEYS[1], login) == id then redis.call('HDEL', KEYS[1], login) end
redis.call('DEL', uk, base .. 'code:confirm:' .. id, base .. 'code:reset:' .. id)
redis.call('ZREM', base .. 'ids', id)
local fk = base .. 'ufam:' .. id
for _, f in ipairs(redis.call('ZRANGE', fk, 0, -1)) do
  local k = base .. 'fam:' .. f
  if redis.call('EXISTS', k) == 1 then redis.call('SET', k, 'revoked', 'KEEPTTL') end
end
redis.call('DEL', fk)
return 1
