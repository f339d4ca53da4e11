-- crescent.http: outbound HTTP/1.1 from functions, non-blocking.
--
--   local http = require "crescent.http"
--   local res, err = http.request {
--     url = "https://api.example.com/v1/mail", method = "POST",
--     headers = { authorization = "Bearer ...", ["content-type"] = "application/json" },
--     body = { to = "a@b.c" },   -- a string as it is; a table as JSON (content-type application/json)
--     timeout = 5,               -- seconds, capped by the invocation's time left
--     redirect = true,           -- follow up to 5 (a number: up to that many, at most 20; false: none)
--     maxBody = 1048576,         -- bytes of the answer's body, at most the server's limit (6 MB)
--     insecure = false,          -- https without certificate checks (tests only)
--   }
--   res = { status =, headers = { name = value } (lower-case names, repeated
--           fields joined with ", "), rawHeaders = { name, value, ... } (as
--           received), body =, url = (after redirects), redirects =, json() }
--   http.get(url, opts), http.delete(url, opts), http.post(url, body, opts),
--   http.put(url, body, opts), http.patch(url, body, opts)
--
-- The invocation waits while the worker serves others (stdlib/http.c,
-- core/svc/outbound.h). Failures are nil, err: "timeout", "connection
-- refused", "connection closed", "connection reset", "dns: HOST: ...",
-- "egress: ...", "tls: certificate verify failed", "tls: handshake failed
-- (...)", "response too large", "too many redirects", "too many requests
-- (N per invocation)". Wrong arguments raise errors naming them.
local P = ...
local A = P.args
local L = P.lib
local request_p = P.http_request
local encode, decode = L.json_encode, L.json_decode
local type, find = L.type, L.string.find
local setmetatable, rawset = L.setmetatable, L.rawset
local max_response = P.http_max_response

local M = {}

-- Checks a request: url, method and body as given (http.request's from its
-- table, a shorthand's from its arguments), the rest from opts (a table).
local function check(fname, depth, opts, url, method, body)
  if type(url) ~= "string" then A.bad(fname, 1, "url: string expected, got " .. type(url), depth) end
  if method == nil then
    method = "GET"
  elseif type(method) ~= "string" or #method > 20 or find(method, "^[A-Z][A-Z_-]*$") == nil then
    A.bad(fname, 1, "method: an upper-case token like \"GET\" expected", depth)
  end
  local is_json = false
  if type(body) == "table" then
    local s, err = encode(body)
    if not s then A.bad(fname, 1, "body cannot be sent as JSON: " .. (type(err) == "string" and err or "?"), depth) end
    body, is_json = s, true
  elseif body ~= nil and type(body) ~= "string" then
    A.bad(fname, 1, "body: string or table expected, got " .. type(body), depth)
  end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout > 0 and timeout <= 900)) then
    A.bad(fname, 1, "timeout: seconds expected (a number in (0, 900])", depth)
  end
  local redirect = opts.redirect
  if redirect == nil or redirect == true then
    redirect = 5
  elseif redirect == false then
    redirect = 0
  elseif type(redirect) ~= "number" or not (redirect >= 0 and redirect <= 20) or redirect % 1 ~= 0 then
    A.bad(fname, 1, "redirect: true, false or a number of hops (0 to 20) expected", depth)
  end
  local max_body = opts.maxBody
  if max_body ~= nil and (type(max_body) ~= "number" or not (max_body >= 0 and max_body <= max_response)
                          or max_body % 1 ~= 0) then
    A.bad(fname, 1, "maxBody: a number of bytes expected (0 to " .. max_response .. ")", depth)
  end
  local insecure = opts.insecure
  if insecure ~= nil and type(insecure) ~= "boolean" then
    A.bad(fname, 1, "insecure: boolean expected", depth)
  end
  return method, url, opts.headers, body, is_json, timeout, redirect, max_body, insecure
end

-- res.json is made when first read (most answers never need it).
local res_mt = { __index = function(res, k)
  if k ~= "json" then return nil end
  local body = res.body
  local f = function()
    local v, derr = decode(body)
    if v == nil and derr then return nil, "response is not JSON: " .. (type(derr) == "string" and derr or "?") end
    return v
  end
  rawset(res, "json", f)
  return f
end }

local function finish(url, res, err)
  if not res then return nil, err end
  if res.url == nil then res.url = url end -- no redirect: the URL asked for
  return setmetatable(res, res_mt)
end

-- level: where the user's call is, seen from the C primitive (1 is the
-- function calling it).
function M.request(opts)
  if type(opts) ~= "table" then A.bad("http.request", 1, "table of options expected, got " .. type(opts)) end
  local method, url, headers, body, is_json, timeout, redirect, max_body, insecure =
    check("http.request", 1, opts, opts.url, opts.method, opts.body)
  return finish(url, request_p(2, method, url, headers, body, is_json, timeout, redirect, max_body, insecure))
end

local function shorthand(fname, method, with_body)
  return function(url, a, b)
    local body, opts = nil, a
    if with_body then body, opts = a, b end
    if type(url) ~= "string" then A.bad(fname, 1, "url: string expected, got " .. type(url)) end
    opts = A.opts(fname, with_body and 3 or 2, opts)
    local m, u, h, bd, j, to, r, mb, ins = check(fname, 1, opts, url, method, body)
    return finish(u, request_p(2, m, u, h, bd, j, to, r, mb, ins))
  end
end

M.get = shorthand("http.get", "GET", false)
M.delete = shorthand("http.delete", "DELETE", false)
M.head = shorthand("http.head", "HEAD", false)
M.post = shorthand("http.post", "POST", true)
M.put = shorthand("http.put", "PUT", true)
M.patch = shorthand("http.patch", "PATCH", true)

return M
