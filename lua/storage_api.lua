-- storage_api: the platform function behind /_/storage, the HTTP face of crescent.storage.
--
--   PUT    /_/storage/{bucket}/{key}   body = the object; Content-Type kept; X-Meta-* headers
--                                      become metadata -> 200 {"etag","size"} (ETag header);
--                                      If-Match / If-None-Match not met -> 412, nothing written
--   GET    /_/storage/{bucket}/{key}   the object, with Content-Type, ETag, X-Meta-*,
--                                      Accept-Ranges; If-None-Match with its etag -> 304;
--                                      Range: bytes=a-b | a- | -n -> 206 with Content-Range,
--                                      416 when the object has no such bytes
--   HEAD   /_/storage/{bucket}/{key}   what GET answers, without the body
--   DELETE /_/storage/{bucket}/{key}   204, or 404 if there was no such object
--   GET    /_/storage/{bucket}?prefix=&limit=&cursor=  -> {"items":[...],"cursor":...}
--
-- Access: with an admin token configured (--admin-token / CRESCENT_ADMIN_TOKEN),
-- requests need "Authorization: Bearer <token>"; without one, only loopback
-- clients may use it.
--
-- Bad keys, content types and metadata are 400s (storage.key_problem,
-- content_type_problem, metadata_problem: the rules of crescent.storage).
-- An object stored before those rules may hold metadata or a content type a
-- header cannot carry: GET and HEAD leave such entries out (and send the
-- default content type) rather than fail.
--
-- Conditional requests (RFC 9110 §13): If-Match on PUT compares etags
-- strongly (a W/ tag never matches), If-None-Match weakly; "*" is any object.
-- The put's script checks them, so no other write can come in between. A
-- malformed If-Match or If-None-Match on PUT is a 400 (a write must not go
-- through on a condition misread); on GET an unreadable If-None-Match is
-- ignored. Range (RFC 9110 §14): one byte range; several ranges, another
-- unit or a malformed one are ignored (200 with the whole object, as S3
-- does); If-Range with an etag or date other than the object's also gives
-- the whole object. Only the range's bytes are read from Redis.
--
-- Responses may be as large as an object (--max-object): the gateway gives
-- the platform's functions that limit instead of --max-response.
--
-- This function's state runs no user code (it is a platform function with
-- its own states and requires only crescent.storage), so its globals and
-- library tables are the pristine ones.
local storage = require "crescent.storage"

local function http_date(ms)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(ms / 1000))
end

local function fail(status, msg)
  return { status = status, body = { error = msg } }
end

local function allowed(event, token)
  if token and token ~= "" then
    return event.headers.authorization == "Bearer " .. token
  end
  local ip = event.ip
  return ip == "127.0.0.1" or ip == "::1" or ip:sub(1, 4) == "127." or ip == "::ffff:127.0.0.1"
end

local function store_error(err)
  if err == "object too large" then return fail(413, err) end
  if err == "precondition failed" then return fail(412, err) end
  return fail(503, err)
end

-- An If-Match / If-None-Match value -> "*", a list of etags, nil (absent) or
-- false (malformed). weak: W/"x" counts as "x" (If-None-Match's weak
-- comparison); otherwise it is kept as it is and never equals an etag of
-- ours (If-Match's strong comparison). At most 64 tags of 256 bytes.
local function etag_list(v, weak)
  if v == nil then return nil end
  if v:match("^%s*%*%s*$") then return "*" end
  local tags, pos = {}, 1
  while true do
    pos = v:match("^[%s,]*()", pos)
    if pos > #v then break end
    local w, tag, after = v:match('^(W?/?)("[!#-~\128-\255]*")()', pos)
    if not tag or (w ~= "" and w ~= "W/") or #tag > 256 or #tags == 64 then return false end
    tags[#tags + 1] = weak and tag or w .. tag
    pos = v:match("^%s*()", after)
    if pos <= #v and v:sub(pos, pos) ~= "," then return false end
  end
  if #tags == 0 then return false end
  return tags
end

-- Does an etag_list() value match the object's etag?
local function matches(list, etag)
  if list == "*" then return true end
  for _, t in ipairs(list) do
    if t == etag then return true end
  end
  return false
end

-- A Range value -> { first, last } (last may be nil: to the end), { suffix = n },
-- or nil when it is to be ignored (absent, another unit, several ranges, malformed).
local function byte_range(v)
  if v == nil then return nil end
  local spec = v:match("^%s*[Bb][Yy][Tt][Ee][Ss]%s*=%s*(.-)%s*$")
  if not spec or spec:find(",", 1, true) then return nil end
  local a, b = spec:match("^(%d*)%s*%-%s*(%d*)$")
  if not a or (a == "" and b == "") or #a > 15 or #b > 15 then return nil end
  if a == "" then return { suffix = tonumber(b) } end
  local first, last = tonumber(a), tonumber(b)
  if last and last < first then return nil end
  return { first, last }
end

-- The range's bytes in an object of size bytes -> first, last; or nil when
-- none are there (416); or false for the whole object (a suffix of an
-- empty object: RFC 9110 calls it satisfiable, and it is all of it).
local function resolve(range, size)
  if range.suffix then
    if range.suffix == 0 then return nil end
    if size == 0 then return false end
    return math.max(size - range.suffix, 0), size - 1
  end
  if range[1] >= size then return nil end
  return range[1], math.min(range[2] or size - 1, size - 1)
end

-- Does an If-Range value (absent, an etag or a date) name this object? An
-- etag compares strongly (a W/ one never does), a date exactly.
local function if_range_holds(v, info)
  return v == nil or v == info.etag or v == http_date(info.lastModified)
end

-- The storage.get options that read just the range.
local function range_opts(range)
  if range.suffix then
    if range.suffix == 0 then return { offset = 0, length = 0 } end
    return { offset = -range.suffix }
  end
  return { offset = range[1], length = range[2] and range[2] - range[1] + 1 }
end

return {
  routes = { "ANY /_/storage/:bucket", "ANY /_/storage/:bucket/*key" },
  timeout = 60,
  memory = 256,
  handler = function(event, ctx)
    if not allowed(event, ctx.env.ADMIN_TOKEN) then
      return { status = 401, headers = { ["www-authenticate"] = 'Bearer realm="crescent"' },
               body = { error = "unauthorized" } }
    end
    local bucket, key, method = event.params.bucket, event.params.key, event.method
    if not bucket:match("^[a-z0-9][a-z0-9.%-]*$") or #bucket > 63 then
      return fail(400, "bad bucket name: 1 to 63 of a-z, 0-9, '.' and '-'")
    end
    if key == nil or key == "" then
      if method ~= "GET" and method ~= "HEAD" then
        return { status = 405, headers = { allow = "GET, HEAD" }, body = { error = "method not allowed" } }
      end
      local q = event.query
      local limit = 100
      if q.limit ~= nil then
        limit = tonumber(q.limit)
        if not limit or limit < 1 or limit > 1000 or limit % 1 ~= 0 then
          return fail(400, "bad limit: an integer from 1 to 1000")
        end
      end
      local page, err = storage.list(bucket, { prefix = q.prefix, cursor = q.cursor, limit = limit })
      if not page then return store_error(err) end
      return { status = 200, body = { items = setmetatable(page.items, json.array_mt), cursor = page.cursor } }
    end
    local problem = storage.key_problem(key)
    if problem then return fail(400, problem) end

    if method == "PUT" then
      local meta = {}
      for name, value in pairs(event.headers) do
        local m = name:match("^x%-meta%-(.+)$")
        if m then meta[m] = value end
      end
      local ct = event.headers["content-type"]
      local problem = storage.content_type_problem(ct) or storage.metadata_problem(meta)
      if problem then return fail(400, problem) end
      local if_match = etag_list(event.headers["if-match"], false)
      local if_none_match = etag_list(event.headers["if-none-match"], true)
      if if_match == false then return fail(400, "bad If-Match: \"*\" or a list of quoted etags") end
      if if_none_match == false then return fail(400, "bad If-None-Match: \"*\" or a list of quoted etags") end
      local info, err = storage.put(bucket, key, event.body, { contentType = ct, metadata = meta,
                                    ifMatch = if_match, ifNoneMatch = if_none_match })
      if not info then return store_error(err) end
      return { status = 200, headers = { etag = info.etag }, body = info }
    elseif method == "GET" or method == "HEAD" then
      -- The object's bytes are fetched only when they are sent (HEAD and an
      -- If-None-Match that matches need its info only), and of a range only
      -- the range's.
      local inm = etag_list(event.headers["if-none-match"], true) or nil
      local range = byte_range(event.headers.range)
      local data, info, err
      if method == "HEAD" or inm then
        info, err = storage.head(bucket, key)
        if not info then return err and store_error(err) or fail(404, "no such object") end
      end
      if method == "GET" and not (inm and matches(inm, info.etag)) then
        data, info = storage.get(bucket, key, range and range_opts(range))
        if not data then return info and store_error(info) or fail(404, "no such object") end
        if range and not if_range_holds(event.headers["if-range"], info) then
          -- The client's copy is not this object: all of it, not a part.
          range = nil
          data, info = storage.get(bucket, key)
          if not data then return info and store_error(info) or fail(404, "no such object") end
        end
      end
      if method == "HEAD" and range and not if_range_holds(event.headers["if-range"], info) then range = nil end
      local ct = info.contentType
      if storage.content_type_problem(ct) then ct = "application/octet-stream" end
      local headers = { etag = info.etag, ["last-modified"] = http_date(info.lastModified),
                        ["content-type"] = ct, ["accept-ranges"] = "bytes" }
      for k, v in pairs(info.metadata or {}) do
        if not storage.metadata_problem({ [k] = v }) then headers["x-meta-" .. k] = v end
      end
      if inm and matches(inm, info.etag) then
        return { status = 304, headers = headers }
      end
      local status, length = 200, info.size
      if range then
        local first, last = resolve(range, info.size)
        if first == nil then
          return { status = 416, headers = { ["content-range"] = "bytes */" .. info.size,
                   ["accept-ranges"] = "bytes", etag = info.etag }, body = { error = "range not satisfiable" } }
        end
        if first then
          status, length = 206, last - first + 1
          headers["content-range"] = string.format("bytes %d-%d/%d", first, last, info.size)
        end
      end
      if method == "HEAD" then
        -- No body: the platform takes GET's length from content-length.
        headers["content-length"] = length
        return { status = status, headers = headers }
      end
      return { status = status, headers = headers, body = data }
    elseif method == "DELETE" then
      local deleted, err = storage.delete(bucket, key)
      if deleted == nil then return store_error(err) end
      if not deleted then return fail(404, "no such object") end
      return { status = 204 }
    end
    return { status = 405, headers = { allow = "GET, HEAD, PUT, DELETE" }, body = { error = "method not allowed" } }
  end,
}
