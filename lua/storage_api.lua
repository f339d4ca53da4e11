-- storage_api: the platform function behind /_/storage, the HTTP face of crescent.storage.
--
--   PUT    /_/storage/{bucket}/{key}   body = the object; Content-Type kept; X-Meta-* headers
--                                      become metadata -> 200 {"etag","size"} (ETag header)
--   GET    /_/storage/{bucket}/{key}   the object, with Content-Type, ETag, X-Meta-*;
--                                      If-None-Match with its etag -> 304
--   HEAD   /_/storage/{bucket}/{key}   the same headers, no body
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
-- This function's state runs no user code (it is a platform function with
-- its own states and requires only crescent.storage), so its globals and
-- library tables are the pristine ones.
local storage = require "crescent.storage"

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
  return fail(503, err)
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
      local info, err = storage.put(bucket, key, event.body, { contentType = ct, metadata = meta })
      if not info then return store_error(err) end
      return { status = 200, headers = { etag = info.etag }, body = info }
    elseif method == "GET" or method == "HEAD" then
      -- The object's bytes are fetched only when they are sent: HEAD and an
      -- If-None-Match that matches need its info only.
      local inm = event.headers["if-none-match"]
      local data, info, err
      if method == "HEAD" or inm then
        info, err = storage.head(bucket, key)
        if not info then return err and store_error(err) or fail(404, "no such object") end
      end
      if method == "GET" and not (info and inm == info.etag) then
        data, info = storage.get(bucket, key)
        if not data then return info and store_error(info) or fail(404, "no such object") end
      end
      local ct = info.contentType
      if storage.content_type_problem(ct) then ct = "application/octet-stream" end
      local headers = { etag = info.etag, ["last-modified"] = os.date("!%a, %d %b %Y %H:%M:%S GMT",
                        math.floor(info.lastModified / 1000)), ["content-type"] = ct }
      for k, v in pairs(info.metadata or {}) do
        if not storage.metadata_problem({ [k] = v }) then headers["x-meta-" .. k] = v end
      end
      if inm == info.etag then
        return { status = 304, headers = headers }
      end
      if method == "HEAD" then
        -- No body: the platform takes GET's length from content-length.
        headers["content-length"] = info.size
        return { status = 200, headers = headers }
      end
      return { status = 200, headers = headers, body = data }
    elseif method == "DELETE" then
      local deleted, err = storage.delete(bucket, key)
      if deleted == nil then return store_error(err) end
      if not deleted then return fail(404, "no such object") end
      return { status = 204 }
    end
    return { status = 405, headers = { allow = "GET, HEAD, PUT, DELETE" }, body = { error = "method not allowed" } }
  end,
}
