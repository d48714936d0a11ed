//! Processes and functions together, as Wippy allows: a `function.lua` call is a full unit
//! of execution (channels, `coroutine.spawn`, `events.subscribe`, `process.*`; it gets a
//! pid of its own when its code first asks for one), `funcs.call` of a `process.lua`
//! entry, `process.with_context`, and a process body's `nil, err` as a failed exit.

mod common;

use common::App;
use serde_json::json;

const ECHO: &str = r#"
return { main = function()
  local msg = process.inbox():receive()
  local reply_to, text = table.unpack(msg:payload():data())
  process.send(reply_to, "echo", text .. "!")
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_using_process_runs_with_a_pid_of_its_own() {
    let worker = r#"
local ctx = require("ctx")
return { main = function(text)
  local me = process.pid()
  local child, err = process.spawn_monitored("app:echo", "app:host")
  if not child then return nil, err end
  process.send(child, "go", {me, text})
  local msg = process.inbox():receive()
  local ev = process.events():receive()
  return {
    pid = me,
    reply = msg:payload():data(),
    topic = msg:topic(),
    child_exit = ev.kind == process.event.EXIT and ev.from == child,
    tag = ctx.get("tag"),
    id = process.id(),
  }
end }
"#;
    let v = App::new()
        .lua("echo", ECHO)
        .func("worker", worker, None)
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local r, err = funcs.new():with_context({tag = "t1"}):call("app:worker", "hi")
  if err then return {err = tostring(err)} end
  return {
    reply = r.reply, topic = r.topic, child_exit = r.child_exit, tag = r.tag,
    own_pid = r.pid ~= process.pid() and type(r.pid) == "string",
    ids = { r.id, process.id() },
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"reply": "hi!", "topic": "echo", "child_exit": true, "tag": "t1", "own_pid": true,
               "ids": ["app:worker", "app:main"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funcs_call_runs_a_process_entry_and_gives_its_result_or_error() {
    let v = App::new()
        .lua(
            "square",
            "return { main = function(n) if n < 0 then return nil, 'negative: ' .. n end return n * n end }",
        )
        .lua("boom", "return { main = function() error('exploded', 0) end }")
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local ok = funcs.call("app:square", 7)
  local v, err = funcs.call("app:square", -2)
  local b, berr = funcs.call("app:boom")
  local fut = funcs.async("app:square", 3)
  local payload = fut:response():receive():data()
  return {
    ok = ok, v = v == nil, err = tostring(err), kind = err:kind(),
    boom = b == nil, berr = tostring(berr),
    async = payload,
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["ok"], 49);
    assert_eq!(v["v"], true);
    assert_eq!(v["err"], "negative: -2");
    assert_eq!(v["kind"], "");
    assert_eq!(v["boom"], true);
    assert_eq!(v["berr"], "exploded");
    assert_eq!(v["async"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_stops_its_process() {
    let v = App::new()
        .func(
            "stuck",
            r#"
return { main = function()
  process.registry.register("stuck_call")
  process.inbox():receive()
  return "never"
end }
"#,
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local v, err = funcs.new():with_options({timeout = 100}):call("app:stuck")
  -- the stuck call's process is terminated: its name frees itself (within 2 s)
  local gone = false
  for _ = 1, 200 do
    if process.registry.lookup("stuck_call") == nil then gone = true break end
    time.sleep("10ms")
  end
  return { v = v == nil, kind = err and err:kind(), gone = gone }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"v": true, "kind": "Timeout", "gone": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_context_spawns_children_that_see_the_values() {
    let v = App::new()
        .lua(
            "child",
            r#"
local ctx = require("ctx")
local funcs = require("funcs")
return { main = function(parent)
  process.send(parent, "seen", {user = ctx.get("user"), nested = funcs.call("app:peek")})
end }
"#,
        )
        .func(
            "peek",
            "local ctx = require('ctx') return { main = function() return ctx.get('user') end }",
            None,
        )
        .lua(
            "main",
            r#"
return { main = function()
  local spawner, err = process.with_context({user = "ada"})
  if not spawner then return {err = tostring(err)} end
  spawner:spawn("app:child", "app:host", process.pid())
  local got = process.inbox():receive():payload():data()
  process.spawn("app:child", "app:host", process.pid())
  local plain = process.inbox():receive():payload():data()
  local bad = select(2, process.with_context(42))
  return {with = got, plain = plain, bad = bad and bad:kind()}
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"with": {"user": "ada", "nested": "ada"}, "plain": [], "bad": "Invalid"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_returning_nil_and_an_error_fails() {
    let v = App::new()
        .lua(
            "refuses",
            "return { main = function() return nil, 'no input' end }",
        )
        .lua(
            "falsy",
            "return { main = function() return false, 'bad' end }",
        )
        .lua("fine", "return { main = function() return nil end }")
        .lua(
            "main",
            r#"
return { main = function()
  local out = {}
  for _, name in ipairs({"refuses", "falsy", "fine"}) do
    process.spawn_monitored("app:" .. name, "app:host")
    local ev = process.events():receive()
    out[name] = {error = ev.result.error, value = ev.result.value}
  end
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"refuses": {"error": "no input"}, "falsy": {"error": "bad"}, "fine": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_run_on_a_terminal_host() {
    let v = App::new()
        .entry("  - {name: terminal, kind: terminal.host}\n")
        .lua("double", "return { main = function(n) return n * 2 end }")
        .lua(
            "main",
            r#"
return { main = function()
  return { on_terminal = process.exec("app:double", "app:terminal", 21) }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"on_terminal": 42}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_whose_library_uses_process_runs_as_a_process() {
    let app = App::new()
        .entry("  - {name: who, kind: library.lua, source: 'return { me = function() return process.pid() end }'}\n")
        .entry("  - {name: ask, kind: function.lua, source: file://ask.lua, method: main, imports: {who: app:who}}\n")
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local pid, err = funcs.call("app:ask")
  return { pid = type(pid), other = pid ~= process.pid(), err = err and tostring(err) }
end }
"#,
        );
    app.write(
        "ask.lua",
        "local who = require('who') return { main = function() return who.me() end }",
    );
    let v = app.value("main").await;
    assert_eq!(v, json!({"pid": "string", "other": true}));
}

/// en/concepts/compute-units.md: functions and processes "share the same underlying
/// machinery"; en/lua/core/base.md and channel.md: `coroutine.spawn` and channels (the
/// producer / consumer of the engine's own example) inside a function call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_runs_coroutines_and_channels_as_a_process_does() {
    let sum = r#"
return { main = function(n)
  local ch = channel.new(5)
  local done = channel.new(1)
  local t = coroutine.spawn(function()
    for i = 1, n do ch:send(i) end
    ch:close()
  end)
  coroutine.spawn(function()
    local sum = 0
    while true do
      local v, ok = ch:receive()
      if not ok then break end
      sum = sum + v
    end
    done:send(sum)
  end)
  local timeout = require("time").after("5s")
  local r = channel.select { done:case_receive(), timeout:case_receive() }
  return { sum = r.channel == done and r.value or "timed out", spawned = type(t) }
end }
"#;
    let v = App::new()
        .func("sum", sum, None)
        .func("sum_static", sum, Some("{type: static, workers: 1}"))
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local a, err = funcs.call("app:sum", 10)
  local b, err2 = funcs.call("app:sum_static", 100)
  local c = funcs.call("app:sum_static", 4)
  return { a = a or tostring(err), b = b or tostring(err2), c = c }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"a": {"sum": 55, "spawned": "thread"}, "b": {"sum": 5050, "spawned": "thread"},
               "c": {"sum": 10, "spawned": "thread"}})
    );
}

/// en/lua/core/events.md: a function subscribes and receives; its subscription ends with
/// the call (a later send finds no subscriber left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_subscribes_to_events_until_the_call_ends() {
    let v = App::new()
        .func(
            "watch",
            r#"
local events = require("events")
return { main = function(parent)
  local sub = events.subscribe("orders")
  process.send(parent, "ready", process.pid())
  local ev = sub:channel():receive()
  return { kind = ev.kind, data = ev.data }
end }
"#,
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local events = require("events")
return { main = function()
  local fut = funcs.async("app:watch", process.pid())
  local pid = process.inbox():receive():payload():data()
  process.monitor(pid)
  events.send("orders", "created", nil, 7)
  local r = fut:response():receive():data()
  local ev = process.events():receive()
  return { r = r, exit = ev.kind == process.event.EXIT and ev.from == pid,
           value = ev.result.value }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["r"], json!({"kind": "created", "data": 7}), "{v}");
    assert_eq!(v["exit"], true, "{v}");
    assert_eq!(v["value"], json!({"kind": "created", "data": 7}), "{v}");
}

/// A function that never uses what only a process has stays a plain call: it has no pid,
/// so the runtime's process count does not change while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_function_call_is_no_process() {
    let app = App::new()
        .func(
            "plain",
            "return { main = function(n) require('time').sleep('50ms') return n + 1 end }",
            None,
        )
        .func(
            "unit",
            "return { main = function(n) local me = process.pid() require('time').sleep('50ms') return n + 1 end }",
            None,
        );
    let rt = app.start().await;
    let node = rt.node().clone();
    let before = node.process_count();
    for (name, grows) in [("plain", false), ("unit", true)] {
        // the call runs on this thread; its process (if any) is counted while it sleeps
        let call = warden::lua::funcs::execute(
            node.clone(),
            format!("app:{name}"),
            vec![warden::value::Value::Int(1)],
            Default::default(),
            std::time::Duration::from_secs(10),
        );
        let count = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            node.process_count()
        };
        let (r, during) = futures::join!(call, count);
        assert_eq!(r, Ok(warden::value::Value::Int(2)), "{name}");
        assert_eq!(during > before, grows, "{name}: {before} -> {during}");
        assert_eq!(
            node.process_count(),
            before,
            "{name}: its process ended with it"
        );
    }
    rt.shutdown().await;
}

/// en/lua/core/process.md, "SpawnBuilder Methods" / "Spawner Exec": a spawner is
/// immutable (each `with_*` gives a new one); its children see its context values, actor
/// and scope, run under its name and find its queued messages in their inbox; `exec`
/// runs a child to its result under the same settings; `with_options` takes Wippy's
/// `network` only, which warden cannot honour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawn_builder_as_wippy_documents_it() {
    let v = App::new()
        .lua(
            "child",
            r#"
local ctx = require("ctx")
local security = require("security")
return { main = function()
  local first = process.inbox():receive()
  local second = process.inbox():receive()
  local me = process.registry.lookup("builder_child")
  return {
    tag = ctx.get("tag"), extra = ctx.get("extra"), actor = security.actor():id(),
    scope = security.scope() and security.scope():policies(),
    named = me == process.pid(),
    messages = { {first:topic(), first:payload():data()}, {second:topic(), second:payload():data()} },
    from_parent = first:from(),
  }
end }
"#,
        )
        .lua(
            "main",
            r#"
local security = require("security")
return { main = function()
  local base = process.with_context({tag = "t"})
  local built = base:with_context({extra = "x"})
    :with_actor(security.new_actor("user:7"))
    :with_scope(security.new_scope({"app:policy"}))
    :with_name("builder_child")
    :with_message("first", 1)
    :with_message("second", {k = "v"})
  local pid = built:spawn_monitored("app:child", "app:host")
  local ev = process.events():receive()
  local r = ev.result.value
  -- exec under the same settings, without the name (the builder is immutable)
  local again, again_err = base:with_message("first", "a"):with_message("second", "b"):exec("app:child", "app:host")
  if not again then return { err = tostring(again_err) } end
  local _, net_err = process.with_options({network = "app:tor"})
  local _, bad_err = base:with_options({color = "red"})
  local same = process.with_options({})
  local _, taken_err = base:with_name("builder_child"):spawn("app:child", "app:host")
  return {
    r = r, parent = r.from_parent == process.pid(), base_extra = again.extra == nil,
    again_tag = again.tag, again_messages = again.messages, again_named = again.named,
    net = net_err and net_err:kind(), bad = bad_err and bad_err:kind(), same = type(same),
    taken = taken_err == nil,
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["r"]["tag"], "t", "{v}");
    assert_eq!(v["r"]["extra"], "x", "{v}");
    assert_eq!(v["r"]["actor"], "user:7", "{v}");
    assert_eq!(v["r"]["scope"], json!(["app:policy"]), "{v}");
    assert_eq!(v["r"]["named"], true, "{v}");
    assert_eq!(
        v["r"]["messages"],
        json!([["first", 1], ["second", {"k": "v"}]]),
        "{v}"
    );
    assert_eq!(v["parent"], true, "{v}");
    assert_eq!(v["base_extra"], true, "{v}");
    assert_eq!(v["again_tag"], "t", "{v}");
    assert_eq!(
        v["again_messages"],
        json!([["first", "a"], ["second", "b"]]),
        "{v}"
    );
    assert_eq!(v["again_named"], false, "{v}");
    assert_eq!(v["net"], "Invalid", "{v}");
    assert_eq!(v["bad"], "Invalid", "{v}");
    assert_eq!(v["same"], "userdata", "{v}");
    // the name was free again once the first child ended
    assert_eq!(v["taken"], true, "{v}");
}

/// A function whose top-level code (run once, when an instance of it is made) asks for
/// its pid: the call that made the instance becomes a process, and ends as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_code_may_use_the_process_api() {
    let app = App::new().func(
        "early",
        "local me = process.pid() return { main = function() return { me = me, now = process.pid() } end }",
        None,
    );
    let rt = app.start().await;
    let node = rt.node().clone();
    let before = node.process_count();
    let r = warden::lua::funcs::execute(
        node.clone(),
        "app:early".into(),
        vec![],
        Default::default(),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    let v = warden::value::to_json(&r).unwrap();
    assert!(v["me"].is_string(), "{v}");
    assert_eq!(
        v["me"], v["now"],
        "the call that loaded the code is that process: {v}"
    );
    assert_eq!(
        node.process_count(),
        before,
        "its process ended with the call"
    );
    rt.shutdown().await;
}
