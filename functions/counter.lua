-- counter: state outside the function, in crescent.kv (Redis).
-- GET /counter -> {"counter":N}, one more each call, shared by every worker and instance.
local kv = require "crescent.kv"

return {
  routes = { "GET /counter" },
  handler = function()
    local n, err = kv.incr("counter")
    if not n then
      return { status = 503, body = { error = err } }
    end
    return { counter = n }
  end,
}
