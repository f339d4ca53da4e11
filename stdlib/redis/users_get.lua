-- users_get: a user's fields (HGETALL's flat list), or false.
-- KEYS[1] the login index; ARGV: base, 'id' | 'login', the id or login.
local id = ARGV[3]
if ARGV[2] == 'login' then
  id = redis.call('HGET', KEYS[1], ARGV[3])
  if not id then return false end
end
local u = redis.call('HGETALL', ARGV[1] .. 'u:' .. id)
if #u == 0 then return false end
return u
