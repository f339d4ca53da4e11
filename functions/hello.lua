-- hello: the smallest function. GET /hello -> "hello world"; /hello?name=moon -> "hello moon".
return function(event)
  return "hello " .. (event.query.name or "world")
end
