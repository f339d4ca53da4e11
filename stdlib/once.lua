-- ctx.once and ctx.cache: the stdlib's part of ctx (core/exec/invoke.c's
-- prepare calls what this chunk returns with each instance's ctx).
--
--   ctx.once(key, ttl) -> true the first time key is seen within ttl seconds
--                         (by any instance of this function, on any worker),
--                         false after; nil, err when Redis cannot answer.
--
-- For idempotent handlers: `if not ctx.once(event.id, 3600) then return end`.
-- One Redis SET NX EX under the prefix and a per-function namespace
-- ("cr:{once:FUNCTION}:KEY"), so two functions never share a key. Keys are
-- 1 to 1024 bytes of UTF-8; ttl is whole seconds, 1 to 31536000 (a year).
--   ctx.cache.purge(path) -> true, or nil, err: the cached answers (cache = {...}) of the
--                         function GET path routes to, every variant of the path (query,
--                         vary, principal), on every worker and, for shared = true, in
--                         Redis; path is what requests spell ("/users/42", no query).
--                         Any function may purge any user function's path; /_/ is the
--                         platform's. See README "Response cache".
-- Platform rules: see lua/sandbox.lua.
local P = ...
local A = P.args
local L = P.lib
local cmd = P.command("ctx.once")
local type = L.type
local utf8 = P.utf8
local find, sub = L.string.find, L.string.sub
local cache_purge = P.cache_purge

return function(ctx)
  local ns = P.prefix .. "{once:" .. ctx.functionName .. "}:"
  ctx.once = function(key, ttl)
    if type(key) ~= "string" or #key < 1 or #key > 1024 or not utf8(key) then
      A.bad("ctx.once", 1, "key: 1 to 1024 bytes of UTF-8")
    end
    if ttl == nil then A.bad("ctx.once", 2, "ttl expected (whole seconds, 1 to 31536000)") end
    ttl = A.number("ctx.once", 2, ttl, nil, 1, 31536000, true, "ttl: whole seconds, 1 to 31536000")
    local r, err = cmd("SET", ns .. key, "1", "NX", "EX", ttl)
    if r then return true end
    if err then return nil, err end
    return false
  end
  ctx.cache = {
    purge = function(path)
      if type(path) ~= "string" or #path < 1 or #path > 2048 or sub(path, 1, 1) ~= "/" or find(path, "[%c%s?#]") then
        A.bad("ctx.cache.purge", 1, "path: a string starting with '/', at most 2048 bytes, without query, spaces or control characters")
      end
      local ok, err = cache_purge(path)
      return ok, err
    end,
  }
end
