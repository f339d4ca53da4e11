-- crescent.queue: messages on Redis Streams.
--
--   local queue = require "crescent.queue"
--   queue.send(name, body, {delay=seconds}) -> message id | nil, err
--   queue.sendBatch(name, {bodies}, {delay=seconds}) -> { ids } | nil, err
--     (at most 500 bodies, 4 message limits = 1 MB together: "batch too large";
--     all or none: "queue full" when they do not all fit)
--
-- Bodies are strings or tables (sent as JSON). Each message becomes an entry
-- {type ("s" or "j"), body, time} of the queue's stream; a delayed one waits
-- in the queue's delayed set and is appended once due (its entry then also
-- carries the "delayed-N" id send returned). Consumers come with triggers.
--
-- Nothing accepted is dropped: a queue holds at most --queue-max-depth
-- messages (stream entries and delayed ones), and a send that would take it
-- past that fails whole with nil, "queue full" (checked in the same script
-- that appends). The stream is never capped; worker 0 trims only entries
-- every consumer group has acknowledged (stdlib/redis/q_trim.lua).
--
-- Queue names are 1 to 128 of letters, digits, '_', '.', ':' and '-'; a
-- body's JSON is bounded by the message limit as it is made. Platform rules:
-- see lua/sandbox.lua.
local P = ...
local A = P.args
local L = P.lib
local cmd, now = P.command("crescent.queue"), P.now
local q_send = P.script("q_send")
local type, error, unpack, floor = L.type, L.error, L.unpack, L.math.floor
local format, find = L.string.format, L.string.find
local max_depth = P.queue_max_depth
local max_body = P.queue_max_body
local max_batch = 4 * max_body -- bytes of one sendBatch's bodies together (1 MB by default)

local M = {}

local function check_name(fname, name)
  if type(name) ~= "string" or #name < 1 or #name > 128 or not find(name, "^[%w_.:%-]+$") then
    error(format("bad argument #1 to '%s' (queue name: 1 to 128 letters, digits, '_', '.', ':' or '-')", fname), 3)
  end
  if find(name, "^crescent%.") then
    -- the platform's (crescent.async: the asynchronous invocations, core/trigger/invoke/async.h)
    error(format("bad argument #1 to '%s' (queue names starting with 'crescent.' are the platform's)", fname), 3)
  end
end

local delay_msg = "delay must be 0 to 900 seconds"

-- Queues this state has registered in the queues set (the promoter's, the
-- trimmer's and the queues API's list), so a send pays the SADD once per
-- queue and state; bounded, as names are the caller's.
local registered, nregistered = {}, 0

-- delay in seconds
local function send(name, list, delay)
  delay = floor(delay * 1000 + 0.5)
  local tag = P.prefix .. "{q:" .. name .. "}:"
  -- Register the queue first, so a message is never forgotten by the chores.
  -- A delayed one always registers: it waits on the promoter alone.
  if delay > 0 or not registered[name] then
    local ok, err = cmd("SADD", P.prefix .. "queues", name)
    if not ok then return nil, err end
    if nregistered >= 1024 then registered, nregistered = {}, 0 end
    if not registered[name] then registered[name], nregistered = true, nregistered + 1 end
  end
  local r, err = q_send(3, tag .. "s", tag .. "d", tag .. "n", now(), max_depth, delay, unpack(list))
  if not r then return nil, err end
  if r == 0 then return nil, "queue full" end
  return r
end

function M.send(name, body, opts)
  check_name("queue.send", name)
  local t, s = A.encode("queue.send", 2, body, false, "string or table body", max_body)
  opts = A.opts("queue.send", 3, opts)
  local delay = A.number("queue.send", 3, opts.delay, 0, 0, 900, false, delay_msg)
  if not t or #s > max_body then return nil, "message too large" end
  local ids, err = send(name, { t, s }, delay)
  if not ids then return nil, err end
  return ids[1]
end

function M.sendBatch(name, bodies, opts)
  check_name("queue.sendBatch", name)
  if type(bodies) ~= "table" then error("bad argument #2 to 'queue.sendBatch' (table of bodies expected)", 2) end
  local n = #bodies
  if n == 0 then return {} end
  if n > 500 then error("bad argument #2 to 'queue.sendBatch' (at most 500 messages)", 2) end
  opts = A.opts("queue.sendBatch", 3, opts)
  local delay = A.number("queue.sendBatch", 3, opts.delay, 0, 0, 900, false, delay_msg)
  local list, total = {}, 0
  for i = 1, n do
    local t, s = A.encode("queue.sendBatch", 2, bodies[i], false, "string or table body", max_body)
    if not t or #s > max_body then return nil, "message too large" end
    total = total + #s
    -- What one call may have in flight outside the function's memory.
    if total > max_batch then return nil, "batch too large" end
    list[2 * i - 1], list[2 * i] = t, s
  end
  return send(name, list, delay)
end

return M
