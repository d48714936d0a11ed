//! Test harness: writes an app into a temporary directory, boots it, and runs a Lua
//! process entry to completion so a test can assert on what it returned.
#![allow(dead_code)]

pub mod trees;

use std::path::Path;
use warden::process::Exit;
use warden::registry::{load_dir, Id};
use warden::runtime::Runtime;
use warden::value::Value;

/// An app under construction in a temporary directory.
pub struct App {
    pub dir: tempfile::TempDir,
    entries: Vec<String>,
}

impl App {
    /// An app with namespace `app` and a host `app:host` of `workers` workers.
    pub fn new() -> App {
        App::with_host(2, 1024)
    }

    pub fn with_host(workers: usize, queue_size: usize) -> App {
        let mut a = App {
            dir: tempfile::tempdir().unwrap(),
            entries: Vec::new(),
        };
        a.entries.push(format!(
            "  - name: host\n    kind: process.host\n    host: {{workers: {workers}, queue_size: {queue_size}}}\n"
        ));
        a
    }

    /// Adds a raw YAML entry (indented as an item of `entries:`).
    pub fn entry(mut self, yaml: &str) -> App {
        self.entries.push(yaml.to_string());
        self
    }

    /// Adds a `process.lua` entry `app:NAME` running `main` from `src`, with every
    /// built-in module allowed.
    pub fn lua(self, name: &str, src: &str) -> App {
        let file = format!("{name}.lua");
        self.write(&file, src);
        self.entry(&format!(
            "  - name: {name}\n    kind: process.lua\n    source: file://{file}\n    method: main\n    modules: [time, json, logger, funcs, ctx, supervisor, io, uuid, env, security, registry, events, pg, system, test]\n"
        ))
    }

    /// Adds a `function.lua` entry `app:NAME` running `main` from `src`; `pool` is the YAML
    /// of its `pool` field (e.g. `{type: static, size: 2}`), or None for the default pool.
    pub fn func(self, name: &str, src: &str, pool: Option<&str>) -> App {
        let file = format!("{name}.lua");
        self.write(&file, src);
        let pool = pool.map(|p| format!("    pool: {p}\n")).unwrap_or_default();
        self.entry(&format!(
            "  - name: {name}\n    kind: function.lua\n    source: file://{file}\n    method: main\n    modules: [time, json, logger, funcs, ctx, supervisor, io, uuid, env, security, registry, events, pg, system, test]\n{pool}"
        ))
    }

    /// Writes a file into the app directory.
    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, contents).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the app's `_index.yaml` (for tests that run the `warden` binary on it).
    pub fn finish(&self) {
        let yaml = format!(
            "version: \"1.0\"\nnamespace: app\nentries:\n{}",
            self.entries.concat()
        );
        self.write("_index.yaml", &yaml);
    }

    /// Boots the app.
    pub async fn start(&self) -> Runtime {
        self.finish();
        let reg = load_dir(self.dir.path()).unwrap_or_else(|e| panic!("load failed:\n{e}"));
        Runtime::start(reg).await.unwrap()
    }

    /// Boots the app, runs `app:NAME` to completion with `args`, stops the app.
    pub async fn run(&self, name: &str, args: Vec<Value>) -> Exit {
        let rt = self.start().await;
        let exit = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            rt.exec(&Id::new("app", name), args),
        )
        .await
        .expect("process did not finish within 60 s")
        .expect("spawn failed");
        rt.shutdown().await;
        exit
    }

    /// Like `run` but expects a normal exit and returns its value as JSON.
    pub async fn value(&self, name: &str) -> serde_json::Value {
        match self.run(name, vec![]).await {
            Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
            other => panic!("app:{name} did not return normally: {other:?}"),
        }
    }
}

/// Runs one Lua program as `app:main` in a fresh app and returns its value as JSON.
pub async fn lua_value(src: &str) -> serde_json::Value {
    App::new().lua("main", src).value("main").await
}

/// The exports of `../shared/fixtures/wasm/complex.wasm`, the nine `echo-*` ones first.
#[allow(dead_code)]
pub const COMPLEX_EXPORTS: &[&str] = &[
    "echo-point",
    "echo-person",
    "echo-rectangle",
    "echo-color",
    "echo-shape",
    "echo-permissions",
    "echo-list-s32",
    "echo-list-string",
    "echo-list-point",
    "maybe-point",
    "maybe-string",
    "try-divide",
    "try-parse",
    "swap-pair",
    "triple",
    "filter-adults",
    "sum-list",
    "double-list",
];

/// A child's output lines, read by a thread (which drains the pipe to its end, so the
/// child never blocks on it), so a missing line fails a test at a deadline instead of
/// blocking it.
#[allow(dead_code)]
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

#[allow(dead_code)]
impl Lines {
    /// Starts reading `from`.
    pub fn new(from: impl std::io::Read + Send + 'static) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first line containing `text` within `within`; a panic naming the text and what
    /// came instead otherwise.
    pub fn wait_for(&mut self, text: &str, within: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {text:?} within {within:?} ({e}); the output was:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The lines up to the end of the output, waiting at most `within` for it.
    pub fn rest(&mut self, within: std::time::Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    out.push(line);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(e) => panic!(
                    "the output did not end within {within:?} ({e}); it was:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// How long a test waits for a process it runs to end before it fails saying so.
pub const EXEC_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `Runtime::exec` with a deadline: a process that never ends fails the test, naming it,
/// instead of hanging the run.
pub trait ExecWithin {
    /// Runs `entry` with `args` to its end, at most [`EXEC_LIMIT`].
    fn exec_within<'a>(
        &'a self,
        entry: &'a Id,
        args: Vec<Value>,
    ) -> impl std::future::Future<Output = Result<Exit, warden::process::ProcessError>> + 'a;
}

impl ExecWithin for Runtime {
    #[allow(clippy::manual_async_fn)]
    fn exec_within<'a>(
        &'a self,
        entry: &'a Id,
        args: Vec<Value>,
    ) -> impl std::future::Future<Output = Result<Exit, warden::process::ProcessError>> + 'a {
        async move {
            tokio::time::timeout(EXEC_LIMIT, self.exec(entry, args))
                .await
                .unwrap_or_else(|_| panic!("process {entry} did not end within {EXEC_LIMIT:?}"))
        }
    }
}
