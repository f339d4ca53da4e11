-- users_set: sets fields of an existing user; then its fields, or false when
-- there is no such user. With ARGV[3] == '1' every refresh-token family of
-- the user is revoked too (disabling, a password reset).
-- KEYS[1] the login index; ARGV: base, id, revoke 0|1, field, value, ...
local base, id = ARGV[1], ARGV[2]
local uk = base .. 'u:' .. id
if redis.call('EXISTS', uk) == 0 then return false end
for i = 4, #ARGV, 2 do redis.call('HSET', uk, ARGV[i], ARGV[i + 1]) end
if ARGV[3] == '1' then
  local fk = base .. 'ufam:' .. id
  for _, f in ipairs(redis.call('ZRANGE', fk, 0, -1)) do
    local k = base .. 'fam:' .. f
    if redis.call('EXISTS', k) == 1 then redis.call('SET', k, 'revoked', 'KEEPTTL') end
  end
end
return redis.call('HGETALL', uk)
