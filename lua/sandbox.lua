-- sandbox.lua - turns a fresh LuaJIT state into crescent's function sandbox.
--
-- Runs once per state, at boot, with every opened library still visible. It
-- captures what the platform itself needs as upvalues, then leaves in the
-- global table only the allowlist of docs/architecture.md §4. User code runs with these
-- globals; nothing removed here can be reached again from Lua:
--   * no ffi, jit, debug, io, package, load/loadstring/loadfile/dofile,
--     getfenv/setfenv, newproxy, module, gcinfo, string.dump;
--   * os only time/clock/date/difftime; collectgarbage only "count";
--   * the string metatable is locked (getmetatable("") answers false);
--   * require() knows the platform's modules and text .lua files under the
--     function's folder; bytecode is refused by the loader.
--
-- host (from vm.c): print, loadmodule(name) -> chunk|nil,err, json, preload
-- (the crescent.* module loaders), seed, maxmcode and sizemcode (KB).
-- Returns the platform's private interface (used from C through the registry).
--
-- Rules for platform Lua (this file, stdlib/*.lua, lua/storage_api.lua):
--   * User code can replace any global and any field of the shared library
--     tables (string.match = ..., table.concat = ..., json.encode = ...), and
--     every string method call (s:match(), ("x"):format()) goes through the
--     string metatable's __index, which IS the user-visible string table.
--     So platform code never looks a library function up at call time: it
--     uses upvalues captured here, at boot, before any user code ran (`lib`
--     below, handed to the stdlib as P.lib; the stdlib chunks even run with
--     an environment that raises on any global access, see modules.c).
--   * A user value (an options table, a list of keys) is read once; the
--     platform checks and uses the copy it read.
--   * Yields: a platform yield passes up through user coroutines. It can only
--     get to the platform if every coroutine on the way can yield at that
--     point; `passes[co]` records, at each resume, whether the resumer could
--     (its own isyieldable() there and its own passes), so the stdlib can
--     refuse a call that could not yield BEFORE it sends anything (modules.c).
local host = ...

local error, type, select, tostring, pairs = error, type, select, tostring, pairs
local setmetatable, rawget, pcall = setmetatable, rawget, pcall
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, co_status = coroutine.running, coroutine.status
local co_isyieldable = coroutine.isyieldable
local concat = table.concat
local collect = collectgarbage
local getinfo = debug.getinfo
local G = _G

-- The library as it is now, before any user code: the platform's own copy
-- of what the stdlib uses (each entry costs every state memory: add what a
-- stdlib module needs, and nothing else; the stdlib's environment raises on
-- a global, so a missing one shows at once).
local lib = {
  string = { byte = string.byte, char = string.char, find = string.find, format = string.format,
             gmatch = string.gmatch, sub = string.sub },
  math = { floor = math.floor, huge = math.huge },
  type = type, tonumber = tonumber, next = next, error = error, unpack = unpack,
  setmetatable = setmetatable, rawset = rawset,
  json_encode = host.json.safe.encode, json_decode = host.json.safe.decode,
}

-- The JIT is on because vm.c opened the jit library; keep it on, then hide
-- it. Machine code lives outside the allocator's meter, so bound it per state
-- (OpenResty's LuaJIT allows 40 MB by default); past the bound LuaJIT flushes
-- its traces and compiles again, it does not fail.
jit.opt.start("maxmcode=" .. host.maxmcode, "sizemcode=" .. host.sizemcode)
math.randomseed(host.seed)

----------------------------------------------------------------------------
-- coroutines: invocations run in a coroutine the platform resumes. A user
-- coroutine.yield() at the handler's own level would silently return to the
-- platform, so it is refused there; inside coroutines the user created it
-- works as usual. Platform yields (stdlib calls waiting on I/O) carry the
-- HOST marker and are passed through user coroutines to the platform.
----------------------------------------------------------------------------
local HOST = setmetatable({}, { __tostring = function() return "crescent.yield" end })
local platform_threads = setmetatable({}, { __mode = "k" })
-- user coroutine -> can a platform yield from it reach the platform (see the header)?
local passes = setmetatable({}, { __mode = "k" })

-- Can the running coroutine hand a yield up to the platform from here?
-- co_isyieldable() is called from Lua, so it answers for this point of the
-- running coroutine (false inside a gsub callback, a sort comparator, ...).
local function can_pass()
  if not co_isyieldable() then return false end
  local co = co_running()
  return platform_threads[co] == true or passes[co] == true
end

local function pass_through(co, ok, first, ...)
  -- A platform yield from inside a user coroutine: hand it up to the platform,
  -- then resume the user coroutine with the platform's answer.
  if ok and first == HOST and co_status(co) == "suspended" then
    return pass_through(co, co_resume(co, co_yield(HOST, ...)))
  end
  return ok, first, ...
end

local function resume(co, ...)
  if type(co) ~= "thread" then
    error("bad argument #1 to 'resume' (coroutine expected)", 2)
  end
  passes[co] = can_pass()
  return pass_through(co, co_resume(co, ...))
end

local function yield(...)
  local co = co_running()
  if co == nil or platform_threads[co] then
    error("attempt to yield from outside a coroutine", 2)
  end
  return co_yield(...)
end

local function wrap(f)
  local co = co_create(f)
  return function(...)
    local function finish(ok, ...)
      if not ok then error((...), 0) end
      return ...
    end
    return finish(resume(co, ...))
  end
end

local function isyieldable()
  local co = co_running()
  return co ~= nil and not platform_threads[co] and co_isyieldable()
end

local user_coroutine = {
  create = co_create, resume = resume, yield = yield, wrap = wrap,
  status = co_status, running = co_running, isyieldable = isyieldable,
}

----------------------------------------------------------------------------
-- require: platform modules, then text files under the function's folder.
----------------------------------------------------------------------------
local platform_modules = { json = host.json, cjson = host.json, ["cjson.safe"] = host.json.safe }
local preload = host.preload -- name -> loader of the crescent.* modules, run on first require
local loaded = {}
local loading = {}

local function require(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
  end
  local m = loaded[name]
  if m ~= nil then return m end
  m = platform_modules[name]
  if m ~= nil then return m end
  local load_platform = preload[name]
  if load_platform then
    m = load_platform(name)
    loaded[name] = m
    return m
  end
  if loading[name] then error("require: loop while loading module '" .. name .. "'", 2) end
  local chunk, err = host.loadmodule(name)
  if not chunk then error(err, 2) end
  loading[name] = true
  local ok, res = pcall(chunk, name)
  loading[name] = nil
  if not ok then error(res, 0) end
  if res == nil then res = true end
  loaded[name] = res
  return res
end

----------------------------------------------------------------------------
-- the rest of the allowlist
----------------------------------------------------------------------------
local function print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  host.print(concat(parts, "\t"))
end

local function collectgarbage(opt, ...)
  if opt == "count" then return collect("count") end
  error("collectgarbage: only \"count\" is allowed in crescent functions", 2)
end

local os_safe = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }

string.dump = nil
getmetatable("").__metatable = false

local allowed = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "rawequal",
  "rawget", "rawset", "select", "setmetatable", "getmetatable", "tonumber",
  "tostring", "type", "unpack", "_VERSION",
  "string", "table", "math", "bit",
}
local keep = {}
for _, k in pairs(allowed) do keep[k] = rawget(G, k) end
for k in pairs(G) do G[k] = nil end
for k, v in pairs(keep) do G[k] = v end
G._G = G
G.print = print
G.require = require
G.collectgarbage = collectgarbage
G.coroutine = user_coroutine
G.os = os_safe
G.json = host.json

return {
  HOST = HOST,
  -- Marks a coroutine as the platform's own (an invocation's main coroutine).
  adopt = function(co) platform_threads[co] = true end,
  -- How many of (event, ctx) a handler can see: a handler declared without
  -- parameters is called without them, and no event is made for it.
  arity = function(f)
    local i = getinfo(f, "u")
    if i.isvararg or i.nparams >= 2 then return 2 end
    return i.nparams
  end,
  modules = platform_modules,
  -- The library captured at boot, for the stdlib (P.lib).
  lib = lib,
  -- user coroutine -> whether a platform yield from it can reach the platform
  -- (read by modules.c before a stdlib call sends anything).
  passes = passes,
}
