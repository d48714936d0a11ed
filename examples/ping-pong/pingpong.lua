-- Two processes exchange N messages; the parent monitors both and reports their results.
local logger = require("logger")

local function ping(pong_pid, n)
  local inbox = process.inbox()
  for i = 1, n do
    process.send(pong_pid, "ping", i)
    local msg = inbox:receive()
    assert(msg:topic() == "pong" and msg:payload():data() == i, "unexpected reply")
  end
  process.send(pong_pid, "stop")
  return n
end

local function pong()
  local inbox = process.inbox()
  local count = 0
  while true do
    local msg = inbox:receive()
    if msg:topic() == "stop" then
      return count
    end
    count = count + 1
    process.send(msg:from(), "pong", msg:payload():data())
  end
end

local function main(n)
  n = tonumber(n) or 1000
  local pong_pid = process.spawn_monitored("app:pong", "app:processes")
  local ping_pid = process.spawn_monitored("app:ping", "app:processes", pong_pid, n)
  local results = {}
  local events = process.events()
  for _ = 1, 2 do
    local ev = events:receive()
    assert(ev.kind == process.event.EXIT)
    results[ev.from] = ev.result
  end
  local summary = { pings = results[ping_pid].value, pongs = results[pong_pid].value }
  logger:info("ping-pong finished", summary)
  return summary
end

return { main = main, ping = ping, pong = pong }
