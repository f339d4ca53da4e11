return function(event, ctx)
  return "hello " .. (event.query.name or "world")
end
