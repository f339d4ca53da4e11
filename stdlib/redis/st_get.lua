-- st_get: a part of one object, with its info, in one consistent read.
-- KEYS: object hash
-- ARGV: offset (from 0; negative: that many bytes from the end), length ("": to the end)
-- Returns false (no such object) or {data, size, etag, ct, mtime, meta, offset}: data is
-- the part, clamped to the object ("" when it starts past the end), offset where it starts.
-- Only the part goes back to the caller: the worker never holds the whole object for it.
local r = redis.call('HMGET', KEYS[1], 'size', 'etag', 'ct', 'mtime', 'meta')
if not r[1] then return false end
local size = tonumber(r[1])
local first = tonumber(ARGV[1])
if first < 0 then first = math.max(size + first, 0) end
local n = size - first
if ARGV[2] ~= '' then n = math.min(n, tonumber(ARGV[2])) end
local data = ''
if n > 0 then data = string.sub(redis.call('HGET', KEYS[1], 'data'), first + 1, first + n) end
return {data, r[1], r[2], r[3], r[4], r[5], first}
