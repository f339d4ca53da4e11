-- users_code: single-use, expiring confirmation and reset codes, stored as
-- their SHA-256 (code:PURPOSE:UID -> h, tries).
-- KEYS[1] the login index; ARGV: base, op, purpose, uid, ...
--   'new' HASH TTLMS                 -> 1 (replaces a pending code, keeping its
--                                       wrong tries) | 2 none made: the user's
--                                       tries are used up until the exhausted
--                                       code expires
--   'use' HASH MAXTRIES ACTION [PW]  -> 1 used (ACTION 'confirm' sets confirmed,
--                                       'reset' sets the password hash PW and revokes
--                                       the user's refresh-token families) | 0 no code
--                                       (none, expired, used) | -1 wrong | -2 out of
--                                       tries (MAXTRIES wrong ones)
-- Wrong tries belong to the user and purpose, not to one code: anyone may ask
-- for a new code (forgot), so a count that started again with each code would
-- let 6 digits fall to MAXTRIES guesses per code. An exhausted code stays
-- (its hash cleared) until its own expiry, which a new code does not extend:
-- the lock always ends.
local base, op, purpose, uid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = base .. 'code:' .. purpose .. ':' .. uid
local t = redis.call('HMGET', k, 'h', 'tries')
if op == 'new' then
  if t[1] == '' then return 2 end
  redis.call('DEL', k)
  redis.call('HSET', k, 'h', ARGV[5], 'tries', t[2] or '0')
  redis.call('PEXPIRE', k, ARGV[6])
  return 1
end
if not t[1] then return 0 end
if t[1] == '' then return -2 end
local uk = base .. 'u:' .. uid
if t[1] ~= ARGV[5] then
  local n = redis.call('HINCRBY', k, 'tries', 1)
  if n >= tonumber(ARGV[6]) then redis.call('HSET', k, 'h', '') end
  return -1
end
redis.call('DEL', k)
if redis.call('EXISTS', uk) == 0 then return 0 end
if ARGV[7] == 'confirm' then
  redis.call('HSET', uk, 'confirmed', '1')
elseif ARGV[7] == 'reset' then
  redis.call('HSET', uk, 'pw', ARGV[8])
  for _, f in ipairs(redis.call('ZRANGE', base .. 'ufam:' .. uid, 0, -1)) do
    local fk = base .. 'fam:' .. f
    if redis.call('EXISTS', fk) == 1 then redis.call('SET', fk, 'revoked', 'KEEPTTL') end
  end
end
return 1
