-- echo: shows what a function receives. Any method on /echo answers with the
-- request as JSON; a JSON body comes back decoded under "json".
--
-- A body is JSON when its media type is application/json: the type is
-- compared case-insensitively and without its parameters, so
-- "application/json; charset=utf-8" is JSON too (RFC 9110 §8.3.1).
local function media_type(ct)
  return ct and ct:match("^%s*([^;%s]*)"):lower()
end

return {
  timeout = 5,
  memory = 64,
  handler = function(event, ctx)
    local json
    if media_type(event.headers["content-type"]) == "application/json" then
      json = event.json()          -- an invalid body answers 400 by itself
    end
    return {
      method = event.method,
      path = event.path,
      query = event.query,
      headers = event.headers,
      body = json == nil and event.body or nil,
      json = json,
      requestId = ctx.requestId,
      cold = ctx.cold,
    }
  end,
}
