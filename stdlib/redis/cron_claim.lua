-- cron_claim: who runs a schedule's tick (core/trigger/cron/schedule.h).
-- KEYS: the tick's key, the schedule's running key
-- ARGV: owner, time ms, lease end ms, keep ms, overlap ("1"/"0"), lease ms,
--       mode ("tick": claim it if nobody did; "check": only take over a
--       claim whose lease ended)
-- Returns {1, ""} claimed; {2, old value} taken over from a runner whose
-- lease ended (it died); {3, running} skipped: the last run still holds the
-- running key (overlap = false); {0, value} someone else has it (its value:
-- "run <lease end> <owner>", "done <status>" or "skipped").
local v = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[2])
if v then
  local untl = tonumber(string.match(v, '^run (%d+) '))
  if untl and untl < now then
    redis.call('SET', KEYS[1], 'run ' .. ARGV[3] .. ' ' .. ARGV[1], 'KEEPTTL')
    if ARGV[5] == '0' then redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. ARGV[1], 'PX', ARGV[6]) end
    return {2, v}
  end
  return {0, v}
end
if ARGV[7] == 'check' then return {0, ''} end
if ARGV[5] == '0' then
  local r = redis.call('GET', KEYS[2])
  local untl = r and tonumber(string.match(r, '^(%d+)'))
  if untl and untl > now then
    redis.call('SET', KEYS[1], 'skipped', 'PX', ARGV[4])
    return {3, r}
  end
end
redis.call('SET', KEYS[1], 'run ' .. ARGV[3] .. ' ' .. ARGV[1], 'PX', ARGV[4])
if ARGV[5] == '0' then redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. ARGV[1], 'PX', ARGV[6]) end
return {1, ''}
