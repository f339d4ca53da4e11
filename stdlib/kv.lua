-- crescent.kv: key-value storage on Redis, by namespace.
--
--   local kv = require "crescent.kv"            -- the "default" namespace
--   local users = kv.namespace("users")          -- another one, same functions
--   kv.put(key, value, {ttl=s, ifAbsent=true, version=n}) -> version | nil, "conflict"
--   kv.get(key)            -> value, nil, version | nil (absent) | nil, err
--   kv.delete(key, {version=n}) -> true (deleted) | false (absent) | nil, err
--   kv.incr(key, by)       -> number, nil, version | nil, err
--   kv.list(prefix, {limit=, cursor=}) -> { items = {{key=, value=, version=}...}, cursor = next|nil }
--       (cursor: nil when the page ends the list, even a full page)
--   kv.getMany({keys})     -> { [key] = value } (absent keys are missing)
--
-- Values are strings, numbers, booleans or tables (stored as JSON, integers
-- exact). Every write appends {op, key, version, time} to the namespace's
-- changes stream, in the same atomic script (op "put", "delete" or "incr");
-- once a kv trigger watches the namespace, puts and incrs add the new value
-- as {type, value} (its encoding, as stored), for the trigger's event. Versions grow per namespace and
-- never repeat, so a compare-and-set cannot be fooled by delete + re-create.
--
-- Expiries: a put with a ttl also enters the key in the namespace's expiry
-- set (key -> expiry ms), in the same script, and a put without one or a
-- delete takes it out; the sweeper (stdlib/kvexpire.c) turns the entries that
-- are due into {op = "expire", key, version, time = the expiry} records.
-- The sweeper finds the namespaces in the prefix's "kvexp" set: a state adds
-- its namespace there before its first put with a ttl, and again whenever a
-- put made the expiry set anew (kv_put's fresh), so a registration Redis
-- lost (an AOF that lost its last second) is made again before it matters.
--
-- Keys are 1 to 1024 bytes of valid UTF-8 (any code point, NUL included);
-- namespace names 1 to 64 of letters, digits, '_', '.' and '-'. A value's
-- encoding is bounded by the value limit as it is made. Platform rules: see
-- lua/sandbox.lua (no globals, nothing looked up in user-mutable tables, each
-- user value read once).
local P = ...
local A = P.args
local L = P.lib
local decode_json = L.json_decode
local cmd, now = P.command("crescent.kv"), P.now
local kv_put, kv_delete, kv_incr = P.script("kv_put", true), P.script("kv_delete", true), P.script("kv_incr", true)
local kv_list, kv_getmany = P.script("kv_list"), P.script("kv_getmany")
local type, tonumber, error, unpack = L.type, L.tonumber, L.error, L.unpack
local format, find = L.string.format, L.string.find
local huge, floor = L.math.huge, L.math.floor
local utf8 = A.utf8
local maxlen = P.stream_maxlen
local max_version = 2 ^ 53
local max_ttl = 2 ^ 53 / 1000 -- seconds, so that the milliseconds stay exact
local max_value = P.kv_max_value
local expiring = P.prefix .. "kvexp" -- namespaces with an expiry set, for the sweeper

local function check_key(fname, key, n)
  if type(key) ~= "string" then
    error(format("bad argument #%d to '%s' (string key expected, got %s)", n or 1, fname, type(key)), 3)
  end
  if #key == 0 or #key > 1024 then
    error(format("bad argument #%d to '%s' (key must be 1 to 1024 bytes)", n or 1, fname), 3)
  end
  if not utf8(key) then
    error(format("bad argument #%d to '%s' (key must be valid UTF-8)", n or 1, fname), 3)
  end
end

local ttl_msg = "ttl must be a positive, finite number of seconds"
local version_msg = "version must be a finite number"

local function decode(t, v)
  if t == "s" then return v end
  if t == "n" then return tonumber(v) end
  if t == "b" then return v == "1" end
  if t == "j" then
    local r = decode_json(v)
    if r ~= nil then return r end
  end
  return nil, "corrupt value"
end

local function bind(ns)
  local tag = P.prefix .. "{kv:" .. ns .. "}:"
  local vpre, idx, seq, changes = tag .. "v:", tag .. "i", tag .. "seq", tag .. "changes"
  local watched = tag .. "watched" -- set by a kv trigger (core/trigger/queue)
  local exp = tag .. "exp"         -- the expiry set (kv_put.lua)
  local registered = false         -- ns is in the sweeper's set, as far as this state knows
  local M = { name = ns }

  -- The Redis key of a value, remembered for hot keys (a string made per
  -- call is hashed and collected); forgotten wholesale past 1024 keys.
  local vkeys, nvkeys = {}, 0
  local function vkey(key)
    local k = vkeys[key]
    if k then return k end
    if nvkeys >= 1024 then vkeys, nvkeys = {}, 0 end
    k = vpre .. key
    vkeys[key] = k
    nvkeys = nvkeys + 1
    return k
  end

  function M.get(key)
    check_key("kv.get", key)
    local r, err = cmd("HMGET", vkey(key), "t", "v", "ver")
    if not r then return nil, err end
    if not r[1] then return nil end
    local v, derr = decode(r[1], r[2])
    if derr then return nil, derr end
    return v, nil, tonumber(r[3])
  end

  function M.put(key, value, opts)
    check_key("kv.put", key)
    local t, s = A.encode("kv.put", 2, value, true, "string, number, boolean or table", max_value)
    opts = A.opts("kv.put", 3, opts)
    local ttl = A.number("kv.put", 3, opts.ttl, nil, 0, max_ttl, false, ttl_msg)
    if ttl == 0 then A.bad("kv.put", 3, ttl_msg) end
    local version = A.number("kv.put", 3, opts.version, nil, -max_version, max_version, false, version_msg)
    local if_absent = opts.ifAbsent and "1" or "0"
    if not t or #s > max_value then return nil, "value too large" end
    local ttl_ms = ttl and floor(ttl * 1000 + 0.5) or 0
    if ttl and ttl_ms < 1 then ttl_ms = 1 end -- 0 would mean no ttl
    local just = false
    if ttl and not registered then
      -- Before the write: its expiry is never in a set the sweeper does not know.
      local r, err = cmd("SADD", expiring, ns)
      if not r then return nil, err end
      registered, just = true, true
    end
    local ok, res, fresh = kv_put(6, vkey(key), idx, seq, changes, watched, exp, key, t, s, ttl_ms, if_absent,
      version or "", now(), maxlen)
    if ok ~= 1 then return nil, res end -- nil, err or 0, "conflict"
    if fresh == 1 and not just then
      -- The expiry set was empty: register again (Redis may have lost it).
      -- Failing, the write stands, and the next put with a ttl registers first.
      if not cmd("SADD", expiring, ns) then registered = false end
    end
    return res
  end

  function M.delete(key, opts)
    check_key("kv.delete", key)
    opts = A.opts("kv.delete", 2, opts)
    local version = A.number("kv.delete", 2, opts.version, nil, -max_version, max_version, false, version_msg)
    local ok, res = kv_delete(5, vkey(key), idx, seq, changes, exp, key, version or "", now(), maxlen)
    if ok ~= 1 then return nil, res end
    return res == 1
  end

  function M.incr(key, by)
    check_key("kv.incr", key)
    if by == nil then by = 1 end
    if type(by) ~= "number" or by ~= by or by == huge or by == -huge then
      error("bad argument #2 to 'kv.incr' (finite number expected, got " .. type(by) .. ")", 2)
    end
    local ok, value, version = kv_incr(6, vkey(key), idx, seq, changes, watched, exp, key, by, now(), maxlen)
    if ok ~= 1 then return nil, value end
    return tonumber(value), nil, version
  end

  function M.list(prefix, opts)
    if prefix == nil then prefix = "" end
    if type(prefix) ~= "string" then
      error("bad argument #1 to 'kv.list' (string prefix expected, got " .. type(prefix) .. ")", 2)
    end
    opts = A.opts("kv.list", 2, opts)
    local limit = A.number("kv.list", 2, opts.limit, 100, 1, 1000, true, "limit must be an integer from 1 to 1000")
    local cursor = opts.cursor or ""
    if type(cursor) ~= "string" then A.bad("kv.list", 2, "cursor must be a string from a previous page") end
    local min, max = A.range(prefix, cursor)
    local r, err = kv_list(1, idx, min, max, limit, vpre)
    if not r then return nil, err end
    local items, flat = {}, r[2]
    for i = 1, #flat, 4 do
      items[#items + 1] = { key = flat[i], value = (decode(flat[i + 1], flat[i + 2])), version = tonumber(flat[i + 3]) }
    end
    return { items = items, cursor = r[1] or nil }
  end

  function M.getMany(keys)
    if type(keys) ~= "table" then
      error("bad argument #1 to 'kv.getMany' (table of keys expected, got " .. type(keys) .. ")", 2)
    end
    local n = #keys
    if n == 0 then return {} end
    if n > 1000 then error("bad argument #1 to 'kv.getMany' (at most 1000 keys)", 2) end
    local args, names = {}, {}
    for i = 1, n do
      local k = keys[i] -- read once: checked and used as read
      check_key("kv.getMany", k)
      names[i] = k
      args[i] = vkey(k)
    end
    local r, err = kv_getmany(n, unpack(args))
    if not r then return nil, err end
    local out = {}
    for i = 1, n do
      local t = r[3 * i - 2]
      if t then out[names[i]] = (decode(t, r[3 * i - 1])) end
    end
    return out
  end

  return M
end

local namespaces = {}
local kv = bind("default")

function kv.namespace(name)
  if type(name) ~= "string" or #name > 64 or not find(name, "^[%w_.%-]+$") then
    error("bad argument #1 to 'kv.namespace' (1 to 64 letters, digits, '_', '.' or '-')", 2)
  end
  local ns = namespaces[name]
  if not ns then
    ns = bind(name)
    ns.namespace = kv.namespace
    namespaces[name] = ns
  end
  return ns
end

namespaces.default = kv
return kv
