local logger = require("logger")

-- holds the cluster name "counter" and adds up what the reporters send
local function counter()
  local ok, err = process.registry.register("counter", nil, process.registry.CONSISTENT)
  if not ok then error(err) end
  logger.info("counter started", { pid = process.pid() })
  local total = 0
  local events = process.events()
  local inbox = process.inbox()
  while true do
    local r = channel.select({ inbox:case_receive(), events:case_receive() })
    if r.channel == events then return total end
    local m = r.value
    total = total + m:payload():data()
    process.send(m:from(), "total", total)
  end
end

-- every second: +1 to the counter, wherever it runs
local function reporter()
  local time = require("time")
  local system = require("system")
  local node = system.node.id()
  local inbox, events = process.inbox(), process.events()
  while true do
    local r = channel.select({ events:case_receive(), time.after(1000 * time.MILLISECOND):case_receive() })
    if r.channel == events then return end
    if process.send("counter", "inc", 1) then
      local answer = channel.select({ inbox:case_receive(), time.after(1000 * time.MILLISECOND):case_receive() })
      if answer.channel == inbox then
        logger.info("counted", { node = node, total = answer.value:payload():data(),
          members = system.cluster.size() })
      end
    else
      logger.info("no counter yet", { node = node })
    end
  end
end

-- monitors the counter on another node and reports how it ended
local function watcher()
  local time = require("time")
  local events = process.events()
  while true do
    local pid = process.registry.lookup("counter")
    if pid then
      process.monitor(pid)
      logger.info("watching the counter", { pid = pid })
      while true do
        local ev = events:receive()
        if ev.kind == "CANCEL" then return end
        if ev.kind == "EXIT" and ev.from == pid then
          logger.warn("the counter is gone", { pid = pid, reason = tostring(ev.result.error) })
          break
        end
      end
    end
    local r = channel.select({ events:case_receive(), time.after(500 * time.MILLISECOND):case_receive() })
    if r.channel == events then return end
  end
end

return { counter = counter, reporter = reporter, watcher = watcher }
