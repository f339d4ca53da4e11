-- q_send: append messages to a queue's stream, or park them until due.
-- KEYS: stream, delayed zset, message counter
-- ARGV: time ms, stream maxlen, delay ms, then type and body for each message
local delay = tonumber(ARGV[3])
local ids = {}
for i = 4, #ARGV, 2 do
  if delay > 0 then
    local n = redis.call('INCR', KEYS[3])
    local id = 'delayed-' .. n
    -- member: id, type and body; unique thanks to the id
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + delay, id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
    ids[#ids + 1] = id
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
      'type', ARGV[i], 'body', ARGV[i + 1], 'time', ARGV[1])
  end
end
return ids
