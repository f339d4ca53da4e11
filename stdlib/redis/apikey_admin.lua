-- apikey_admin: API keys and usage plans, for /_/api/keys and /_/api/plans
-- (core/trigger/http/keys_api.c). Layout (P = "<prefix>{keys}:", one hash
-- tag, so every key here is on the slot of KEYS[1]):
--   P.."key:"..sha256  the key's record: name, id, scopes, plan, created, lastUsed
--   P.."name:"..name   the sha256 of the key of that name
--   P.."names"         names by creation time (ms)
--   P.."plan:"..name   a plan: rps, burst, quota, per, created
--   P.."plans"         plan names by creation time; P.."onplan:"..plan the keys on it
--   P.."rate:"..id, P.."day:"..id..":YYYY-MM-DD", P.."mon:"..id..":YYYY-MM"
--                      a key's bucket and counters (apikey_check.lua), by the
--                      key's id, so a new key of a revoked one's name starts afresh
-- The key itself is never here, only its SHA-256.
-- KEYS[1] P.."names"; ARGV[1] P; ARGV[2] the operation; the rest its arguments.
local P, op = ARGV[1], ARGV[2]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The UTC date of day number n (days since 1970-01-01): y, m, d.
local function civil(n)
  local z = n + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  return yoe + era * 400 + (m <= 2 and 1 or 0), m, d
end

if op == 'create' then
  -- ARGV[3] name, [4] sha256, [5] id, [6] scopes, [7] plan ('' none)
  local name, plan = ARGV[3], ARGV[7]
  if redis.call('EXISTS', P .. 'name:' .. name) == 1 then return {'exists'} end
  if plan ~= '' and redis.call('EXISTS', P .. 'plan:' .. plan) == 0 then return {'noplan'} end
  local created = now_ms()
  redis.call('HSET', P .. 'key:' .. ARGV[4], 'name', name, 'id', ARGV[5], 'scopes', ARGV[6], 'plan', plan,
             'created', string.format('%.0f', created))
  redis.call('SET', P .. 'name:' .. name, ARGV[4])
  redis.call('ZADD', KEYS[1], created, name)
  if plan ~= '' then redis.call('SADD', P .. 'onplan:' .. plan, name) end
  return {'ok', string.format('%.0f', created)}
end

-- A key's record by name: sha, {name, id, scopes, plan, created, lastUsed} or nil.
local function record(name)
  local sha = redis.call('GET', P .. 'name:' .. name)
  if not sha then return nil end
  return sha, redis.call('HMGET', P .. 'key:' .. sha, 'name', 'id', 'scopes', 'plan', 'created', 'lastUsed')
end

if op == 'list' then
  -- {name, scopes, plan, created, lastUsed (or false)}...
  local out = {}
  for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local sha, r = record(name)
    if sha and r[1] then
      for _, v in ipairs({r[1], r[3] or '', r[4] or '', r[5] or '0', r[6] or ''}) do out[#out + 1] = v end
    end
  end
  return out
end

if op == 'revoke' then
  -- ARGV[3] name: 1 revoked, 0 no such key. Its counters expire on their own.
  local name = ARGV[3]
  local sha, r = record(name)
  if not sha then return 0 end
  redis.call('DEL', P .. 'key:' .. sha, P .. 'name:' .. name)
  if r[2] then redis.call('DEL', P .. 'rate:' .. r[2]) end
  redis.call('ZREM', KEYS[1], name)
  if r[4] and r[4] ~= '' then redis.call('SREM', P .. 'onplan:' .. r[4], name) end
  return 1
end

if op == 'usage' then
  -- ARGV[3] name, ARGV[4] days of history: {} no such key, or
  -- {name, scopes, plan, created, lastUsed, rps, burst, quota, per, today, month, day_left_s,
  --  month_left_s, date1, count1, date2, count2, ...} newest day first.
  local sha, r = record(ARGV[3])
  if not sha or not r[1] then return {} end
  local t = redis.call('TIME')
  local sec = tonumber(t[1])
  local today = math.floor(sec / 86400)
  local y, m, d = civil(today)
  local dim = ({31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31})[m]
  if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then dim = 29 end
  local day_left = 86400 - sec % 86400
  local p = {'', '0', '0', ''}
  if r[4] and r[4] ~= '' then
    local q = redis.call('HMGET', P .. 'plan:' .. r[4], 'rps', 'burst', 'quota', 'per')
    if q[1] then p = q end
  end
  local month = redis.call('GET', P .. 'mon:' .. r[2] .. ':' .. string.format('%04d-%02d', y, m)) or '0'
  local out = {r[1], r[3] or '', r[4] or '', r[5] or '0', r[6] or '', p[1], p[2], p[3], p[4], '0', month,
               day_left, (dim - d) * 86400 + day_left}
  local n = tonumber(ARGV[4])
  for i = 0, n - 1 do
    local yy, mm, dd = civil(today - i)
    local date = string.format('%04d-%02d-%02d', yy, mm, dd)
    local c = redis.call('GET', P .. 'day:' .. r[2] .. ':' .. date) or '0'
    if i == 0 then out[10] = c end
    out[#out + 1] = date
    out[#out + 1] = c
  end
  return out
end

if op == 'plan_create' then
  -- ARGV[3] name, [4] rps, [5] burst, [6] quota, [7] per
  local key = P .. 'plan:' .. ARGV[3]
  if redis.call('EXISTS', key) == 1 then return {'exists'} end
  local created = now_ms()
  redis.call('HSET', key, 'rps', ARGV[4], 'burst', ARGV[5], 'quota', ARGV[6], 'per', ARGV[7],
             'created', string.format('%.0f', created))
  redis.call('ZADD', P .. 'plans', created, ARGV[3])
  return {'ok', string.format('%.0f', created)}
end

if op == 'plan_list' then
  -- {name, rps, burst, quota, per, created, keys}...
  local out = {}
  for _, name in ipairs(redis.call('ZRANGE', P .. 'plans', 0, -1)) do
    local q = redis.call('HMGET', P .. 'plan:' .. name, 'rps', 'burst', 'quota', 'per', 'created')
    if q[1] then
      for _, v in ipairs({name, q[1], q[2], q[3], q[4], q[5], redis.call('SCARD', P .. 'onplan:' .. name)}) do
        out[#out + 1] = v
      end
    end
  end
  return out
end

if op == 'plan_delete' then
  -- ARGV[3] name: {'ok'}, {'missing'}, or {'inuse', keys on it}
  local key = P .. 'plan:' .. ARGV[3]
  if redis.call('EXISTS', key) == 0 then return {'missing'} end
  local n = redis.call('SCARD', P .. 'onplan:' .. ARGV[3])
  if n > 0 then return {'inuse', n} end
  redis.call('DEL', key)
  redis.call('ZREM', P .. 'plans', ARGV[3])
  return {'ok'}
end

return redis.error_reply('apikey_admin: unknown operation')
