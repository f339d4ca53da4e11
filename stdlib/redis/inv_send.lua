-- inv_send: queue an asynchronous invocation (core/trigger/invoke/async.h).
-- KEYS: the async queue's stream, its delayed zset, the invocation's status
--       hash, the queues set
-- ARGV: time ms, max depth, delay ms, event JSON ("" for nil), meta
--       ("<id> <attempt> <parent> <function>"), function, retention ms,
--       the async queue's name, parent request id
-- Returns 1, or 0 when the queue is at its depth bound (nothing written).
-- The entry is a crescent.queue message (type, body, time) whose "id" field
-- is the meta: q_promote keeps it for a delayed one.
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) + 1 > tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[4], ARGV[8])
-- The consumers' group, made with the stream by the first send (they wait for it).
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[8], '0', 'MKSTREAM')
redis.call('HSET', KEYS[3], 'status', 'queued', 'function', ARGV[6], 'attempts', '0', 'createdAt', ARGV[1],
  'parentRequestId', ARGV[9])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
local t = ARGV[4] == '' and 's' or 'j'
local delay = tonumber(ARGV[3])
if delay > 0 then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + delay, ARGV[5] .. '\n' .. t .. '\n' .. ARGV[4])
else
  redis.call('XADD', KEYS[1], '*', 'type', t, 'body', ARGV[4], 'time', ARGV[1], 'id', ARGV[5])
end
return 1
