//! process.service: restart backoff, stable threshold, states, dependency order, stop
//! timeouts, the `supervisor` Lua API, and bad service YAML.

mod common;

use common::App;
use serde_json::json;
use warden::process::Exit;
use warden::registry::{load_dir, Id};

fn service(name: &str, process: &str, lifecycle: &str) -> String {
    format!(
        "  - name: {name}\n    kind: process.service\n    process: {process}\n    host: host\n    lifecycle: {lifecycle}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_exponentially_within_jitter_then_give_up() {
    let v = App::new()
        .lua(
            "crashy",
            r#"
local time = require("time")
return { main = function()
  process.send("collector", "started", time.now():unix_nano())
  error("crash on purpose")
end }
"#,
        )
        .entry(&service(
            "svc",
            "crashy",
            "{restart: {initial_delay: 40ms, max_delay: 1s, backoff_factor: 2.0, jitter: 0.1, max_attempts: 4}}",
        ))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
local time = require("time")
return { main = function()
  process.registry.register("collector")
  local ok, err = supervisor.start("app:svc")
  local starts = {}
  local inbox = process.inbox()
  for i = 1, 4 do starts[i] = inbox:receive():payload():data() end
  -- no fifth start: the service gave up after 4 failures
  local extra = channel.select({ inbox:case_receive(), time.after("400ms"):case_receive() })
  local gaps = {}
  for i = 2, 4 do gaps[i - 1] = (starts[i] - starts[i - 1]) / 1e6 end
  local info = supervisor.info("app:svc")
  return { start_ok = ok == true, start_err = tostring(err), gaps = gaps, fifth = extra.channel == inbox,
           state = supervisor.state("app:svc"), restarts = info.restarts, attempt = info.attempt, error = info.error }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["start_ok"], false);
    assert!(
        v["start_err"]
            .as_str()
            .unwrap()
            .contains("crash on purpose"),
        "{v}"
    );
    for (i, base) in [40.0, 80.0, 160.0].iter().enumerate() {
        let gap = v["gaps"][i].as_f64().unwrap();
        assert!(
            // at least the jittered base (a sleep is never short); at most that plus
            // 300 ms for a busy machine (a factor of 4 would give 160, 640 ms)
            gap >= base * 0.9 - 1.0 && gap <= base * 1.1 + 300.0,
            "gap {i}: {gap} ms for a base of {base} ms: {v}"
        );
    }
    assert_eq!(v["fifth"], false, "{v}");
    assert_eq!(v["state"], "Failed");
    assert_eq!(v["restarts"], 3);
    assert_eq!(v["attempt"], 4);
    assert!(v["error"].as_str().unwrap().contains("crash on purpose"));
}

/// README, "Services": the delay grows by `backoff_factor` up to `max_delay`
/// (en/guides/supervision.md, "Restart Policy"): with 20 ms growing 20 times per attempt
/// and a cap of 50 ms, the gaps are 20, 50, 50 ms (uncapped they would be 20, 400,
/// 8,000 ms; the bounds leave a busy machine 300 ms and more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff_stops_growing_at_max_delay() {
    let v = App::new()
        .lua(
            "crashy",
            r#"
local time = require("time")
return { main = function()
  process.send("collector", "started", time.now():unix_nano())
  error("crash on purpose")
end }
"#,
        )
        .entry(&service(
            "svc",
            "crashy",
            "{restart: {initial_delay: 20ms, max_delay: 50ms, backoff_factor: 20.0, jitter: 0.0, max_attempts: 4}}",
        ))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
return { main = function()
  process.registry.register("collector")
  supervisor.start("app:svc")
  local starts, inbox = {}, process.inbox()
  for i = 1, 4 do starts[i] = inbox:receive():payload():data() end
  local gaps = {}
  for i = 2, 4 do gaps[i - 1] = (starts[i] - starts[i - 1]) / 1e6 end
  return gaps
end }
"#,
        )
        .value("main")
        .await;
    let gap = |i: usize| v[i].as_f64().unwrap();
    assert!(gap(0) >= 19.0, "{v}");
    assert!(
        (49.0..350.0).contains(&gap(1)),
        "the second delay is not capped: {v}"
    );
    assert!(
        (49.0..2000.0).contains(&gap(2)),
        "the third delay is not capped: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stable_run_resets_the_attempt_counter() {
    let v = App::new()
        .lua(
            "slowcrash",
            r#"
local time = require("time")
return { main = function()
  process.send("collector", "started", time.now():unix_nano())
  time.sleep("60ms")
  process.send("collector", "crashing", time.now():unix_nano())
  error("late crash")
end }
"#,
        )
        .entry(&service(
            "svc",
            "slowcrash",
            "{stable_threshold: 30ms, restart: {initial_delay: 20ms, backoff_factor: 4.0, jitter: 0.0, max_delay: 5s}}",
        ))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
return { main = function()
  process.registry.register("collector")
  assert(supervisor.start("app:svc"))
  local inbox = process.inbox()
  local events = {}
  for i = 1, 7 do
    local m = inbox:receive()
    events[i] = { m:topic(), m:payload():data() }
  end
  supervisor.stop("app:svc")
  -- gaps between a crash and the next start: without the reset they would grow 20, 80, 320 ms
  local gaps = {}
  for i = 2, 6, 2 do gaps[#gaps + 1] = (events[i + 1][2] - events[i][2]) / 1e6 end
  return { gaps = gaps, attempt = supervisor.info("app:svc").attempt, state = supervisor.state("app:svc") }
end }
"#,
        )
        .value("main")
        .await;
    for g in v["gaps"].as_array().unwrap() {
        let g = g.as_f64().unwrap();
        assert!(
            (18.0..75.0).contains(&g),
            "each restart waits the initial delay: {v}"
        );
    }
    assert_eq!(v["attempt"], 1, "{v}");
    assert_eq!(v["state"], "Stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_return_is_stopped_terminate_is_exited_and_the_api_steers_services() {
    let v = App::new()
        .lua(
            "waiter",
            r#"
return { main = function()
  local m = process.inbox():receive()
  return m:topic()
end }
"#,
        )
        .entry(&service(
            "quits",
            "waiter",
            "{stop_timeout: 50ms, restart: {initial_delay: 10ms}}",
        ))
        .entry(&service(
            "killed",
            "waiter",
            "{stop_timeout: 50ms, restart: {initial_delay: 10ms}}",
        ))
        .lua(
            "polite",
            r#"
return { main = function()
  local ev = process.events():receive()
  return "leaving after " .. ev.kind
end }
"#,
        )
        .entry(&service(
            "canceled",
            "polite",
            "{stop_timeout: 1s, restart: {initial_delay: 10ms}}",
        ))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
local time = require("time")
local function wait_state(id, want)
  for _ = 1, 400 do
    if supervisor.state(id) == want then return true end
    time.sleep(5 * time.MILLISECOND)
  end
  return supervisor.state(id)
end
return { main = function()
  local out = {}
  out.before = supervisor.state("app:quits")
  assert(supervisor.start("app:quits"))
  out.running = supervisor.state("app:quits")
  local pid = supervisor.info("app:quits").pid
  process.send(pid, "done")
  out.returned = wait_state("app:quits", "Stopped")
  time.sleep(50 * time.MILLISECOND)
  out.not_restarted = supervisor.info("app:quits").restarts
  assert(supervisor.start("app:killed"))
  process.terminate(supervisor.info("app:killed").pid)
  out.terminated = wait_state("app:killed", "Exited")
  -- a cancel is an explicit stop too, though the process returns normally
  assert(supervisor.start("app:canceled"))
  process.cancel(supervisor.info("app:canceled").pid, "enough")
  out.canceled = wait_state("app:canceled", "Exited")
  time.sleep(50 * time.MILLISECOND)
  out.canceled_restarts = supervisor.info("app:canceled").restarts
  -- restart gives a fresh process
  assert(supervisor.start("app:quits"))
  local p1 = supervisor.info("app:quits").pid
  out.restart = supervisor.restart("app:quits")
  out.new_pid = supervisor.info("app:quits").pid ~= p1
  out.stop = supervisor.stop("app:quits")
  out.after_stop = supervisor.state("app:quits")
  local _, err = supervisor.start("app:nope")
  out.unknown = { err:kind(), tostring(err) }
  local _, err2 = supervisor.state("bad id")
  out.bad_id = err2:kind()
  out.list = #supervisor.list()
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["before"], "Unknown");
    assert_eq!(v["running"], "Running");
    assert_eq!(v["canceled"], true, "{v}");
    assert_eq!(v["canceled_restarts"], 0, "{v}");
    assert_eq!(v["returned"], true);
    assert_eq!(v["not_restarted"], 0);
    assert_eq!(v["terminated"], true);
    assert_eq!(v["restart"], true);
    assert_eq!(v["new_pid"], true);
    assert_eq!(v["stop"], true);
    assert_eq!(v["after_stop"], "Stopped");
    assert_eq!(v["unknown"][0], "NotFound");
    assert_eq!(v["bad_id"], "Invalid");
    assert_eq!(v["list"], 3);
}

const REPORTER: &str = r#"
return { main = function(name)
  process.send("collector", "start", name)
  local ev = process.events():receive()
  process.send("collector", "stop", name)
  return ev.kind
end }
"#;

const COLLECTOR: &str = r#"
return { main = function()
  process.registry.register("collector")
  local log = {}
  local inbox, events = process.inbox(), process.events()
  while true do
    local r = channel.select({ inbox:case_receive(), events:case_receive() })
    if r.channel == events then return log end
    table.insert(log, r.value:topic() .. ":" .. r.value:payload():data())
  end
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_start_in_dependency_order_and_stop_in_reverse() {
    let mut app = App::new()
        .lua("reporter", REPORTER)
        .lua("collector", COLLECTOR)
        .entry(&service("log", "collector", "{auto_start: true}"));
    for (name, req) in [("c", "[b]"), ("a", "[log]"), ("b", "[a]")] {
        app = app.entry(&format!(
            "  - name: {name}\n    kind: process.service\n    process: reporter\n    host: host\n    args: [{name}]\n    lifecycle: {{auto_start: true, requires: {req}}}\n"
        ));
    }
    let rt = app.start().await;
    let sup = rt.supervision().clone();
    let collector = sup.status(&Id::new("app", "log")).unwrap();
    let pid = rt
        .node()
        .parse_pid(collector.pid.as_deref().unwrap())
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.node().watch(
        &pid,
        Box::new(move |_, e| {
            let _ = tx.send((**e).clone());
        }),
    );
    for s in ["a", "b", "c", "log"] {
        assert_eq!(
            sup.status(&Id::new("app", s)).unwrap().state.name(),
            "Running",
            "{s}"
        );
    }
    rt.stop_services().await;
    let log = match rx.await.unwrap() {
        Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        log,
        json!(["start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"])
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeout_terminates_a_process_that_ignores_cancel_and_failed_dependencies_block() {
    let v = App::new()
        .lua(
            "stubborn",
            "local time = require('time') return { main = function() while true do time.sleep('1s') end end }",
        )
        .lua("broken", "return { main = function() error('cannot start') end }")
        .entry(&service("svc_stubborn", "stubborn", "{stop_timeout: 150ms}"))
        .entry(&service("svc_broken", "broken", "{auto_start: true, restart: {max_attempts: 1}}"))
        .entry(&service("dependent", "stubborn", "{auto_start: true, requires: [svc_broken]}"))
        .entry(&service("base", "stubborn", "{stop_timeout: 10ms}"))
        .entry(&service("upper", "stubborn", "{stop_timeout: 10ms, requires: [base]}"))
        .entry(&service("on_broken", "stubborn", "{requires: [svc_broken]}"))
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
local time = require("time")
return { main = function()
  assert(supervisor.start("app:svc_stubborn"))
  local t0 = time.now()
  assert(supervisor.stop("app:svc_stubborn"))
  local took = (time.now():sub(t0):seconds() * 1000)
  local broken, dependent = supervisor.state("app:svc_broken"), supervisor.state("app:dependent")
  -- start brings up what a service requires first (and tries a failed one again)
  local up = supervisor.start("app:upper")
  local _, err = supervisor.start("app:on_broken")
  return { up = up, base = supervisor.state("app:base"), on_broken = tostring(err),
           on_broken_state = supervisor.state("app:on_broken"),
           took = took, state = supervisor.state("app:svc_stubborn"),
           broken = broken, dependent = dependent }
end }
"#,
        )
        .value("main")
        .await;
    let took = v["took"].as_f64().unwrap();
    assert!((140.0..3000.0).contains(&took), "{v}");
    assert_eq!(v["state"], "Stopped");
    assert_eq!(v["up"], true, "{v}");
    assert_eq!(v["base"], "Running", "{v}");
    assert_eq!(v["on_broken_state"], "Unknown", "{v}");
    let e = v["on_broken"].as_str().unwrap();
    assert!(
        e.starts_with(
            "service app:on_broken not started: dependency app:svc_broken failed to start"
        ),
        "{v}"
    );
    assert_eq!(v["broken"], "Failed");
    assert_eq!(
        v["dependent"], "Unknown",
        "a service whose dependency failed is not started"
    );
}

fn check_errors(yaml_entries: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("_index.yaml"),
        format!(
            "version: \"1.0\"\nnamespace: app\nentries:\n  - name: host\n    kind: process.host\n  - name: w\n    kind: process.lua\n    source: \"return {{ main = function() end }}\"\n    method: main\n{yaml_entries}"
        ),
    )
    .unwrap();
    let reg = load_dir(d.path()).unwrap();
    warden::supervision::spec::check(&reg)
        .expect_err("expected errors")
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bad_service_and_supervisor_yaml_names_file_entry_and_field() {
    let e = check_errors(
        "  - {name: s1, kind: process.service, process: w, lifecycle: {requires: [s2]}}\n  - {name: s2, kind: process.service, process: w, lifecycle: {requires: [s1]}}\n",
    );
    assert!(e.contains("_index.yaml: entry app:s1: field lifecycle.requires: dependency cycle: app:s1 -> app:s2 -> app:s1"), "{e}");
    let e = check_errors(
        "  - {name: s, kind: process.service, process: w, lifecycle: {stop_timeout: -5s, start_timeout: soon, restart: {backoff_factor: 0.5, jitter: 1.5}}}\n",
    );
    for field in [
        "field lifecycle.stop_timeout: negative duration",
        "field lifecycle.start_timeout: invalid duration",
        "field lifecycle.restart.backoff_factor: must be at least 1",
        "field lifecycle.restart.jitter: must be between 0 and 1",
    ] {
        assert!(e.contains(field), "{field} in {e}");
    }
    let e = check_errors(
        "  - {name: s, kind: process.service, process: w, placement: {node: 7}}\n  - {name: s2, kind: process.service, process: w, placement: b}\n",
    );
    assert!(
        e.contains("entry app:s: field placement.node: expected a node name, found 7"),
        "{e}"
    );
    assert!(
        e.contains(
            "entry app:s2: field placement: expected a mapping such as {node: NAME}, found \"b\""
        ),
        "{e}"
    );
    let e = check_errors("  - {name: s, kind: process.service, process: nothing}\n");
    assert!(
        e.contains("entry app:s: field process: dangling reference: app:nothing"),
        "{e}"
    );
    let e = check_errors(
        "  - {name: t, kind: supervisor, strategy: one_four_one, children: [{id: a, process: w, restart: sometimes}, {id: b, process: ghost}, {id: a, process: w}]}\n",
    );
    assert!(e.contains("entry app:t: field strategy: unknown strategy one_four_one (did you mean one_for_one?)"), "{e}");
    assert!(
        e.contains("field children[1].restart: unknown restart type sometimes"),
        "{e}"
    );
    assert!(
        e.contains("field children[2].process: dangling reference: app:ghost"),
        "{e}"
    );
    assert!(
        e.contains("field children[3].id: duplicate child id a"),
        "{e}"
    );
    // OTP's rules on significant children, child types and simple_one_for_one
    let e = check_errors(
        "  - {name: t, kind: supervisor, auto_shutdown: some, children: [{id: a, process: w, significant: true}, {id: b, process: w, type: supervisor}]}\n  - {name: u, kind: supervisor, children: [{id: a, process: w, restart: transient, significant: true}]}\n  - {name: v, kind: supervisor, strategy: simple_one_for_one, children: [{id: a, process: w}, {id: b, process: w}]}\n",
    );
    for want in [
        "entry app:t: field auto_shutdown: unknown auto_shutdown some",
        "entry app:t: field children[1].significant: a significant child must be transient or temporary",
        "entry app:t: field children[2].type: type supervisor does not match the child, which is a worker",
        "entry app:u: field children[1].significant: significant children need the supervisor's auto_shutdown",
        "entry app:v: field children: a simple_one_for_one supervisor has exactly one child",
    ] {
        assert!(e.contains(want), "{want}\n{e}");
    }
    let e = check_errors(
        "  - {name: t1, kind: supervisor, children: [{id: x, supervisor: t2}]}\n  - {name: t2, kind: supervisor, children: [{id: y, supervisor: t1}]}\n",
    );
    assert!(e.contains("supervisors nest in a cycle"), "{e}");
    let e = check_errors(
        "  - {name: t, kind: supervisor, intensity: {period: 0s}, children: [{id: x, process: w}]}\n",
    );
    assert!(
        e.contains("entry app:t: field intensity.period: must be longer than 0"),
        "{e}"
    );
}

/// en/guides/entry-kinds.md (`input: ["arg1", "arg2"]`) and en/guides/supervision.md (a
/// service `requires` a database, an entry that is not a service): a service starts with
/// its `input` as arguments, and a required entry that is not a service (or one warden
/// does not run) holds nothing up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_takes_input_and_may_require_entries_that_are_not_services() {
    let v = App::new()
        .entry("  - {name: database, kind: db.sql.postgres, dsn: 'postgres://x'}\n")
        .entry("  - {name: settings, kind: registry.entry, data: {n: 1}}\n")
        .lua(
            "echo",
            r#"
return { main = function(a, b)
  process.send("collector", "args", { a, b })
  channel.select({ process.inbox():case_receive(), process.events():case_receive() })
end }
"#,
        )
        .entry("  - name: svc\n    kind: process.service\n    process: echo\n    host: host\n    input: [\"arg1\", \"arg2\"]\n    lifecycle: {requires: [app:database, app:settings]}\n")
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
return { main = function()
  process.registry.register("collector")
  local ok, err = supervisor.start("app:svc")
  local got = process.inbox():receive():payload():data()
  return { ok = ok == true, err = err and tostring(err), got = got }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"ok": true, "got": ["arg1", "arg2"]}));
}

/// en/system/security.md, "Service-Level Security": `lifecycle.security` names an actor
/// and existing policies; anything else is an error naming the field.
#[test]
fn lifecycle_security_is_checked_at_load() {
    let e = check_errors(
        "  - {name: s, kind: process.service, process: w, lifecycle: {security: {actor: {meta: {role: x}}, policies: [w, nowhere]}}}\n",
    );
    assert!(
        e.contains("entry app:s: field lifecycle.security.actor.id: an actor id is required"),
        "{e}"
    );
    assert!(
        e.contains("field lifecycle.security.policies: app:w is not a security.policy entry"),
        "{e}"
    );
}
