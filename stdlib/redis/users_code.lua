-- users_code: single-use, expiring confirmation and reset codes, stored as
-- their SHA-256 (code:PURPOSE:UID -> h, tries).
-- KEYS[1] the login index; ARGV: base, op, purpose, uid, ...
--   'new' HASH TTLMS                 -> 1 (replaces a pending code)
--   'use' HASH MAXTRIES ACTION [PW]  -> 1 used (ACTION 'confirm' sets confirmed,
--                                       'reset' sets the password hash PW and revokes
--                                       the user's refresh-token families) | 0 no code
--                                       (none, expired, used) | -1 wrong (the code is
--                                       dropped after MAXTRIES wrong tries)
local base, op, purpose, uid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = base .. 'code:' .. purpose .. ':' .. uid
if op == 'new' then
  redis.call('DEL', k)
  redis.call('HSET', k, 'h', ARGV[5], 'tries', '0')
  redis.call('PEXPIRE', k, ARGV[6])
  return 1
end
local t = redis.call('HMGET', k, 'h', 'tries')
if not t[1] then return 0 end
local uk = base .. 'u:' .. uid
if t[1] ~= ARGV[5] then
  local n = redis.call('HINCRBY', k, 'tries', 1)
  if n >= tonumber(ARGV[6]) then redis.call('DEL', k) end
  return -1
end
redis.call('DEL', k)
if redis.call('EXISTS', uk) == 0 then return 0 end
if ARGV[7] == 'confirm' then
  redis.call('HSET', uk, 'confirmed', '1')
elseif ARGV[7] == 'reset' then
  redis.call('HSET', uk, 'pw', ARGV[8])
  for _, f in ipairs(redis.call('SMEMBERS', base .. 'ufam:' .. uid)) do
    local fk = base .. 'fam:' .. f
    if redis.call('EXISTS', fk) == 1 then redis.call('SET', fk, 'revoked', 'KEEPTTL') end
  end
end
return 1
