-- st_put: store one object and append its event, atomically.
-- KEYS: object hash, bucket index, bucket events stream
-- ARGV: key, data, content type, metadata (JSON), size, etag, time ms, stream maxlen, bucket
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'ct', ARGV[3], 'meta', ARGV[4],
  'size', ARGV[5], 'etag', ARGV[6], 'mtime', ARGV[7])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*',
  'event', 'put', 'bucket', ARGV[9], 'key', ARGV[1], 'size', ARGV[5], 'etag', ARGV[6],
  'contentType', ARGV[3], 'time', ARGV[7])
return 1
