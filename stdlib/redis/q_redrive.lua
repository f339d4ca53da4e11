-- q_redrive: move one batch of a dead-letter queue's messages back to where
-- they died (the queues API's redrive, as SQS's DLQ redrive).
-- KEYS: dead-letter stream, target stream, target delayed zset (a queue's;
--       unused for records)
-- ARGV: mode ("q": a queue's messages; "storage" or "kv": change records of
--       a bucket's events or a namespace's changes), max depth (q) or the
--       stream's cap (records, MAXLEN ~ as the writers'), last id to move
--       (inclusive), count, cursor (the last id looked at, exclusive; "" from
--       the start)
-- Returns { moved, state, cursor, skipped }: state 0 more may follow, 1
-- nothing is left up to the last id, 2 the queue is full (its depth bound, as
-- q_send counts it: stream entries + delayed ones).
--
-- A queue's message goes back with its own fields (type, body, time: when it
-- was first sent; a delayed one's id) and without the dead letter's
-- receiveCount, sourceId, deadAt, group, firstReceive, lastReceive and
-- lastError; to every group of the queue, as a message sent again.
--
-- A change record (q_claim wrapped it: type "j", body its fields as a JSON
-- object of strings) goes back to its stream with those fields as they were
-- (time: when it was first written) plus "group", the consumer group that
-- dead-lettered it: the other groups of the stream (other functions on the
-- same bucket or namespace) leave it out unseen (batch.c), so only the
-- function it failed in sees it again. A dead letter that is not such a
-- record of the mode's kind, or whose group no longer exists on the stream,
-- stays where it is and counts as skipped (the cursor moves past it).
--
-- Each one leaves the dead-letter stream (XDEL) in the same step as it is
-- appended, with a new entry id, so it is never in both nor in neither. The
-- last id bounds a redrive to what was dead when it started.
local mode, n = ARGV[1], tonumber(ARGV[4])
local from = ARGV[5] == '' and '-' or '(' .. ARGV[5]
local entries = redis.call('XRANGE', KEYS[1], from, ARGV[3], 'COUNT', n)
if #entries == 0 then return { 0, 1, ARGV[5], 0 } end
local dead_fields = { receiveCount = true, sourceId = true, deadAt = true, group = true, firstReceive = true,
                      lastReceive = true, lastError = true }
local moved, skipped, cursor = 0, 0, ARGV[5]

if mode == 'q' then
  local room = tonumber(ARGV[2]) - redis.call('XLEN', KEYS[2]) - redis.call('ZCARD', KEYS[3])
  for _, e in ipairs(entries) do
    if moved >= room then return { moved, 2, cursor, 0 } end
    local args, fields = {}, e[2]
    for i = 1, #fields, 2 do
      if not dead_fields[fields[i]] then
        args[#args + 1] = fields[i]
        args[#args + 1] = fields[i + 1]
      end
    end
    if #args == 0 then args = { 'type', 's', 'body', '' } end -- XADD needs a field
    redis.call('XADD', KEYS[2], '*', unpack(args))
    redis.call('XDEL', KEYS[1], e[1])
    moved = moved + 1
    cursor = e[1]
  end
else
  local groups = {}
  if redis.call('EXISTS', KEYS[2]) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
      for i = 1, #g, 2 do
        if g[i] == 'name' then groups[g[i + 1]] = true end
      end
    end
  end
  for _, e in ipairs(entries) do
    cursor = e[1]
    local f, fields = {}, e[2]
    for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
    local ok, rec = pcall(cjson.decode, f.body or '')
    local good = ok and type(rec) == 'table' and type(rec.key) == 'string'
    if good then
      for k, v in pairs(rec) do
        if type(k) ~= 'string' or type(v) ~= 'string' then good = false end
      end
    end
    if good and mode == 'storage' then good = rec.event == 'put' or rec.event == 'delete' end
    if good and mode == 'kv' then good = type(rec.op) == 'string' end
    local group = f.group or (good and rec.group) or nil
    if good and group and not groups[group] then good = false end
    if good then
      local args = { 'MAXLEN', '~', ARGV[2], '*' }
      for k, v in pairs(rec) do
        if k ~= 'group' then
          args[#args + 1] = k
          args[#args + 1] = v
        end
      end
      if group then
        args[#args + 1] = 'group'
        args[#args + 1] = group
      end
      redis.call('XADD', KEYS[2], unpack(args))
      redis.call('XDEL', KEYS[1], e[1])
      moved = moved + 1
    else
      skipped = skipped + 1
    end
  end
end
if #entries < n then return { moved, 1, cursor, skipped } end
return { moved, 0, cursor, skipped }
