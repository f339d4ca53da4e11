-- users_list: a page of users in id order after a cursor (an id, or '' from
-- the start): {next cursor or '', fields of user 1, fields of user 2, ...}.
-- KEYS[1] the login index; ARGV: base, cursor, count.
local base = ARGV[1]
local from = ARGV[2] == '' and '-' or '(' .. ARGV[2]
local n = tonumber(ARGV[3])
local ids = redis.call('ZRANGE', base .. 'ids', from, '+', 'BYLEX', 'LIMIT', 0, n + 1)
local out = {''}
for i = 1, math.min(n, #ids) do
  out[#out + 1] = redis.call('HGETALL', base .. 'u:' .. ids[i])
end
if #ids > n then out[1] = ids[n] end
return out
