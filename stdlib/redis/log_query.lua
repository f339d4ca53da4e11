-- log_query: log lines, newest first or (tail) oldest first, filtered (core/svc/logstore.c).
-- KEYS[1]: the streams set
-- ARGV: [1] stream key, or "" for every stream in the set
--       [2] direction: "desc" (a query) or "asc" (a tail)
--       [3] until ms ("" none), [4] since ms ("" none)
--       [5] minimum level (0..3), [6] request id ("" any), [7] text ("" any), [8] trace id ("" any)
--       [9] limit, [10] cursor id ("" none), [11] cursor stream key
-- Lines are ordered by (the id's ms, key, the id's sequence): a stream's own
-- order, and across streams by time (the ms Redis took them in), then by
-- name within one ms. A cursor (the last line a page returned) names a place
-- in that order, and the next page starts strictly after it. A tail ("asc") holds back the lines of the last 250 ms
-- (log_add's SLACK: a line written now gets an id no older than that), and
-- without a cursor returns none: only where "now" is.
-- Returns {more (0/1), cursor id, cursor key, key1, id1, line1, key2, ...}.
local asc = ARGV[2] == 'asc'
local minlevel = tonumber(ARGV[5])
local rid, text, trace = ARGV[6], ARGV[7], ARGV[8]
local limit = tonumber(ARGV[9])
local cid, ckey = ARGV[10], ARGV[11]

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(ams, aseq, akey, bms, bseq, bkey) -- (a) < (b)
  if ams ~= bms then return ams < bms end
  if akey ~= bkey then return akey < bkey end
  return aseq < bseq
end

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - 250
if asc and cid == '' then return {0, tostring(now_ms - 1) .. '-18446744073709551615', '\255', } end

local keys
if ARGV[1] ~= '' then keys = {ARGV[1]} else keys = redis.call('SMEMBERS', KEYS[1]) end
local cms, cseq
if cid ~= '' then cms, cseq = parse(cid) end

local found = {}
for _, k in ipairs(keys) do
  local hi, lo = '+', '-'
  if ARGV[3] ~= '' then hi = ARGV[3] end
  if ARGV[4] ~= '' then lo = ARGV[4] end
  -- From the cursor's millisecond (other streams' entries of that ms may follow it).
  if asc then
    if cid ~= '' then lo = tostring(cms) end
    hi = tostring(now_ms - 1)
  elseif cid ~= '' then
    if hi == '+' or tonumber(string.match(hi, '^%d+') or 0) >= cms then hi = tostring(cms) end
  end
  local n = 0
  local from = asc and lo or hi
  local done = redis.call('EXISTS', k) == 0
  if done and ARGV[1] == '' then redis.call('SREM', KEYS[1], k) end
  while not done do
    local page
    if asc then page = redis.call('XRANGE', k, from, hi, 'COUNT', 200)
    else page = redis.call('XREVRANGE', k, from, lo, 'COUNT', 200) end
    if #page == 0 then break end
    for _, e in ipairs(page) do
      local id, f = e[1], e[2]
      local ms, seq = parse(id)
      local skip = false
      if cid ~= '' then
        if asc then skip = not before(cms, cseq, ckey, ms, seq, k)
        else skip = not before(ms, seq, k, cms, cseq, ckey) end
      end
      if not skip then
        local l, r, t, d = 0, '', '', ''
        for j = 1, #f, 2 do
          local name = f[j]
          if name == 'l' then l = tonumber(f[j + 1]) or 0
          elseif name == 'r' then r = f[j + 1]
          elseif name == 't' then t = f[j + 1]
          elseif name == 'd' then d = f[j + 1] end
        end
        if l >= minlevel and (rid == '' or r == rid) and (trace == '' or t == trace) and
           (text == '' or string.find(d, text, 1, true)) then
          found[#found + 1] = {ms, seq, k, id, d}
          n = n + 1
          if n > limit then done = true break end
        end
      end
    end
    if #page < 200 then break end
    -- the next page starts after the last entry seen (exclusive)
    local last = page[#page][1]
    from = '(' .. last
  end
end
if asc then
  table.sort(found, function(a, b) return before(a[1], a[2], a[3], b[1], b[2], b[3]) end)
else
  table.sort(found, function(a, b) return before(b[1], b[2], b[3], a[1], a[2], a[3]) end)
end
local out = {0, '', ''}
local m = #found
if m > limit then
  out[1] = 1
  m = limit
end
for i = 1, m do
  local e = found[i]
  out[#out + 1] = e[3]
  out[#out + 1] = e[4]
  out[#out + 1] = e[5]
end
if m > 0 then
  out[2] = found[m][4]
  out[3] = found[m][3]
elseif asc then
  out[2] = cid
  out[3] = ckey
end
return out
