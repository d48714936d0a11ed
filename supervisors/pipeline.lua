-- Process bodies of the example tree in pipeline.yaml.

local function stage(name)
  local inbox, events = process.inbox(), process.events()
  while true do
    local r = channel.select({ inbox:case_receive(), events:case_receive() })
    if r.channel == events then
      return name .. " stopped"
    end
    local msg = r.value
    if msg:topic() == "crash" then
      error(name .. " crashed on request")
    elseif msg:topic() == "stop" then
      return name .. " done"
    elseif msg:topic() == "ping" then
      process.send(msg:from(), "pong", name)
    end
  end
end

-- child id -> { pid, restarts } of a running tree
local function children(supervisor, tree)
  local out = {}
  for _, c in ipairs(supervisor.children(tree)) do
    out[c.id] = { pid = c.pid, restarts = c.restarts }
  end
  return out
end

local function demo()
  local supervisor = require("supervisor")
  local time = require("time")
  local logger = require("logger")
  local before = children(supervisor, "pipeline:pipeline")
  process.send(before.parser.pid, "crash")
  local after = before
  for _ = 1, 400 do
    after = children(supervisor, "pipeline:pipeline")
    if after.parser.pid and after.parser.pid ~= before.parser.pid then break end
    time.sleep(5 * time.MILLISECOND)
  end
  local restarted = {}
  for id, c in pairs(after) do
    restarted[id] = c.restarts > before[id].restarts
  end
  logger:info("parser crashed; rest_for_one restarted", restarted)
  return restarted
end

return { stage = stage, demo = demo }
