-- apikey_check: the gateway's API-key check (core/trigger/http/apikeys.c):
-- the key's record, its plan's rate (GCRA) and quota, and its use counted,
-- in one round trip, on Redis' clock so every worker and node agrees.
-- Every key lives under one hash tag (P = "<prefix>{keys}:"), so the keys
-- this script derives are on the slot of the one it declares.
-- KEYS[1] P.."key:"..sha256(key), the key's record (a hash: name, id,
--         scopes, plan, created, lastUsed)
-- ARGV[1] P; ARGV[2] "peek" | "use"; ARGV[3] "1": write lastUsed (use)
-- peek: {0} no such key, or {1, name, scopes, plan}
-- use:  {status, rps, burst, remaining, t_us, quota, used, period_left_s, per}
--   status 0 no such key (revoked), 4 its plan is gone; otherwise
--   1 passed (counted; remaining: the burst left, t_us: until it is full),
--   2 past the plan's rate (t_us: until one passes),
--   3 past the plan's quota (used of quota this period, which ends in
--     period_left_s seconds).
local P = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'name', 'id', 'scopes', 'plan')
if not f[1] then return {0} end
if ARGV[2] == 'peek' then return {1, f[1], f[3] or '', f[4] or ''} end

local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000000 + tonumber(t[2])
-- The UTC date of sec (days to civil, proleptic Gregorian).
local z = math.floor(sec / 86400) + 719468
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local d = doy - math.floor((153 * mp + 2) / 5) + 1
local m = mp < 10 and mp + 3 or mp - 9
local y = yoe + era * 400 + (m <= 2 and 1 or 0)
local dim = ({31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31})[m]
if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then dim = 29 end
local day_left = 86400 - sec % 86400
local month_left = (dim - d) * 86400 + day_left
local dkey = P .. 'day:' .. f[2] .. ':' .. string.format('%04d-%02d-%02d', y, m, d)
local mkey = P .. 'mon:' .. f[2] .. ':' .. string.format('%04d-%02d', y, m)

local status, rps, burst, remaining, tus, quota, per, left = 1, '', 0, 0, 0, 0, '', 0
local used
if f[4] and f[4] ~= '' then
  local p = redis.call('HMGET', P .. 'plan:' .. f[4], 'rps', 'burst', 'quota', 'per')
  if not p[1] then return {4} end
  rps, burst, quota, per = p[1], tonumber(p[2]), tonumber(p[3]), p[4]
  left = per == 'month' and month_left or day_left
  used = tonumber(redis.call('GET', per == 'month' and mkey or dkey) or '0')
  if quota > 0 and used >= quota then
    status = 3
  elseif tonumber(rps) > 0 then
    local T = 1000000 / tonumber(rps)
    local rkey = P .. 'rate:' .. f[2]
    local tat = tonumber(redis.call('GET', rkey) or '0')
    if tat < now then tat = now end
    local nxt = tat + T
    local allow_at = nxt - burst * T
    if now < allow_at then
      status = 2
      tus = allow_at - now
    else
      redis.call('SET', rkey, string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
      remaining = math.floor((now - allow_at) / T)
      tus = nxt - now
    end
  end
end
if status == 1 then
  -- Counted per UTC day (kept 40 days, for the usage history) and month.
  local cd = redis.call('INCR', dkey)
  if cd == 1 then redis.call('EXPIRE', dkey, 40 * 86400) end
  local cm = redis.call('INCR', mkey)
  if cm == 1 then redis.call('EXPIRE', mkey, month_left + 40 * 86400) end
  used = per == 'month' and cm or cd
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'lastUsed', string.format('%.0f', math.floor(now / 1000))) end
end
return {status, rps, burst, remaining, tus, quota, used or 0, left, per}
