-- inv_done: the end of one attempt of an asynchronous invocation
-- (core/trigger/invoke/async.h), all or nothing.
-- KEYS: the async queue's stream, its delayed zset, the status hash, the
--       destination queue's stream (any key when there is none), the queues set
-- ARGV: group, entry id, mode ("ok", "fail", "retry", "requeue"), time ms,
--       attempts, result JSON / error text, retention ms, due time ms
--       (retry, requeue), delayed member (retry, requeue), destination queue
--       name ("" for none), destination message (JSON), max depth
-- Acknowledges the entry first: if it was not pending any more (another
-- consumer ended the same delivery), nothing else is done and 0 returned.
-- retry/requeue: the next attempt waits in the delayed set; ok/fail: the
-- status is final and the destination (onSuccess / onFailure) gets its
-- message, unless that queue is full: then the status says so
-- (destinationError). Returns 1, or 2 when the destination was full.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local mode = ARGV[3]
local r = 1
if mode == 'retry' or mode == 'requeue' then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[8]), ARGV[9])
  redis.call('HSET', KEYS[3], 'status', 'queued', 'attempts', ARGV[5])
  if mode == 'retry' then redis.call('HSET', KEYS[3], 'error', ARGV[6]) end
elseif mode == 'ok' then
  redis.call('HSET', KEYS[3], 'status', 'succeeded', 'attempts', ARGV[5], 'result', ARGV[6], 'endedAt', ARGV[4])
  redis.call('HDEL', KEYS[3], 'error')
else
  redis.call('HSET', KEYS[3], 'status', 'failed', 'attempts', ARGV[5], 'error', ARGV[6], 'endedAt', ARGV[4])
end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
if ARGV[10] ~= '' then
  if redis.call('XLEN', KEYS[4]) >= tonumber(ARGV[12]) then
    redis.call('HSET', KEYS[3], 'destinationError', 'queue full: ' .. ARGV[10])
    r = 2
  else
    redis.call('SADD', KEYS[5], ARGV[10])
    redis.call('XADD', KEYS[4], '*', 'type', 'j', 'body', ARGV[11], 'time', ARGV[4])
  end
end
return r
