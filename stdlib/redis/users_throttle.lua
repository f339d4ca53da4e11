-- users_throttle: failed sign-ins per account and per IP (core/svc/users.c).
-- Each key (fail:a:LOGIN, fail:i:IP) counts failures; past its free count,
-- every further failure locks it for 2^(n - free - 1) s, at most MAXMS; the
-- count is forgotten WINDOWMS after the last failure. So a lock always ends:
-- there is no permanent lockout. On Redis' clock, so every worker agrees.
-- KEYS[1] the login index; ARGV: base, op ('check'|'fail'|'ok'), login, ip,
-- account free, ip free, MAXMS, WINDOWMS. Returns the ms to wait (0: go on).
local base, op = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys = {base .. 'fail:a:' .. ARGV[3], base .. 'fail:i:' .. ARGV[4]}
local free = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local maxms, window = tonumber(ARGV[7]), tonumber(ARGV[8])
if op == 'ok' then
  redis.call('DEL', keys[1])
  return 0
end
local wait = 0
for i = 1, 2 do
  if op == 'fail' then
    local n = redis.call('HINCRBY', keys[i], 'n', 1)
    if n > free[i] then
      local d = math.min(1000 * 2 ^ math.min(n - free[i] - 1, 30), maxms)
      redis.call('HSET', keys[i], 'until', string.format('%.0f', now + d))
    end
    redis.call('PEXPIRE', keys[i], window)
  end
  local u = tonumber(redis.call('HGET', keys[i], 'until') or '0')
  if u - now > wait then wait = u - now end
end
return wait
