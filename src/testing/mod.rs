//! `warden test`: runs the app's test entries (`meta.type: test`, a `function.lua` or a
//! `process.lua`), each on a fresh runtime of its own, and collects the cases they report.
//!
//! Isolation: a test gets its own node (named `testN`), so its processes, names,
//! services and trees are its own; after it, the runner stops the services it started
//! and counts what still runs: a process left behind fails the test (its last case says
//! which processes). A test that runs
//! past its `meta.timeout` (default 30 s) is stopped; the case it was running and those
//! it had not reached fail.
//!
//! Cases come from the Lua `test` module through the node's [`Sink`]: a plan (every case
//! name, once the define function ran), then a start and a result per case, so a test
//! that crashes or hangs still reports what it had done. A test entry that does not use
//! `run_cases` is one case: it passes when it returns (anything but `false`).

pub mod capture;
pub mod report;

use crate::process::{Exit, Pid, SpawnOptions};
use crate::registry::{Entry, Id, Registry};
use crate::runtime::Runtime;
use crate::value::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::lua::test::Sink;

/// How a case ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Its assertions held.
    Passed,
    /// An assertion failed, it raised, or it was still running at the timeout.
    Failed,
    /// `it_skip`.
    Skipped,
}

/// One case of a test.
#[derive(Clone, Debug)]
pub struct Case {
    /// `suite > case`.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Why it failed.
    pub message: Option<String>,
    /// Where (the assertion's file and line).
    pub file: Option<String>,
    /// The line.
    pub line: Option<u64>,
    /// The expected value, as text.
    pub expected: Option<String>,
    /// The actual value, as text.
    pub actual: Option<String>,
    /// How long it ran (None: not timed, such as a case never reached).
    pub duration: Option<Duration>,
}

impl Case {
    fn passed(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            status: Status::Passed,
            message: None,
            file: None,
            line: None,
            expected: None,
            actual: None,
            duration: None,
        }
    }

    fn failed(name: impl Into<String>, message: impl Into<String>) -> Case {
        Case {
            status: Status::Failed,
            message: Some(message.into()),
            ..Case::passed(name)
        }
    }
}

/// What one test entry gave.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// The entry.
    pub id: Id,
    /// The suite it is reported under: its `meta.suite`, else its id
    /// (en/framework/testing.md, "Test Metadata").
    pub suite: String,
    /// Its display name: `meta.name`, else its id.
    pub title: String,
    /// Processes it left running, if any (reported; a failure with `--fail-leaks`).
    pub leaked: Option<String>,
    /// Its YAML file.
    pub file: PathBuf,
    /// Its cases, in the order they ran.
    pub cases: Vec<Case>,
    /// The log lines its processes wrote.
    pub logs: Vec<String>,
    /// How long it ran.
    pub duration: Duration,
}

impl TestResult {
    /// Cases with this status.
    pub fn count(&self, status: Status) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }
}

/// A test entry's `meta` text field.
fn meta_text(entry: &Entry, key: &str) -> Option<String> {
    match entry.meta.get(key)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The suite a test is reported under (`meta.suite`, else its id).
pub fn suite_of(entry: &Entry) -> String {
    meta_text(entry, "suite").unwrap_or_else(|| entry.id.to_string())
}

/// The test entries of `registry` whose id contains one of `filters` (all when none),
/// by suite, then `meta.order` within a suite (lower first; none last), then id
/// (en/framework/testing.md, "Test Metadata").
pub fn discover(registry: &Registry, filters: &[String]) -> Vec<Arc<Entry>> {
    let mut tests: Vec<Arc<Entry>> = registry
        .entries
        .values()
        .filter(|e| matches!(e.kind.as_str(), "function.lua" | "process.lua"))
        .filter(|e| e.meta.get("type").and_then(|t| t.as_str()) == Some("test"))
        .filter(|e| {
            let id = e.id.to_string();
            filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
        })
        .cloned()
        .collect();
    let order = |e: &Entry| {
        e.meta
            .get("order")
            .and_then(|o| o.as_f64())
            .unwrap_or(f64::MAX)
    };
    tests.sort_by(|a, b| {
        suite_of(a)
            .cmp(&suite_of(b))
            .then(order(a).total_cmp(&order(b)))
            .then(a.id.cmp(&b.id))
    });
    tests
}

/// A test's `meta.timeout` (a duration or milliseconds; default 30 s).
fn timeout_of(entry: &Entry) -> Duration {
    match entry.meta.get("timeout") {
        Some(serde_json::Value::Number(n)) => Duration::from_millis(n.as_u64().unwrap_or(30_000)),
        Some(serde_json::Value::String(s)) => {
            crate::duration::parse(s).unwrap_or(Duration::from_secs(30))
        }
        _ => Duration::from_secs(30),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Nil => None,
        Value::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(crate::value::display(other)),
    }
}

fn field<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
    match event {
        Value::Map(kv) => kv
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// What the cases reported so far say.
#[derive(Default)]
struct Progress {
    plan: Option<Vec<String>>,
    running: Option<String>,
    started: Option<Instant>,
    done: Vec<Case>,
}

impl Progress {
    fn take(&mut self, event: &Value) {
        match text(field(event, "event")).as_deref() {
            Some("plan") => {
                if let Some(Value::Array(names)) = field(event, "cases") {
                    self.plan = Some(names.iter().filter_map(|n| text(Some(n))).collect());
                }
            }
            Some("start") => {
                self.running = text(field(event, "name"));
                self.started = Some(Instant::now());
            }
            Some("done") => {
                self.running = None;
                let duration = self.started.take().map(|t| t.elapsed());
                let status = match text(field(event, "status")).as_deref() {
                    Some("passed") => Status::Passed,
                    Some("skipped") => Status::Skipped,
                    _ => Status::Failed,
                };
                self.done.push(Case {
                    name: text(field(event, "name")).unwrap_or_default(),
                    status,
                    message: text(field(event, "message")),
                    file: text(field(event, "file")),
                    line: match field(event, "line") {
                        Some(Value::Int(n)) => Some(*n as u64),
                        Some(Value::Num(n)) => Some(*n as u64),
                        _ => None,
                    },
                    expected: text(field(event, "expected")),
                    actual: text(field(event, "actual")),
                    duration,
                });
            }
            _ => {}
        }
    }

    /// The cases, once the test ended: those reported, then the one it was running
    /// (failed with `why`), then those it never reached.
    fn finish(mut self, id: &Id, why: Option<String>) -> Vec<Case> {
        let Some(plan) = self.plan.take() else {
            return match why {
                Some(w) => vec![Case::failed(id.to_string(), w)],
                None => self.done,
            };
        };
        let mut cases = self.done;
        if let Some(name) = self.running.take() {
            cases.push(Case::failed(
                name,
                why.clone()
                    .unwrap_or_else(|| "the test ended during this case".into()),
            ));
        }
        for name in plan {
            if !cases.iter().any(|c| c.name == name) {
                let w = why.as_deref().unwrap_or("the test ended first");
                cases.push(Case::failed(name, format!("not run: {w}")));
            }
        }
        cases
    }
}

/// Runs one test entry on a fresh runtime named `node`. Processes it leaves running are
/// reported; with `fail_leaks`, they fail its last case.
pub async fn run_one(
    registry: Registry,
    entry: Arc<Entry>,
    node: String,
    fail_leaks: bool,
) -> TestResult {
    let t0 = Instant::now();
    let lines = capture::register(&node);
    let (mut cases, leaked) = run_isolated(registry, &entry, &node).await;
    capture::unregister(&node);
    let logs = std::mem::take(&mut *lines.lock());
    let duration = t0.elapsed();
    if let (Some(why), true) = (&leaked, fail_leaks) {
        // the test fails: its last case, the one that ran last, carries why
        match cases.iter_mut().rev().find(|c| c.status != Status::Skipped) {
            Some(last) => {
                last.status = Status::Failed;
                last.message = Some(match last.message.take() {
                    Some(m) => format!("{m}; {why}"),
                    None => why.clone(),
                });
            }
            None => cases.push(Case::failed(entry.id.to_string(), why.clone())),
        }
    }
    if cases.len() == 1 && cases[0].duration.is_none() {
        cases[0].duration = Some(duration);
    }
    TestResult {
        id: entry.id.clone(),
        suite: suite_of(&entry),
        title: meta_text(&entry, "name").unwrap_or_else(|| entry.id.to_string()),
        leaked,
        file: entry.file.clone(),
        cases,
        logs,
        duration,
    }
}

async fn run_isolated(
    registry: Registry,
    entry: &Arc<Entry>,
    node: &str,
) -> (Vec<Case>, Option<String>) {
    let id = entry.id.clone();
    let options = crate::runtime::Options {
        node_name: node.to_string(),
        keep_tree_log: true,
        time_scale: entry
            .meta
            .get("time_scale")
            .and_then(|v| v.as_f64())
            .filter(|s| *s > 0.0)
            .unwrap_or(1.0),
        ..Default::default()
    };
    let rt = match Runtime::start_with(registry, options).await {
        Ok(rt) => rt,
        Err(e) => {
            return (
                vec![Case::failed(
                    id.to_string(),
                    format!("the app did not start: {e}"),
                )],
                None,
            )
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    rt.services().set_sink(Sink::new(tx));
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let opts = SpawnOptions {
        on_exit: Some(Box::new(move |_, exit: &Arc<Exit>| {
            let _ = exit_tx.send((**exit).clone());
        })),
        ..Default::default()
    };
    let limit = timeout_of(entry);
    let mut progress = Progress::default();
    let pid: Option<Pid>;
    let why = match rt.spawn(&id, None, vec![], opts) {
        Err(e) => {
            pid = None;
            Some(format!("cannot run: {e}"))
        }
        Ok(p) => {
            pid = Some(p);
            match tokio::time::timeout(limit, exit_rx).await {
                Err(_) => Some(format!(
                    "still running at the timeout ({})",
                    humantime::format_duration(limit)
                )),
                Ok(Err(_)) => Some("the runtime stopped".into()),
                Ok(Ok(Exit::Normal(Value::Bool(false)))) => Some("returned false".into()),
                Ok(Ok(Exit::Normal(_))) => None,
                Ok(Ok(exit)) => Some(exit.error().unwrap_or("failed").to_string()),
            }
        }
    };
    while let Ok(ev) = rx.try_recv() {
        progress.take(&ev);
    }
    let timed_out = why
        .as_deref()
        .is_some_and(|w| w.starts_with("still running"));
    let mut cases = progress.finish(&id, why);
    if cases.is_empty() {
        cases.push(Case::passed(id.to_string()));
    }
    // teardown: the test process (if it hangs), then the services it started; what
    // still runs after that was left behind
    if let (true, Some(p)) = (timed_out, &pid) {
        let _ = rt.node().terminate(p);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.stop_services().await;
    let left: Vec<(Pid, Id)> = rt
        .node()
        .processes()
        .into_iter()
        .filter(|(p, _)| Some(p) != pid.as_ref())
        .collect();
    let leaked = (!left.is_empty()).then(|| {
        let list: Vec<String> = left.iter().map(|(p, e)| format!("{p} ({e})")).collect();
        format!(
            "the test left {} process(es) running: {}",
            left.len(),
            list.join(", ")
        )
    });
    rt.shutdown().await;
    (cases, leaked)
}

/// Runs `tests`, up to `jobs` at once; `done` sees each result in the given order as
/// soon as the ones before it are done. Returns every result, in that order.
pub async fn run_all(
    registry: &Registry,
    tests: Vec<Arc<Entry>>,
    jobs: usize,
    fail_leaks: bool,
    mut done: impl FnMut(&TestResult),
) -> Vec<TestResult> {
    use futures::StreamExt;
    let n = tests.len();
    let mut stream = futures::stream::iter(tests.into_iter().enumerate().map(|(i, e)| {
        let reg = registry.clone();
        async move {
            (
                i,
                run_one(reg, e, format!("test{}", i + 1), fail_leaks).await,
            )
        }
    }))
    .buffer_unordered(jobs.max(1));
    let mut slots: Vec<Option<TestResult>> = (0..n).map(|_| None).collect();
    let mut next = 0;
    while let Some((i, r)) = stream.next().await {
        slots[i] = Some(r);
        while next < n {
            match &slots[next] {
                Some(r) => {
                    done(r);
                    next += 1;
                }
                None => break,
            }
        }
    }
    slots.into_iter().flatten().collect()
}
