-- bench (tests/bench/queue.sh): POST /produce?queue=NAME&n=N with a JSON body sends that
-- body N times with queue.send, one after the other (each send waits for Redis' answer, as
-- `await queue.add(...)` does in Node). The body is decoded once and encoded by each send,
-- as BullMQ encodes a job's data on each add.
local queue = require "crescent.queue"

return {
  routes = { "POST /produce" },
  timeout = 300,
  handler = function(event)
    local name, n = event.query.queue, tonumber(event.query.n)
    local body = event.json()
    for i = 1, n do
      local id, err = queue.send(name, body)
      if not id then return { status = 500, body = { error = err, sent = i - 1 } } end
    end
    return { sent = n }
  end,
}
