-- users_rt: refresh tokens (the OAuth 2.0 security BCP's rotation with reuse
-- detection). A token is stored by its SHA-256 (rt:HASH -> uid, fam, used);
-- a family (fam:FAM -> uid, or 'revoked') is one sign-in's chain of tokens; rtu:FAM lists its
-- most recent used tokens (see rotate).
-- KEYS[1] the login index; ARGV: base, op, ...
--   'new' HASH UID FAM TTLMS        a new family's first token -> 1
--   'rotate' OLD NEW TTLMS          -> {1, user fields} | {0} unknown, expired or
--                                      revoked | {-1} reused (the family is revoked
--                                      now) | {-2} the user is disabled or gone
--   'revoke' HASH                   sign-out: its family is revoked -> 1 | 0
local base, op = ARGV[1], ARGV[2]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if op == 'new' then
  local rk, ttl = base .. 'rt:' .. ARGV[3], ARGV[6]
  redis.call('HSET', rk, 'uid', ARGV[4], 'fam', ARGV[5], 'used', '0')
  redis.call('PEXPIRE', rk, ttl)
  redis.call('SET', base .. 'fam:' .. ARGV[5], ARGV[4], 'PX', ttl)
  -- The user's families by when they were last used (ufam:UID, a sorted set): those unused for
  -- the TTL have expired; past MAXFAM live ones the oldest are revoked, so signing in in a loop
  -- cannot grow Redis without end.
  local MAXFAM = 64
  local fk = base .. 'ufam:' .. ARGV[4]
  local now = now_ms()
  redis.call('ZADD', fk, now, ARGV[5])
  redis.call('ZREMRANGEBYSCORE', fk, '-inf', now - tonumber(ttl))
  local over = redis.call('ZCARD', fk) - MAXFAM
  if over > 0 then
    for _, f in ipairs(redis.call('ZRANGE', fk, 0, over - 1)) do
      local k = base .. 'fam:' .. f
      if redis.call('EXISTS', k) == 1 then redis.call('SET', k, 'revoked', 'KEEPTTL') end
    end
    redis.call('ZREMRANGEBYRANK', fk, 0, over - 1)
  end
  redis.call('PEXPIRE', fk, ttl)
  return 1
end
local rk = base .. 'rt:' .. ARGV[3]
local t = redis.call('HMGET', rk, 'uid', 'fam', 'used')
if not t[1] then return op == 'rotate' and {0} or 0 end
local famk = base .. 'fam:' .. t[2]
if op == 'revoke' then
  if redis.call('EXISTS', famk) == 1 then redis.call('SET', famk, 'revoked', 'KEEPTTL') end
  return 1
end
local ttl = ARGV[5]
local f = redis.call('GET', famk)
if f ~= t[1] then return {0} end
if t[3] == '1' then
  redis.call('SET', famk, 'revoked', 'KEEPTTL')
  return {-1}
end
local u = redis.call('HGETALL', base .. 'u:' .. t[1])
if #u == 0 then return {-2} end
for i = 1, #u, 2 do
  if u[i] == 'disabled' and u[i + 1] == '1' then return {-2} end
end
-- The used token stays (until its own expiry) so that presenting it again is seen as reuse, but
-- only the family's KEEP most recent ones (rtu:FAM, newest first): rotating costs no password
-- hash, so one client rotating in a loop would otherwise leave a key per rotation for the whole
-- TTL. An older used token is gone: refused as unknown, without revoking the family.
local KEEP = 16
redis.call('HSET', rk, 'used', '1')
local uk = base .. 'rtu:' .. t[2]
redis.call('LPUSH', uk, ARGV[3])
for _, h in ipairs(redis.call('LRANGE', uk, KEEP, -1)) do redis.call('DEL', base .. 'rt:' .. h) end
redis.call('LTRIM', uk, 0, KEEP - 1)
redis.call('PEXPIRE', uk, ttl)
local nk = base .. 'rt:' .. ARGV[4]
redis.call('HSET', nk, 'uid', t[1], 'fam', t[2], 'used', '0')
redis.call('PEXPIRE', nk, ttl)
redis.call('PEXPIRE', famk, ttl)
redis.call('ZADD', base .. 'ufam:' .. t[1], 'XX', now_ms(), t[2])
redis.call('PEXPIRE', base .. 'ufam:' .. t[1], ttl)
return {1, u}
