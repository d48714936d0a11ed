//! Wippy's tutorials that are complete apps using only what warden runs, assembled at test
//! time from `../shared/reference/wippy-docs/en/tutorials/` (the code stays there) and run
//! unchanged with the `warden` binary, as the tutorial says to run them.
//!
//! A tutorial's files are the fenced blocks that follow its "Create `path`:" lines; the
//! project gets the `wippy.lock` that `wippy init` writes (`directories.src: ./src`).
//! Pages whose code is snippets rather than files (channels.md, processes.md) run each
//! snippet unchanged inside the smallest app around it. en/tutorials/supervision.md is not
//! here: its pool is a `process.lua` with `lifecycle.auto_start`, which Wippy's runtime does
//! not start either (only services have a lifecycle), and hello-world.md needs HTTP.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/wippy-docs/en/tutorials")
}

/// The files a tutorial page creates: (path, contents) for each "Create `path`:" line
/// followed by a fenced code block.
fn files_of(page: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(docs().join(page))
        .unwrap_or_else(|e| panic!("reading the tutorial {page}: {e}"));
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("Create `") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('`') else {
            continue;
        };
        // the next fence opens the file's block
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
        }
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((path.to_string(), body));
    }
    assert!(
        !out.is_empty(),
        "{page}: no \"Create `path`:\" blocks found"
    );
    out
}

/// A project directory holding a tutorial's files and the lock `wippy init` makes.
fn project(page: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files_of(page) {
        let p = dir.path().join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(
        dir.path().join("wippy.lock"),
        "directories:\n  modules: .wippy\n  src: ./src\n",
    )
    .unwrap();
    dir
}

/// Runs `warden ARGS` in `dir` with `input` on stdin; (exit code, stdout, stderr). Gives
/// up after 60 s.
fn run(dir: &Path, args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warden");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("warden {args:?} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// en/tutorials/cli.md: `wippy run -x app:cli` prints the greeting and exits 0.
#[test]
fn the_cli_tutorial_runs_unchanged() {
    let dir = project("cli.md");
    let (code, out, err) = run(dir.path(), &["run", "-x", "app:cli"], "");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Hello from CLI!\n", "{err}");
}

/// en/tutorials/echo-service.md: the relay service, its workers and the CLI client; a line
/// typed on stdin comes back upper-cased from a worker, and end of input says goodbye.
#[test]
fn the_echo_service_tutorial_runs_unchanged() {
    let dir = project("echo-service.md");
    let (code, out, err) = run(dir.path(), &["run", "-x", "app:cli"], "hello world\n");
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("Echo Client"), "{out}\n{err}");
    assert!(out.contains("HELLO WORLD"), "{out}\n{err}");
    assert!(out.contains("from worker: {"), "{out}\n{err}");
    assert!(
        out.trim_end().ends_with("Goodbye!\u{1b}[0m") || out.contains("Goodbye!"),
        "{out}"
    );
}

/// The first fenced `lua` block after the heading line `heading` of a tutorial page.
fn block_after(page: &str, heading: &str) -> String {
    let text = std::fs::read_to_string(docs().join(page)).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "{page}: no heading {heading:?}");
    let mut lines = lines.skip_while(|l| !l.trim_start().starts_with("```lua"));
    lines.next();
    let mut body = String::new();
    for l in lines {
        if l.trim_start().starts_with("```") {
            break;
        }
        body.push_str(l);
        body.push('\n');
    }
    body
}

/// en/tutorials/channels.md: each pattern's snippet, unchanged, as a process's body, gives
/// the result the page states (the snippet's own variable is returned).
#[test]
fn the_channel_tutorial_patterns_give_the_stated_results() {
    let cases = [
        ("## Producer-Consumer Pattern", "total", "10"),
        ("### Ping-Pong Pattern", "completed", "true"),
        ("## Fan-Out Pattern", "sum", "42"),
        ("## Fan-In Pattern", "#received", "20"),
        ("## Closing Channels", "total", "10"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from(
        "version: \"1.0\"\nnamespace: app\nentries:\n  - {name: terminal, kind: terminal.host}\n",
    );
    for (i, (heading, result, _)) in cases.iter().enumerate() {
        let body = block_after("channels.md", heading);
        std::fs::write(
            dir.path().join(format!("p{i}.lua")),
            format!("return {{ main = function()\n{body}\nreturn {result}\nend }}\n"),
        )
        .unwrap();
        yaml.push_str(&format!(
            "  - {{name: p{i}, kind: process.lua, source: file://p{i}.lua, method: main}}\n"
        ));
    }
    std::fs::write(dir.path().join("_index.yaml"), yaml).unwrap();
    for (i, (heading, _, want)) in cases.iter().enumerate() {
        let (code, out, err) = run(dir.path(), &["run", "--exec", &format!("app:p{i}")], "");
        // an integer result is the exit code; anything else is printed as JSON
        match want.parse::<i32>() {
            Ok(n) => assert_eq!(code, Some(n), "{heading}: {out}\n{err}"),
            Err(_) => assert_eq!((code, out.trim()), (Some(0), *want), "{heading}: {err}"),
        }
    }
}

/// en/tutorials/processes.md, "Complete Example: Monitored Worker Pool": the parent and
/// worker as the page gives them, under the entry ids the parent names; every worker
/// completes with twice its value and the parent returns true.
#[test]
fn the_processes_tutorial_worker_pool_runs_unchanged() {
    let page = "processes.md";
    let heading = "## Complete Example: Monitored Worker Pool";
    let text = std::fs::read_to_string(docs().join(page)).unwrap();
    let section: String = text
        .lines()
        .skip_while(|l| l.trim() != heading)
        .collect::<Vec<_>>()
        .join("\n");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for l in section.lines() {
        match (&mut current, l.trim_start().starts_with("```")) {
            (None, true) if l.trim_start().starts_with("```lua") => current = Some(String::new()),
            (Some(b), true) => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), false) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    assert_eq!(blocks.len(), 2, "{page}: the parent and the worker");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("parent.lua"), &blocks[0]).unwrap();
    std::fs::write(dir.path().join("task_worker.lua"), &blocks[1]).unwrap();
    std::fs::write(
        dir.path().join("_index.yaml"),
        "version: \"1.0\"\nnamespace: app.test.process\nentries:\n  - {name: parent, kind: process.lua, source: file://parent.lua, method: main, modules: [time]}\n  - {name: task_worker, kind: process.lua, source: file://task_worker.lua, method: main, modules: [time]}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("hosts")).unwrap();
    std::fs::write(
        dir.path().join("hosts/_index.yaml"),
        "version: \"1.0\"\nnamespace: app\nentries:\n  - {name: processes, kind: process.host}\n",
    )
    .unwrap();
    // the page's `print` lines are log lines (en/lua/core/base.md), shown with -v
    let (code, out, err) = run(
        dir.path(),
        &["run", "-v", "--exec", "app.test.process:parent"],
        "",
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    for i in 1..=5 {
        assert!(
            err.contains(&format!("Worker {i} completed:\t{}", i * 20)),
            "worker {i}: {out}\n{err}"
        );
    }
    assert_eq!(out.lines().last(), Some("true"), "{out}");
}
