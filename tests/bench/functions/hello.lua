-- bench workload "hello": GET /hello -> 200 text/plain "hello world" (a string result).
return {
  routes = { "GET /hello" },
  handler = function()
    return "hello world"
  end,
}
