-- cron_done: a schedule's run ended (core/trigger/cron/schedule.h).
-- KEYS: the tick's key, the schedule's running key, its last-result hash
-- ARGV: owner, status, time ms, duration ms, tick ms
-- The tick becomes "done <status>" if this owner still holds it; the running
-- key is cleared if it is this owner's; the last result is recorded.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -(#ARGV[1] + 1)) == ' ' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'done ' .. ARGV[2], 'KEEPTTL')
end
local r = redis.call('GET', KEYS[2])
if r and string.sub(r, -(#ARGV[1] + 1)) == ' ' .. ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[3], 'status', ARGV[2], 'endedAt', ARGV[3], 'duration', ARGV[4], 'scheduledTime', ARGV[5])
return 1
