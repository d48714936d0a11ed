//! Wippy's tutorials that are complete apps using only what warden runs, assembled at test
//! time from `../shared/reference/wippy-docs/en/tutorials/` (the code stays there) and run
//! unchanged with the `warden` binary, as the tutorial says to run them.
//!
//! A tutorial's files are the fenced blocks that follow its "Create `path`:" lines; the
//! project gets the `wippy.lock` that `wippy init` writes (`directories.src: ./src`).

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
