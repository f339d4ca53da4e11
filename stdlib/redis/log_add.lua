-- log_add: a worker's batch of log lines (core/svc/logstore.c).
-- KEYS: the streams set, then one stream per line (repeated as needed)
-- ARGV: maxlen (per stream, approximate), minid ("" or an id: older entries go),
--       age seconds (the stream expires after that without a line; 0 none),
--       then per line: level (0..3), request id, trace id, its time (ms), the JSON line
-- An entry's id is the line's time ("<ms>-*"), so a query orders the lines of
-- several workers as they were written, unless that is not after the
-- stream's last id or more than SLACK ms before Redis' clock: then Redis'
-- time ("*"). A tail (log_query) holds back the last SLACK ms: no entry can
-- come later with an id in what it already read.
-- Every stream is capped (MAXLEN ~) as it is written and trimmed by age
-- (MINID ~) once per batch; the set names the streams a query reads.
local SLACK = 250
local maxlen, minid, age = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - SLACK
local seen = {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local a = 4 + (i - 2) * 5
  local ms = tonumber(ARGV[a + 3]) or 0
  local r
  if ms >= floor then
    r = redis.pcall('XADD', k, 'MAXLEN', '~', maxlen, string.format('%d-*', ms), 'l', ARGV[a], 'r', ARGV[a + 1],
                    't', ARGV[a + 2], 'd', ARGV[a + 4])
  end
  if r == nil or type(r) == 'table' and r.err then
    if r and r.err and not string.find(r.err, 'equal or smaller', 1, true) then return redis.error_reply(r.err) end
    redis.call('XADD', k, 'MAXLEN', '~', maxlen, '*', 'l', ARGV[a], 'r', ARGV[a + 1], 't', ARGV[a + 2], 'd', ARGV[a + 4])
  end
  seen[k] = true
end
for k in pairs(seen) do
  redis.call('SADD', KEYS[1], k)
  if minid ~= '' then redis.call('XTRIM', k, 'MINID', '~', minid) end
  if age > 0 then redis.call('EXPIRE', k, age) end
end
return #KEYS - 1
