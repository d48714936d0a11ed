//! OTP supervision trees: strategies, restart types, intensity, nesting.

mod common;

use common::ExecWithin;

use common::trees::{service, tree, HELPERS, WORKER};
use common::App;
use serde_json::json;
use warden::process::Exit;

const ABC: &str = "[{id: a, process: worker}, {id: b, process: worker}, {id: c, process: worker}]";

async fn strategy(strategy: &str) -> serde_json::Value {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local before = pids("app:t")
  process.send(before.b, "crash")
  local after = wait("app:t", function(p) return p.b and p.b ~= before.b end)
  -- the restarted child answers
  process.send(after.b, "ping")
  local pong = process.inbox():receive():payload():data()
  local restarts = {{}}
  for _, c in ipairs(supervisor.children("app:t")) do restarts[c.id] = c.restarts end
  return {{ a = after.a ~= before.a, b = after.b ~= before.b, c = after.c ~= before.c,
           pong = pong == after.b, restarts = restarts }}
end }}
"#
    );
    App::new()
        .lua("worker", WORKER)
        .entry(&tree("t", strategy, 5, ABC))
        .entry(&service("svc", "t", ""))
        .lua("main", &main)
        .value("main")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_crashed_child() {
    let v = strategy("one_for_one").await;
    assert_eq!(v["a"], false);
    assert_eq!(v["b"], true);
    assert_eq!(v["c"], false);
    assert_eq!(v["pong"], true);
    assert_eq!(v["restarts"], json!({"a": 0, "b": 1, "c": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_child() {
    let v = strategy("one_for_all").await;
    assert_eq!(
        (v["a"].clone(), v["b"].clone(), v["c"].clone()),
        (json!(true), json!(true), json!(true)),
        "{v}"
    );
    assert_eq!(v["restarts"], json!({"a": 1, "b": 1, "c": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_child_and_those_after_it() {
    let v = strategy("rest_for_one").await;
    assert_eq!(
        (v["a"].clone(), v["b"].clone(), v["c"].clone()),
        (json!(false), json!(true), json!(true)),
        "{v}"
    );
    assert_eq!(v["restarts"], json!({"a": 0, "b": 1, "c": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_types_follow_otp() {
    let children = "[{id: p, process: worker, restart: permanent}, {id: t, process: worker, restart: transient}, {id: tmp, process: worker, restart: temporary}]";
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  local out = {{}}
  -- normal exits: only the permanent child comes back
  assert(supervisor.start("app:svc_normal"))
  local b = pids("app:normal")
  for _, id in ipairs({{ "p", "t", "tmp" }}) do process.send(b[id], "stop") end
  local a = wait("app:normal", function(p) return p.p and p.p ~= b.p and not p.t and not p.tmp end)
  -- a temporary child that ended is gone from the tree (OTP deletes it); a transient one
  -- that ended normally stays, not running
  out.normal = {{ p = a.p ~= b.p, t = a.t, tmp_listed = a.tmp ~= nil }}
  -- crashes: permanent and transient come back, temporary does not
  assert(supervisor.start("app:svc_crash"))
  b = pids("app:crash")
  for _, id in ipairs({{ "p", "t", "tmp" }}) do process.send(b[id], "crash") end
  a = wait("app:crash", function(p) return p.p and p.p ~= b.p and p.t and p.t ~= b.t and not p.tmp end)
  out.crash = {{ p = a.p ~= b.p, t = a.t ~= b.t, tmp_listed = a.tmp ~= nil }}
  return out
end }}
"#
    );
    let v = App::new()
        .lua("worker", WORKER)
        .entry(&tree("normal", "one_for_one", 10, children))
        .entry(&tree("crash", "one_for_one", 10, children))
        .entry(&service("svc_normal", "normal", ""))
        .entry(&service("svc_crash", "crash", ""))
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(
        v["normal"],
        json!({"p": true, "t": false, "tmp_listed": false})
    );
    assert_eq!(
        v["crash"],
        json!({"p": true, "t": true, "tmp_listed": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_sibling_is_stopped_but_not_restarted_by_one_for_all() {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local before = pids("app:t")
  process.monitor(before.tmp)
  process.send(before.p, "crash")
  local ev = process.events():receive()
  local after = wait("app:t", function(p) return p.p and p.p ~= before.p and p.q and p.q ~= before.q end)
  return {{ tmp_exit = ev.result.error or ev.result.value, tmp_listed = after.tmp ~= nil,
           restarted = after.p ~= before.p and after.q ~= before.q }}
end }}
"#
    );
    let v = App::new()
        .lua("worker", WORKER)
        .entry(&tree(
            "t",
            "one_for_all",
            5,
            "[{id: p, process: worker}, {id: tmp, process: worker, restart: temporary}, {id: q, process: worker}]",
        ))
        .entry(&service("svc", "t", ""))
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"tmp_exit": "canceled", "tmp_listed": false, "restarted": true})
    );
}

/// one_for_all stops the siblings through their shutdown, as OTP does: a sibling that
/// sees the CANCEL runs its cleanup before it is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_restarted_by_the_strategy_stop_through_their_shutdown() {
    let v = App::new()
        .lua("worker", WORKER)
        .lua(
            "tidy",
            r#"
return { main = function()
  process.events():receive()   -- CANCEL
  process.send("collector", "cleaned", process.pid())
  return "cleaned"
end }
"#,
        )
        .entry(&tree(
            "t",
            "one_for_all",
            5,
            "[{id: a, process: worker}, {id: b, process: tidy, shutdown: 2s}]",
        ))
        .entry(&service("svc", "t", ""))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
return {{ main = function()
  process.registry.register("collector")
  assert(supervisor.start("app:svc"))
  local before = wait("app:t", function(p) return p.a and p.b end)
  process.monitor(before.b)
  process.send(before.a, "crash")
  local r = channel.select({{ process.inbox():case_receive(), time.after(3000 * time.MILLISECOND):case_receive() }})
  local ev = process.events():receive()
  local after = wait("app:t", function(p) return p.b and p.b ~= before.b end)
  return {{ cleaned_by = r.value and r.value:payload():data() == before.b,
           b_result = ev.result.value, replaced = after.b ~= before.b }}
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"cleaned_by": true, "b_result": "cleaned", "replaced": true})
    );
}

/// A top-level tree that gives up is restarted by its service when the service's policy
/// says so, and `run --exec` goes on; only a service that gives up ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_top_level_tree_that_its_service_restarts_is_not_fatal() {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local w = pids("app:top").w
  process.send(w, "crash")
  local again = wait("app:top", function(p) return p.w and p.w ~= w end).w
  -- the service counts its tree Running after its start window (at most 50 ms)
  for _ = 1, 400 do
    if supervisor.state("app:svc") == "Running" then break end
    time.sleep(5 * time.MILLISECOND)
  end
  return {{ restarted = again ~= w, state = supervisor.state("app:svc"),
           service_restarts = supervisor.info("app:svc").restarts }}
end }}
"#
    );
    let v = App::new()
        .lua("worker", WORKER)
        .entry(&tree("top", "one_for_one", 0, "[{id: w, process: worker}]"))
        .entry("  - name: svc\n    kind: process.service\n    process: top\n    host: host\n    lifecycle: {restart: {max_attempts: 5, initial_delay: 10ms}}\n")
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"restarted": true, "state": "Running", "service_restarts": 1})
    );
}

/// A nested supervisor's shutdown defaults to infinity, as in OTP: stopping the outer tree
/// waits for the grandchild's own 7 s shutdown, so its cleanup runs and nothing is left
/// running when the stop returns (it waited at most 5 s before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_nested_tree_waits_for_its_children_shutdown() {
    let v = App::new()
        .lua(
            "slow",
            r#"
local time = require("time")
return { main = function()
  process.events():receive()   -- CANCEL
  time.sleep(5500 * time.MILLISECOND)
  process.send("collector", "cleaned", true)
end }
"#,
        )
        .entry("  - name: inner\n    kind: supervisor\n    strategy: one_for_one\n    children: [{id: g, process: slow, host: host, shutdown: 7s}]\n")
        .entry(&tree("outer", "one_for_one", 1, "[{id: sub, supervisor: inner}]"))
        .entry(&service("svc", "outer", ", stop_timeout: 20s"))
        .lua(
            "main",
            &format!(
                r#"{HELPERS}
return {{ main = function()
  process.registry.register("collector")
  assert(supervisor.start("app:svc"))
  local g = wait("app:inner", function(p) return p.g end).g
  process.monitor(g)
  local t0 = time.now()
  supervisor.stop("app:svc")
  local waited = time.now():sub(t0):milliseconds()
  local r1 = channel.select({{ process.inbox():case_receive(), default = true }})
  local r2 = channel.select({{ process.events():case_receive(), default = true }})
  return {{ cleaned = not r1.default, exited = not r2.default and r2.value.kind == process.event.EXIT,
           waited_long = waited >= 5400 }}
end }}
"#
            ),
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"cleaned": true, "exited": true, "waited_long": true})
    );
}

/// OTP's default intensity: 1 restart in 5 s. A tree that says nothing gives up on its
/// second crash within 5 s, and its parent restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_intensity_is_one_restart_in_five_seconds() {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local w = pids("app:inner").w
  process.send(w, "crash")
  w = wait("app:inner", function(p) return p.w and p.w ~= w end).w
  local after_one = supervisor.children("app:outer")[1].restarts
  process.send(w, "crash")
  for _ = 1, 600 do
    local c = supervisor.children("app:outer")[1]
    if c.restarts == 1 and c.running then break end
    time.sleep(5 * time.MILLISECOND)
  end
  return {{ after_one = after_one, after_two = supervisor.children("app:outer")[1].restarts }}
end }}
"#
    );
    let v = App::new()
        .lua("worker", WORKER)
        .entry("  - name: inner\n    kind: supervisor\n    strategy: one_for_one\n    children: [{id: w, process: worker}]\n")
        .entry(&tree("outer", "one_for_one", 5, "[{id: sub, supervisor: inner}]"))
        .entry(&service("svc", "outer", ""))
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(v, json!({"after_one": 0, "after_two": 1}));
}

/// README, "Supervision trees": restarts older than the intensity period are forgotten
/// (OTP's supervisor.erl keeps only the restarts within the period): with one restart
/// allowed in 300 ms, two crashes 400 ms apart are each restarted by the inner tree, and
/// the outer tree never has to restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_older_than_the_period_are_forgotten() {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local w = pids("app:inner").w
  process.send(w, "crash")
  w = wait("app:inner", function(p) return p.w and p.w ~= w end).w
  time.sleep(400 * time.MILLISECOND)
  process.send(w, "crash")
  local again = wait("app:inner", function(p) return p.w and p.w ~= w end).w
  return {{ restarted = again ~= w, outer = supervisor.children("app:outer")[1].restarts }}
end }}
"#
    );
    let v = App::new()
        .lua("worker", WORKER)
        .entry("  - name: inner\n    kind: supervisor\n    strategy: one_for_one\n    intensity: {max_restarts: 1, period: 300ms}\n    children: [{id: w, process: worker}]\n")
        .entry(&tree("outer", "one_for_one", 5, "[{id: sub, supervisor: inner}]"))
        .entry(&service("svc", "outer", ""))
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(v, json!({"restarted": true, "outer": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_trees_run_and_exhausted_intensity_escalates_through_two_levels() {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local outer = supervisor.children("app:outer")
  local info = {{ id = outer[1].id, kind = outer[1].kind, running = outer[1].running }}
  -- crash the leaf twice: the inner tree (max 1 restart) gives up, the outer restarts it
  local w = pids("app:inner").w
  process.send(w, "crash")
  w = wait("app:inner", function(p) return p.w and p.w ~= w end).w
  process.send(w, "crash")
  local restarted = wait("app:outer", function(p) return true end)
  for _ = 1, 600 do
    local c = supervisor.children("app:outer")[1]
    if c.restarts == 1 and c.running then break end
    time.sleep(5 * time.MILLISECOND)
  end
  local inner_restarts = supervisor.children("app:outer")[1].restarts
  -- the first level: the outer tree restarted the inner one once (else this error ends --exec)
  assert(inner_restarts == 1, "the outer tree restarted the inner one " .. inner_restarts .. " times")
  -- twice more: the inner tree fails again, the outer (max 1) gives up: fatal for --exec
  w = wait("app:inner", function(p) return p.w end).w
  process.send(w, "crash")
  w = wait("app:inner", function(p) return p.w and p.w ~= w end).w
  process.send(w, "crash")
  -- the outer tree gives up: the runtime ends this process with the failure
  process.inbox():receive()
  return {{ first = info, inner_restarts = inner_restarts }}
end }}
"#
    );
    let app = App::new()
        .lua("worker", WORKER)
        .entry(&tree(
            "inner",
            "one_for_one",
            1,
            "[{id: w, process: worker}]",
        ))
        .entry(&tree(
            "outer",
            "one_for_one",
            1,
            "[{id: sub, supervisor: inner}]",
        ))
        .entry(&service("svc", "outer", ""))
        .lua("main", &main);
    let rt = app.start().await;
    let exit = rt
        .exec_within(&warden::registry::Id::new("app", "main"), vec![])
        .await
        .unwrap();
    let state = rt
        .supervision()
        .status(&warden::registry::Id::new("app", "svc"))
        .unwrap();
    rt.shutdown().await;
    match exit {
        Exit::Error(e) => {
            assert!(e.contains("a supervision tree failed"), "{e}");
            assert!(
                e.contains("supervisor app:outer: more than 1 restarts"),
                "{e}"
            );
        }
        other => panic!("expected the tree failure to end --exec, got {other:?}"),
    }
    assert_eq!(state.state.name(), "Failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nested_supervisor_takes_its_children_down_and_is_restarted() {
    let main = format!(
        r#"{HELPERS}
return {{ main = function()
  assert(supervisor.start("app:svc"))
  local before = pids("app:inner")
  local sibling = pids("app:outer").solo
  process.monitor(before.a)
  process.monitor(before.b)
  local ok, err = supervisor.kill("app:inner")
  -- both children of the killed tree were terminated before kill returned
  local events = process.events()
  local e1, e2 = events:receive(), events:receive()
  local after = wait("app:inner", function(p) return p.a and p.b end)
  local outer = {{}}
  for _, c in ipairs(supervisor.children("app:outer")) do outer[c.id] = c.restarts end
  local _, unknown = supervisor.kill("app:nope")
  local _, bad = supervisor.kill("")
  return {{ ok = ok, err = err, downs = {{ e1.result.error, e2.result.error }},
           new_a = after.a ~= before.a, new_b = after.b ~= before.b,
           sibling_kept = pids("app:outer").solo == sibling,
           outer_restarts = outer,
           unknown = unknown:kind(), unknown_msg = unknown:message(), bad = bad:kind() }}
end }}
"#
    );
    let v = App::new()
        .lua("worker", WORKER)
        .entry(&tree(
            "inner",
            "one_for_one",
            5,
            "[{id: a, process: worker}, {id: b, process: worker}]",
        ))
        .entry(&tree(
            "outer",
            "one_for_one",
            5,
            "[{id: sub, supervisor: inner}, {id: solo, process: worker}]",
        ))
        .entry(&service("svc", "outer", ""))
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["downs"], json!(["terminated", "terminated"]), "{v}");
    assert_eq!(v["new_a"], json!(true), "{v}");
    assert_eq!(v["new_b"], json!(true), "{v}");
    assert_eq!(v["sibling_kept"], json!(true), "{v}");
    assert_eq!(v["outer_restarts"], json!({"sub": 1, "solo": 0}), "{v}");
    assert_eq!(v["unknown"], json!("NotFound"), "{v}");
    assert_eq!(
        v["unknown_msg"],
        json!("supervisor app:nope is not running"),
        "{v}"
    );
    assert_eq!(v["bad"], json!("Invalid"), "{v}");
}

/// The documented example tree in the repository's `supervisors/` runs as described.
#[test]
fn the_example_tree_in_supervisors_restarts_the_rest_for_one() {
    let dir = format!("{}/supervisors", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d", &dir, "--exec", "pipeline:demo"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    // rest_for_one: the parser and the nested sink after it restart, the reader does not
    assert_eq!(
        v,
        json!({"reader": false, "parser": true, "sink": true}),
        "{stderr}"
    );
}
