//! What the supervision-tree tests share: a worker process, Lua helpers, YAML builders.

/// A worker: answers `ping` with `pong` and its pid, crashes on `crash`, returns on `stop`
/// or on CANCEL.
pub const WORKER: &str = r#"
return { main = function()
  local inbox, events = process.inbox(), process.events()
  while true do
    local r = channel.select({ inbox:case_receive(), events:case_receive() })
    if r.channel == events then return "canceled" end
    local m = r.value
    local t = m:topic()
    if t == "crash" then error("crashed on request") end
    if t == "stop" then return "stopped" end
    if t == "ping" then process.send(m:from(), "pong", process.pid()) end
  end
end }
"#;

/// Lua helpers the tree tests share: read a tree's pids, wait for a change.
pub const HELPERS: &str = r#"
local supervisor = require("supervisor")
local time = require("time")
local function pids(tree)
  local out = {}
  -- a tree being restarted is not running for a moment: no children then
  for _, c in ipairs(supervisor.children(tree) or {}) do out[c.id] = c.pid or false end
  return out
end
local function wait(tree, pred)
  for _ = 1, 600 do
    local p = pids(tree)
    if pred(p) then return p end
    time.sleep(5 * time.MILLISECOND)
  end
  error("timed out waiting for " .. tree .. ": " .. require("json").encode(pids(tree)))
end
"#;

pub fn tree(name: &str, strategy: &str, max: u32, children: &str) -> String {
    format!(
        "  - name: {name}\n    kind: supervisor\n    strategy: {strategy}\n    intensity: {{max_restarts: {max}, period: 5s}}\n    children: {children}\n"
    )
}

pub fn service(name: &str, process: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: process.service\n    process: {process}\n    host: host\n    lifecycle: {{restart: {{max_attempts: 1}}{extra}}}\n"
    )
}
