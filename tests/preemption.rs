//! Preemption at any stack depth: a long loop at the bottom of 190,000 Lua frames is
//! preempted again and again, its neighbours answer meanwhile, and it still ends with its
//! result. What preempting there costs against the top of the stack is measured by
//! `benches/deep_stack/run.sh` (BENCHMARKS.md), not here.

mod common;

use common::App;

const ECHO: &str = r#"
return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    process.send(m:from(), "pong", 1)
  end
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_at_depth_is_preempted_and_ends_with_its_result() {
    let deep = r#"
local function loop(n)
  local s = 0
  for i = 1, n do s = s + (i % 7) end
  return s
end
local function down(d, n)
  if d == 0 then return loop(n) end
  local keep = { d }
  return (down(d - 1, n))
end
return { main = function(n) return down(190000, n) end }
"#;
    let main = r#"
local time = require("time")
return { main = function()
  local n = 100000000
  local echo = process.spawn("app:echo", "app:host")
  local deep = process.spawn_monitored("app:deep", "app:host", n)
  time.sleep(50 * time.MILLISECOND)
  local pings = 0
  for _ = 1, 5 do
    process.send(echo, "ping", 1)
    process.inbox():receive()
    pings = pings + 1
  end
  local running = channel.select({ process.events():case_receive(), default = true }).default == true
  local ev = process.events():receive()
  -- the sum of i % 7 for i = 1..n
  local expect = (n // 7) * 21
  for r = 1, n % 7 do expect = expect + r end
  return { running = running, pings = pings, result = ev.result.value, expect = expect }
end }
"#;
    let v = App::with_host(1, 64)
        .lua("echo", ECHO)
        .lua("deep", deep)
        .lua("main", main)
        .value("main")
        .await;
    assert_eq!(v["pings"], 5, "{v}");
    assert_eq!(
        v["running"], true,
        "the neighbour answered only after the loop ended: {v}"
    );
    assert_eq!(v["result"], v["expect"], "{v}");
}
