-- A counter service found by name: clients send to "counter", not to a pid.
local logger = require("logger")

local function counter()
  local inbox = process.inbox()
  local value = 0
  while true do
    local msg = inbox:receive()
    local topic = msg:topic()
    if topic == "add" then
      value = value + msg:payload():data()
    elseif topic == "get" then
      process.send(msg:from(), "value", value)
    elseif topic == "stop" then
      return value
    end
  end
end

local function client(times)
  for _ = 1, times do
    assert(process.send("counter", "add", 1))
  end
  return times
end

local function main()
  local pid = process.spawn_monitored("app:counter", "app:processes")
  assert(process.registry.register("counter", pid))
  for _ = 1, 5 do
    assert(process.exec("app:client", "app:processes", 10))
  end
  process.send("counter", "get")
  local reply = process.inbox():receive()
  local total = reply:payload():data()
  process.send("counter", "stop")
  local ev = process.events():receive()
  -- the name is freed when its owner exits
  local _, err = process.registry.lookup("counter")
  logger:info("counter finished", { total = total })
  return { total = total, final = ev.result.value, name_freed = err ~= nil }
end

return { main = main, counter = counter, client = client }
