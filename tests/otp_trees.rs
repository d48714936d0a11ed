//! Supervision trees as OTP's supervisor: ordered synchronous starts, start failures,
//! `ignore`, the runtime API (start/terminate/restart/delete_child, which/count_children,
//! get_childspec, check_childspecs), simple_one_for_one, significant children.

mod common;

use common::trees::{service, tree, HELPERS, WORKER};
use common::App;
use serde_json::json;

/// A child that, on CANCEL, tells the process registered as `collector` its first
/// argument, then ends.
const TIDY: &str = r#"
return { main = function(name)
  process.events():receive()   -- CANCEL
  process.send("collector", "stopped", name)
  return "cleaned"
end }
"#;

/// Each child starts only once the one before it is started: a child's code up to its
/// first wait is its init (a busy init included), and a `start: ack` child is started
/// only when it calls `supervisor.started()` (after a sleep here), so a later child sees
/// the names both registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_one_at_a_time_in_declaration_order() {
    let v = App::new()
        .lua(
            "busy_init",
            r#"
local time = require("time")
return { main = function()
  local t0 = time.now()
  while time.now():sub(t0):milliseconds() < 120 do end   -- computes, never waits
  process.registry.register("a_ready")
  process.inbox():receive()
end }
"#,
        )
        .lua(
            "acked",
            r#"
local time, supervisor = require("time"), require("supervisor")
return { main = function()
  time.sleep(150 * time.MILLISECOND)                       -- a wait, but this child acknowledges itself
  process.registry.register("b_ready")
  supervisor.started()
  process.inbox():receive()
end }
"#,
        )
        .lua(
            "checker",
            r#"
return { main = function()
  process.send("collector", "seen", {
    a = process.registry.lookup("a_ready") ~= nil,
    b = process.registry.lookup("b_ready") ~= nil })
  process.inbox():receive()
end }
"#,
        )
        .entry(&tree(
            "t",
            "one_for_one",
            1,
            "[{id: a, process: busy_init}, {id: b, process: acked, start: ack}, {id: c, process: checker}]",
        ))
        .entry(&service("svc", "t", ""))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
return { main = function()
  process.registry.register("collector")
  assert(supervisor.start("app:svc"))
  return process.inbox():receive():payload():data()
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"a": true, "b": true}));
}

/// A child is started when it first waits for a message (OTP's `init` has returned), not
/// at any wait: a sleep, a `funcs.call` or a channel between its own coroutines during
/// its initialisation do not let the next sibling start (Wippy: en/guides/supervision.md;
/// OTP's `start_link`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_is_started_when_it_first_waits_for_a_message() {
    let v = App::new()
        .func(
            "slow",
            "local time = require('time')\nreturn { main = function() time.sleep(120 * time.MILLISECOND) return 1 end }",
            None,
        )
        .lua(
            "sleeps",
            r#"
local time = require("time")
return { main = function()
  time.sleep(150 * time.MILLISECOND)                       -- a warm-up: still initialising
  process.registry.register("a_ready")
  process.inbox():receive()
end }
"#,
        )
        .lua(
            "calls",
            r#"
local funcs = require("funcs")
return { main = function()
  funcs.call("app:slow")                -- a slow call: still initialising
  local ch = channel.new()
  coroutine.spawn(function() require("time").sleep("30ms") ch:send(true) end)
  ch:receive()                          -- a channel of its own: still initialising
  process.registry.register("b_ready")
  process.events():receive()
end }
"#,
        )
        .lua(
            "checker",
            r#"
return { main = function()
  process.send("collector", "seen", {
    a = process.registry.lookup("a_ready") ~= nil,
    b = process.registry.lookup("b_ready") ~= nil })
  process.inbox():receive()
end }
"#,
        )
        .entry(&tree(
            "t",
            "one_for_one",
            1,
            "[{id: a, process: sleeps}, {id: b, process: calls}, {id: c, process: checker}]",
        ))
        .entry(&service("svc", "t", ""))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
return { main = function()
  process.registry.register("collector")
  assert(supervisor.start("app:svc"))
  return process.inbox():receive():payload():data()
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"a": true, "b": true}));
}

/// A child that fails as it starts fails the tree's start: the children started before it
/// are stopped through their shutdown, last first, and the start returns the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_failing_in_init_fails_the_start_and_stops_the_others_in_reverse() {
    let v = App::new()
        .lua("tidy", TIDY)
        .lua(
            "bad_init",
            "return { main = function() error('crash in init') end }",
        )
        .entry(&tree(
            "t",
            "one_for_one",
            5,
            "[{id: a, process: tidy, args: [a]}, {id: b, process: tidy, args: [b]}, {id: c, process: bad_init}]",
        ))
        .entry(&service("svc", "t", ""))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
return { main = function()
  process.registry.register("collector")
  local ok, err = supervisor.start("app:svc")
  local inbox = process.inbox()
  local first = inbox:receive():payload():data()
  local second = inbox:receive():payload():data()
  return { ok = ok == true, err = tostring(err), order = { first, second } }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["order"], json!(["b", "a"]), "{v}");
    let err = v["err"].as_str().unwrap();
    assert!(
        err.contains(
            "service app:svc failed to start: supervisor app:t: child c failed to start: "
        ) && err.contains("crash in init")
            && !err.contains("panicked"),
        "{err}"
    );
}

/// `supervisor.ignore()` is OTP's `ignore`: the child does not run and is not restarted
/// (a temporary one is forgotten), at the tree's start and at a restart alike; a child
/// that does not start within its start_timeout fails the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_and_start_timeout() {
    let ignorer = r#"
local supervisor = require("supervisor")
return { main = function() supervisor.ignore() error("not reached") end }
"#;
    let v = App::new()
        .lua("worker", WORKER)
        .lua("ignorer", ignorer)
        .lua(
            "silent",
            "return { main = function() process.inbox():receive() end }",
        )
        .lua(
            "second",
            r#"
local supervisor = require("supervisor")
return { main = function()
  if process.registry.lookup("armed") then supervisor.ignore() end
  while true do
    if process.inbox():receive():topic() == "crash" then error("crashed") end
  end
end }
"#,
        )
        .lua(
            "armer",
            "return { main = function() process.registry.register('armed') process.inbox():receive() end }",
        )
        .entry(&tree(
            "r",
            "one_for_one",
            1,
            "[{id: x, process: second}, {id: y, process: worker}]",
        ))
        .entry(&service("svc3", "r", ""))
        .entry(&tree(
            "t",
            "one_for_one",
            1,
            "[{id: x, process: ignorer}, {id: y, process: worker}, {id: z, process: ignorer, restart: temporary}]",
        ))
        .entry(&service("svc", "t", ""))
        .entry(&tree(
            "slow",
            "one_for_one",
            1,
            "[{id: s, process: silent, start: ack, start_timeout: 200ms}]",
        ))
        .entry(&service("svc2", "slow", ""))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  time.sleep(50 * time.MILLISECOND)
  local kids = {{}}
  for _, c in ipairs(supervisor.which_children("app:t")) do
    kids[#kids + 1] = c.id .. "=" .. c.state .. ":" .. c.restarts
  end
  local ok, err = supervisor.start("app:svc2")
  -- ignore at a restart
  assert(supervisor.start("app:svc3"))
  local before = pids("app:r")
  process.spawn("app:armer", "app:host")
  time.sleep(20 * time.MILLISECOND)
  process.send(before.x, "crash")
  local after = wait("app:r", function(p) return p.x == false end)
  time.sleep(100 * time.MILLISECOND)
  local r = {{}}
  for _, c in ipairs(supervisor.which_children("app:r")) do
    r[#r + 1] = c.id .. "=" .. c.state .. ":" .. c.restarts
  end
  return {{ kids = kids, slow_ok = ok == true, slow_err = tostring(err), at_restart = r,
           y_kept = after.y == before.y }}
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(v["kids"], json!(["x=undefined:0", "y=running:0"]), "{v}");
    assert_eq!(
        v["at_restart"],
        json!(["x=undefined:1", "y=running:0"]),
        "{v}"
    );
    assert_eq!(v["y_kept"], json!(true));
    assert_eq!(v["slow_ok"], json!(false));
    assert!(
        v["slow_err"]
            .as_str()
            .unwrap()
            .contains("child s did not start within 200ms (start_timeout)"),
        "{v}"
    );
}

/// The runtime API of OTP's supervisor with its results and errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_api_follows_otp() {
    let v = App::new()
        .lua("worker", WORKER)
        .entry(&tree("t", "one_for_one", 5, "[{id: a, process: worker}]"))
        .entry(&service("svc", "t", ""))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
local function reason(_, err) return err and err:details().reason .. "/" .. err:kind() end
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local r = {{}}
  local pid = supervisor.start_child("app:t", {{ id = "b", process = "worker", restart = "transient", shutdown = "brutal_kill" }})
  r.started = type(pid) == "string" and pid:sub(1, 1) == "{{"
  local _, e = supervisor.start_child("app:t", {{ id = "b", process = "worker" }})
  r.again = e:details().reason .. "/" .. e:kind() .. "/" .. tostring(e:details().pid == pid)
  r.restart_running = reason(supervisor.restart_child("app:t", "b"))
  r.delete_running = reason(supervisor.delete_child("app:t", "b"))
  r.terminate = supervisor.terminate_child("app:t", "b")
  r.state_after_terminate = pids("app:t").b
  r.present = reason(supervisor.start_child("app:t", {{ id = "b", process = "worker" }}))
  local again = supervisor.restart_child("app:t", "b")
  r.restarted = type(again) == "string" and again ~= pid
  process.send(again, "ping")
  r.answers = process.inbox():receive():payload():data() == again
  local spec = supervisor.get_childspec("app:t", "b")
  r.spec = spec.id .. " " .. spec.process .. " " .. spec.restart .. " " .. tostring(spec.shutdown) .. " " .. spec.type
  local a = supervisor.get_childspec("app:t", "a")
  r.default_shutdown = a.shutdown
  r.count = supervisor.count_children("app:t")
  assert(supervisor.terminate_child("app:t", "b"))
  r.delete = supervisor.delete_child("app:t", "b")
  r.gone = reason(supervisor.get_childspec("app:t", "b"))
  r.unknown = reason(supervisor.terminate_child("app:t", "nope"))
  r.restart_unknown = reason(supervisor.restart_child("app:t", "nope"))
  local _, bad = supervisor.start_child("app:t", {{ id = "c", process = "ghost" }})
  r.bad_spec = bad:kind() .. " " .. tostring(bad)
  local ok, cerr = supervisor.check_childspecs({{ {{ id = "x", process = "worker" }}, {{ id = "y", process = "worker", restart = "sometimes" }} }})
  r.check_bad = tostring(ok) .. " " .. tostring(cerr)
  r.check_good = supervisor.check_childspecs({{ {{ id = "x", process = "worker" }} }})
  r.after = #supervisor.which_children("app:t")
  return r
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(v["started"], json!(true), "{v}");
    assert_eq!(v["again"], json!("already_started/AlreadyExists/true"));
    assert_eq!(v["restart_running"], json!("running/Conflict"));
    assert_eq!(v["delete_running"], json!("running/Conflict"));
    assert_eq!(v["terminate"], json!(true));
    assert_eq!(v["state_after_terminate"], json!(false));
    assert_eq!(v["present"], json!("already_present/AlreadyExists"));
    assert_eq!(v["restarted"], json!(true));
    assert_eq!(v["answers"], json!(true));
    assert_eq!(
        v["spec"],
        json!("b app:worker transient brutal_kill worker")
    );
    assert_eq!(v["default_shutdown"], json!(5000));
    assert_eq!(
        v["count"],
        json!({"specs": 2, "active": 2, "supervisors": 0, "workers": 2})
    );
    assert_eq!(v["delete"], json!(true));
    assert_eq!(v["gone"], json!("not_found/NotFound"));
    assert_eq!(v["unknown"], json!("not_found/NotFound"));
    assert_eq!(v["restart_unknown"], json!("not_found/NotFound"));
    let bad = v["bad_spec"].as_str().unwrap();
    assert!(
        bad.starts_with("Invalid")
            && bad.contains("process: dangling reference: app:ghost does not exist"),
        "{bad}"
    );
    let check = v["check_bad"].as_str().unwrap();
    assert!(
        check.starts_with("nil ")
            && check.contains("spec 2: restart: unknown restart type sometimes"),
        "{check}"
    );
    assert_eq!(v["check_good"], json!(true));
    assert_eq!(v["after"], json!(1));
}

/// simple_one_for_one: children made at run time from one template with extra
/// arguments, addressed by pid, restarted with the same arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_one_for_one_starts_children_from_a_template() {
    let v = App::new()
        .lua(
            "conn",
            r#"
return { main = function(kind, name)
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    if m:topic() == "crash" then error("crashed") end
    process.send(m:from(), "me", kind .. ":" .. name)
  end
end }
"#,
        )
        .entry(&tree(
            "pool",
            "simple_one_for_one",
            5,
            "[{id: conn, process: conn, args: [tcp]}]",
        ))
        .entry(&service("svc", "pool", ""))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
local function ask(pid)
  process.send(pid, "who")
  return process.inbox():receive():payload():data()
end
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local r = {{ initially = #supervisor.which_children("app:pool") }}
  local p1 = supervisor.start_child("app:pool", {{ "x" }})
  local p2 = supervisor.start_child("app:pool", {{ "y" }})
  r.answers = {{ ask(p1), ask(p2) }}
  local ids = {{}}
  for _, c in ipairs(supervisor.which_children("app:pool")) do ids[#ids + 1] = c.id end
  r.ids = ids
  r.terminate = supervisor.terminate_child("app:pool", p1)
  r.count = supervisor.count_children("app:pool").specs
  process.send(p2, "crash")
  local p3
  for _ = 1, 200 do
    local c = supervisor.which_children("app:pool")[1]
    if c and c.pid and c.pid ~= p2 then p3 = c.pid break end
    time.sleep(5 * time.MILLISECOND)
  end
  r.restarted_with_args = ask(p3)
  local _, e = supervisor.restart_child("app:pool", "conn")
  r.restart = e:details().reason
  local _, d = supervisor.delete_child("app:pool", "conn")
  r.delete = d:details().reason
  local _, s = supervisor.start_child("app:pool", {{ id = "other", process = "conn" }})
  r.spec_refused = s:kind()
  return r
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "initially": 0,
            "answers": ["tcp:x", "tcp:y"],
            "ids": ["conn", "conn"],
            "terminate": true,
            "count": 1,
            "restarted_with_args": "tcp:y",
            "restart": "simple_one_for_one",
            "delete": "simple_one_for_one",
            "spec_refused": "Invalid",
        })
    );
}

/// A significant child that ends by itself shuts the tree down: at once under
/// `any_significant`, once the last one ended under `all_significant`; the other
/// children are stopped through their shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn significant_children_shut_the_tree_down() {
    let v = App::new()
        .lua("worker", WORKER)
        .lua("tidy", TIDY)
        .entry("  - name: any\n    kind: supervisor\n    auto_shutdown: any_significant\n    children: [{id: w, process: tidy, args: [w]}, {id: s, process: worker, restart: transient, significant: true}]\n")
        .entry(&service("svc", "any", ""))
        .entry("  - name: all\n    kind: supervisor\n    auto_shutdown: all_significant\n    children: [{id: s1, process: worker, restart: temporary, significant: true}, {id: s2, process: worker, restart: transient, significant: true}]\n")
        .entry(&service("svc2", "all", ""))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
local function gone(tree)
  for _ = 1, 200 do
    if not supervisor.children(tree) then return true end
    time.sleep(5 * time.MILLISECOND)
  end
  return false
end
return {{ main = function()
  process.registry.register("collector")
  assert(supervisor.start("app:svc"))
  local r = {{}}
  -- an abnormal exit of a transient significant child is a restart, not a shutdown
  local s = pids("app:any").s
  process.send(s, "crash")
  r.restarted = wait("app:any", function(p) return p.s and p.s ~= s end).s ~= s
  process.send(pids("app:any").s, "stop")
  r.any_gone = gone("app:any")
  r.w_stopped = process.inbox():receive():payload():data()
  assert(supervisor.start("app:svc2"))
  local p = pids("app:all")
  process.send(p.s1, "stop")
  time.sleep(100 * time.MILLISECOND)
  r.all_after_one = supervisor.children("app:all") ~= nil
  process.send(p.s2, "stop")
  r.all_gone = gone("app:all")
  return r
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"restarted": true, "any_gone": true, "w_stopped": "w",
               "all_after_one": true, "all_gone": true})
    );
}

/// A nested supervisor's `shutdown` bounds its whole stop: past it, its children still
/// running are terminated (as killing an OTP supervisor takes its linked children down),
/// so nothing runs on once the stop returned, and the stop does not wait for a
/// grandchild's longer shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_supervisors_shutdown_bounds_its_stop_and_leaves_nothing_running() {
    let v = App::new()
        .lua(
            "stubborn",
            r#"
local time = require("time")
return { main = function()
  process.events():receive()   -- CANCEL: takes its time to clean up
  time.sleep(8000 * time.MILLISECOND)
end }
"#,
        )
        .entry("  - name: inner\n    kind: supervisor\n    children: [{id: g, process: stubborn, shutdown: 10s}]\n")
        .entry(&tree("outer", "one_for_one", 1, "[{id: sub, supervisor: inner, shutdown: 1s}]"))
        .entry(&service("svc", "outer", ", stop_timeout: 20s"))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local g = wait("app:inner", function(p) return p.g end).g
  process.monitor(g)
  local t0 = time.now()
  supervisor.stop("app:svc")
  local waited = time.now():sub(t0):milliseconds()
  local r = channel.select({{ process.events():case_receive(), default = true }})
  return {{ exited = not r.default and r.value.kind == process.event.EXIT,
           bounded = waited >= 900 and waited < 4000 }}
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"exited": true, "bounded": true}));
}
