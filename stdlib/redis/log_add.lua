-- log_add: a worker's batch of log lines (core/svc/logstore.c).
-- KEYS: the streams set, then one stream per line (repeated as needed)
-- ARGV: maxlen (per stream, approximate), minid ("" or an id: older entries go),
--       age seconds (the stream expires after that without a line; 0 none),
--       then per line: level (0..3), request id, trace id, the JSON line
-- Every stream is capped (MAXLEN ~) as it is written and trimmed by age
-- (MINID ~) once per batch; the set names the streams a query reads.
local maxlen, minid, age = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seen = {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local a = 4 + (i - 2) * 4
  redis.call('XADD', k, 'MAXLEN', '~', maxlen, '*', 'l', ARGV[a], 'r', ARGV[a + 1], 't', ARGV[a + 2], 'd', ARGV[a + 3])
  seen[k] = true
end
for k in pairs(seen) do
  redis.call('SADD', KEYS[1], k)
  if minid ~= '' then redis.call('XTRIM', k, 'MINID', '~', minid) end
  if age > 0 then redis.call('EXPIRE', k, age) end
end
return #KEYS - 1
