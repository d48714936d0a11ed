//! The Lua `process` API: spawn, messages, monitors, links, cancel, terminate, names, exec.

mod common;

use common::ExecWithin;

use common::{lua_value, App};
use serde_json::json;
use warden::process::Exit;

const ECHO: &str = r#"
local function main()
  local inbox = process.inbox()
  while true do
    local msg = inbox:receive()
    if msg:topic() == "stop" then return "stopped" end
    process.send(msg:from(), "echo:" .. msg:topic(), msg:payload():data())
  end
end
return { main = main }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_round_trip_with_topics_and_payloads() {
    let v = App::new()
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
local function main()
  local pid = process.spawn("app:echo", "app:host")
  local payload = { n = 1, list = {1, 2, 3}, nested = { s = "x", b = true } }
  assert(process.send(pid, "hello", payload))
  local msg = process.inbox():receive()
  local data = msg:payload():data()
  process.send(pid, "stop")
  return { topic = msg:topic(), from_is_echo = msg:from() == pid, data = data, me = process.pid() }
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["topic"], "echo:hello");
    assert_eq!(v["from_is_echo"], true);
    assert_eq!(
        v["data"],
        json!({"n": 1, "list": [1, 2, 3], "nested": {"s": "x", "b": true}})
    );
    let me = v["me"].as_str().unwrap();
    assert!(me.starts_with("{local|") && me.ends_with('}'), "pid {me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_bad_input_with_nil_err() {
    let v = lua_value(
        r#"
local function main()
  local out = {}
  local ok, err = process.send(process.pid(), "@system", 1)
  out.reserved = { ok = ok, err = tostring(err), kind = err:kind() }
  ok, err = process.send(process.pid(), "t", function() end)
  out.func = tostring(err)
  local cyc = {}; cyc.self = cyc
  ok, err = process.send(process.pid(), "t", { a = cyc })
  out.cyclic = tostring(err)
  ok, err = process.send("{local|999999}", "t", 1)
  out.dead = { msg = tostring(err), kind = err:kind() }
  ok, err = process.send("{garbage", "t", 1)
  out.malformed = tostring(err)
  ok, err = process.send("nobody", "t", 1)
  out.unnamed = tostring(err)
  ok, err = process.send(42, "t", 1)
  out.number = tostring(err)
  ok, err = process.send(process.pid(), "t", coroutine.create(function() end))
  out.coroutine = tostring(err)
  ok, err = process.send(process.pid(), "t", { ch = channel.new() })
  out.userdata = tostring(err)
  out.still_running = true
  return out
end
return { main = main }
"#,
    )
    .await;
    assert_eq!(v["reserved"]["ok"], serde_json::Value::Null);
    assert!(v["reserved"]["err"].as_str().unwrap().contains("reserved"));
    assert_eq!(v["reserved"]["kind"], "Invalid");
    assert!(
        v["func"]
            .as_str()
            .unwrap()
            .contains("function cannot be copied"),
        "{v}"
    );
    assert!(
        v["cyclic"]
            .as_str()
            .unwrap()
            .contains("argument 1.a.self: a cyclic table"),
        "{v}"
    );
    // the runtime's text for a pid that is gone (api/process/errors.go: "process not found")
    assert!(
        v["dead"]["msg"]
            .as_str()
            .unwrap()
            .contains("process not found"),
        "{v}"
    );
    assert_eq!(v["dead"]["kind"], "NotFound");
    assert!(v["malformed"].as_str().unwrap().contains("malformed pid"));
    assert!(v["unnamed"]
        .as_str()
        .unwrap()
        .contains("no process is registered as \"nobody\""));
    assert!(
        v["number"]
            .as_str()
            .unwrap()
            .contains("expected a string, got integer"),
        "{v}"
    );
    let coroutine = v["coroutine"].as_str().unwrap();
    assert!(
        coroutine.starts_with("process.send: payload") && coroutine.contains("cannot be copied"),
        "{v}"
    );
    let userdata = v["userdata"].as_str().unwrap();
    assert!(
        userdata.contains("argument 1.ch") && userdata.contains("cannot be copied"),
        "{v}"
    );
    assert_eq!(v["still_running"], true);
}

/// `local ok, err = process.send(destination, topic, ...)` (en/lua/core/process.md,
/// "Sending Messages"): a pid the sender reached before and whose process has ended since
/// gives `nil, err` (the runtime's "process not found"), every time; sends to a live one
/// still arrive. The fast path keeps the last destination's handle, so this checks that a
/// handle kept past the end of its process is refused, not written into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_process_that_ended_since_the_last_send_gives_nil_err() {
    let v = App::new()
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
local function main()
  local inbox = process.inbox()
  local pid = process.spawn_monitored("app:echo", "app:host")
  local first = process.send(pid, "hello", 1)
  local echoed = inbox:receive():topic()
  process.send(pid, "stop")
  local ev = process.events():receive()
  local out = { first = first, echoed = echoed, exit = ev.kind, after = {} }
  for i = 1, 2 do
    local ok, err = process.send(pid, "again", i)
    out.after[i] = { ok = ok, err = tostring(err), kind = err and err:kind() }
  end
  local other = process.spawn("app:echo", "app:host")
  out.other_ok = process.send(other, "hi", 2)
  out.other_echo = inbox:receive():topic()
  process.send(other, "stop")
  return out
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["first"], true, "{v}");
    assert_eq!(v["echoed"], "echo:hello");
    assert_eq!(v["exit"], "EXIT");
    for i in 0..2 {
        let after = &v["after"][i];
        assert_eq!(after["ok"], serde_json::Value::Null, "{v}");
        assert!(
            after["err"].as_str().unwrap().contains("process not found"),
            "{v}"
        );
        assert_eq!(after["kind"], "NotFound", "{v}");
    }
    assert_eq!(v["other_ok"], true);
    assert_eq!(v["other_echo"], "echo:hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_receive_exit_events_with_value_or_error() {
    let v = App::new()
        .lua("ok", "return { main = function(x) return { doubled = x * 2 } end }")
        .lua("bad", "return { main = function() error('boom') end }")
        .lua(
            "main",
            r#"
local function main()
  local a = process.spawn_monitored("app:ok", "app:host", 21)
  local b = process.spawn_monitored("app:bad", "app:host")
  local got = {}
  local events = process.events()
  for _ = 1, 2 do
    local ev = events:receive()
    got[ev.from == a and "ok" or "bad"] = { kind = ev.kind, value = ev.result.value, error = ev.result.error }
  end
  -- monitoring a process that is gone gives an EXIT at once
  process.monitor("{local|999999}")
  local ev = events:receive()
  got.gone = { kind = ev.kind, error = ev.result.error }
  return got
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["ok"]["kind"], "EXIT");
    assert_eq!(v["ok"]["value"], json!({"doubled": 42}));
    assert_eq!(v["bad"]["kind"], "EXIT");
    let err = v["bad"]["error"].as_str().unwrap();
    assert!(err.contains("bad.lua:1:") && err.contains("boom"), "{err}");
    assert_eq!(v["gone"]["error"], "no such process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmonitor_stops_exit_events() {
    let v = App::new()
        .lua("short", "return { main = function() return 1 end }")
        .lua(
            "waiter",
            "return { main = function() process.inbox():receive() return 2 end }",
        )
        .lua(
            "main",
            r#"
local time = require("time")
local function main()
  local w = process.spawn_monitored("app:waiter", "app:host")
  process.unmonitor(w)
  local s = process.spawn_monitored("app:short", "app:host")
  process.send(w, "go")
  local ev = process.events():receive()
  -- give the waiter's exit time to (not) arrive
  time.sleep("50ms")
  local r = channel.select({ process.events():case_receive(), default = true })
  return { first = ev.from == s, extra = r.default == true }
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"first": true, "extra": true}));
}

const LINKER: &str = r#"
local time = require("time")
local function main(mode, trap)
  if trap then process.set_options({ trap_links = true }) end
  local child = process.spawn_linked("app:child", "app:host", mode)
  if trap then
    local ev = process.events():receive()
    return { kind = ev.kind, from_child = ev.from == child, error = ev.result.error, trap = process.get_options().trap_links }
  end
  time.sleep("300ms")
  return "survived"
end
return { main = main }
"#;

const CHILD: &str = r#"
return { main = function(mode)
  if mode == "fail" then error("child failed") end
  return "fine"
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_follow_erlang_semantics() {
    let app = || App::new().lua("child", CHILD).lua("main", LINKER);
    // abnormal exit of a linked process kills the linker
    match app()
        .run("main", vec![warden::value::Value::str("fail")])
        .await
    {
        Exit::Killed(e) => assert!(
            e.contains("linked process") && e.contains("child failed"),
            "{e}"
        ),
        other => panic!("expected the linker to be killed, got {other:?}"),
    }
    // a normal exit does not propagate
    match app()
        .run("main", vec![warden::value::Value::str("ok")])
        .await
    {
        Exit::Normal(v) => assert_eq!(v, warden::value::Value::str("survived")),
        other => panic!("expected survival, got {other:?}"),
    }
    // trapping turns the kill into a LINK_DOWN event
    match app()
        .run(
            "main",
            vec![
                warden::value::Value::str("fail"),
                warden::value::Value::Bool(true),
            ],
        )
        .await
    {
        Exit::Normal(v) => {
            let j = warden::value::to_json(&v).unwrap();
            assert_eq!(j["kind"], "LINK_DOWN");
            assert_eq!(j["from_child"], true);
            assert_eq!(j["trap"], true);
            assert!(j["error"].as_str().unwrap().contains("child failed"));
        }
        other => panic!("expected a LINK_DOWN event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_and_unlink_at_runtime_and_kill_propagates_through_chains() {
    let v = App::new()
        .lua(
            "middle",
            r#"
return { main = function(parent)
  process.link(parent)
  local child = process.spawn_linked("app:leaf", "app:host")
  process.send(parent, "child", child)
  process.inbox():receive()
end }
"#,
        )
        .lua(
            "leaf",
            "return { main = function() process.inbox():receive() end }",
        )
        .lua(
            "main",
            r#"
local function main()
  process.set_options({ trap_links = true })
  local m = process.spawn_monitored("app:middle", "app:host", process.pid())
  local msg = process.inbox():receive()
  local leaf = msg:payload():data()
  process.monitor(leaf)
  -- kill the middle process: the leaf (linked, not trapping) dies with it
  process.terminate(m)
  local got = {}
  local events = process.events()
  for _ = 1, 3 do
    local ev = events:receive()
    local who = ev.from == m and "middle" or (ev.from == leaf and "leaf" or "?")
    got[who .. "_" .. ev.kind] = ev.result.error
  end
  local ok, err = process.link("{local|999999}")
  got.link_dead = tostring(err)
  return got
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["middle_EXIT"], "terminated");
    assert_eq!(v["middle_LINK_DOWN"], "terminated");
    assert!(
        v["leaf_EXIT"].as_str().unwrap().contains("linked process"),
        "{v}"
    );
    assert!(v["link_dead"].as_str().unwrap().contains("not running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_delivers_an_event_and_the_process_ends_on_its_own() {
    let v = App::new()
        .lua(
            "worker",
            r#"
return { main = function()
  local ev = process.events():receive()
  return { kind = ev.kind, reason = ev.reason, from = ev.from }
end }
"#,
        )
        .lua(
            "main",
            r#"
local function main()
  local w = process.spawn_monitored("app:worker", "app:host")
  process.cancel(w, "shutting down")
  local ev = process.events():receive()
  return { exit = ev.kind, result = ev.result.value, me = process.pid() }
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["exit"], "EXIT");
    assert_eq!(v["result"]["kind"], "CANCEL");
    assert_eq!(v["result"]["reason"], "shutting down");
    assert_eq!(v["result"]["from"], v["me"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_process_in_a_tight_loop() {
    // One worker: the busy process and its killer share the thread, so this also shows
    // that a loop is preempted.
    let v = App::with_host(1, 1024)
        .lua("spin", "return { main = function() local x = 0 while true do x = x + 1 end end }")
        .lua(
            "spin_pcall",
            "return { main = function() while true do pcall(function() while true do end end) end end }",
        )
        .lua(
            "main",
            r#"
local function main()
  local out = {}
  for _, id in ipairs({ "app:spin", "app:spin_pcall" }) do
    local pid = process.spawn_monitored(id, "app:host")
    require("time").sleep("20ms")
    process.terminate(pid)
    local ev = process.events():receive()
    out[id] = ev.result.error
  end
  return out
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["app:spin"], "terminated");
    assert_eq!(v["app:spin_pcall"], "terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_process_does_not_starve_its_worker() {
    let v = App::with_host(1, 1024)
        .lua("echo", ECHO)
        .lua(
            "busy",
            "local time = require('time') return { main = function() local t = time.now() while time.now():sub(t):seconds() < 1.5 do end return 'done' end }",
        )
        .lua(
            "main",
            r#"
local time = require("time")
local function main()
  local busy = process.spawn_monitored("app:busy", "app:host")
  local echo = process.spawn("app:echo", "app:host")
  time.sleep("10ms")
  for i = 1, 20 do
    process.send(echo, "ping", i)
    process.inbox():receive()
  end
  -- twenty round trips through the single worker while the loop still runs
  local running = channel.select({ process.events():case_receive(), default = true }).default == true
  local ev = process.events():receive()
  return { running = running, busy = ev.result.value }
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["busy"], "done");
    // the busy loop runs 1.5 s on the only worker; without preemption no round trip (nor
    // the main process's own sleep) would end before it
    assert_eq!(v["running"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_register_lookup_send_and_free_on_exit() {
    let v = App::new()
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
local function main()
  local out = {}
  local echo = process.spawn_monitored("app:echo", "app:host")
  assert(process.registry.register("echo", echo))
  out.lookup = process.registry.lookup("echo") == echo
  local ok, err = process.registry.register("echo")
  out.taken = tostring(err)
  process.send("echo", "hi", 1)
  out.reply = process.inbox():receive():topic()
  process.send("echo", "stop")
  process.events():receive()
  local pid, err2 = process.registry.lookup("echo")
  out.after_exit = tostring(err2)
  -- and a name can be taken again once free
  out.reuse = process.registry.register("echo")
  out.unregister = process.registry.unregister("echo")
  out.unregister_again = process.registry.unregister("echo")
  return out
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["lookup"], true);
    assert!(v["taken"].as_str().unwrap().contains("already registered"));
    assert_eq!(v["reply"], "echo:hi");
    assert!(v["after_exit"]
        .as_str()
        .unwrap()
        .contains("no process is registered"));
    assert_eq!(v["reuse"], true);
    assert_eq!(v["unregister"], true);
    assert_eq!(v["unregister_again"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_routes_topics_to_their_own_channels() {
    let v = lua_value(
        r#"
local function main()
  local me = process.pid()
  local plain = process.listen("plain")
  local full = process.listen("full", { message = true })
  process.send(me, "plain", "p1")
  process.send(me, "full", "f1")
  process.send(me, "other", "o1")
  local out = {}
  out.plain = plain:receive()
  local m = full:receive()
  out.full = { topic = m:topic(), data = m:payload():data() }
  out.inbox = process.inbox():receive():payload():data()
  -- listening again on a topic gives the channel already listening
  out.twice = process.listen("plain") == plain and process.listen("full", { message = false }) == full
  out.unlisten = process.unlisten(plain)
  process.send(me, "plain", "p2")
  out.after_unlisten = process.inbox():receive():payload():data()
  return out
end
return { main = main }
"#,
    )
    .await;
    assert_eq!(v["plain"], "p1");
    assert_eq!(v["full"], json!({"topic": "full", "data": "f1"}));
    assert_eq!(v["inbox"], "o1");
    assert_eq!(v["twice"], true);
    assert_eq!(v["unlisten"], true);
    assert_eq!(v["after_unlisten"], "p2");
}

/// Messages wait until the process asks for them: a listener registered after messages
/// of its topic arrived (here sent right after the spawn, before the child listens) gets
/// them, in arrival order, before later ones; other topics stay in the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_gets_the_messages_of_its_topic_that_already_wait() {
    let v = App::new()
        .lua(
            "child",
            r#"
local time = require("time")
return { main = function()
  time.sleep(30 * time.MILLISECOND) -- the parent's messages are in this process's inbox by now
  local plain = process.listen("job")
  local full = process.listen("note", { message = true })
  local got = {}
  for _ = 1, 3 do got[#got + 1] = plain:receive() end
  local m = full:receive()
  got[#got + 1] = m:topic() .. ":" .. m:payload():data() .. ":" .. tostring(m:from() ~= nil)
  got[#got + 1] = process.inbox():receive():payload():data()
  return got
end }
"#,
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local pid = process.spawn_monitored("app:child", "app:host")
  process.send(pid, "job", 1)
  process.send(pid, "other", "o")
  process.send(pid, "note", "n")
  process.send(pid, "job", 2)
  time.sleep(60 * time.MILLISECOND) -- the child listens in between
  process.send(pid, "job", 3)
  local ev = process.events():receive()
  return ev.result.value or ev.result.error
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!([1, 2, 3, "note:n:true", "o"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_payload_values_arrive_in_order() {
    let v = lua_value(
        r#"
return { main = function()
  process.send(process.pid(), "multi", 1, "two", { three = 3 })
  local a, b, c = process.inbox():receive():payload():data()
  return { a, b, c }
end }
"#,
    )
    .await;
    assert_eq!(v, json!([1, "two", {"three": 3}]));
}

/// A received message is an object, as Wippy's `process.Message` is a userdata
/// (en/lua/core/process.md, "Message Objects"; the runtime's
/// runtime/lua/modules/process/message.go): `msg:topic()`, `msg:from()`,
/// `msg:payload():data()` for any number of payload values (70 here: more than a message
/// keeps as user values of their own), and its functions refuse what is not a message.
/// Sending a message's payload on sends its data (warden's choice where the pages are
/// silent: a payload copies as its data, and the message is its own payload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_an_object_whose_payload_sends_on_as_its_data() {
    let v = lua_value(
        r##"
return { main = function()
  local me, inbox = process.pid(), process.inbox()
  local many = {}
  for i = 1, 70 do many[i] = i * 10 end
  many[35] = nil
  assert(process.send(me, "many", table.unpack(many, 1, 70)))
  local m = inbox:receive()
  local got = table.pack(m:payload():data())
  local sum = 0
  for i = 1, got.n do sum = sum + (got[i] or 0) end
  assert(process.send(me, "none"))
  local none = inbox:receive()
  assert(process.send(me, "one", { k = "v" }))
  local one = inbox:receive()
  -- forwarded: one value as itself, several as an array of them
  assert(process.send(me, "fwd1", one:payload()))
  local fwd1 = inbox:receive():payload():data()
  assert(process.send(me, "three", 1, "b", true))
  local three = inbox:receive()
  assert(process.send(me, "fwd3", three:payload()))
  local fwd3 = inbox:receive():payload():data()
  local bad_ok, bad = pcall(m.topic, { "not", "a", "message" })
  return {
    type = type(m), name = tostring(m):match("^[^:]+"),
    topic = m:topic(), from_me = m:from() == me,
    count = got.n, sum = sum, hole = got[35] == nil,
    none_count = select("#", none:payload():data()), none_topic = none:topic(),
    one = one:payload():data(), fwd1 = fwd1, fwd3 = fwd3,
    bad_ok = bad_ok, bad = tostring(bad),
  }
end }
"##,
    )
    .await;
    assert_eq!(v["type"], "userdata");
    assert_eq!(v["name"], "process.Message");
    assert_eq!(v["topic"], "many");
    assert_eq!(v["from_me"], true);
    assert_eq!(v["count"], 70);
    assert_eq!(v["sum"], (1..=70).sum::<i64>() * 10 - 350);
    assert_eq!(v["hole"], true);
    assert_eq!(v["none_count"], 0);
    assert_eq!(v["none_topic"], "none");
    assert_eq!(v["one"], json!({"k": "v"}));
    assert_eq!(v["fwd1"], json!({"k": "v"}));
    assert_eq!(v["fwd3"], json!([1, "b", true]));
    assert_eq!(v["bad_ok"], false);
    assert!(
        v["bad"].as_str().unwrap().contains("topic: not a message"),
        "{}",
        v["bad"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalar_payloads_keep_types_holes_and_bytes() {
    let v = lua_value(
        r##"
return { main = function()
  local me = process.pid()
  assert(process.send(me, "s", 1, 2.0, 1.5, nil, true, false, "\0\255x", -9007199254740993))
  local msg = process.inbox():receive()
  local a, b, c, d, e, f, g, h = msg:payload():data()
  return {
    count = select("#", msg:payload():data()),
    a = math.type(a), b = math.type(b), c = c, d_nil = d == nil, e = e, f = f,
    g_len = #g, g_bytes = { g:byte(1, -1) }, h_exact = h == -9007199254740993,
    from_me = msg:from() == me, topic = msg:topic(),
  }
end }
"##,
    )
    .await;
    assert_eq!(
        v,
        json!({"count": 8, "a": "integer", "b": "float", "c": 1.5, "d_nil": true, "e": true,
               "f": false, "g_len": 3, "g_bytes": [0, 255, 120], "h_exact": true,
               "from_me": true, "topic": "s"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_names_its_own_sender() {
    // two senders take turns: every message must carry its own sender's pid
    let v = App::new()
        .lua(
            "sender",
            r#"
return { main = function(to, tag, n)
  for i = 1, n do process.send(to, "m", tag, i) end
end }
"#,
        )
        .lua(
            "main",
            r#"
return { main = function()
  local me = process.pid()
  local a = process.spawn("app:sender", "app:host", me, "a", 50)
  local b = process.spawn("app:sender", "app:host", me, "b", 50)
  local inbox, wrong = process.inbox(), 0
  for _ = 1, 100 do
    local msg = inbox:receive()
    local tag = msg:payload():data()
    if msg:from() ~= (tag == "a" and a or b) then wrong = wrong + 1 end
  end
  return wrong
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!(0));
}

/// Each message keeps its own topic and sender however many others were received and read
/// in between (en/lua/core/process.md, "Message Objects"): messages from two senders with
/// topics of every shape, all received first and read afterwards in another order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_messages_answer_with_their_own_topic_and_sender() {
    let v = App::new()
        .lua(
            "sender",
            r#"
return { main = function(to, topics)
  for i, t in ipairs(topics) do process.send(to, t, i) end
end }
"#,
        )
        .lua(
            "main",
            r##"
return { main = function()
  local me, inbox = process.pid(), process.inbox()
  local long = string.rep("topic-", 20)
  local a = process.spawn("app:sender", "app:host", me, { "x", "y\0z", long })
  local got = {}
  for i = 1, 3 do got[i] = inbox:receive() end
  local b = process.spawn("app:sender", "app:host", me, { "x", "", long })
  for i = 4, 6 do got[i] = inbox:receive() end
  assert(process.send(me, "x", 0))
  got[7] = inbox:receive()
  local names = { [a] = "a", [b] = "b", [me] = "me" }
  local out = {}
  for _, i in ipairs({ 7, 1, 4, 2, 5, 3, 6, 1, 7 }) do
    local m = got[i]
    local t = m:topic()
    out[#out + 1] = (t == long and "long" or t) .. "/" .. names[m:from()] .. "/" .. m:payload():data()
  end
  return out
end }
"##,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!([
            "x/me/0",
            "x/a/1",
            "x/b/1",
            "y\u{0}z/a/2",
            "/b/2",
            "long/a/3",
            "long/b/3",
            "x/a/1",
            "x/me/0"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reads_the_same_however_it_is_received() {
    // receive, select on the inbox, a listener with {message = true}, a value the process
    // puts into its own inbox between two messages: order and contents are kept
    let v = App::new()
        .lua(
            "sender",
            r#"
return { main = function(to)
  process.send(to, "a", 1, "x")
  process.send(to, "b", { k = true }, nil, 2.5)
  process.send(to, "c")
  process.send(to, "ping", "heard")
end }
"#,
        )
        .lua(
            "main",
            r##"
local function show(m)
  local n = select("#", m:payload():data())
  return { topic = m:topic(), from_sender = m:from() == SENDER, n = n, data = { m:payload():data() } }
end
return { main = function()
  local inbox = process.inbox()
  local pings = process.listen("ping", { message = true })
  SENDER = process.spawn("app:sender", "app:host", process.pid())
  local out = {}
  out[1] = show(inbox:receive())
  assert(inbox:send("mine"))
  local r = channel.select({ inbox:case_receive() })
  out[2] = show(r.value)
  out[3] = show(inbox:receive())
  out[4] = inbox:receive()
  out[5] = show(pings:receive())
  return out
end }
"##,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!([
            {"topic": "a", "from_sender": true, "n": 2, "data": [1, "x"]},
            // a table with a hole comes back to JSON as an object
            {"topic": "b", "from_sender": true, "n": 3, "data": {"1": {"k": true}, "3": 2.5}},
            {"topic": "c", "from_sender": true, "n": 0, "data": []},
            "mine",
            {"topic": "ping", "from_sender": true, "n": 1, "data": ["heard"]}
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_the_result_or_the_error() {
    let v = App::new()
        .lua("ok", "return { main = function(a, b) return a + b end }")
        .lua("bad", "return { main = function() error('nope') end }")
        .lua(
            "main",
            r#"
return { main = function()
  local sum = process.exec("app:ok", "app:host", 2, 3)
  local v, err = process.exec("app:bad", "app:host")
  local v2, err2 = process.exec("app:missing", "app:host")
  local v3, err3 = process.exec("app:ok", "app:nohost", 1, 1)
  local v4, err4 = process.spawn("not-an-id", "app:host")
  local v5, err5 = process.spawn("app:host", "app:host")
  return { sum = sum, bad = tostring(err), missing = { err2:kind(), tostring(err2) },
           nohost = tostring(err3), invalid = { err4:kind(), tostring(err4) }, notproc = tostring(err5) }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["sum"], 5);
    assert!(v["bad"].as_str().unwrap().contains("nope"));
    assert_eq!(v["missing"][0], "NotFound");
    assert!(v["missing"][1]
        .as_str()
        .unwrap()
        .contains("entry app:missing not found"));
    assert!(v["nohost"]
        .as_str()
        .unwrap()
        .contains("host app:nohost not found"));
    assert_eq!(v["invalid"][0], "Invalid");
    assert!(
        v["notproc"]
            .as_str()
            .unwrap()
            .contains("not a process entry"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_failures_report_lua_errors_and_non_string_errors() {
    let app = App::new()
        .lua(
            "str",
            "return { main = function() error('plain text') end }",
        )
        .lua(
            "tbl",
            "return { main = function() error({ code = 7 }) end }",
        )
        .lua("nomethod", "return { other = function() end }")
        .lua(
            "badresult",
            "return { main = function() return function() end end }",
        )
        .lua(
            "deep",
            "local function f(n) return 1 + f(n + 1) end return { main = function() return f(1) end }",
        );
    let rt = app.start().await;
    // Each case ends in seconds; a bound, so that a regression fails instead of hanging.
    let run = |n: &'static str| {
        let rt = &rt;
        async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(60),
                rt.exec_within(&warden::registry::Id::new("app", n), vec![]),
            )
            .await
            .unwrap_or_else(|_| panic!("app:{n} did not end within 60 s"))
        }
    };
    match run("str").await.unwrap() {
        Exit::Error(e) => assert!(e.contains("plain text") && e.contains("str.lua:1:"), "{e}"),
        other => panic!("{other:?}"),
    }
    match run("tbl").await.unwrap() {
        Exit::Error(e) => assert_eq!(e, r#"error value {"code":7}"#),
        other => panic!("{other:?}"),
    }
    match run("deep").await.unwrap() {
        Exit::Error(e) => {
            assert!(
                e.ends_with("stack overflow") && !e.contains('\n'),
                "one line: {e}"
            )
        }
        other => panic!("{other:?}"),
    }
    match run("nomethod").await.unwrap() {
        Exit::Error(e) => assert!(e.contains("method main not found"), "{e}"),
        other => panic!("{other:?}"),
    }
    match run("badresult").await.unwrap() {
        Exit::Error(e) => assert!(e.contains("result cannot be copied"), "{e}"),
        other => panic!("{other:?}"),
    }
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_queue_size_bounds_pending_spawns() {
    let v = App::with_host(1, 50)
        .lua("idle", "return { main = function() return 1 end }")
        .lua(
            "main",
            r#"
return { main = function()
  -- no yield between spawns: none of the children has started yet
  local n = 0
  local err
  while true do
    local pid, e = process.spawn("app:idle", "app:host")
    if not pid then err = e break end
    n = n + 1
  end
  return { spawned = n, err = tostring(err), kind = err:kind() }
end }
"#,
        )
        .value("main")
        .await;
    // the main process itself was one of the pending spawns until it started; on a busy
    // machine its slice can end between spawns and let some children start, so the queue
    // of 50 (not the default 1024) took at least 50 and stopped the loop
    let spawned = v["spawned"].as_u64().unwrap();
    assert!((50..1024).contains(&spawned), "{v}");
    assert!(v["err"].as_str().unwrap().contains("queue is full"), "{v}");
    assert_eq!(v["kind"], "Unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sleepers_do_not_block_a_responsive_process() {
    let v = App::new()
        .lua(
            "sleeper",
            "local time = require('time') return { main = function() time.sleep('10s') end }",
        )
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local sleepers = {}
  for i = 1, 10000 do
    sleepers[i] = assert(process.spawn("app:sleeper", "app:host"))
    if i % 500 == 0 then time.sleep(1 * time.MILLISECOND) end
  end
  local echo = process.spawn("app:echo", "app:host")
  time.sleep("20ms")
  local pings = {}
  for i = 1, 51 do
    local t0 = time.now()
    process.send(echo, "ping", i)
    process.inbox():receive()
    pings[i] = (time.now():sub(t0):seconds() * 1000)
  end
  for _, p in ipairs(sleepers) do process.terminate(p) end
  table.sort(pings)
  return { median_ms = pings[26], worst_ms = pings[51], sleepers = #sleepers }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["sleepers"], 10000);
    // a round trip is tens of microseconds; one that walked the 10,000 sleepers (or waited
    // on their timers) would take far longer. The median is what a busy machine leaves
    // alone; the worst gets a bound of seconds.
    assert!(v["median_ms"].as_f64().unwrap() < 50.0, "{v}");
    assert!(v["worst_ms"].as_f64().unwrap() < 2000.0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_stops_propagation_and_spawn_linked_monitored_does_both() {
    let v = App::new()
        .lua(
            "crasher",
            r#"return { main = function() process.inbox():receive() error("crash on request") end }"#,
        )
        .lua(
            "unlinker",
            r#"
return { main = function(parent)
  local c = process.spawn_linked("app:crasher", "app:host")
  process.unlink(c)
  process.monitor(c)
  process.send(c, "go")
  local ev = process.events():receive()
  -- still alive after the unlinked child failed
  process.send(parent, "alive", ev.result.error)
  process.inbox():receive()
end }
"#,
        )
        .lua(
            "main",
            r#"
local function main()
  local out = {}
  local events = process.events()
  -- unlink: the crash of a former link does not kill
  local u = process.spawn_monitored("app:unlinker", "app:host", process.pid())
  out.unlinked_child_error = process.inbox():receive():payload():data()
  process.terminate(u)
  events:receive()
  -- spawn_linked_monitored: an EXIT event, and (trapping links) a LINK_DOWN event
  process.set_options({ trap_links = true })
  local c = process.spawn_linked_monitored("app:crasher", "app:host")
  process.send(c, "go")
  local kinds = {}
  for _ = 1, 2 do
    local ev = events:receive()
    kinds[ev.kind] = ev.from == c and ev.result.error
  end
  out.both = kinds
  -- misuse: nil, err rather than a raised error
  local ok, err = process.unlisten("inbox")
  out.unlisten = { ok = ok, err = tostring(err), kind = err:kind() }
  ok, err = process.set_options(true)
  out.set_options = tostring(err)
  ok, err = process.set_options({ trap_links = "yes" })
  out.trap_links = tostring(err)
  ok, err = process.registry.unregister(42)
  out.unregister = tostring(err)
  return out
end
return { main = main }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v["unlinked_child_error"], "crasher.lua:1: crash on request",
        "{v}"
    );
    assert_eq!(
        v["both"],
        serde_json::json!({"EXIT": "crasher.lua:1: crash on request", "LINK_DOWN": "crasher.lua:1: crash on request"}),
        "{v}"
    );
    assert_eq!(
        v["unlisten"],
        serde_json::json!({"err": "process.unlisten: expected the channel process.listen returned, got string", "kind": "Invalid"}),
        "{v}"
    );
    assert_eq!(
        v["set_options"],
        "process.set_options: expected a table like {trap_links = true}, got boolean"
    );
    assert_eq!(
        v["trap_links"],
        "process.set_options: trap_links must be a boolean, got string"
    );
    assert!(
        v["unregister"]
            .as_str()
            .unwrap()
            .starts_with("process.registry.unregister: name"),
        "{v}"
    );
}

/// A process that reads only `process.listen("job")` gets its job even after hundreds of
/// messages on a topic it never reads reached it first: a full channel holds back only
/// its own messages (Wippy: en/lua/core/process.md, topic listeners; Erlang's selective
/// receive has no head-of-line blocking). Per topic the order stays that of arrival, and
/// what waits is still bounded by the mailbox's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_nobody_reads_never_holds_back_one_that_is_read() {
    let v = App::new()
        .lua(
            "worker",
            r#"
local time = require("time")
return { main = function()
  local jobs = process.listen("job")
  local got = {}
  for _ = 1, 3 do
    local r = channel.select({ jobs:case_receive(), time.after(5000 * time.MILLISECOND):case_receive() })
    if r.channel ~= jobs then got[#got + 1] = "no job within 5 s" break end
    got[#got + 1] = r.value
  end
  -- the other topic's messages all wait in the inbox, in order
  local inbox, n, ordered = process.inbox(), 0, true
  for i = 1, 300 do
    local m = inbox:receive()
    if m:payload():data() ~= i then ordered = false end
    n = n + 1
  end
  return { jobs = got, other = n, ordered = ordered }
end }
"#,
        )
        .lua(
            "sink",
            r#"
return { main = function()
  process.listen("job")
  process.inbox() -- read neither
  local time = require("time")
  time.sleep(60000 * time.MILLISECOND)
end }
"#,
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local pid = process.spawn_monitored("app:worker", "app:host")
  for i = 1, 200 do process.send(pid, "other", i) end
  process.send(pid, "job", "first")
  time.sleep(50 * time.MILLISECOND)
  for i = 201, 300 do process.send(pid, "other", i) end
  process.send(pid, "job", "second")
  process.send(pid, "job", "third")
  local ev = process.events():receive()
  local out = ev.result.value or { error = tostring(ev.result.error) }
  -- a flood of a topic nobody reads is refused once the mailbox's limit is reached
  local sink = process.spawn("app:sink", "app:host")
  time.sleep(20 * time.MILLISECOND)
  local sent, err = 0, nil
  for i = 1, 200000 do
    local ok, e = process.send(sink, "other", i)
    if not ok then err = e break end
    sent = sent + 1
  end
  out.flood_sent = sent
  out.flood_error = tostring(err)
  process.terminate(sink)
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["jobs"], json!(["first", "second", "third"]), "{v}");
    assert_eq!(v["other"], 300, "{v}");
    assert_eq!(v["ordered"], true, "{v}");
    let sent = v["flood_sent"].as_u64().unwrap();
    assert!(
        (65_536..=65_536 + 64).contains(&sent),
        "the mailbox's limit bounds what waits: {v}"
    );
    assert!(
        v["flood_error"].as_str().unwrap().contains("is full"),
        "{v}"
    );
}

/// Name scopes as en/lua/core/process.md ("Scope", "register", "unregister") gives them:
/// `process.registry.LOCAL / EVENTUAL / CONSISTENT / STRONG` with the runtime's numbers, a
/// name held by another live process is ALREADY_EXISTS, the same pid again is idempotent,
/// `unregister(name, LOCAL)` frees a local name, an unknown scope is INVALID, and a cluster
/// scope on a node outside a cluster says it needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_scopes_are_wippys_constants() {
    let v = App::new()
        .lua("echo", ECHO)
        .lua(
            "main",
            r#"
return { main = function()
  local r = process.registry
  local echo = process.spawn("app:echo", "app:host")
  local function kind(ok, err) return ok and "ok" or (err:kind() .. ": " .. tostring(err)) end
  return {
    constants = { r.LOCAL, r.EVENTUAL, r.CONSISTENT, r.STRONG },
    first = kind(r.register("svc", echo, r.LOCAL)),
    again = kind(r.register("svc", echo, r.LOCAL)),
    taken = kind(r.register("svc", nil, r.LOCAL)),
    bad = kind(r.register("x", nil, 7)),
    cluster = kind(r.register("y", nil, r.CONSISTENT)),
    unregister = r.unregister("svc", r.LOCAL),
    gone = kind(r.lookup("svc")),
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["constants"], json!([0, 1, 2, 3]), "{v}");
    assert_eq!(v["first"], "ok");
    assert_eq!(v["again"], "ok", "the same pid again is idempotent: {v}");
    assert!(
        v["taken"]
            .as_str()
            .unwrap()
            .starts_with("AlreadyExists: process.registry.register: name \"svc\" is already registered by {local|"),
        "{v}"
    );
    assert!(
        v["bad"]
            .as_str()
            .unwrap()
            .starts_with("Invalid: process.registry.register: scope: unknown scope 7"),
        "{v}"
    );
    assert!(
        v["cluster"]
            .as_str()
            .unwrap()
            .contains("needs a cluster (warden run --cluster)"),
        "{v}"
    );
    assert_eq!(v["unregister"], true);
    assert!(v["gone"].as_str().unwrap().starts_with("NotFound"), "{v}");
}

/// A spawn's entry and host ids are checked before anything starts (en/lua/core/process.md,
/// "Spawning Processes": `process.spawn(id, host, ...)` returns `nil, err` on failure): a
/// value that is not a string, an id without its namespace, and the same for the host,
/// each an INVALID error naming the argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_refuses_bad_ids_with_nil_err() {
    let v = common::lua_value(
        r#"
return { main = function()
  local function try(...)
    local pid, err = process.spawn(...)
    return { pid = pid, msg = tostring(err), kind = err and err:kind() }
  end
  return {
    number = try(42, "app:host"),
    no_namespace = try("idle", "app:host"),
    host_number = try("app:main", 7),
    host_empty_name = try("app:main", "app:"),
  }
end }
"#,
    )
    .await;
    let case = |k: &str| {
        (
            v[k]["pid"].is_null(),
            v[k]["kind"].clone(),
            v[k]["msg"].as_str().unwrap().to_string(),
        )
    };
    let (none, kind, msg) = case("number");
    assert!(none && kind == "Invalid", "{v}");
    assert!(
        msg.contains("process.spawn: entry id: expected a string, got integer"),
        "{msg}"
    );
    let (none, kind, msg) = case("no_namespace");
    assert!(none && kind == "Invalid", "{v}");
    assert!(
        msg.contains("process.spawn: invalid entry id \"idle\": id \"idle\" has no namespace"),
        "{msg}"
    );
    let (_, _, msg) = case("host_number");
    assert!(
        msg.contains("process.spawn: host id: expected a string, got integer"),
        "{msg}"
    );
    let (_, _, msg) = case("host_empty_name");
    assert!(
        msg.contains("process.spawn: invalid host id \"app:\": id \"app:\" has an empty name"),
        "{msg}"
    );
}
