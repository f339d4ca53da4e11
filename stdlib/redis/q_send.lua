-- q_send: append messages to a queue's stream, or park them until due.
-- KEYS: stream, delayed zset, message counter
-- ARGV: time ms, max depth, delay ms, then type and body for each message
-- Returns the ids, or 0 when the messages would take the queue past its
-- depth (stream entries + delayed ones): then nothing is written. Streams
-- are never capped here: an accepted message stays until every consumer
-- group has acknowledged it (q_trim).
local delay = tonumber(ARGV[3])
local n = (#ARGV - 3) / 2
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) + n > tonumber(ARGV[2]) then return 0 end
local ids = {}
for i = 4, #ARGV, 2 do
  if delay > 0 then
    local c = redis.call('INCR', KEYS[3])
    local id = 'delayed-' .. c
    -- member: id, type and body; unique thanks to the id
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + delay, id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
    ids[#ids + 1] = id
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'type', ARGV[i], 'body', ARGV[i + 1], 'time', ARGV[1])
  end
end
return ids
