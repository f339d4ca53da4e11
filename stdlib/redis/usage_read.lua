-- usage_read: the hourly usage hashes of a range (GET /_/api/usage).
-- KEYS: the index (zset "HOUR|FUNCTION" by HOUR)
-- ARGV: key prefix of the hashes (PREFIX"usage:h:"), first hour, last hour, function
--       ("" for all), the most hashes to read
-- Returns { hour, function, { field, value, ... }, ... } in hour order, or an error when
-- the range holds more than the most hashes.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[3])
local want, max = ARGV[4], tonumber(ARGV[5])
local out, n = {}, 0
for _, m in ipairs(members) do
  local bar = string.find(m, '|', 1, true)
  local hour, fn = string.sub(m, 1, bar - 1), string.sub(m, bar + 1)
  if want == '' or fn == want then
    n = n + 1
    if n > max then return redis.error_reply('too much usage in the range: narrow it (from/to, function)') end
    local h = redis.call('HGETALL', ARGV[1] .. hour .. ':' .. fn)
    if #h > 0 then
      out[#out + 1] = tonumber(hour)
      out[#out + 1] = fn
      out[#out + 1] = h
    end
  end
end
return out
