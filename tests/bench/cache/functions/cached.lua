-- tests/bench/cache.sh: a 1 KB answer kept by the gateway's response cache; after the first
-- request every GET /cached is a hit (the handler is not run again for an hour).
local body = string.rep("a", 1024)
return {
  routes = { "GET /cached" },
  cache = { ttl = 3600 },
  handler = function() return body end,
}
