-- bench (tests/bench/http_out.sh): GET /proxy calls the upstream once with crescent.http and
-- answers its body (200 text/plain), as the nginx + lua and Node.js peers do. The script
-- copies this file with UPSTREAM_PORT replaced by the upstream's port.
local http = require "crescent.http"

local url = "http://127.0.0.1:UPSTREAM_PORT/x"

return {
  routes = { "GET /proxy" },
  egress = { "127.0.0.1:UPSTREAM_PORT" },
  handler = function()
    local res, err = http.get(url)
    if not res then return { status = 502, body = tostring(err) } end
    if res.status ~= 200 then return { status = 502, body = "upstream status " .. res.status } end
    return res.body
  end,
}
