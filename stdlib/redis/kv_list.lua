-- kv_list: one page of a namespace's keys by prefix, with their values.
-- KEYS: namespace index
-- ARGV: min and max, the ZRANGEBYLEX bounds of the page (the keys after the
--       cursor that start with the prefix: stdlib/args.lua's A.range, computed
--       there because string comparison here follows the locale), limit,
--       value hash key prefix (same hash tag as KEYS[1])
-- Returns {cursor (the page's last key) or false, items}.
local limit = tonumber(ARGV[3])
-- One key more than the page: whether the list goes on (see the end).
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, limit + 1)
local after = keys[limit + 1]
keys[limit + 1] = nil
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
-- A cursor only when a live key follows the page: a page that ends the list
-- has none (never a cursor to an empty page). A key after it whose value is
-- gone (expired) is forgotten and the next one looked at, a bounded number
-- of times; past that the cursor is given (the next page may then be empty).
local cursor = false
local looked = 0
while after do
  if redis.call('EXISTS', ARGV[4] .. after) == 1 or looked == 16 then
    cursor = keys[#keys]
    break
  end
  redis.call('ZREM', KEYS[1], after)
  looked = looked + 1
  after = redis.call('ZRANGEBYLEX', KEYS[1], '(' .. after, ARGV[2], 'LIMIT', 0, 1)[1]
end
return {cursor, items}
