-- q_promote: move due delayed messages into the queue's stream.
-- KEYS: delayed zset, stream
-- ARGV: time ms
-- No cap on the stream: the messages were counted in the queue's depth
-- when sent (q_send), and moving them does not change it.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, m in ipairs(due) do
  local a = string.find(m, '\n', 1, true)
  local b = string.find(m, '\n', a + 1, true)
  redis.call('XADD', KEYS[2], '*',
    'type', string.sub(m, a + 1, b - 1), 'body', string.sub(m, b + 1), 'time', ARGV[1],
    'id', string.sub(m, 1, a - 1))
  redis.call('ZREM', KEYS[1], m)
end
return #due
