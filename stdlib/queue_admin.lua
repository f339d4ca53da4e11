-- crescent.queue_admin: the operations behind the queues API (lua/queues_api.lua).
--
--   local qa = require "crescent.queue_admin"   -- platform functions only
--   qa.names()              -> { name, ... } (sorted) | nil, err
--   qa.stats(name)          -> { exists, depth, delayed, oldest, groups } | nil, err
--   qa.peek(name, limit)    -> { { id, fields = { k = v } }, ... } | nil, err
--   qa.redrive(name)        -> moved, err ("queue full", "redis unavailable", ...), skipped
--   qa.source_of(name)      -> "storage", bucket | "kv", namespace | nil (a queue)
--   qa.name_ok(name)        -> whether name is a queue name (or one's ".dlq")
--
-- Only the platform's own functions can require it (modules.c refuses
-- others): it reads every queue and moves messages between them, which no
-- user function may do.
--
-- names(): the queues of the prefix's "queues" set (every send registers
-- its queue there), and the dead-letter queue NAME.dlq of each whose stream
-- exists (dead letters are written by the trigger's q_claim, which does not
-- register them). stats(): stdlib/redis/q_stats.lua's reply as a table:
-- groups = { { name, pending, lastDeliveredId, lag (nil: unknown),
-- consumers = { { name, pending, idle } } } }. peek(): the first `limit`
-- entries of the stream (acknowledged ones not yet trimmed included), not
-- consumed. redrive(): q_redrive.lua in batches of 100 until NAME.dlq holds
-- nothing older than when it started, or NAME is full (its depth bound).
-- "storage.BUCKET" and "kv.NAMESPACE" (the dead-letter queues
-- storage.BUCKET.dlq and kv.NAMESPACE.dlq of storage and kv triggers) are
-- redriven into the bucket's events stream or the namespace's changes, each
-- record to the group of the function it died in (q_redrive's records mode,
-- capped like the writers' appends); what is not such a record stays
-- (skipped).
local P = ...
local L = P.lib
local cmd, now = P.command("crescent.queue"), P.now
local q_stats, q_redrive = P.script("q_stats"), P.script("q_redrive")
local type, find, floor = L.type, L.string.find, L.math.floor
local max_depth, stream_maxlen = P.queue_max_depth, P.stream_maxlen

local M = {}

local function key(name, suffix) return P.prefix .. "{q:" .. name .. "}:" .. suffix end

-- A queue's name as queue.send takes it (1-128), or a dead-letter queue's.
function M.name_ok(name)
  return type(name) == "string" and #name >= 1 and #name <= 132 and find(name, "^[%w_.:%-]+$") ~= nil
end

local function sort(t)
  -- insertion sort: the stdlib has no table.sort (and names are few)
  for i = 2, #t do
    local v, j = t[i], i - 1
    while j >= 1 and t[j] > v do
      t[j + 1] = t[j]
      j = j - 1
    end
    t[j + 1] = v
  end
  return t
end

function M.names()
  local set, err = cmd("SMEMBERS", P.prefix .. "queues")
  if not set then return nil, err end
  local seen, out = {}, {}
  for i = 1, #set do
    local n = set[i]
    if M.name_ok(n) and not seen[n] then
      seen[n] = true
      out[#out + 1] = n
    end
  end
  for i = 1, #out do
    local d = out[i] .. ".dlq"
    if not seen[d] and #d <= 132 then
      local e, err2 = cmd("EXISTS", key(d, "s"))
      if not e then return nil, err2 end
      if e == 1 then
        seen[d] = true
        out[#out + 1] = d
      end
    end
  end
  return sort(out)
end

function M.stats(name)
  local r, err = q_stats(2, key(name, "s"), key(name, "d"))
  if not r then return nil, err end
  local groups = {}
  for i = 1, #r[5] do
    local g = r[5][i]
    local consumers = {}
    for j = 1, #g[5] do
      local c = g[5][j]
      consumers[j] = { name = c[1], pending = c[2], idle = c[3] }
    end
    groups[i] = { name = g[1], pending = g[2], lastDeliveredId = g[3], lag = g[4] >= 0 and g[4] or nil,
                  consumers = consumers }
  end
  return { exists = r[1] == 1, depth = r[2], delayed = r[3], oldest = r[4] or nil, groups = groups }
end

function M.peek(name, limit)
  local r, err = cmd("XRANGE", key(name, "s"), "-", "+", "COUNT", floor(limit))
  if not r then return nil, err end
  local out = {}
  for i = 1, #r do
    local fields, flat = {}, r[i][2]
    for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
    out[i] = { id = r[i][1], fields = fields }
  end
  return out
end

-- A bucket name as crescent.storage takes it; a namespace as crescent.kv does.
local function bucket_ok(b) return #b >= 1 and #b <= 63 and find(b, "^[a-z0-9][a-z0-9.%-]*$") ~= nil end
local function namespace_ok(ns) return #ns >= 1 and #ns <= 64 and find(ns, "^[%w_.%-]+$") ~= nil end

function M.source_of(name)
  local _, _, b = find(name, "^storage%.(.+)$")
  if b and bucket_ok(b) then return "storage", b end
  local _, _, ns = find(name, "^kv%.(.+)$")
  if ns and namespace_ok(ns) then return "kv", ns end
  return nil
end

function M.redrive(name)
  local dlq = key(name .. ".dlq", "s")
  local last, err = cmd("XREVRANGE", dlq, "+", "-", "COUNT", 1)
  if not last then return 0, err, 0 end
  if #last == 0 then return 0, nil, 0 end
  local mode, source = M.source_of(name)
  local target, bound = nil, max_depth
  if mode == "storage" then
    target, bound = P.prefix .. "{st:" .. source .. "}:events", stream_maxlen
  elseif mode == "kv" then
    target, bound = P.prefix .. "{kv:" .. source .. "}:changes", stream_maxlen
  else
    mode, target = "q", key(name, "s")
    -- Register the queue first, as send does, so its messages are never
    -- forgotten by the promoter, the trimmer and this API.
    local ok, err2 = cmd("SADD", P.prefix .. "queues", name)
    if not ok then return 0, err2, 0 end
  end
  local moved, skipped, cursor = 0, 0, ""
  while true do
    local r, err3 = q_redrive(3, dlq, target, key(name, "d"), mode, bound, last[1][1], 100, cursor)
    if not r then return moved, err3, skipped end
    moved, skipped, cursor = moved + r[1], skipped + r[4], r[3]
    if r[2] == 2 then return moved, "queue full", skipped end
    if r[2] == 1 then return moved, nil, skipped end
  end
end

M.now = now
return M
