//! Functions: funcs.call / funcs.async, pools and their bounds, timeouts, cancellation,
//! errors and the call context.

mod common;

use common::ExecWithin;

use common::App;
use serde_json::json;
use warden::registry::Id;

const SLEEPY: &str = r#"
local time = require("time")
return { main = function(ms, tag) time.sleep(ms * time.MILLISECOND) return tag end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_returns_copied_results_and_errors_by_kind() {
    let v = App::new()
        .func(
            "add",
            "return { main = function(a, b, t) t.mutated = true return { sum = a + b, t = t } end }",
            None,
        )
        .func("boom", "return { main = function() error('callee exploded') end }", None)
        .func(
            "refuse",
            "return { main = function(x) if x < 0 then return nil, 'negative input' end return x end }",
            None,
        )
        .lua("proc", "return { main = function() end }")
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local out = {}
  local mine = { keep = 1 }
  local r = funcs.call("app:add", 6, 7, mine)
  out.sum = r.sum
  out.copied = mine.mutated == nil and r.t.mutated == true
  local function kind(v, err) return { v == nil, err and err:kind(), err and tostring(err) } end
  out.empty = kind(funcs.call(""))
  out.nons = kind(funcs.call("add"))
  out.noname = kind(funcs.call("app:"))
  out.missing = kind(funcs.call("app:nothing"))
  out.process = kind(funcs.call("app:host"))
  out.raised = kind(funcs.call("app:boom"))
  out.returned = kind(funcs.call("app:refuse", -1))
  out.ok_after = funcs.call("app:refuse", 5)
  out.badarg = kind(funcs.call("app:add", function() end))
  -- plain data crosses both ways however it is nested; a cycle or an id that is not a
  -- string is refused before anything is called
  local t = funcs.call("app:add", 1, 2, { list = { 1, 2, 3 }, [true] = "b", deep = { { x = 1.5 } }, s = "\0z" }).t
  out.nested = t.list[3] == 3 and #t.list == 3 and t[true] == "b" and t.deep[1].x == 1.5
    and t.s == "\0z" and t.mutated == true
  local cyc = {}
  cyc.me = { cyc }
  out.cyclic = kind(funcs.call("app:add", 1, 2, cyc))
  out.notstring = kind(funcs.call(42, 1))
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["sum"], 13);
    assert_eq!(v["copied"], true);
    assert_eq!(v["empty"][1], "Invalid");
    assert_eq!(v["nons"][1], "Invalid");
    assert!(v["nons"][2].as_str().unwrap().contains("no namespace"));
    assert_eq!(v["noname"][1], "Invalid");
    assert_eq!(v["missing"][1], "NotFound");
    assert!(v["missing"][2]
        .as_str()
        .unwrap()
        .contains("app:nothing not found"));
    assert_eq!(v["process"][1], "NotFound");
    assert!(v["process"][2].as_str().unwrap().contains("not a function"));
    assert_eq!(v["raised"][0], true);
    let raised = v["raised"][2].as_str().unwrap();
    assert!(
        raised.contains("callee exploded") && raised.contains("boom.lua:1:"),
        "{raised}"
    );
    assert_eq!(v["returned"][2], "negative input");
    assert_eq!(v["nested"], true);
    assert_eq!(v["cyclic"][1], "Invalid");
    assert!(
        v["cyclic"][2]
            .as_str()
            .unwrap()
            .contains("argument 3.me[1]: a cyclic table"),
        "{}",
        v["cyclic"][2]
    );
    assert_eq!(v["notstring"][1], "Invalid");
    assert_eq!(v["ok_after"], 5);
    assert_eq!(v["badarg"][1], "Invalid");
}

/// 20 concurrent callers against a pool: all served, never more than the bound at once.
async fn concurrency(pool: Option<&str>) -> (serde_json::Value, warden::functions::PoolStats) {
    let app = App::new().func("slow", SLEEPY, pool).lua(
        "main",
        r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local done = channel.new(20)
  local t0 = time.now()
  for i = 1, 20 do
    coroutine.spawn(function()
      local r, err = funcs.call("app:slow", 30, i)
      done:send(r or tostring(err))
    end)
  end
  local sum = 0
  for _ = 1, 20 do sum = sum + done:receive() end
  return { sum = sum, ms = (time.now():sub(t0):seconds() * 1000) }
end }
"#,
    );
    let rt = app.start().await;
    let exit = rt
        .exec_within(&Id::new("app", "main"), vec![])
        .await
        .unwrap();
    let stats = rt
        .node()
        .functions
        .pool(&Id::new("app", "slow"))
        .unwrap()
        .stats();
    rt.shutdown().await;
    match exit {
        warden::process::Exit::Normal(v) => (warden::value::to_json(&v).unwrap(), stats),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_bound_concurrency_and_serve_every_caller() {
    let (v, s) = concurrency(Some("{type: static, size: 2}")).await;
    assert_eq!(v["sum"], 210, "all 20 callers served: {v}");
    assert_eq!(s.peak, 2, "{s:?}");
    assert_eq!(s.calls, 20);
    assert!(v["ms"].as_f64().unwrap() >= 10.0 * 30.0 * 0.9, "{v}");
    let (v, s) = concurrency(Some("{type: lazy, max_size: 3}")).await;
    assert_eq!(v["sum"], 210);
    assert_eq!(s.peak, 3, "{s:?}");
    let (v, s) = concurrency(Some("{type: adaptive, max_size: 4}")).await;
    assert_eq!(v["sum"], 210);
    assert_eq!(s.peak, 4, "{s:?}");
    let (v, s) = concurrency(Some("{type: inline}")).await;
    assert_eq!(v["sum"], 210);
    assert_eq!(s.peak, 20, "inline is unbounded: {s:?}");
    let (v, s) = concurrency(None).await;
    assert_eq!(v["sum"], 210);
    assert_eq!(s.peak, 20, "the default pool allows 100: {s:?}");
    assert_eq!(s.running, 0);
}

/// An adaptive pool grows to its bound under load and, once idle past `idle_timeout`,
/// shrinks back to one worker; a static pool keeps its workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_pool_grows_with_load_and_shrinks_when_idle() {
    for (pool, grown, after) in [
        ("{type: adaptive, max_size: 4, idle_timeout: 300ms}", 4, 1),
        ("{type: static, size: 4}", 4, 4),
    ] {
        // one worker thread: idle instances are kept per thread
        let app = App::with_host(1, 1024)
            .func("slow", SLEEPY, Some(pool))
            .lua(
                "main",
                r#"
local funcs = require("funcs")
local time = require("time")
return { main = function(phase)
  if phase == "burst" then
    local done = channel.new(8)
    for i = 1, 8 do
      coroutine.spawn(function() done:send(funcs.call("app:slow", 20, i)) end)
    end
    for _ = 1, 8 do done:receive() end
  else
    time.sleep(600 * time.MILLISECOND)
    funcs.call("app:slow", 1, 1)
  end
end }
"#,
            );
        let rt = app.start().await;
        let stats = || {
            rt.node()
                .functions
                .pool(&Id::new("app", "slow"))
                .unwrap()
                .stats()
        };
        let main = Id::new("app", "main");
        let phase = |p: &str| rt.exec_within(&main, vec![warden::value::Value::str(p)]);
        phase("burst").await.unwrap();
        let s = stats();
        assert_eq!((s.peak, s.idle), (4, grown), "{pool}: {s:?}");
        phase("idle").await.unwrap();
        let s = stats();
        assert_eq!(s.idle, after, "{pool}: {s:?}");
        rt.shutdown().await;
    }
}

/// The registry actor answers lookups, and a registry it replaces reaches the next spawn
/// and the next call: a function's cached pool follows the new entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_change_through_the_actor_reaches_calls_and_spawns() {
    use warden::registry::actor::RegistryMsg;
    let app = App::new()
        .func(
            "f",
            "return { main = function() return 1 end }",
            Some("{type: static, size: 2}"),
        )
        .lua(
            "main",
            r#"return { main = function() return (require("funcs").call("app:f")) end }"#,
        );
    let rt = app.start().await;
    let main = Id::new("app", "main");
    let value = |e: warden::process::Exit| match e {
        warden::process::Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(value(rt.exec_within(&main, vec![]).await.unwrap()), 1);

    let actor = rt.registry();
    let entry = ractor::call!(actor, RegistryMsg::Get, Id::new("app", "f")).unwrap();
    assert_eq!(
        entry.map(|e| e.kind.clone()).as_deref(),
        Some("function.lua")
    );
    let funcs = ractor::call!(actor, RegistryMsg::OfKind, "function.lua".to_string()).unwrap();
    assert_eq!(funcs, [Id::new("app", "f")]);

    app.write("f.lua", "return { main = function() return 2 end }");
    let reloaded = warden::registry::load_dir(app.path()).unwrap();
    let version = ractor::call!(actor, RegistryMsg::Replace, Box::new(reloaded)).unwrap();
    assert_eq!(version, 2);
    assert_eq!(value(rt.exec_within(&main, vec![]).await.unwrap()), 2);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_waits_until_the_timeout_then_errors() {
    let v = App::new()
        .func("slow", SLEEPY, Some("{type: static, size: 1}"))
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local long = funcs.async("app:slow", 300, "long")
  require("time").sleep("10ms")
  local quick = funcs.new():with_options({ timeout = 50 })
  local r, err = quick:call("app:slow", 1, "quick")
  local first = long:response():receive():data()
  local again = funcs.call("app:slow", 1, "again")
  return { r = r == nil, kind = err:kind(), msg = tostring(err), first = first, again = again }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["r"], true);
    assert_eq!(v["kind"], "Timeout");
    assert!(
        v["msg"].as_str().unwrap().contains("waiting for a worker"),
        "{v}"
    );
    assert_eq!(v["first"], "long");
    assert_eq!(v["again"], "again");
}

/// Callers that wait for a worker of a full pool get one in the order they came, and one
/// that gives up waiting (its timeout) costs the others nothing: the worker it would
/// have had goes to the next in line. en/concepts/functions.md, "Pools": requests queue
/// when all workers are busy; the page names no order, so first come, first served (a
/// queue's) is warden's reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_serves_waiting_callers_in_the_order_they_came() {
    let v = App::new()
        .func("slow", SLEEPY, Some("{type: static, size: 1}"))
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local done = channel.new(10)
  local hold = funcs.async("app:slow", 150, "hold")
  time.sleep("10ms")
  for i = 1, 5 do
    coroutine.spawn(function()
      local f = funcs.new()
      if i == 2 then f = f:with_options({ timeout = 40 }) end
      local r, err = f:call("app:slow", 1, i)
      done:send(r or ("gave up " .. i .. ": " .. err:kind()))
    end)
    time.sleep("5ms")
  end
  local order = {}
  for _ = 1, 5 do order[#order + 1] = done:receive() end
  return { order = order, hold = hold:response():receive():data() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["hold"], "hold", "{v}");
    assert_eq!(
        v["order"],
        serde_json::json!(["gave up 2: Timeout", 1, 3, 4, 5]),
        "{v}"
    );
}

/// A caller terminated while it waits in a full pool's queue leaves it: the caller queued
/// after it is served as soon as the worker is free, not at its own timeout
/// (en/concepts/functions.md: a function is tied to its caller's lifecycle, and requests
/// queue when all workers are busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_ended_while_queued_for_a_worker_leaves_the_queue() {
    let v = App::new()
        .func("slow", SLEEPY, Some("{type: static, size: 1}"))
        .lua(
            "queued",
            r#"
local funcs = require("funcs")
return { main = function() return funcs.call("app:slow", 1, "never") end }
"#,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local hold = funcs.async("app:slow", 100, "hold")
  time.sleep("10ms")
  local q = process.spawn_monitored("app:queued", "app:host")
  time.sleep("10ms")
  local done = channel.new(1)
  local t0 = time.now()
  coroutine.spawn(function()
    local r, err = funcs.new():with_options({ timeout = 5000 }):call("app:slow", 1, "next")
    done:send(r or tostring(err))
  end)
  time.sleep("10ms")
  process.terminate(q)
  local ev = process.events():receive()
  local r = done:receive()
  return {
    queued = ev.result.error, r = r, hold = hold:response():receive():data(),
    ms = time.now():sub(t0):seconds() * 1000,
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["queued"], "terminated", "{v}");
    assert_eq!(v["r"], "next", "{v}");
    assert_eq!(v["hold"], "hold", "{v}");
    // served when the hold ended (about 80 ms after t0), long before its 5 s timeout
    assert!(v["ms"].as_f64().unwrap() < 2000.0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_ended_while_its_call_waits_frees_the_worker() {
    // the only worker is busy with a call whose caller is terminated: the call goes with
    // its caller, and the next caller gets the worker at once
    let v = App::new()
        .func("slow", SLEEPY, Some("{type: static, size: 1}"))
        .lua(
            "caller",
            r#"
local funcs = require("funcs")
return { main = function() return funcs.call("app:slow", 5000, "never") end }
"#,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local c = process.spawn_monitored("app:caller", "app:host")
  time.sleep(50 * time.MILLISECOND)
  process.terminate(c)
  local ev = process.events():receive()
  -- the single worker is free long before the cancelled 5 s sleep would have ended
  local quick = funcs.new():with_options({ timeout = 3000 })
  local r, err = quick:call("app:slow", 1, "next")
  return { caller = ev.result.error, r = r, err = err and tostring(err) }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["caller"], "terminated", "{v}");
    assert_eq!(v["r"], "next", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_interrupt_sleeping_and_looping_functions_and_free_the_worker() {
    let app = App::with_host(1, 1024)
        .func("slow", SLEEPY, Some("{type: static, size: 1}"))
        .func(
            "spin",
            "return { main = function() local x = 0 while true do x = x + 1 end end }",
            Some("{type: static, size: 1}"),
        )
        .lua(
            "echo",
            r#"
return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    process.send(m:from(), "pong", m:payload():data())
  end
end }
"#,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local out = {}
  local short = funcs.new():with_options({ timeout = "100ms" })
  local r, err = short:call("app:slow", 2000, "x")
  out.sleep = { err:kind(), tostring(err) }
  out.after_sleep = funcs.call("app:slow", 1, "ok")
  -- a neighbour on the same (single) worker keeps answering while a call spins
  local echo = process.spawn("app:echo", "app:host")
  local answered = channel.new(1)
  coroutine.spawn(function()
    time.sleep(20 * time.MILLISECOND)
    process.send(echo, "ping", 1)
    process.inbox():receive()
    answered:send(true)
  end)
  local second = funcs.new():with_options({ timeout = "1s" })
  local r2, err2 = second:call("app:spin")
  out.spin = { err2:kind(), tostring(err2) }
  -- the neighbour answered before the spinning call's second was up
  out.neighbour_first = channel.select({ answered:case_receive(), default = true }).default ~= true
  out.after_spin = funcs.call("app:slow", 1, "still serving")
  return out
end }
"#,
        );
    let rt = app.start().await;
    let exit = rt
        .exec_within(&Id::new("app", "main"), vec![])
        .await
        .unwrap();
    let spin = rt
        .node()
        .functions
        .pool(&Id::new("app", "spin"))
        .unwrap()
        .stats();
    rt.shutdown().await;
    let v = match exit {
        warden::process::Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(v["sleep"][0], "Timeout");
    assert_eq!(v["after_sleep"], "ok");
    assert_eq!(v["spin"][0], "Timeout");
    assert!(v["spin"][1].as_str().unwrap().contains("app:spin"), "{v}");
    assert_eq!(v["neighbour_first"], true, "{v}");
    assert_eq!(v["after_spin"], "still serving");
    assert_eq!(spin.running, 0, "the spinning worker was freed: {spin:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_complete_fail_cancel_and_select() {
    let app = App::new()
        .func("slow", SLEEPY, Some("{type: static, size: 1}"))
        .func(
            "boom",
            "return { main = function() error('async failure') end }",
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local out = {}
  local f = funcs.async("app:slow", 10, "value")
  out.before = f:is_complete()
  local p, ok = f:response():receive()
  out.received = { p:data(), ok, p:format() }
  -- en/lua/core/future.md: result() is `payload, nil`; error() is `nil, false` on success
  local res, res_err = f:result()
  local no_err, has_err = f:error()
  out.after = { f:is_complete(), res:data(), res_err == nil, no_err == nil, has_err }
  local bad = funcs.async("app:boom")
  local pending, pending_err = bad:result()
  out.pending = { pending == nil, pending_err == nil }
  local v2, ok2 = bad:channel():receive()
  local bad_res, bad_res_err = bad:result()
  local _, bad_has = bad:error()
  out.failed = { v2 == nil, ok2, tostring(bad:error()), bad:error():kind(), bad_res == nil,
                 bad_res_err:kind(), bad_has }
  local c = funcs.async("app:slow", 5000, "never")
  require("time").sleep("10ms")
  out.cancel = c:cancel()
  out.canceled = { c:is_canceled(), c:error():kind(), select(2, c:result()):kind() }
  -- the canceled call freed the only worker
  local a = funcs.async("app:slow", 30, "a")
  local b = funcs.async("app:slow", 1, "b")
  local first = channel.select({ a:response():case_receive(), b:response():case_receive() })
  out.select = first.value:data()
  out.invalid = { funcs.async("") == nil }
  return out
end }
"#,
        );
    let rt = app.start().await;
    let exit = rt
        .exec_within(&Id::new("app", "main"), vec![])
        .await
        .unwrap();
    rt.shutdown().await;
    let v = match exit {
        warden::process::Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(v["before"], false);
    assert_eq!(v["received"], json!(["value", true, "lua/any"]));
    assert_eq!(v["after"], json!([true, "value", true, true, false]));
    assert_eq!(v["pending"], json!([true, true]));
    assert_eq!(v["failed"][4], true);
    assert_eq!(v["failed"][5], "Internal");
    assert_eq!(v["failed"][6], true);
    assert_eq!(v["failed"][0], true);
    assert_eq!(v["failed"][1], false);
    assert!(v["failed"][2].as_str().unwrap().contains("async failure"));
    assert_eq!(v["failed"][3], "Internal");
    assert_eq!(v["cancel"], true);
    assert_eq!(v["canceled"], json!([true, "Canceled", "Canceled"]));
    assert_eq!(v["select"], "a", "a holds the single worker first: {v}");
    assert_eq!(v["invalid"], json!([true]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_travels_two_calls_deep_and_executors_are_immutable() {
    let v = App::new()
        .func(
            "outer",
            r#"
local funcs = require("funcs")
local ctx = require("ctx")
return { main = function()
  local inner = funcs.call("app:inner")
  local extra = funcs.new():with_context({ extra = "added" }):call("app:inner")
  return { outer_trace = ctx.get("trace"), inner = inner, extra = extra }
end }
"#,
            None,
        )
        .func(
            "inner",
            r#"
local ctx = require("ctx")
return { main = function()
  return { trace = ctx.get("trace"), actor = ctx.actor(), extra = ctx.get("extra"), all = ctx.all() }
end }
"#,
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local base = funcs.new()
  local traced = base:with_context({ trace = "abc-123" })
  local r = traced:call("app:outer")
  local plain = base:call("app:inner")
  return { r = r, plain_trace = plain.trace == nil, me = process.pid(), plain_actor = plain.actor }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["r"]["outer_trace"], "abc-123");
    assert_eq!(v["r"]["inner"]["trace"], "abc-123", "two calls deep: {v}");
    assert_eq!(v["r"]["inner"]["actor"], v["me"]);
    assert_eq!(v["r"]["extra"]["extra"], "added");
    assert_eq!(v["r"]["extra"]["trace"], "abc-123");
    assert_eq!(
        v["plain_trace"], true,
        "with_context returned a new executor"
    );
    assert_eq!(v["plain_actor"], v["me"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_isolated_and_process_apis_work_in_functions() {
    let v = App::new()
        .func(
            "keeper",
            r#"
local time = require("time")
return { main = function(x)
  mine = x
  time.sleep(20 * time.MILLISECOND)
  return mine
end }
"#,
            Some("{type: static, size: 4}"),
        )
        .func(
            "needs_process",
            "return { main = function() return type(process.pid()) .. ' ' .. type(process.inbox()) end }",
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local fs = {}
  for i = 1, 4 do fs[i] = funcs.async("app:keeper", i) end
  local got = {}
  for i = 1, 4 do got[i] = fs[i]:response():receive():data() end
  return { got = got, refused = funcs.call("app:needs_process") }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["got"], json!([1, 2, 3, 4]));
    assert_eq!(v["refused"], "string userdata", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_call_from_outside_any_process() {
    let app = App::new().func(
        "greet",
        "return { main = function(who, n) return { hello = who, twice = n * 2 } end }",
        None,
    );
    let rt = app.start().await;
    let v = rt
        .call(
            "app:greet",
            vec![
                warden::value::Value::str("Ada"),
                warden::value::Value::Int(21),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        warden::value::to_json(&v).unwrap(),
        json!({"hello": "Ada", "twice": 42})
    );
    let e = rt.call("app:nope", vec![], None).await.unwrap_err();
    assert_eq!(e.kind, "NOT_FOUND");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_objects_carry_values() {
    let v = common::lua_value(
        r#"
return { main = function()
  local p = payload.new({ n = 1, list = { "a", "b" } })
  local d = p:data()
  d.n = 2 -- a copy: the payload keeps its value
  local j = p:transcode("json")
  local _, bad = p:transcode("xml")
  local _, cyc_err = payload.new(setmetatable({}, { __index = function() end }))
  return { n = p:data().n, list = p:data().list, format = p:format(), json = j:data().n,
           bad = bad and bad:kind(), text = tostring(payload.new(5)) }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({"n": 1, "list": ["a", "b"], "format": "lua/any", "json": 1, "bad": "Internal",
               "text": "payload{format=lua/any}"})
    );
}

/// en/lua/data/payload.md: `payload.format.*` are the runtime's format names,
/// `get_format()` names a payload's, `transcode` to JSON, YAML and MessagePack keeps the
/// data (`data()` and `unmarshal()` decode it back), an error object makes a
/// `golang/error` payload, and a failed transcoding is INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_transcode_between_wippys_formats() {
    let v = common::lua_value(
        r#"
return { main = function()
  local p = payload.new({ name = "test", value = 123, tags = { "a", "b" } })
  local out = { formats = {}, round = {} }
  for k, f in pairs(payload.format) do out.formats[k] = f end
  for _, f in ipairs({ payload.format.JSON, payload.format.YAML, payload.format.MSGPACK }) do
    local t, err = p:transcode(f)
    local back = t:transcode(payload.format.LUA)
    local d = t:unmarshal()
    out.round[#out.round + 1] = { t:get_format(), err == nil, d.name, d.value, d.tags[2],
      back:get_format(), back:data().value, t:data().name }
  end
  local s = payload.new("hello"):transcode(payload.format.STRING)
  local e = payload.new(errors.new({ message = "failed", kind = errors.NOT_FOUND }))
  local _, bad = p:transcode("xml/plain")
  local cross = p:transcode(payload.format.JSON):transcode(payload.format.MSGPACK)
  process.send(process.pid(), "t", { x = 1 })
  local m = process.inbox():receive():payload()
  return {
    message = { m:get_format(), m:transcode(payload.format.JSON):get_format(), m:unmarshal().x },
    formats = out.formats, round = out.round,
    string = { s:get_format(), s:data() },
    err = { e:get_format(), e:data():kind(), e:data():message() },
    bad = { bad:kind(), bad:retryable() },
    cross = { cross:get_format(), cross:data().tags[1] },
    lua = payload.new(nil):get_format(),
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "formats": {"JSON": "json/plain", "YAML": "yaml/plain", "STRING": "text/plain",
                "BYTES": "application/octet-stream", "MSGPACK": "application/msgpack",
                "LUA": "lua/any", "GOLANG": "golang/any", "ERROR": "golang/error"},
            "round": [
                ["json/plain", true, "test", 123, "b", "lua/any", 123, "test"],
                ["yaml/plain", true, "test", 123, "b", "lua/any", 123, "test"],
                ["application/msgpack", true, "test", 123, "b", "lua/any", 123, "test"],
            ],
            "string": ["text/plain", "hello"],
            "err": ["golang/error", "NotFound", "failed"],
            "bad": ["Internal", false],
            "cross": ["application/msgpack", "a"],
            "lua": "lua/any",
            "message": ["lua/any", "json/plain", 1],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_get_of_a_missing_key_is_not_found() {
    let v = App::new()
        .func(
            "peek",
            "local ctx = require('ctx') return { main = function() local v, err = ctx.get('user') return { v = v, kind = err and err:kind() } end }",
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local ctx = require("ctx")
return { main = function()
  local v, err = ctx.get("nothing")
  return {
    here = { v = v, kind = err:kind(), text = tostring(err) },
    without = funcs.call("app:peek"),
    with = funcs.new():with_context({ user = "ada" }):call("app:peek"),
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "here": {"kind": "NotFound", "text": "ctx.get: no value \"nothing\" in the context"},
            "without": {"kind": "NotFound"},
            "with": {"v": "ada"},
        })
    );
}
