-- crescent.queue: messages on Redis Streams.
--
--   local queue = require "crescent.queue"
--   queue.send(name, body, {delay=seconds}) -> message id | nil, err
--   queue.sendBatch(name, {bodies}, {delay=seconds}) -> { ids } | nil, err
--
-- Bodies are strings or tables (sent as JSON). Each message becomes an entry
-- {type ("s" or "j"), body, time} of the queue's stream; a delayed one waits
-- in the queue's delayed set and is appended once due (its entry then also
-- carries the "delayed-N" id send returned). Consumers come with triggers.
local P = ...
local json = P.json
local call, cmd, now = P.eval, P.cmd, P.now
local type, tostring, error, pcall, unpack = type, tostring, error, pcall, unpack
local maxlen = tostring(P.stream_maxlen)

local M = {}

local function check_name(fname, name)
  if type(name) ~= "string" or #name < 1 or #name > 128 or not name:match("^[%w_.:%-]+$") then
    error(("bad argument #1 to '%s' (queue name: 1 to 128 letters, digits, '_', '.', ':' or '-')"):format(fname), 3)
  end
end

local function delay_ms(fname, opts, n)
  if opts == nil then return 0 end
  if type(opts) ~= "table" then error(("bad argument #%d to '%s' (table of options expected)"):format(n, fname), 3) end
  local d = opts.delay
  if d == nil then return 0 end
  if type(d) ~= "number" or d < 0 or d > 15 * 60 then
    error(("bad argument #%d to '%s' (delay must be 0 to 900 seconds)"):format(n, fname), 3)
  end
  return math.floor(d * 1000 + 0.5)
end

local function encode(fname, body, n)
  if type(body) == "string" then return "s", body end
  if type(body) == "table" then
    local ok, s = pcall(json.encode, body)
    if not ok then error(("bad argument #%d to '%s' (%s)"):format(n, fname, s), 3) end
    return "j", s
  end
  error(("bad argument #%d to '%s' (string or table body expected, got %s)"):format(n, fname, type(body)), 3)
end

local function send(name, list, delay)
  local tag = P.prefix .. "{q:" .. name .. "}:"
  if delay > 0 then
    -- Register the queue for the promoter first, so a parked message is never forgotten.
    local ok, err = cmd("SADD", P.prefix .. "queues", name)
    if not ok then return nil, err end
  end
  local r, err = call("q_send", 3, tag .. "s", tag .. "d", tag .. "n", tostring(now()), maxlen,
    tostring(delay), unpack(list))
  if not r then return nil, err end
  return r
end

function M.send(name, body, opts)
  check_name("queue.send", name)
  local t, s = encode("queue.send", body, 2)
  local delay = delay_ms("queue.send", opts, 3)
  if #s > P.queue_max_body then return nil, "message too large" end
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
  local delay = delay_ms("queue.sendBatch", opts, 3)
  local list = {}
  for i = 1, n do
    local t, s = encode("queue.sendBatch", bodies[i], 2)
    if #s > P.queue_max_body then return nil, "message too large" end
    list[2 * i - 1], list[2 * i] = t, s
  end
  return send(name, list, delay)
end

return M
