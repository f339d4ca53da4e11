-- q_trim: drop the entries of a queue's stream that every consumer group
-- has acknowledged, and nothing else.
-- KEYS: stream
-- Returns the number of entries removed.
-- A group still needs every entry from its oldest pending one (delivered,
-- not acknowledged), or, with none pending, every entry after its
-- last-delivered id; the stream keeps everything from the lowest of these
-- over its groups. A stream without groups keeps everything (its depth
-- bound, q_send, protects Redis).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end

local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end

local min_ms, min_seq
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local ms, seq
  if tonumber(f['pending']) > 0 then
    local p = redis.call('XPENDING', KEYS[1], f['name'])
    ms, seq = parse(p[2])
  else
    ms, seq = parse(f['last-delivered-id'])
    seq = seq + 1 -- the first id after it
  end
  if not min_ms or ms < min_ms or (ms == min_ms and seq < min_seq) then min_ms, min_seq = ms, seq end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', min_ms, min_seq))
