-- kv_getmany: type, payload and version of each value hash in KEYS.
local out = {}
for i = 1, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 't', 'v', 'ver')
  out[3 * i - 2], out[3 * i - 1], out[3 * i] = r[1], r[2], r[3]
end
return out
