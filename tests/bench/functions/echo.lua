-- bench workload "json": POST /echo -> the JSON body decoded, one field added, encoded back
-- (a table result is a 200 application/json). An invalid body answers 400 by itself.
return {
  routes = { "POST /echo" },
  handler = function(event)
    local obj = event.json()
    if type(obj) ~= "table" then
      return { status = 400, body = { error = "a JSON object is expected" } }
    end
    obj.ok = true
    return obj
  end,
}
