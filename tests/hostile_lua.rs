//! Hostile Lua guests: floods, huge messages. Each test checks that the runtime survives,
//! the offender gets a clear error, and a neighbouring process keeps answering.

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
async fn a_flood_fills_the_bounded_mailbox_and_senders_get_an_error() {
    let v = App::new()
        .lua("echo", ECHO)
        .lua(
            "slow",
            r#"
local time = require("time")
return { main = function()
  local inbox = process.inbox()
  local n = 0
  while true do
    local m = inbox:receive()
    if m:topic() == "count" then
      process.send(m:from(), "counted", n)
    else
      n = n + 1
      if n % 100 == 0 then time.sleep(1 * time.MILLISECOND) end
    end
  end
end }
"#,
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local slow = process.spawn("app:slow", "app:host")
  local echo = process.spawn("app:echo", "app:host")
  local sent, err = 0, nil
  for i = 1, 1000000 do
    local ok, e = process.send(slow, "flood", i)
    if not ok then err = e break end
    sent = sent + 1
  end
  -- the neighbour answers while the slow process is drowning
  local t0 = time.now()
  process.send(echo, "ping", 1)
  process.inbox():receive()
  local ping_ms = (time.now():sub(t0):seconds() * 1000)
  local t1 = time.now()
  -- once the slow process catches up, sending works again and nothing was lost
  local again
  for _ = 1, 2000 do
    again = process.send(slow, "count")
    if again then break end
    time.sleep(5 * time.MILLISECOND)
  end
  local counted
  for _ = 1, 2000 do
    local r = channel.select({ process.inbox():case_receive(), time.after(5 * time.MILLISECOND):case_receive() })
    if r.value and r.value.topic and r.value:topic() == "counted" then
      counted = r.value:payload():data()
      break
    end
  end
  local caught_up_ms = (time.now():sub(t1):seconds() * 1000)
  return { sent = sent, err = tostring(err), kind = err and err:kind(), ping_ms = ping_ms,
           caught_up_ms = caught_up_ms, again = again == true, counted = counted }
end }
"#,
        )
        .value("main")
        .await;
    let sent = v["sent"].as_u64().unwrap();
    // the mailbox filled up (the slow process drained a little meanwhile): far fewer than
    // the million sends were accepted
    assert!((65_536..200_000).contains(&sent), "{v}");
    assert!(
        v["err"].as_str().unwrap().contains("mailbox of")
            && v["err"].as_str().unwrap().contains("is full"),
        "{v}"
    );
    assert_eq!(v["kind"], "Unavailable");
    // the slow process sleeps a millisecond every 100 messages: its backlog of 65,536 and
    // more takes it well over half a second; the neighbour answered in less time than the
    // slow process needed after that answer to catch up
    assert!(
        v["ping_ms"].as_f64().unwrap() < v["caught_up_ms"].as_f64().unwrap(),
        "{v}"
    );
    assert_eq!(v["again"], true);
    assert_eq!(
        v["counted"].as_u64().unwrap(),
        sent,
        "every accepted message was received: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_100_mb_crosses_intact() {
    let v = App::new()
        .lua(
            "sink",
            "return { main = function() local m = process.inbox():receive() local s = m:payload():data() return { len = #s, head = s:sub(1, 3), tail = s:sub(-3) } end }",
        )
        .lua(
            "main",
            r#"
return { main = function()
  local s = string.rep("abc", 100 * 1024 * 1024 // 3)
  local sink = process.spawn_monitored("app:sink", "app:host")
  assert(process.send(sink, "big", s))
  s = nil
  collectgarbage()
  return process.events():receive().result.value
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["len"], 104_857_599);
    assert_eq!(v["head"], "abc");
    assert_eq!(v["tail"], "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_execution_ms_stops_runaway_lua_processes_and_functions() {
    let v = App::new()
        .entry(
            "  - name: spin\n    kind: process.lua\n    source: \"return { main = function() while true do end end }\"\n    method: main\n    limits: {max_execution_ms: 1000}\n",
        )
        .entry(
            "  - name: patient\n    kind: process.lua\n    source: \"local time = require('time') return { main = function() for i = 1, 60 do local t = time.now() while time.now():sub(t):seconds() < 0.01 do end time.sleep(1 * time.MILLISECOND) end return 'done' end }\"\n    method: main\n    modules: [time]\n    limits: {max_execution_ms: 500}\n",
        )
        .entry(
            "  - name: wspin\n    kind: process.lua\n    source: \"return { main = function() coroutine.wrap(function() while true do end end)() end }\"\n    method: main\n    limits: {max_execution_ms: 100}\n",
        )
        .entry(
            "  - name: cspin\n    kind: process.lua\n    source: \"return { main = function() local ok, e = coroutine.resume(coroutine.create(function() local x = 0 while true do x = x + 1 end end)) error(e) end }\"\n    method: main\n    limits: {max_execution_ms: 100}\n",
        )
        .entry(
            "  - name: fspin\n    kind: function.lua\n    source: \"return { main = function() while true do end end }\"\n    method: main\n    limits: {max_execution_ms: 80}\n",
        )
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local out = {}
  local echo = process.spawn("app:echo", "app:host")
  local s = process.spawn_monitored("app:spin", "app:host")
  time.sleep(10 * time.MILLISECOND)
  process.send(echo, "ping", 1)
  process.inbox():receive()
  -- the neighbour answered while the loop still ran (its limit is a second away)
  out.answered_first = channel.select({ process.events():case_receive(), default = true }).default == true
  out.spin = process.events():receive().result.error
  -- loops inside coroutines the process made itself are stopped too
  process.spawn_monitored("app:wspin", "app:host")
  out.wspin = process.events():receive().result.error
  process.spawn_monitored("app:cspin", "app:host")
  out.cspin = process.events():receive().result.error
  -- 600 ms of work in total against a limit of 500, but never more than ~10 ms without
  -- waiting: not stopped
  out.patient = process.exec("app:patient", "app:host")
  local t1 = time.now()
  local r, err = funcs.call("app:fspin")
  out.fspin = { err:kind(), tostring(err), (time.now():sub(t1):seconds() * 1000) }
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["answered_first"], true, "{v}");
    let e = v["spin"].as_str().unwrap();
    assert!(
        e.contains("app:spin") && e.contains("execution time limit exceeded"),
        "{e}"
    );
    for k in ["wspin", "cspin"] {
        let e = v[k].as_str().unwrap();
        assert!(e.contains("execution time limit exceeded"), "{k}: {e}");
    }
    assert_eq!(v["patient"], "done");
    assert_eq!(v["fspin"][0], "Timeout");
    assert!(
        v["fspin"][1]
            .as_str()
            .unwrap()
            .contains("execution time limit exceeded"),
        "{v}"
    );
    assert!(v["fspin"][2].as_f64().unwrap() < 2000.0, "{v}");
}

/// Deep stacks do not hide a loop from preemption: a loop at the bottom of 150,000 frames,
/// or in a shallow frame after 150,000 frames have returned (directly, through `pcall`,
/// through a metamethod), is stopped by `max_execution_ms`, and a process on the same
/// single worker keeps answering while one runs. Unbounded recursion in four processes at
/// once ends in "stack overflow" for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_at_any_stack_depth_are_preempted_and_stopped() {
    const DEEP: &str = "local function deep(n) if n == 0 then return 0 end local t = {n} return (deep(n - 1)) + #t end ";
    let spin = |name: &str, body: &str| {
        format!(
            "  - name: {name}\n    kind: process.lua\n    source: \"{DEEP}return {{ main = function() {body} end }}\"\n    method: main\n    limits: {{max_execution_ms: 1000}}\n"
        )
    };
    let v = App::with_host(1, 1024)
        .entry(&spin(
            "bottom",
            "local function down(n) if n == 0 then while true do end end return (down(n - 1)) end down(150000)",
        ))
        .entry(&spin("after", "deep(150000) while true do end"))
        .entry(&spin("afterpcall", "pcall(deep, 150000) while true do end"))
        .entry(&spin(
            "aftermeta",
            "local t = setmetatable({}, { __index = function() return deep(150000) end }) local x = t.x while true do end",
        ))
        .lua(
            "overflow",
            "local function f(n) return f(n + 1) + 1 end return { main = function() return f(1) end }",
        )
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local out = { pings = {} }
  local echo = process.spawn("app:echo", "app:host")
  for _, name in ipairs({ "bottom", "after", "afterpcall", "aftermeta" }) do
    process.spawn_monitored("app:" .. name, "app:host")
    time.sleep(20 * time.MILLISECOND)
    process.send(echo, "ping", 1)
    process.inbox():receive()
    -- answered while the loop still ran: its limit is a second away
    out.pings[name] = channel.select({ process.events():case_receive(), default = true }).default == true
    out[name] = process.events():receive().result.error
  end
  for _ = 1, 4 do process.spawn_monitored("app:overflow", "app:host") end
  out.overflow = {}
  for i = 1, 4 do out.overflow[i] = process.events():receive().result.error end
  return out
end }
"#,
        )
        .value("main")
        .await;
    for k in ["bottom", "after", "afterpcall", "aftermeta"] {
        let e = v[k].as_str().unwrap();
        assert!(
            e.contains(&format!("app:{k}")) && e.contains("execution time limit exceeded"),
            "{k}: {e}"
        );
        assert_eq!(
            v["pings"][k], true,
            "{k}: answered after the loop ended: {v}"
        );
    }
    for i in 0..4 {
        let e = v["overflow"][i].as_str().unwrap();
        assert!(e.ends_with("stack overflow"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_table_growth_hits_the_memory_limit_and_the_heap_recovers() {
    let v = App::new()
        .lua("echo", ECHO)
        .entry(
            "  - name: bomb\n    kind: process.lua\n    source: \"return { main = function() local t = {} local i = 0 while true do i = i + 1 t[i] = string.rep('x', 1024) .. i end end }\"\n    method: main\n    limits: {max_memory: 64MiB}\n",
        )
        .lua(
            "after",
            "return { main = function() local t = {} for i = 1, 20000 do t[i] = string.rep('y', 1024) .. i end return #t end }",
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local echo = process.spawn("app:echo", "app:host")
  local bomb = process.spawn_monitored("app:bomb", "app:host")
  local ev = process.events():receive()
  local t0 = time.now()
  process.send(echo, "ping", 1)
  process.inbox():receive()
  return { bomb = ev.result.error, ping_ms = (time.now():sub(t0):seconds() * 1000),
           after = process.exec("app:after", "app:host") }
end }
"#,
        )
        .value("main")
        .await;
    let e = v["bomb"].as_str().unwrap();
    assert!(
        e.contains("app:bomb") && e.contains("memory limit exceeded"),
        "{e}"
    );
    // the runtime answers after the limit stopped the bomb (a bound of seconds: the point
    // is that it answers at all)
    assert!(v["ping_ms"].as_f64().unwrap() < 5000.0, "{v}");
    assert_eq!(v["after"], 20000, "the heap recovered: {v}");
}
