-- bench workload "kv": GET /counter -> INCR a Redis key through crescent.kv -> {"counter":N}.
local kv = require "crescent.kv"

return {
  routes = { "GET /counter" },
  handler = function()
    local n, err = kv.incr("bench:counter")
    if not n then
      return { status = 503, body = { error = err } }
    end
    return { counter = n }
  end,
}
