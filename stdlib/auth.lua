-- crescent.auth: the accounts service (--accounts) from functions.
--
--   local auth = require "crescent.auth"
--   auth.signUp(login, password [, attributes [, { confirmed = true }]]) -> user | nil, err
--   auth.signIn(login, password)   -> { accessToken, refreshToken, expiresIn, tokenType } | nil, err
--   auth.verify(accessToken)       -> claims | nil, err       (no I/O)
--   auth.getUser(idOrLogin)        -> user | nil (not found) | nil, err
--   auth.updateUser(id, { attributes = {...} }) -> user | nil, err
--   auth.disableUser(id), auth.enableUser(id)  -> user | nil, err
--   auth.deleteUser(id)            -> true | nil, err
--   auth.listUsers([cursor [, limit]]) -> { users = {...}, cursor = next or nil } | nil, err
--
-- A user is { id, login, attributes, createdAt, confirmed, disabled }
-- (never the password's hash). Every call but verify waits without blocking
-- (other invocations run meanwhile). These calls are the directory itself:
-- they run no authentication trigger, and a sign-up made here sends no code
-- (create it confirmed, or let the client ask POST /_/auth/confirm for one).
-- Sign-ins made here are throttled like the clients' (under the IP
-- "function").
local P = ...
local A = P.args
local L = P.lib
local call = P.auth_call
local encode, decode = L.json_encode, L.json_decode
local type, next, format, sub = L.type, L.next, L.string.format, L.string.sub

local M = {}

local function str(fname, n, v, what)
  if type(v) ~= "string" then A.bad(fname, n, what .. " expected (a string), got " .. type(v), 1) end
  return v
end

local function attrs(fname, n, v)
  if v == nil then return nil end
  if type(v) ~= "table" then A.bad(fname, n, "attributes must be a table, got " .. type(v), 1) end
  if next(v) == nil then return "{}" end
  local s, err = encode(v, 16 * 1024)
  if not s then A.bad(fname, n, "attributes cannot be sent as JSON: " .. (type(err) == "string" and err or "?"), 1) end
  if sub(s, 1, 1) ~= "{" then A.bad(fname, n, "attributes must be a table with string keys", 1) end
  return s
end

local function answer(text, err)
  if not text then return nil, err end
  local v = decode(text)
  if v == nil then return nil, "the answer could not be read" end
  return v
end

function M.signUp(login, password, attributes, opts)
  str("auth.signUp", 1, login, "login")
  str("auth.signUp", 2, password, "password")
  local a = attrs("auth.signUp", 3, attributes)
  opts = A.opts("auth.signUp", 4, opts)
  return answer(call("signUp", login, password, a, opts.confirmed and "1" or "0"))
end

function M.signIn(login, password)
  str("auth.signIn", 1, login, "login")
  str("auth.signIn", 2, password, "password")
  return answer(call("signIn", login, password))
end

function M.verify(token)
  str("auth.verify", 1, token, "token")
  return answer(call("verify", token))
end

function M.getUser(key)
  str("auth.getUser", 1, key, "id or login")
  local text, err = call("getUser", key)
  if not text then return nil, err end
  return answer(text)
end

function M.updateUser(id, changes)
  str("auth.updateUser", 1, id, "id")
  changes = A.opts("auth.updateUser", 2, changes)
  return answer(call("updateUser", id, attrs("auth.updateUser", 2, changes.attributes)))
end

function M.disableUser(id) return answer(call("disableUser", str("auth.disableUser", 1, id, "id"))) end
function M.enableUser(id) return answer(call("enableUser", str("auth.enableUser", 1, id, "id"))) end

function M.deleteUser(id)
  local text, err = call("deleteUser", str("auth.deleteUser", 1, id, "id"))
  if not text then return nil, err end
  return true
end

function M.listUsers(cursor, limit)
  if cursor ~= nil then str("auth.listUsers", 1, cursor, "cursor") end
  limit = A.number("auth.listUsers", 2, limit, 50, 1, 100, true, "limit must be a whole number from 1 to 100")
  local v, err = answer(call("listUsers", cursor or "", format("%d", limit)))
  if v and type(v.cursor) ~= "string" then v.cursor = nil end -- JSON's null: the last page
  return v, err
end

return M
