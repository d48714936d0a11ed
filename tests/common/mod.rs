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
