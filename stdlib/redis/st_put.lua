-- st_put: store one object and append its event, atomically; or, when its
-- conditions do not hold, nothing.
-- KEYS: object hash, bucket index, bucket events stream
-- ARGV: key, data, content type, metadata (JSON), size, etag, time ms, stream maxlen, bucket,
--       if-match, if-none-match (each "": none, "*": any object, or etags joined by "\n")
-- Returns 1 (stored) or 0 (a condition failed).
if ARGV[10] ~= '' or ARGV[11] ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'etag')
  -- Does the stored object match the condition's etags?
  local function matches(list)
    if not cur then return false end
    if list == '*' then return true end
    return string.find('\n' .. list .. '\n', '\n' .. cur .. '\n', 1, true) ~= nil
  end
  if ARGV[10] ~= '' and not matches(ARGV[10]) then return 0 end
  if ARGV[11] ~= '' and matches(ARGV[11]) then return 0 end
end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'ct', ARGV[3], 'meta', ARGV[4],
  'size', ARGV[5], 'etag', ARGV[6], 'mtime', ARGV[7])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*',
  'event', 'put', 'bucket', ARGV[9], 'key', ARGV[1], 'size', ARGV[5], 'etag', ARGV[6],
  'contentType', ARGV[3], 'time', ARGV[7])
return 1
