-- q_redrive: move one batch of a dead-letter queue's messages back to the
-- queue they died in (the queues API's redrive, as SQS's DLQ redrive).
-- KEYS: dead-letter stream, queue stream, queue delayed zset
-- ARGV: max depth, last id to move (inclusive), count
-- Returns { moved, state }: state 0 more may follow, 1 nothing is left up
-- to the last id, 2 the queue is full (its depth bound, as q_send counts
-- it: stream entries + delayed ones).
-- Each message goes back with its own fields (type, body, time: when it was
-- first sent; a delayed one's id) and without the dead letter's
-- receiveCount, sourceId, deadAt, firstReceive, lastReceive and lastError;
-- a new entry id; and it leaves the
-- dead-letter stream (XDEL) in the same step, so it is never in both nor in
-- neither. The last id bounds a redrive to what was dead when it started.
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[2]) - redis.call('ZCARD', KEYS[3])
local n = tonumber(ARGV[3])
local entries = redis.call('XRANGE', KEYS[1], '-', ARGV[2], 'COUNT', n)
if #entries == 0 then return { 0, 1 } end
local moved = 0
for _, e in ipairs(entries) do
  if moved >= room then return { moved, 2 } end
  local args, fields = {}, e[2]
  for i = 1, #fields, 2 do
    local k = fields[i]
    if k ~= 'receiveCount' and k ~= 'sourceId' and k ~= 'deadAt' and k ~= 'firstReceive'
        and k ~= 'lastReceive' and k ~= 'lastError' then
      args[#args + 1] = k
      args[#args + 1] = fields[i + 1]
    end
  end
  if #args == 0 then args = { 'type', 's', 'body', '' } end -- XADD needs a field
  redis.call('XADD', KEYS[2], '*', unpack(args))
  redis.call('XDEL', KEYS[1], e[1])
  moved = moved + 1
end
if #entries < n then return { moved, 1 } end
return { moved, 0 }
