-- The argument checks and value encoding the crescent.* modules share
-- (modules.c loads this once per state, as P.args; users cannot reach it).
--
-- Errors read "bad argument #n to 'kv.put' (...)" and point at the user's
-- line: call these from the module function the user called, and not as a
-- tail call (`return A.x(...)`), which would drop a level.
local P = ...
local encode_json = P.json.safe.encode
local type, error = type, error

local A = {}

local function message(fname, n, msg)
  return ("bad argument #%d to '%s' (%s)"):format(n, fname, msg)
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

-- A value as its type letter and text: strings as they are ("s"), tables as
-- JSON ("j"); numbers ("n", JSON) and booleans ("b", "1"/"0") when scalars is
-- set. what names the accepted types for the error.
function A.encode(fname, n, v, scalars, what)
  local t = type(v)
  if t == "string" then return "s", v end
  if t == "table" then
    local s, err = encode_json(v)
    if not s then bad(fname, n, err) end
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

return A
