-- queues_api: the platform function behind /_/api/queues, what an operator
-- sees of crescent.queue's queues and how a dead-letter queue is redriven.
--
--   GET  /_/api/queues                        -> {"queues":[{name, depth, delayed,
--        inFlight, oldestSentAt, oldestAgeMs, dlqDepth, groups:[{name, pending,
--        lastDeliveredId, lag, consumers:[{name, pending, idleMs}]}]}, ...]}
--   GET  /_/api/queues/{name}/messages?limit=N -> {"queue", "messages":[{id, body,
--        sentAt[, delayedId][, receiveCount, sourceId, deadAt[, group]
--        [, firstReceive][, lastReceive][, lastError]]}]} (peek: 1-100, default
--        10; nothing is consumed)
--   POST /_/api/queues/{name}/redrive         -> {"moved":N}: every message of
--        {name}.dlq back to {name}; 409 {"error":"queue full","moved":N} when the
--        queue's depth bound stopped it (what moved stays moved). For
--        storage.BUCKET and kv.NAMESPACE -> {"moved":N,"skipped":M}: the records
--        of storage.BUCKET.dlq / kv.NAMESPACE.dlq back into the bucket's events
--        or the namespace's changes, each for the function it died in; M left
--        in the dead-letter queue (not such a record, or its function's group
--        is gone)
--
-- The numbers (crescent.queue_admin, stdlib/redis/q_stats.lua):
--   depth     the stream's entries (XLEN): what the depth bound counts, so
--             acknowledged entries count until the trimmer removes them
--             (about once a second, and only in a queue with a consumer group)
--   delayed   messages sent with a delay, not yet due
--   inFlight  entries handed out and not acknowledged, over every group
--   oldestSentAt / oldestAgeMs  the first entry some group still needs (or,
--             without groups, the first entry): when it was sent, how long ago;
--             null when every group is done with every entry
--   dlqDepth  the entries of {name}.dlq (0 when it has none)
--   lag       Redis' count of entries not yet delivered to the group (null
--             when Redis cannot tell)
-- Queues are those every send registers (cr:queues), plus each one's .dlq
-- once it has dead letters, sorted by name.
--
-- A message's body is the JSON value a table was sent as (type "j"), as it
-- was sent, or the string. A peek stops early past 4 MB of bodies.
--
-- Access: the gateway applies the admin API's rule to every route under
-- /_/api/ (admin token, or loopback without one) before this runs.
--
-- The objects are written in a fixed key order (documented above, and what
-- the tests compare), not through json.encode of a table, whose key order is
-- the hash table's. This function's state runs no user code, so its globals
-- are the pristine ones.
local qa = require "crescent.queue_admin"

local concat, encode, decode = table.concat, json.encode, json.decode
local RAW = {}

-- A value already in JSON text.
local function raw(text) return setmetatable({ text }, RAW) end

local function val(v)
  if v == nil then return "null" end
  if getmetatable(v) == RAW then return v[1] end
  return encode(v)
end

-- obj(k1, v1, k2, v2, ...): an object with those keys, in that order.
local function obj(...)
  local parts = {}
  for i = 1, select("#", ...), 2 do
    local k, v = select(i, ...)
    parts[#parts + 1] = encode(k) .. ":" .. val(v)
  end
  return raw("{" .. concat(parts, ",") .. "}")
end

local function arr(list)
  local parts = {}
  for i = 1, #list do parts[i] = val(list[i]) end
  return raw("[" .. concat(parts, ",") .. "]")
end

local function respond(status, o)
  return { status = status, headers = { ["content-type"] = "application/json", ["cache-control"] = "no-store" },
           body = o[1] }
end

local function fail(status, msg) return respond(status, obj("error", msg)) end

local function queue_entry(name, s, dlq_depth, now)
  local groups = {}
  local in_flight = 0
  for i, g in ipairs(s.groups) do
    in_flight = in_flight + g.pending
    local consumers = {}
    for j, c in ipairs(g.consumers) do
      consumers[j] = obj("name", c.name, "pending", c.pending, "idleMs", c.idle)
    end
    groups[i] = obj("name", g.name, "pending", g.pending, "lastDeliveredId", g.lastDeliveredId, "lag", g.lag,
                    "consumers", arr(consumers))
  end
  local age = s.oldest and math.max(0, now - s.oldest) or nil
  return obj("name", name, "depth", s.depth, "delayed", s.delayed, "inFlight", in_flight,
             "oldestSentAt", s.oldest, "oldestAgeMs", age, "dlqDepth", dlq_depth, "groups", arr(groups))
end

local function list()
  local names, err = qa.names()
  if not names then return fail(503, err) end
  local stats, by_name = {}, {}
  for i, name in ipairs(names) do
    local s, err2 = qa.stats(name)
    if not s then return fail(503, err2) end
    stats[i], by_name[name] = s, s
  end
  local now = qa.now()
  local out = {}
  for i, name in ipairs(names) do
    local dlq = by_name[name .. ".dlq"] -- listed whenever its stream exists
    local dlq_depth = dlq and dlq.depth or 0
    out[i] = queue_entry(name, stats[i], dlq_depth, now)
  end
  return respond(200, obj("queues", arr(out)))
end

local MAX_PEEK_BYTES = 4 * 1024 * 1024

local function peek(name, q)
  local limit = 10
  if q.limit ~= nil then
    limit = tonumber(q.limit)
    if not limit or limit < 1 or limit > 100 or limit % 1 ~= 0 then
      return fail(400, "bad limit: an integer from 1 to 100")
    end
  end
  local entries, err = qa.peek(name, limit)
  if not entries then return fail(503, err) end
  local out, bytes = {}, 0
  for i, e in ipairs(entries) do
    local f = e.fields
    local body = f.body
    bytes = bytes + #(body or "")
    if i > 1 and bytes > MAX_PEEK_BYTES then break end
    if f.type == "j" and body and pcall(decode, body) then body = raw(body) end
    local sent = tonumber(f.time)
    local m = { "id", e.id, "body", body, "sentAt", sent }
    if f.id then
      m[#m + 1], m[#m + 2] = "delayedId", f.id
    end
    if f.sourceId then
      m[#m + 1], m[#m + 2] = "receiveCount", tonumber(f.receiveCount)
      m[#m + 1], m[#m + 2] = "sourceId", f.sourceId
      m[#m + 1], m[#m + 2] = "deadAt", tonumber(f.deadAt)
      if f.group then m[#m + 1], m[#m + 2] = "group", f.group end
      -- Kept by the trigger for each failed delivery that ended (q_claim): absent when none did.
      if f.firstReceive then m[#m + 1], m[#m + 2] = "firstReceive", tonumber(f.firstReceive) end
      if f.lastReceive then m[#m + 1], m[#m + 2] = "lastReceive", tonumber(f.lastReceive) end
      if f.lastError then m[#m + 1], m[#m + 2] = "lastError", f.lastError end
    end
    out[#out + 1] = obj(unpack(m, 1, #m))
  end
  return respond(200, obj("queue", name, "messages", arr(out)))
end

local function redrive(name)
  if #name > 128 then return fail(400, "bad queue name: 1 to 128 letters, digits, '_', '.', ':' or '-'") end
  local moved, err, skipped = qa.redrive(name)
  if err == "queue full" then return respond(409, obj("error", err, "moved", moved)) end
  if qa.source_of(name) then
    if err then return respond(503, obj("error", err, "moved", moved, "skipped", skipped)) end
    return respond(200, obj("moved", moved, "skipped", skipped))
  end
  if err then return respond(503, obj("error", err, "moved", moved)) end
  return respond(200, obj("moved", moved))
end

return {
  routes = { "GET /_/api/queues", "GET /_/api/queues/:name/messages", "POST /_/api/queues/:name/redrive" },
  timeout = 60,
  memory = 256,
  handler = function(event)
    local name = event.params.name
    if name == nil then return list() end
    if not qa.name_ok(name) then
      return fail(400, "bad queue name: 1 to 128 letters, digits, '_', '.', ':' or '-' (and a .dlq suffix)")
    end
    if event.method == "POST" then return redrive(name) end
    return peek(name, event.query)
  end,
}
