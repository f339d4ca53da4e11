-- The argument checks and value encoding the crescent.* modules share
-- (modules.c loads this once per state, as P.args; users cannot reach it).
--
-- Errors read "bad argument #n to 'kv.put' (...)" and point at the user's
-- line: call these from the module function the user called, and not as a
-- tail call (`return A.x(...)`), which would drop a level.
--
-- Platform rule (see lua/sandbox.lua): no global, no string method call
-- (s:match goes through the user-mutable string table), no library lookup at
-- call time: everything is an upvalue from P.lib, captured at boot. This
-- chunk's environment raises on any global access.
local P = ...
local L = P.lib
local encode_json = L.json_encode
local type, error = L.type, L.error
local format, find, byte, char, sub = L.string.format, L.string.find, L.string.byte, L.string.char, L.string.sub
local utf8 = P.utf8

local A = {}

local function message(fname, n, msg)
  return format("bad argument #%d to '%s' (%s)", n, fname, msg)
end

-- From a module function: level 3 is its caller (depth: levels of the
-- module's own helpers in between).
function A.bad(fname, n, msg, depth)
  error(message(fname, n, msg), 3 + (depth or 0))
end

-- From the helpers below: one level more.
local function bad(fname, n, msg)
  error(message(fname, n, msg), 4)
end

-- The options table (argument n), or an empty one (shared: only read it).
local none = {}
function A.opts(fname, n, opts)
  if opts == nil then return none end
  if type(opts) ~= "table" then bad(fname, n, "table of options expected, got " .. type(opts)) end
  return opts
end

-- An option that is a number: nil gives default; otherwise lo <= v <= hi
-- (NaN fails), and a whole number when whole is set. msg says what is wanted.
function A.number(fname, n, v, default, lo, hi, whole, msg)
  if v == nil then return default end
  if type(v) ~= "number" or not (v >= lo and v <= hi) or (whole and v % 1 ~= 0) then bad(fname, n, msg) end
  return v
end

-- Is err the encoder's "the text would pass max bytes"?
local function too_large(err)
  return type(err) == "string" and (find(err, "over the limit", 1, true) or find(err, "too large", 1, true)) ~= nil
end
A.too_large = too_large

-- A value as its type letter and text: strings as they are ("s"), tables as
-- JSON ("j"); numbers ("n", JSON) and booleans ("b", "1"/"0") when scalars is
-- set. what names the accepted types for the error. max bounds the text: the
-- encoder stops as soon as it would pass max bytes (a shared sub-table DAG
-- never gets built), and A.encode returns nil: the caller answers
-- nil, "value too large" (or its own word for it).
function A.encode(fname, n, v, scalars, what, max)
  local t = type(v)
  if t == "string" then return "s", v end
  if t == "table" then
    local s, err = encode_json(v, max)
    if not s then
      if too_large(err) then return nil end
      bad(fname, n, err)
    end
    return "j", s
  end
  if scalars then
    if t == "number" then
      local s = encode_json(v)
      if not s then bad(fname, n, "numbers must be finite") end
      return "n", s
    end
    if t == "boolean" then return "b", v and "1" or "0" end
  end
  bad(fname, n, what .. " expected, got " .. t)
end

-- Is s valid UTF-8? Keys and names must be (like S3's and DynamoDB's): they
-- come back in JSON (lists, events), which cannot hold other bytes.
A.utf8 = utf8

-- ZRANGEBYLEX bounds for the keys that start with prefix and come after
-- cursor ("" for the first page). The upper bound is exclusive: the
-- shortest string greater than every string starting with prefix (drop
-- trailing 0xFF bytes, add one to the last byte), or "+" when there is
-- none (an empty or all-0xFF prefix). A cursor below the prefix is ignored,
-- so a page never holds a key outside the prefix.
function A.range(prefix, cursor)
  local min
  if cursor ~= "" and cursor >= prefix then min = "(" .. cursor
  elseif prefix ~= "" then min = "[" .. prefix
  else min = "-" end
  local n = #prefix
  while n > 0 and byte(prefix, n) == 255 do n = n - 1 end
  local max = "+"
  if n > 0 then max = "(" .. sub(prefix, 1, n - 1) .. char(byte(prefix, n) + 1) end
  return min, max
end

return A
