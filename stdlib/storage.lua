-- crescent.storage: buckets of objects (bytes with a content type and metadata) on Redis.
--
--   local storage = require "crescent.storage"
--   storage.put(bucket, key, data, {contentType=, metadata={}, ifMatch=, ifNoneMatch=})
--                               -> { etag=, size= } | nil, err ("precondition failed")
--   storage.get(bucket, key, {offset=, length=}) -> data, info | nil (absent) | nil, err
--   storage.head(bucket, key)   -> info | nil | nil, err
--   storage.delete(bucket, key) -> true (deleted) | false (absent) | nil, err
--   storage.list(bucket, {prefix=, limit=, cursor=}) -> { items = {info...}, cursor = next|nil }
--       (cursor: nil when the page ends the list, even a full page)
-- info = { key, size, etag, contentType, metadata (get/head only), lastModified (ms) }
--
-- Conditional puts (HTTP's If-Match / If-None-Match, checked in the put's
-- own script, so nothing can come between the check and the write):
-- ifMatch = etag, a list of etags, or "*": store only if the object exists
-- and (unless "*") its etag is one of them; ifNoneMatch = "*" (store only if
-- there is no such object), an etag or a list: store only if the object's
-- etag is none of them. Otherwise nil, "precondition failed" and nothing is
-- written. Etags are compared as strings (1 to 256 bytes without control
-- characters; lists of at most 64).
--
-- A part of an object: get with offset (from 0; negative: that many bytes
-- from the end) and length (nil: to the end) reads only that part from Redis
-- (cut there, in a script) and returns it, clamped to the object (possibly
-- ""), with info.offset = where it starts; info.size stays the whole size.
--
-- Objects are binary-safe and at most the configured size (16 MB by default).
-- Buckets are 1-63 of [a-z0-9.-]; keys 1-1024 bytes of valid UTF-8, without
-- "." or ".." path segments, empty segments, or control characters. Put and
-- delete append {event, bucket, key, size, etag, contentType, time} to the
-- bucket's events stream, in the same atomic script.
--
-- Metadata and the content type become HTTP headers (X-Meta-<key>,
-- Content-Type) at /_/storage, so put refuses what a header cannot carry:
--   * metadata: a table of at most 64 entries; keys 1 to 128 of a-z, 0-9 and
--     !#$%&'*+-.^_`|~ (lower-case HTTP token characters: header names are
--     case-insensitive, so "Owner" and "owner" would be one header); values
--     strings of valid UTF-8 without control characters (no CR, LF, NUL,
--     tab, DEL); keys and values together at most 8 KB.
--   * contentType: 1 to 256 bytes of printable ASCII (space included).
-- Platform rules: see lua/sandbox.lua (no globals, nothing looked up in
-- user-mutable tables at call time, each user value read once: metadata is
-- copied as it is checked and the copy is stored).
local P = ...
local A = P.args
local L = P.lib
local cmd, now, hash = P.command("crescent.storage"), P.now, P.hash
local st_put, st_delete, st_list = P.script("st_put"), P.script("st_delete"), P.script("st_list")
local st_get = P.script("st_get")
local type, tonumber, next = L.type, L.tonumber, L.next
local find, sub, gmatch = L.string.find, L.string.sub, L.string.gmatch
local encode_json, decode_json = L.json_encode, L.json_decode
local utf8 = A.utf8
local maxlen = P.stream_maxlen
local max_meta_entries, max_meta_bytes, max_meta_key, max_ct = 64, 8192, 128, 256

local M = {}

local bad = A.bad

local function check_bucket(fname, bucket)
  if type(bucket) ~= "string" then bad(fname, 1, "bucket name expected, got " .. type(bucket), 1) end
  if #bucket < 1 or #bucket > 63 or not find(bucket, "^[a-z0-9][a-z0-9.%-]*$") then
    bad(fname, 1, "bucket names are 1 to 63 of a-z, 0-9, '.' and '-', starting with a letter or digit", 1)
  end
end

-- Returns an error message for a bad key, or nil.
local function key_problem(key)
  if type(key) ~= "string" then return "object key expected, got " .. type(key) end
  if #key == 0 then return "object key is empty" end
  if #key > 1024 then return "object key is longer than 1024 bytes" end
  if find(key, "[%z\1-\31\127]") then return "object key has control characters" end
  if not utf8(key) then return "object key is not valid UTF-8" end
  if sub(key, 1, 1) == "/" then return "object key starts with '/'" end
  for seg in gmatch(key .. "/", "([^/]*)/") do
    if seg == "" then return "object key has an empty path segment" end
    if seg == "." or seg == ".." then return "object key has a '.' or '..' segment" end
  end
  return nil
end
M.key_problem = key_problem

-- The content type (nil: the default) -> ct, or nil and what is wrong.
local function content_type(ct)
  if ct == nil then return "application/octet-stream" end
  if type(ct) ~= "string" then return nil, "contentType must be a string, got " .. type(ct) end
  if #ct < 1 or #ct > max_ct or find(ct, "[^\32-\126]") then
    return nil, "contentType must be 1 to 256 bytes of printable ASCII (no CR, LF or other control characters)"
  end
  return ct
end

-- Metadata (nil: none) -> a copy of it, or nil and what is wrong. Read raw
-- and once: the copy is what is checked and stored.
local function metadata(meta)
  if meta == nil then return {} end
  if type(meta) ~= "table" then return nil, "metadata must be a table of strings, got " .. type(meta) end
  local copy, n, bytes = {}, 0, 0
  for k, v in next, meta do
    if type(k) ~= "string" or type(v) ~= "string" then
      return nil, "metadata must be a table of string keys and string values"
    end
    if #k < 1 or #k > max_meta_key or find(k, "[^a-z0-9!#$%%&'*+%-.^_`|~]") then
      return nil, "metadata keys must be 1 to 128 of a-z, 0-9 and !#$%&'*+-.^_`|~ (lower-case HTTP header name characters)"
    end
    if find(v, "[%z\1-\31\127]") or not utf8(v) then
      return nil, "metadata values must be valid UTF-8 without control characters (no CR, LF, NUL or tab)"
    end
    n, bytes = n + 1, bytes + #k + #v
    if n > max_meta_entries then return nil, "metadata has more than 64 entries" end
    if bytes > max_meta_bytes then return nil, "metadata is larger than 8 KB (keys and values together)" end
    copy[k] = v
  end
  return copy
end

-- For lua/storage_api.lua: what is wrong with a content type or metadata, or nil.
function M.content_type_problem(ct)
  local ok, problem = content_type(ct)
  if ok then return nil end
  return problem
end
function M.metadata_problem(meta)
  local ok, problem = metadata(meta)
  if ok then return nil end
  return problem
end

local function check_key(fname, key)
  local problem = key_problem(key)
  if problem then bad(fname, 2, problem, 1) end
end

-- An ifMatch / ifNoneMatch option -> the put script's form: "" (none), "*",
-- or the etags joined by newlines (which an etag cannot hold).
local function condition(v, what)
  if v == nil then return "" end
  local function etag(e)
    if type(e) ~= "string" or #e < 1 or #e > 256 or find(e, "[%z\1-\31\127]") then
      bad("storage.put", 4, what .. " must be \"*\", an etag or a list of etags (strings of 1 to 256 bytes without control characters)", 2)
    end
    return e
  end
  if type(v) ~= "table" then return etag(v) end
  local n = #v
  if n < 1 or n > 64 then bad("storage.put", 4, what .. " must list 1 to 64 etags", 1) end
  local tags = etag(v[1])
  for i = 2, n do tags = tags .. "\n" .. etag(v[i]) end -- each read once
  return tags
end

local function names(bucket)
  local tag = P.prefix .. "{st:" .. bucket .. "}:"
  return tag .. "o:", tag .. "i", tag .. "events"
end

function M.put(bucket, key, data, opts)
  check_bucket("storage.put", bucket)
  check_key("storage.put", key)
  if type(data) ~= "string" then bad("storage.put", 3, "string data expected, got " .. type(data)) end
  opts = A.opts("storage.put", 4, opts)
  local ct, ct_problem = content_type(opts.contentType)
  if not ct then bad("storage.put", 4, ct_problem) end
  local meta, meta_problem = metadata(opts.metadata)
  if not meta then bad("storage.put", 4, meta_problem) end
  local if_match = condition(opts.ifMatch, "ifMatch")
  local if_none_match = condition(opts.ifNoneMatch, "ifNoneMatch")
  if #data > P.max_object then return nil, "object too large" end
  local meta_json, jerr = encode_json(meta, 8 * max_meta_bytes)
  if not meta_json then bad("storage.put", 4, "metadata: " .. jerr) end
  local opre, idx, events = names(bucket)
  local etag = '"' .. hash(data) .. '"'
  local r, err = st_put(3, opre .. key, idx, events, key, data, ct, meta_json, #data, etag, now(), maxlen,
    bucket, if_match, if_none_match)
  if not r then return nil, err end
  if r == 0 then return nil, "precondition failed" end
  return { etag = etag, size = #data }
end

-- The object's info from HMGET ... size etag ct mtime meta, r[i] being size.
local function info_of(key, r, i)
  return {
    key = key, size = tonumber(r[i]), etag = r[i + 1], contentType = r[i + 2], lastModified = tonumber(r[i + 3]),
    metadata = decode_json(r[i + 4] or "{}") or {},
  }
end

local max_offset = 2 ^ 53

function M.get(bucket, key, opts)
  check_bucket("storage.get", bucket)
  check_key("storage.get", key)
  opts = A.opts("storage.get", 3, opts)
  local offset = A.number("storage.get", 3, opts.offset, nil, -max_offset, max_offset, true,
    "offset must be an integer (negative: from the end)")
  local length = A.number("storage.get", 3, opts.length, nil, 0, max_offset, true,
    "length must be a whole number of bytes")
  local opre = names(bucket)
  if offset or length then
    local r, err = st_get(1, opre .. key, offset or 0, length or "")
    if err then return nil, err end
    if not r then return nil end -- absent
    local info = info_of(key, r, 2)
    info.offset = tonumber(r[7])
    return r[1], info
  end
  local r, err = cmd("HMGET", opre .. key, "data", "size", "etag", "ct", "mtime", "meta")
  if not r then return nil, err end
  if not r[1] then return nil end
  return r[1], info_of(key, r, 2)
end

function M.head(bucket, key)
  check_bucket("storage.head", bucket)
  check_key("storage.head", key)
  local opre = names(bucket)
  local r, err = cmd("HMGET", opre .. key, "size", "etag", "ct", "mtime", "meta")
  if not r then return nil, err end
  if not r[1] then return nil end
  return info_of(key, r, 1)
end

function M.delete(bucket, key)
  check_bucket("storage.delete", bucket)
  check_key("storage.delete", key)
  local opre, idx, events = names(bucket)
  local r, err = st_delete(3, opre .. key, idx, events, key, now(), maxlen, bucket)
  if not r then return nil, err end
  return r == 1
end

function M.list(bucket, opts)
  check_bucket("storage.list", bucket)
  opts = A.opts("storage.list", 2, opts)
  local prefix = opts.prefix or ""
  if type(prefix) ~= "string" then bad("storage.list", 2, "prefix must be a string") end
  local limit = A.number("storage.list", 2, opts.limit, 100, 1, 1000, true, "limit must be an integer from 1 to 1000")
  local cursor = opts.cursor or ""
  if type(cursor) ~= "string" then bad("storage.list", 2, "cursor must be a string from a previous page") end
  local opre, idx = names(bucket)
  local min, max = A.range(prefix, cursor)
  local r, err = st_list(1, idx, min, max, limit, opre)
  if not r then return nil, err end
  local items, flat = {}, r[2]
  for i = 1, #flat, 5 do
    items[#items + 1] = {
      key = flat[i], size = tonumber(flat[i + 1]), etag = flat[i + 2], contentType = flat[i + 3],
      lastModified = tonumber(flat[i + 4]),
    }
  end
  return { items = items, cursor = r[1] or nil }
end

return M
