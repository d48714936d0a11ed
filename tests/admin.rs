//! The admin endpoint of `warden run --admin`: Prometheus metrics (parsed with a
//! Prometheus text parser), the JSON API, actions, the commands, the token and read-only
//! mode.

mod common;

use common::trees::WORKER;
use common::App;
use std::process::{Child, Command, Stdio};

/// A running `warden run` with an admin endpoint; killed when dropped.
struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(app: &App, extra: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d"])
        .arg(app.path())
        .args(["--admin", "127.0.0.1:0"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the reading thread keeps draining stderr, so the node never blocks on a full pipe
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    let line = lines.wait_for(
        "admin endpoint listening",
        std::time::Duration::from_secs(60),
    );
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
        .to_string();
    Node { child, addr }
}

fn app() -> App {
    let app = App::new()
        .lua("worker", WORKER)
        .entry("  - name: svc\n    kind: process.service\n    process: worker\n    host: host\n    lifecycle: {auto_start: true}\n")
        .entry("  - name: tree\n    kind: supervisor\n    strategy: one_for_one\n    intensity: {max_restarts: 10, period: 5s}\n    children: [{id: a, process: worker}, {id: b, process: worker}]\n")
        .entry("  - name: tsvc\n    kind: process.service\n    process: tree\n    host: host\n    lifecycle: {auto_start: true}\n")
        .func("double", "return { main = function(n) return n * 2 end }", None)
        .func("fails", "return { main = function() error('no') end }", None)
        .lua(
            "caller",
            "local funcs, time = require('funcs'), require('time')\nreturn { main = function() while true do funcs.call('app:double', 21) funcs.call('app:fails') time.sleep(5 * time.MILLISECOND) end end }",
        )
        .entry("  - name: calls\n    kind: process.service\n    process: caller\n    host: host\n    lifecycle: {auto_start: true}\n");
    app.finish();
    app
}

fn get(node: &Node, path: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&format!("http://{}{path}", node.addr));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn post(node: &Node, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&format!("http://{}{path}", node.addr))
        .header("Content-Type", "application/json")
        .send("{}")
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// A request with the given headers and body (a POST when there is a body).
fn request(node: &Node, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}{path}", node.addr);
    let mut r = match body {
        Some(b) => {
            let mut req = agent.post(&url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(b).unwrap()
        }
        None => {
            let mut req = agent.get(&url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call().unwrap()
        }
    };
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// The pid of child `child` of `app:tree` now.
fn child_pid(node: &Node, child: &str) -> String {
    let (_, trees) = get(node, "/api/v1/trees", None);
    let trees: serde_json::Value = serde_json::from_str(&trees).unwrap();
    trees
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["children"].as_array().unwrap().iter())
        .find(|c| c["id"] == child)
        .unwrap_or_else(|| panic!("no child {child}: {trees}"))["pid"]
        .to_string()
}

fn scrape(node: &Node) -> prometheus_parse::Scrape {
    let (code, body) = get(node, "/metrics", None);
    assert_eq!(code, 200);
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    values(s, name, label.as_slice())
}

fn values(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

fn warden(node: &Node, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .args(["--admin", &node.addr])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not met within 4 s");
}

#[test]
fn metrics_move_with_a_crash_and_the_commands_steer_services() {
    let app = app();
    let node = start(&app, &[]);
    let m = scrape(&node);
    assert_eq!(
        value(&m, "warden_processes", Some(("host", "app:host"))),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "warden_processes_by_kind",
            Some(("kind", "process.lua"))
        ),
        4.0
    );
    // function calls: counted, timed, their errors counted
    wait_for(|| {
        let m = scrape(&node);
        value(
            &m,
            "warden_function_calls_total",
            Some(("function", "app:double")),
        ) > 0.0
            && value(
                &m,
                "warden_function_errors_total",
                Some(("function", "app:fails")),
            ) > 0.0
    });
    let m = scrape(&node);
    assert_eq!(
        value(
            &m,
            "warden_function_errors_total",
            Some(("function", "app:double"))
        ),
        0.0
    );
    let timed = m
        .samples
        .iter()
        .find(|x| {
            x.metric == "warden_function_latency_seconds"
                && x.labels.get("function") == Some("app:double")
        })
        .map(|x| match &x.value {
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            _ => 0.0,
        })
        .expect("a latency histogram of app:double");
    assert!(timed > 0.0, "{:?}", m.samples);
    assert_eq!(
        values(
            &m,
            "warden_service_state",
            &[("service", "app:svc"), ("state", "Running")]
        ),
        1.0
    );
    assert_eq!(
        values(
            &m,
            "warden_service_state",
            &[("service", "app:svc"), ("state", "Failed")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "warden_tree_child_restarts_total",
            Some(("tree", "app:tree"))
        ),
        0.0
    );
    assert_eq!(
        value(&m, "warden_exits_total", Some(("reason", "killed"))),
        0.0
    );
    assert!(value(&m, "warden_lua_heap_bytes", Some(("worker", "0"))) > 0.0);
    assert!(
        value(
            &m,
            "warden_worker_busy_seconds_total",
            Some(("worker", "0"))
        ) > 0.0
    );

    // a crash injected through the API: the tree restarts the child, the counters move
    let (_, trees) = get(&node, "/api/v1/trees", None);
    let trees: serde_json::Value = serde_json::from_str(&trees).unwrap();
    let a = trees[0]["children"][0]["pid"].as_str().unwrap().to_string();
    let (code, _) = post(
        &node,
        &format!(
            "/api/v1/processes/{}/terminate",
            warden::admin::client::segment(&a)
        ),
    );
    assert_eq!(code, 200);
    wait_for(|| {
        let m = scrape(&node);
        value(
            &m,
            "warden_tree_child_restarts_total",
            Some(("tree", "app:tree")),
        ) == 1.0
    });
    let m = scrape(&node);
    assert_eq!(
        value(&m, "warden_exits_total", Some(("reason", "killed"))),
        1.0
    );
    assert_eq!(
        value(&m, "warden_tree_intensity_used", Some(("tree", "app:tree"))),
        1.0
    );
    assert_eq!(
        value(&m, "warden_tree_max_restarts", Some(("tree", "app:tree"))),
        10.0
    );
    assert_eq!(value(&m, "warden_tree_restarts_total", None), 1.0);

    // a tree child through the API: terminate, then restart
    let (code, body) = post(&node, "/api/v1/trees/app:tree/children/b/terminate");
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(&node, "/api/v1/trees/app:tree/children/nope/restart");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no child nope (not_found)"), "{body}");

    // the commands: status, ps, restart (a new pid)
    let (code, out, _) = warden(&node, &["status", "--json"]);
    assert_eq!(code, 0);
    let before: serde_json::Value = serde_json::from_str(&out).unwrap();
    let svc = |v: &serde_json::Value| {
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "app:svc")
            .unwrap()["pid"]
            .clone()
    };
    let (code, out, _) = warden(&node, &["restart", "app:svc"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("app:svc: Running (pid {"), "{out}");
    let (_, out, _) = warden(&node, &["status", "--json"]);
    let after: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(svc(&before), svc(&after));
    assert!(svc(&after).is_string());
    let (code, out, _) = warden(&node, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("SERVICE") && out.contains("app:svc") && out.contains("Running"),
        "{out}"
    );
    let (code, out, _) = warden(&node, &["ps"]);
    assert_eq!(code, 0);
    let (_, procs) = get(&node, "/api/v1/processes", None);
    let procs: serde_json::Value = serde_json::from_str(&procs).unwrap();
    assert_eq!(procs[0]["host"], "app:host", "{procs}");
    assert!(
        procs[0]["uptime_seconds"].as_f64().unwrap() > 0.0,
        "{procs}"
    );
    assert!(
        out.starts_with("PID") && out.contains("app:worker"),
        "{out}"
    );
    let (code, out, _) = warden(&node, &["top", "-n", "2"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("SERVICE").count(), 2, "{out}");
    assert!(
        out.contains("MAILBOX") && out.contains("app:worker"),
        "{out}"
    );
    let (code, _, err) = warden(&node, &["stop", "app:nothing"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "error: service app:nothing not found");
}

/// What a page in the operator's browser can send cross-site (a form post, a fetch from
/// another origin, a DNS name rebound to loopback) acts on nothing; an unknown action, a
/// restart that cannot be done and another node's pid change nothing.
#[test]
fn only_the_operator_can_act_and_a_bad_action_changes_nothing() {
    let app = app().entry("  - name: ttree\n    kind: supervisor\n    strategy: one_for_one\n    children: [{id: t, process: worker, restart: temporary}]\n")
        .entry("  - name: ttsvc\n    kind: process.service\n    process: ttree\n    host: host\n    lifecycle: {auto_start: true}\n");
    app.finish();
    let node = start(&app, &[]);
    let restart = "/api/v1/trees/app:tree/children/a/restart";
    wait_for(|| child_pid(&node, "a").starts_with("\"{"));
    let a0 = child_pid(&node, "a");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let (code, body) = request(&node, restart, &[form], Some("x=1"));
    assert_eq!(code, 415, "{body}");
    assert!(
        body.contains("an action needs Content-Type: application/json"),
        "{body}"
    );
    let (code, body) = request(
        &node,
        "/api/v1/services/app:svc/stop",
        &[("Content-Type", "text/plain")],
        Some("x"),
    );
    assert_eq!(code, 415, "{body}");
    let json = ("Content-Type", "application/json");
    let (code, body) = request(
        &node,
        restart,
        &[json, ("Origin", "http://evil.example")],
        Some("{}"),
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("a request from another origin (http://evil.example) is refused"),
        "{body}"
    );
    let port = node.addr.rsplit(':').next().unwrap();
    let rebound = format!("evil.example:{port}");
    let (code, body) = request(&node, restart, &[json, ("Host", &rebound)], Some("{}"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("is not this endpoint's address"), "{body}");
    let (code, _) = request(&node, "/api/v1/processes", &[("Host", &rebound)], None);
    assert_eq!(code, 403);
    let (code, _) = request(
        &node,
        "/api/v1/status",
        &[("Host", &format!("localhost:{port}"))],
        None,
    );
    assert_eq!(code, 200);
    let (code, body) = post(&node, "/api/v1/trees/app:tree/children/a/restat");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("unknown action restat; expected restart or terminate"),
        "{body}"
    );
    let (code, body) = post(&node, "/api/v1/trees/app:ttree/children/t/restart");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("child t of app:ttree is temporary"), "{body}");
    assert!(
        child_pid(&node, "t").starts_with("\"{"),
        "the temporary child still runs"
    );
    let (code, body) = post(&node, "/api/v1/processes/%7Bother%7C5%7D/terminate");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("is a process of node other"), "{body}");
    assert_eq!(child_pid(&node, "a"), a0, "nothing above touched child a");
    // the operator's own request works
    let (code, body) = post(&node, restart);
    assert_eq!(code, 200, "{body}");
    assert_ne!(child_pid(&node, "a"), a0);

    // live event streams are limited in number; a closed one makes room
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}/api/v1/stream", node.addr);
    let mut open: Vec<_> = (0..warden::admin::MAX_STREAMS)
        .map(|_| agent.get(&url).call().unwrap())
        .collect();
    assert!(open.iter().all(|r| r.status() == 200));
    let mut refused = agent.get(&url).call().unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("16 event streams are open already"));
    drop(open.pop());
    let mut again = None;
    for _ in 0..400 {
        let r = agent.get(&url).call().unwrap();
        if r.status() == 200 {
            again = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(again.is_some(), "a closed stream made no room within 20 s");
}

#[test]
fn tokens_read_only_mode_and_an_unreachable_node() {
    let app = app();
    let node = start(&app, &["--admin-token", "s3cret", "--admin-read-only"]);
    assert_eq!(get(&node, "/metrics", None).0, 401);
    assert_eq!(get(&node, "/api/v1/status", Some("wrong")).0, 401);
    assert_eq!(get(&node, "/api/v1/status", Some("s3cret")).0, 200);
    // a GET may carry the token in its query (the live page and its stream do); an
    // action may not
    assert_eq!(get(&node, "/api/v1/status?token=s3cret", None).0, 200);
    assert_eq!(get(&node, "/api/v1/status?token=s3cre", None).0, 401);
    let (code, _) = request(
        &node,
        "/api/v1/services/app:svc/stop?token=s3cret",
        &[("Content-Type", "application/json")],
        Some("{}"),
    );
    assert_eq!(code, 401);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent
        .post(&format!(
            "http://{}/api/v1/services/app:svc/stop",
            node.addr
        ))
        .header("Authorization", "Bearer s3cret")
        .header("Content-Type", "application/json")
        .send("{}")
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    drop(node);

    // a public address needs a token
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d"])
        .arg(app.path())
        .args(["--admin", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--admin 0.0.0.0:0: not a loopback address; set --admin-token"),
        "{err}"
    );

    // no node there: one line naming the address
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["status", "--admin", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot reach the node at 127.0.0.1:9"),
        "{err}"
    );
}

/// The page, in a real browser (headless Chromium): the supervision forest with each
/// child's restart count, which moves after a crash is injected.
#[test]
fn the_page_shows_the_forest_and_a_restart_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let dump_url = |url: &str| -> String {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=3000",
                "--dump-dom",
            ])
            // one snapshot per connection: the browser's virtual time runs while the
            // network is quiet, and the page reconnects at once
            .arg(url)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs a headless Chromium (the Debian package `chromium`, which .ci/run installs; or CHROMIUM=path): {e}")
            });
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dump = |node: &Node| dump_url(&format!("http://{}/?max=1", node.addr));
    let app = app();
    let node = start(&app, &[]);
    let dom = dump(&node);
    for child in ["app:tree/a", "app:tree/b"] {
        assert!(
            dom.contains(&format!("data-id=\"{child}\"")),
            "{child}\n{dom}"
        );
    }
    assert!(dom.contains("<b>app:tree</b>"), "{dom}");
    assert!(dom.contains("data-service=\"app:svc\""), "{dom}");
    let restarts = |dom: &str| -> String {
        let at = dom.find("data-id=\"app:tree/a\"").unwrap();
        let rest = &dom[at..];
        let n = rest.find("class=\"restarts\">").unwrap() + "class=\"restarts\">".len();
        rest[n..].split('<').next().unwrap().to_string()
    };
    assert_eq!(restarts(&dom), "0");

    let (_, trees) = get(&node, "/api/v1/trees", None);
    let trees: serde_json::Value = serde_json::from_str(&trees).unwrap();
    let a = trees[0]["children"][0]["pid"].as_str().unwrap().to_string();
    post(
        &node,
        &format!(
            "/api/v1/processes/{}/terminate",
            warden::admin::client::segment(&a)
        ),
    );
    wait_for(|| {
        get(&node, "/api/v1/trees", None)
            .1
            .contains("\"restarts\":1")
    });
    let dom = dump(&node);
    assert_eq!(restarts(&dom), "1", "{dom}");
    drop(node);

    // with a token, the page is opened with it in the query and shows the same
    let node = start(&app, &["--admin-token", "s3cret"]);
    let dom = dump_url(&format!("http://{}/?max=1&token=s3cret", node.addr));
    assert!(dom.contains("data-id=\"app:tree/a\""), "{dom}");
}
