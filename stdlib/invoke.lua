-- crescent.invoke: calling other functions.
--
--   local invoke = require "crescent.invoke"
--   invoke.call(name, event)           -> result | nil, err
--   invoke.async(name, event, {delay=}) -> invocationId | nil, err
--
-- call runs the function now, in this worker, with an instance of its own,
-- its own limits and metering (trigger "invoke", this invocation's request
-- id as its parentRequestId), its timeout capped by this invocation's
-- remaining time; this invocation waits (other work goes on meanwhile).
-- Errors: "function not found", "call depth exceeded" (8 nested calls),
-- "timeout", "throttled", "error: <message>" (core/trigger/invoke/fncall.h).
-- async queues the invocation durably and returns at once; it runs at least
-- once, with retries (core/trigger/invoke/async.h); "queue full" when the
-- asynchronous queue is at its depth bound.
--
-- The event and the result cross as JSON (at most 6 MB each; 256 KB for an
-- asynchronous event): what JSON
-- cannot hold (functions, cycles, NaN) is refused with an error here, and
-- a result the callee cannot send back is "error: the result cannot be sent
-- back: ...". Platform rules: see lua/sandbox.lua.
local P = ...
local A = P.args
local L = P.lib
local call_p, async_p = P.invoke_call, P.invoke_async
local encode, decode = L.json_encode, L.json_decode
local type, find = L.type, L.string.find
local max_payload = 6 * 1024 * 1024 -- invoke.call's event and result
local max_async = 256 * 1024         -- invoke.async's event (a queue message's limit)

local M = {}

local function check_name(fname, name)
  if type(name) ~= "string" or #name < 1 or #name > 256 or find(name, "[%z\1-\31\127]") then
    A.bad(fname, 1, "function name expected (1 to 256 bytes, no control characters)", 1)
  end
end

local function encode_event(fname, event, max)
  if event == nil then return "" end
  local s, err = encode(event, max)
  if s then return s end
  if A.too_large(err) then return nil end
  A.bad(fname, 2, "event cannot be sent as JSON: " .. (type(err) == "string" and err or "?"), 1)
end

function M.call(name, event)
  check_name("invoke.call", name)
  local ev = encode_event("invoke.call", event, max_payload)
  if not ev then return nil, "event too large" end
  local text, err = call_p(name, ev)
  if not text then return nil, err end
  if text == "" then return nil end
  local v = decode(text)
  if v == nil then return nil, "error: the result could not be read" end
  return v
end

function M.async(name, event, opts)
  check_name("invoke.async", name)
  local ev = encode_event("invoke.async", event, max_async)
  opts = A.opts("invoke.async", 3, opts)
  local delay = A.number("invoke.async", 3, opts.delay, 0, 0, 900, false, "delay must be 0 to 900 seconds")
  if not ev then return nil, "event too large" end
  return async_p(name, ev, delay)
end

return M
