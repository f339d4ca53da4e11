-- users_throttle: sign-in attempts per account and failures per IP
-- (core/svc/users.c). An account's key (fail:a:LOGIN) counts attempts that
-- were not a success, counted before the password is checked, so a burst of
-- parallel guesses at one account is throttled as a sequence would be; an
-- IP's key (fail:i:IP) counts failures once they happened (many users behind
-- one address may sign in at once). Past its free count, each further count
-- locks the key for 2^(n - free - 1) s, at most MAXMS; the count is
-- forgotten WINDOWMS after the last one. So a lock always ends: there is no
-- permanent lockout. On Redis' clock, so every worker agrees.
-- KEYS[1] the login index; ARGV: base, op, login, ip, account free, ip free,
-- MAXMS, WINDOWMS.
--   'attempt'  -> the ms to wait while either is locked (the attempt is refused
--                 and not counted), or 0: counted against the account, go on
--   'fail'     -> 0: the attempt failed: counted against the IP
--   'ok'       -> 0: it succeeded: the account's count is cleared
local base, op = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys = {base .. 'fail:a:' .. ARGV[3], base .. 'fail:i:' .. ARGV[4]}
local free = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local maxms, window = tonumber(ARGV[7]), tonumber(ARGV[8])

local function count(i)
  local n = redis.call('HINCRBY', keys[i], 'n', 1)
  if n > free[i] then
    local d = math.min(1000 * 2 ^ math.min(n - free[i] - 1, 30), maxms)
    redis.call('HSET', keys[i], 'until', string.format('%.0f', now + d))
  end
  redis.call('PEXPIRE', keys[i], window)
end

if op == 'ok' then
  redis.call('DEL', keys[1])
  return 0
end
if op == 'fail' then
  count(2)
  return 0
end
local wait = 0
for i = 1, 2 do
  local u = tonumber(redis.call('HGET', keys[i], 'until') or '0')
  if u - now > wait then wait = u - now end
end
if wait > 0 then return wait end
count(1)
return 0
