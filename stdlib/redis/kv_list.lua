-- kv_list: one page of a namespace's keys by prefix, with their values.
-- KEYS: namespace index
-- ARGV: min and max, the ZRANGEBYLEX bounds of the page (the keys after the
--       cursor that start with the prefix: stdlib/args.lua's A.range, computed
--       there because string comparison here follows the locale), limit,
--       value hash key prefix (same hash tag as KEYS[1])
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
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
