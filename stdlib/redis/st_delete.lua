-- st_delete: remove one object; an event if it existed.
-- KEYS: object hash, bucket index, bucket events stream
-- ARGV: key, time ms, stream maxlen, bucket
local info = redis.call('HMGET', KEYS[1], 'size', 'etag', 'ct')
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if existed == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
    'event', 'delete', 'bucket', ARGV[4], 'key', ARGV[1], 'size', info[1], 'etag', info[2],
    'contentType', info[3], 'time', ARGV[2])
end
return existed
