-- testing.lua - crescent.test, the assertions of `crescent test` (core/cli/test.c).
--
-- A test file (functions/**/NAME_test.lua, or tests/**/NAME_test.lua beside the functions
-- folder) runs inside a function of the throwaway server `crescent test` starts, so it has the
-- real stdlib (crescent.kv, storage, queue, ... on that server's own Redis) and calls the
-- functions under test by name, as the server would:
--
--   local t = require "crescent.test"
--   t.test("says hello", function()
--     local r = t.invoke("hello", { query = { name = "ana" } })
--     t.equal(r.message, "hello ana")
--   end)
--
-- t.test(name, fn)          registers a test; they run in order, each in its own pcall
-- t.invoke(name, event)     runs the function (crescent.invoke.call: its own instance, settings,
--                           ctx and limits) and returns its result; raises when it failed
-- t.call(name, event)       the same without raising: result, or nil and the error
-- t.equal(got, want[, msg]) deep equality (tables by their keys and values)
-- t.ok(v[, msg])            v is neither nil nor false; returns v
-- t.raises(fn[, pattern])   fn raises (an error matching the Lua pattern, if given)
-- t.fail(msg)               fails the test here
local invoke = require "crescent.invoke"

local M = {}
local cases = {}

local function show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  if depth > 3 then return "{...}" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i, k in ipairs(keys) do
    if i > 20 then parts[#parts + 1] = "..."; break end
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. show(k, depth + 1) .. "]"
    parts[#parts + 1] = key .. " = " .. show(v[k], depth + 1)
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function same(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not same(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fail(msg, level) error(msg, (level or 1) + 1) end

function M.test(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("t.test(name, fn): a name and a function", 2)
  end
  cases[#cases + 1] = { name = name, fn = fn }
end

function M.equal(got, want, msg)
  if not same(got, want) then
    fail((msg and msg .. ": " or "") .. "expected " .. show(want) .. ", got " .. show(got), 2)
  end
end

function M.ok(v, msg)
  if not v then fail((msg and msg .. ": " or "") .. "expected a true value, got " .. show(v), 2) end
  return v
end

function M.fail(msg) fail(msg or "failed", 2) end

function M.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, none was raised", 2) end
  if pattern and not tostring(err):find(pattern) then
    fail("expected an error matching " .. show(pattern) .. ", got " .. show(tostring(err)), 2)
  end
  return err
end

function M.call(name, event) return invoke.call(name, event) end

function M.invoke(name, event)
  local r, err = invoke.call(name, event)
  if err then fail("invoke " .. name .. ": " .. tostring(err), 2) end
  return r
end

-- Runs a test file's chunk (suite, given a require that knows crescent.test), then its tests:
-- { results = { { name =, ok =, error = }, ... } }.
function M.run(suite, require_)
  cases = {}
  local results = {}
  local ok, err = pcall(suite, function(name)
    if name == "crescent.test" then return M end
    return require_(name)
  end)
  if not ok then
    results[1] = { name = "(loading the file)", ok = false, error = tostring(err) }
    return { results = results }
  end
  for _, c in ipairs(cases) do
    local pass, e = pcall(c.fn)
    results[#results + 1] = { name = c.name, ok = pass, error = not pass and tostring(e) or nil }
  end
  if #cases == 0 then results[1] = { name = "(no t.test in the file)", ok = false, error = "no tests" } end
  return { results = results }
end

return M
