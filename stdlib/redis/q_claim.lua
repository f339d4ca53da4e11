-- q_claim: hand out again the records of a queue whose visibility ran out,
-- and move those delivered maxReceives times to the dead-letter queue.
-- KEYS: stream, dead-letter stream, the group's failure bookkeeping (a hash)
-- ARGV: group, consumer, min idle ms, count, maxReceives, time ms, cursor,
--       wrap ("1": the stream holds change records, not messages)
-- Returns { next cursor, { { id, fields, receiveCount }, ... }, records moved,
-- lag, oldest age, pending, dead-letter length }: lag is the group's (XINFO GROUPS: records not yet given
-- to it), -1 when Redis does not know it (before 7.0, or after some
-- deletions); oldest age (ms, as of ARGV[6]) is how long ago the oldest
-- record the group still needs entered the stream (its id's time): its
-- oldest pending one (delivered, not acknowledged: XPENDING's smallest id),
-- or with none pending the first one after its last-delivered id; 0 when it
-- needs none. (q_trim and q_stats use the same rule over every group.)
-- The claim counts as a delivery (XAUTOCLAIM adds one to the count), so a
-- record whose count passes maxReceives was delivered maxReceives times: it
-- goes to the dead-letter stream, with the same fields plus receiveCount,
-- sourceId, deadAt and group (ARGV[1]: whose deliveries these were, for a
-- redrive to give it back to that group only), and is acknowledged here, in
-- one step. The consumer
-- keeps, for each failed delivery, "<id>:f" (first receive, set once), ":l"
-- (last receive) and ":e" (last error) in KEYS[3]: they become
-- firstReceive, lastReceive and lastError (each only when kept) and are
-- deleted, in the same step. A change
-- record (storage, kv) becomes a message there: type "j", body its fields
-- as a JSON object of strings, time its time.
-- A count of 0 claims nothing (the consumer holds no place: it may not take
-- records) and only measures: the cursor comes back as it was.
local r = { ARGV[7], {} }
if ARGV[4] ~= '0' then
  r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[7], 'COUNT', ARGV[4])
end
local max = tonumber(ARGV[5])
local out, moved = {}, 0
for _, e in ipairs(r[2]) do
  local id, fields = e[1], e[2]
  if not fields then
    redis.call('XACK', KEYS[1], ARGV[1], id) -- the entry is gone (Redis 6.2 still lists it)
    redis.call('HDEL', KEYS[3], id .. ':f', id .. ':l', id .. ':e')
  else
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local count = p[1] and p[1][4] or 1
    if count > max then
      local args = {}
      if ARGV[8] == '1' then
        local rec, t = {}, ''
        for i = 1, #fields, 2 do
          rec[fields[i]] = fields[i + 1]
          if fields[i] == 'time' then t = fields[i + 1] end
        end
        args = { 'type', 'j', 'body', cjson.encode(rec), 'time', t }
      else
        for i = 1, #fields, 2 do
          local k = fields[i]
          if k ~= 'receiveCount' and k ~= 'sourceId' and k ~= 'deadAt' and k ~= 'group'
              and k ~= 'firstReceive' and k ~= 'lastReceive' and k ~= 'lastError' then
            args[#args + 1] = k
            args[#args + 1] = fields[i + 1]
          end
        end
      end
      args[#args + 1] = 'receiveCount'
      args[#args + 1] = count - 1
      args[#args + 1] = 'sourceId'
      args[#args + 1] = id
      args[#args + 1] = 'deadAt'
      args[#args + 1] = ARGV[6]
      args[#args + 1] = 'group'
      args[#args + 1] = ARGV[1]
      local book = redis.call('HMGET', KEYS[3], id .. ':f', id .. ':l', id .. ':e')
      local names = { 'firstReceive', 'lastReceive', 'lastError' }
      for i = 1, 3 do
        if book[i] then
          args[#args + 1] = names[i]
          args[#args + 1] = book[i]
        end
      end
      redis.call('HDEL', KEYS[3], id .. ':f', id .. ':l', id .. ':e')
      redis.call('XADD', KEYS[2], '*', unpack(args))
      redis.call('XACK', KEYS[1], ARGV[1], id)
      moved = moved + 1
    else
      out[#out + 1] = { id, fields, count }
    end
  end
end
local lag, last = -1, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, l, d
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'lag' then l = g[i + 1]
    elseif g[i] == 'last-delivered-id' then d = g[i + 1] end
  end
  if name == ARGV[1] then
    if type(l) == 'number' then lag = l end
    last = d
    break
  end
end

-- An id's milliseconds and sequence.
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end

local oldest
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
if p[1] > 0 then
  oldest = parse(p[2])
elseif last and lag ~= 0 then
  local ms, seq = parse(last)
  local e = redis.call('XRANGE', KEYS[1], string.format('%.0f-%.0f', ms, seq + 1), '+', 'COUNT', 1)[1]
  if e then oldest = parse(e[1]) end
end
local age = 0
if oldest then age = math.max(0, tonumber(ARGV[6]) - oldest) end
-- For the meters: records pending (delivered, not acknowledged) and the dead-letter queue's length.
return { r[1], out, moved, lag, age, p[1], redis.call('XLEN', KEYS[2]) }
