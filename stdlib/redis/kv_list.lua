-- kv_list: one page of a namespace's keys by prefix, with their values.
-- KEYS: namespace index
-- ARGV: prefix, cursor (the last key of the previous page, "" for the first),
--       limit, value hash key prefix (same hash tag as KEYS[1])
local min = ARGV[2] ~= '' and ('(' .. ARGV[2]) or ('[' .. ARGV[1])
local max = ARGV[1] ~= '' and ('[' .. ARGV[1] .. '\255') or '+'
local keys = redis.call('ZRANGEBYLEX', KEYS[1], min, max, 'LIMIT', 0, tonumber(ARGV[3]))
local items = {}
for _, k in ipairs(keys) do
  local r = redis.call('HMGET', ARGV[4] .. k, 't', 'v', 'ver')
  if r[1] then
    items[#items + 1] = k
    items[#items + 1] = r[1]
    items[#items + 1] = r[2]
    items[#items + 1] = r[3]
  else
    redis.call('ZREM', KEYS[1], k) -- expired: forget it
  end
end
local cursor = false
if #keys == tonumber(ARGV[3]) then cursor = keys[#keys] end
return {cursor, items}
