-- q_stats: what the queues API (GET /_/api/queues) shows of one queue.
-- KEYS: stream, delayed zset
-- Returns { stream exists (0/1), entries (XLEN), delayed (ZCARD),
--           oldest sent time ms or false, groups }
-- groups: { { name, pending, last-delivered-id, lag (-1: Redis cannot tell),
--             { { consumer, pending, idle ms }, ... } }, ... }
-- The oldest entry is the first one some consumer group still needs (its
-- oldest pending entry, or with none pending the first after its
-- last-delivered id: q_trim's rule), or without groups the first entry; its
-- "time" field (ms, set by q_send and q_promote), else its id's time.
-- false when every group is done with every entry.
local delayed = redis.call('ZCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return { 0, 0, delayed, false, {} } end
local len = redis.call('XLEN', KEYS[1])

local function map(flat)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end

local groups, min_ms, min_seq = {}, nil, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = map(g)
  local pending = tonumber(f['pending'])
  local ms, seq
  if pending > 0 then
    ms, seq = parse(redis.call('XPENDING', KEYS[1], f['name'])[2])
  else
    ms, seq = parse(f['last-delivered-id'])
    seq = seq + 1
  end
  if not min_ms or ms < min_ms or (ms == min_ms and seq < min_seq) then min_ms, min_seq = ms, seq end
  local consumers = {}
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], f['name'])) do
    local cf = map(c)
    consumers[#consumers + 1] = { cf['name'], cf['pending'], cf['idle'] }
  end
  local lag = f['lag']
  if type(lag) ~= 'number' then lag = -1 end
  groups[#groups + 1] = { f['name'], pending, f['last-delivered-id'], lag, consumers }
end

local first
if #groups == 0 then
  first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
else
  first = redis.call('XRANGE', KEYS[1], string.format('%.0f-%.0f', min_ms, min_seq), '+', 'COUNT', 1)[1]
end
local oldest = false
if first then
  local f = map(first[2])
  oldest = tonumber(f['time']) or parse(first[1])
end
return { 1, len, delayed, oldest, groups }
