//! The `warden` binary: examples, exit codes, error output, signals, commands.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn warden(args: &[&str], dir: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.args(args).env("RUST_LOG", "info");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().expect("run warden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_hello_logs_a_greeting_and_returns() {
    let out = warden(
        &["run", "-d", &example("hello"), "--exec", "app:hello"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "\"Hello, world!\"");
    assert!(text(&out.stderr).contains("Hello, world!"));
    // stderr is a pipe here, not a terminal: plain log lines, no colour codes
    assert!(
        !text(&out.stderr).contains('\x1b'),
        "escape codes in piped logs: {:?}",
        text(&out.stderr)
    );
    // arguments reach the process
    let out = warden(
        &["run", "-d", &example("hello"), "-x", "app:hello", "Ada"],
        None,
    );
    assert_eq!(text(&out.stdout).trim(), "\"Hello, Ada!\"");
}

#[test]
fn example_ping_pong_exchanges_messages_under_monitors() {
    let out = warden(
        &[
            "run",
            "-d",
            &example("ping-pong"),
            "--exec",
            "app:main",
            "500",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v, serde_json::json!({"pings": 500, "pongs": 500}));
}

#[test]
fn example_names_serves_a_named_counter() {
    let out = warden(
        &["run", "-d", &example("names"), "--exec", "app:main"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"total": 50, "final": 50, "name_freed": true})
    );
}

fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (rel, body) in files {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    d
}

const FAILING: &str = r#"version: "1.0"
namespace: app
entries:
  - name: fail
    kind: process.lua
    source: |
      return { main = function() error("it broke") end }
    method: main
  - name: mimic
    kind: process.lua
    source: |
      return { main = function() error("exited with status 7", 0) end }
    method: main
  - name: refuse
    kind: process.lua
    source: |
      return { main = function() print("before") return nil, "no input given" end }
    method: main
  - name: code
    kind: process.lua
    source: |
      return { main = function(n) print("out") return tonumber(n) end }
    method: main
  - name: ok
    kind: process.lua
    meta: {command: {name: greet, short: "Say hi"}}
    source: |
      return { main = function(who) return "hi " .. (who or "nobody") end }
    method: main
"#;

#[test]
fn exec_of_a_failing_process_exits_1_with_the_error_on_stderr() {
    let d = app(&[("_index.yaml", FAILING)]);
    let dir = d.path().to_str().unwrap();
    let out = warden(&["run", "-d", dir, "--exec", "app:fail"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("app:fail failed") && err.contains("it broke"),
        "{err}"
    );
    // only a WebAssembly guest's exit(n) sets the status; a Lua error is 1
    let out = warden(&["run", "-d", dir, "--exec", "app:mimic"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // `nil, err` from main is a failure with that error
    let out = warden(&["run", "-d", dir, "--exec", "app:refuse"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no input given"));
    // print is a log line (en/lua/core/base.md), not stdout
    assert!(text(&out.stderr).contains("before"));
    assert_eq!(text(&out.stdout).trim(), "");
    // an integer result is the exit code, and is not printed
    for n in ["0", "3", "42"] {
        let out = warden(&["run", "-d", dir, "--exec", "app:code", n], None);
        assert_eq!(out.status.code(), Some(n.parse().unwrap()));
        assert_eq!(text(&out.stdout).trim(), "");
    }
    let out = warden(&["run", "-d", dir, "--exec", "app:missing"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("entry app:missing not found"));
    let out = warden(&["run", "-d", dir, "--exec", "nonamespace"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no namespace"));
}

#[test]
fn commands_are_listed_and_run_by_name() {
    let d = app(&[("_index.yaml", FAILING)]);
    let dir = d.path().to_str().unwrap();
    let out = warden(&["run", "-d", dir, "list"], None);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert!(
        listing.contains("greet") && listing.contains("Say hi"),
        "{listing}"
    );
    let out = warden(&["run", "-d", dir, "greet", "Ada"], None);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "\"hi Ada\"");
    let out = warden(&["run", "-d", dir, "nope"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown command \"nope\"") && err.contains("greet"),
        "{err}"
    );
}

#[test]
fn check_reports_every_error_of_the_load_and_exits_1() {
    let d = app(&[
        (
            "a/_index.yaml",
            "version: \"1.0\"\nnamespace: a\nentries:\n  - name: w\n    kind: proces.lua\n    source: x\n",
        ),
        (
            "b/_index.yaml",
            "version: \"1.0\"\nnamespace: b\nentries:\n  - name: w\n    kind: process.lua\n    source: file://missing.lua\n    method: main\n",
        ),
        // a service error is reported with the registry's errors; a service of the broken
        // entry b:w adds nothing; a Wippy kind warden lacks is a warning
        (
            "c/_index.yaml",
            "version: \"1.0\"\nnamespace: c\nentries:\n  - name: p\n    kind: process.lua\n    source: \"return {main = function() end}\"\n    method: main\n  - name: svc\n    kind: process.service\n    process: p\n    lifecycle: {restart: {backoff_factor: 0.5}}\n  - name: svc_b\n    kind: process.service\n    process: b:w\n  - name: web\n    kind: http.service\n",
        ),
    ]);
    let out = warden(&["check", "-d", d.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("a/_index.yaml") && err.contains("did you mean process.lua"),
        "{err}"
    );
    assert!(
        err.contains("b/_index.yaml") && err.contains("entry b:w") && err.contains("missing.lua"),
        "{err}"
    );
    assert!(
        err.contains("c/_index.yaml")
            && err.contains("entry c:svc")
            && err.contains("backoff_factor"),
        "{err}"
    );
    assert!(!err.contains("c:svc_b"), "{err}");
    assert!(
        err.contains("kind http.service is not supported; entry c:web skipped"),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
    // run refuses to start the same app
    let out = warden(&["run", "-d", d.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));

    let out = warden(&["check", "-d", &example("ping-pong")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: 4 entries"));
}

#[test]
fn dir_defaults_to_the_current_directory_and_uses_src_when_the_yaml_is_there() {
    let d = app(&[("src/_index.yaml", FAILING)]);
    let out = warden(&["run", "--exec", "app:ok", "x"], Some(d.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "\"hi x\"");
}

/// en/guides/dependency-management.md, en/start/structure.md: a Wippy project (a
/// `wippy.lock` naming `directories.src` and a vendored module under `.wippy/vendor`)
/// runs from its directory; the module's `fs.directory` resolves in the module's root and
/// its function and library serve the app.
#[test]
fn a_wippy_project_runs_with_its_vendored_modules() {
    let d = app(&[
        (
            "wippy.lock",
            "directories:\n  modules: .wippy\n  src: ./src\nmodules:\n  - {name: acme/greet, version: v1.0.0, hash: x}\n",
        ),
        (
            "src/_index.yaml",
            "version: \"1.0\"\nnamespace: app\nentries:\n  - name: main\n    kind: process.lua\n    source: |\n      local funcs = require(\"funcs\")\n      return { main = function() return funcs.call(\"acme.greet:hello\", \"Ada\") end }\n    method: main\n    modules: [funcs]\n",
        ),
        (
            ".wippy/vendor/acme/greet/src/_index.yaml",
            "version: \"1.0\"\nnamespace: acme.greet\nentries:\n  - {name: data, kind: fs.directory, directory: ./data}\n  - {name: words, kind: library.lua, source: 'return { hi = function(n) return \"hello, \" .. n end }'}\n  - name: hello\n    kind: function.lua\n    source: 'local w = require(\"words\") return { main = function(n) return w.hi(n) end }'\n    method: main\n    imports: {words: acme.greet:words}\n  - {name: web, kind: http.service, addr: ':0'}\n",
        ),
        (".wippy/vendor/acme/greet/data/readme.txt", "module data"),
    ]);
    let out = warden(&["run", "--exec", "app:main"], Some(d.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "\"hello, Ada\"");
    assert!(
        text(&out.stderr)
            .contains("kind http.service is not supported; entry acme.greet:web skipped"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 34 (Wippy's hosts at shutdown, service/host and its scheduler's Stop): when
/// `run -x` ends, a process that is not a service but watches its events gets a CANCEL
/// (reason `shutdown`) and time to finish, so its last words are printed; one that never
/// looks at its events does not hold the exit up.
#[test]
fn processes_get_a_cancel_when_the_runtime_stops() {
    let d = app(&[(
        "_index.yaml",
        r#"version: "1.0"
namespace: app
entries:
  - name: watcher
    kind: process.lua
    source: |
      return { main = function(parent)
        local ev = process.events()
        process.send(parent, "up", true)
        local e = ev:receive()
        print("watcher stopped: " .. tostring(e.kind) .. " " .. tostring(e.reason))
      end }
    method: main
  - name: idle
    kind: process.lua
    source: |
      return { main = function(parent)
        process.send(parent, "up", true)
        process.inbox():receive()
      end }
    method: main
  - name: main
    kind: process.lua
    source: |
      return { main = function()
        process.spawn("app:watcher", "app:host", process.pid())
        process.spawn("app:idle", "app:host", process.pid())
        process.inbox():receive()
        process.inbox():receive()
        return "done"
      end }
    method: main
  - {name: host, kind: process.host}
"#,
    )]);
    let t0 = Instant::now();
    let out = warden(&["run", "--exec", "app:main"], Some(d.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        text(&out.stderr).contains("watcher stopped: CANCEL shutdown"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        stdout.trim_end().ends_with("\"done\"") || stdout.contains("\"done\""),
        "{stdout}"
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    let d = app(&[("_index.yaml", FAILING)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d", d.path().to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    lines.wait_for("running; press Ctrl-C to stop", Duration::from_secs(60));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest = lines.rest(Duration::from_secs(60));
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("runtime stopped")),
        "{rest:?}"
    );
}

/// The app shown in README.md runs and prints what the README says.
#[test]
fn readme_example_runs_as_documented() {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let block = |lang: &str| {
        let start = readme.find(&format!("```{lang}\n")).unwrap() + lang.len() + 4;
        let end = start + readme[start..].find("```").unwrap();
        readme[start..end].to_string()
    };
    let d = app(&[("_index.yaml", &block("yaml")), ("app.lua", &block("lua"))]);
    let out = warden(
        &[
            "run",
            "-d",
            d.path().to_str().unwrap(),
            "--exec",
            "app:main",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = readme
        .lines()
        .find(|l| l.contains("--exec app:main` prints"))
        .and_then(|l| l.split('`').nth(3))
        .unwrap()
        .to_string();
    let got: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let want: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(got, want);
}

const FUNCS: &str = r#"version: "1.0"
namespace: app
entries:
  - name: add
    kind: function.lua
    source: |
      return { main = function(a, b) return { sum = a + b } end }
    method: main
    pool: {type: static, size: 2}
  - name: greet
    kind: function.lua
    source: |
      return { main = function(who) if who == "" then return nil, "nobody to greet" end return "hi " .. who end }
    method: main
"#;

#[test]
fn call_prints_the_result_as_json_or_exits_1_with_the_error() {
    let d = app(&[("_index.yaml", FUNCS)]);
    let dir = d.path().to_str().unwrap();
    let out = warden(&["call", "-d", dir, "app:add", "2", "40"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"{"sum":42}"#);
    // an argument that is not JSON is passed as a string
    let out = warden(&["call", "-d", dir, "app:greet", "Ada"], None);
    assert_eq!(text(&out.stdout).trim(), r#""hi Ada""#);
    let out = warden(&["call", "-d", dir, "app:greet", r#""""#], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nobody to greet"),
        "{}",
        text(&out.stderr)
    );
    let out = warden(&["call", "-d", dir, "app:missing"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("NOT_FOUND"),
        "{}",
        text(&out.stderr)
    );
    let out = warden(&["call", "-d", dir, "missing"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("INVALID"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_pool_is_a_load_error_naming_the_field() {
    let yaml = FUNCS.replace("{type: static, size: 2}", "{type: statik, size: 2}");
    let d = app(&[("_index.yaml", &yaml)]);
    let out = warden(&["check", "-d", d.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("entry app:add")
            && err.contains("pool.type")
            && err.contains("did you mean static?"),
        "{err}"
    );
}

const UNDER_LOAD: &str = r#"version: "1.0"
namespace: app
entries:
  - name: host
    kind: process.host
  - name: work
    kind: function.lua
    method: main
    source: |
      return { main = function(x) return x * 2 end }
    pool: {type: static, size: 2}
  - name: loader
    kind: process.lua
    method: main
    modules: [funcs, time]
    source: |
      local funcs = require("funcs")
      local time = require("time")
      return { main = function(name)
        local events = process.events()
        local i = 0
        while true do
          local r = channel.select({ events:case_receive(), default = true })
          if not r.default then return name .. " stopped" end
          i = i + 1
          assert(funcs.call("app:work", i) == i * 2)
          if i % 100 == 0 then time.sleep(1 * time.MILLISECOND) end
        end
      end }
  - {name: db, kind: process.service, process: loader, host: host, args: [db], lifecycle: {auto_start: true, stop_timeout: 2s}}
  - {name: api, kind: process.service, process: loader, host: host, args: [api], lifecycle: {auto_start: true, requires: [db], stop_timeout: 2s}}
  - {name: web, kind: process.service, process: loader, host: host, args: [web], lifecycle: {auto_start: true, requires: [api], stop_timeout: 2s}}
"#;

#[test]
fn sigterm_under_load_stops_services_in_reverse_order_and_exits_0() {
    let d = app(&[("_index.yaml", UNDER_LOAD)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d", d.path().to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    lines.wait_for("running; press Ctrl-C to stop", Duration::from_secs(60));
    // let the load run a moment
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    lines.rest(Duration::from_secs(60));
    let code = child.wait().unwrap();
    let log = lines.seen.join("\n");
    assert_eq!(code.code(), Some(0), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took too long"
    );
    assert!(!log.contains("panicked"), "{log}");
    let strip = |l: &str| l.replace("\u{1b}", "");
    let order: Vec<&str> = lines
        .seen
        .iter()
        .filter(|l| strip(l).contains("stopping service"))
        .filter_map(|l| {
            ["app:web", "app:api", "app:db"]
                .into_iter()
                .find(|s| l.contains(s))
        })
        .collect();
    assert_eq!(order, vec!["app:web", "app:api", "app:db"], "{log}");
    // each stopped on its CANCEL, within its stop_timeout (no forced terminate)
    assert!(!log.contains("terminating it"), "{log}");
}

#[test]
fn messages_that_overflow_a_small_lua_heap_fail_the_receiver_not_the_runtime() {
    // WARDEN_LUA_MAX_MEMORY=32MiB: each worker's heap may hold 32 MiB while code runs, and
    // allocations stop at 64 MiB. Six 12 MiB messages to one process cannot all be copied
    // into its heap: its delivery fails with a memory error, and the rest runs on.
    let d = app(&[(
        "_index.yaml",
        r#"version: "1.0"
namespace: app
entries:
  - {name: host, kind: process.host, host: {workers: 1}}
  - name: sink
    kind: process.lua
    source: |
      return { main = function()
        local kept = {}
        while true do kept[#kept + 1] = process.inbox():receive() end
      end }
    method: main
  - name: main
    kind: process.lua
    source: |
      return { main = function()
        local s = string.rep("x", 12 * 1024 * 1024)
        local sink = process.spawn_monitored("app:sink", "app:host")
        for i = 1, 6 do process.send(sink, "big", s) end
        local ev = process.events():receive()
        s = nil
        collectgarbage()
        local after = process.spawn_monitored("app:sink", "app:host")
        process.send(after, "small", "ok")
        process.terminate(after)
        local ev2 = process.events():receive()
        return ev.result.error .. " | then: " .. tostring(ev2.result.error)
      end }
    method: main
"#,
    )]);
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.args([
        "run",
        "-d",
        d.path().to_str().unwrap(),
        "--exec",
        "app:main",
    ])
    .env("RUST_LOG", "warn")
    .env("WARDEN_LUA_MAX_MEMORY", "32MiB");
    let out = c.output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("memory"), "{stdout}\n{stderr}");
    assert!(stdout.contains("then: terminated"), "{stdout}\n{stderr}");
}

#[test]
fn a_terminal_process_reads_stdin_writes_stdout_and_logs_with_fields() {
    let d = app(&[
        (
            "_index.yaml",
            r#"version: "1.0"
namespace: app
entries:
  - name: term
    kind: process.lua
    source: file://term.lua
    method: main
    modules: [io, logger, uuid]
"#,
        ),
        (
            "term.lua",
            r#"local io = require("io")
local logger = require("logger")
local uuid = require("uuid")
return { main = function()
  local log = logger:named("svc"):with({ region = "eu" }):named("db")
  log:info("connected", { n = 1 })
  io.write("args:", table.concat(io.args(), ","), "\n")
  local name = io.readline()
  local rest = io.readline()
  local _, eof = io.readline()
  io.print("hello", name, rest)
  io.eprint("to stderr")
  local id = uuid.v4()
  io.print(uuid.validate(id), uuid.version(id), uuid.v5(uuid.NAMESPACE_DNS, "example.com"))
  io.print(eof:kind())
  return 0
end }
"#,
        ),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "run",
            "-d",
            d.path().to_str().unwrap(),
            "-x",
            "app:term",
            "a",
            "b",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Ada\nlast line without newline")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "args:a,b\nhello\tAda\tlast line without newline\ntrue\t4\tcfbff0d1-9375-5685-968c-48ce8b15ae17\nCanceled\n"
    );
    assert!(stderr.contains("to stderr"), "{stderr}");
    assert!(
        stderr.contains("svc.db: connected region=eu n=1"),
        "{stderr}"
    );
}

#[test]
fn example_typed_prices_an_order_with_exit_codes() {
    let dir = example("typed");
    let out = warden(
        &["run", "-d", &dir, "order", "apple", "3", "bread", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "apple    x3      1.35\nbread    x1      3.20\ntotal            4.55\n"
    );
    let out = warden(&["run", "-d", &dir, "order", "apple", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: quantity of apple: ")
            && err.contains("cannot convert \"x\" to integer"),
        "{err}"
    );
    let out = warden(&["run", "-d", &dir, "order", "pear", "1"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("pear: no item pear (NotFound)"));
    assert!(text(&out.stdout).is_empty());
}

/// `run --watch`: an edited source restarts the service running it on the new code, with
/// one log line saying so; a broken entry is refused with its error and "nothing
/// applied", and the app keeps running the last good version.
#[test]
fn watch_applies_file_changes_to_the_running_app() {
    const YAML: &str = r#"namespace: app
entries:
  - name: worker
    kind: process.lua
    source: file://worker.lua
    method: main
    modules: [logger]
  - name: svc
    kind: process.service
    process: worker
    lifecycle: {auto_start: true}
"#;
    const WORKER: &str = r#"local logger = require("logger")
return { main = function()
  logger:info("worker TAG up")
  while true do
    local r = channel.select({ process.inbox():case_receive(), process.events():case_receive() })
    if r.channel ~= process.inbox() then return end
  end
end }
"#;
    let d = app(&[
        ("_index.yaml", YAML),
        ("worker.lua", &WORKER.replace("TAG", "v1")),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d", d.path().to_str().unwrap(), "--watch"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    let mut wait_for = |text: &str| lines.wait_for(text, Duration::from_secs(60));
    wait_for("worker v1 up");
    wait_for("watching the app's files");
    std::fs::write(d.path().join("worker.lua"), WORKER.replace("TAG", "v2")).unwrap();
    wait_for("worker v2 up");
    let line = wait_for("registry version 2");
    assert!(
        line.contains("registry version 2: updated app:worker; restarted app:svc"),
        "{line}"
    );
    std::fs::write(
        d.path().join("_index.yaml"),
        format!(
            "{YAML}  - {{name: broken, kind: process.lua, source: 'return {{', method: main}}\n"
        ),
    )
    .unwrap();
    let line = wait_for("nothing applied");
    assert!(
        line.contains("_index.yaml: entry app:broken: field source: Lua syntax error"),
        "{line}"
    );
    // the last good version runs on: the next good edit is version 3, and the worker was
    // not restarted in between
    std::fs::write(d.path().join("_index.yaml"), YAML).unwrap();
    std::fs::write(d.path().join("worker.lua"), WORKER.replace("TAG", "v3")).unwrap();
    wait_for("worker v3 up");
    let line = wait_for("registry version 3");
    assert!(
        line.contains("registry version 3: updated app:worker; restarted app:svc"),
        "{line}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(0));
    let ups: Vec<&String> = lines
        .seen
        .iter()
        .filter(|l| l.contains("up"))
        .filter(|l| l.contains("worker v"))
        .collect();
    assert_eq!(ups.len(), 3, "{ups:#?}");
}

/// en/lua/system/io.md: `io.read()` reads up to 1024 bytes by default (and for n <= 0);
/// `io.raw(true)` on a stdin that is not a terminal is `nil, err` UNAVAILABLE, and
/// `io.raw(false)` with nothing to undo is `true`.
#[test]
fn io_read_defaults_and_raw_mode_as_wippy_documents_them() {
    let d = app(&[(
        "_index.yaml",
        r#"version: "1.0"
namespace: app
entries:
  - {name: terminal, kind: terminal.host}
  - name: main
    kind: process.lua
    modules: [io]
    source: |
      local io = require("io")
      return { main = function()
        local a = io.read()
        local b = io.read(-5)
        local c = io.read(10)
        local ok, err = io.raw(true)
        io.print(#a, #b, #c, tostring(ok), err and err:kind(), tostring(io.raw(false)))
        return 0
      end }
    method: main
"#,
    )]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-x", "app:main"])
        .current_dir(d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vec![b'x'; 3000]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "1024\t1024\t10\tnil\tUnavailable\ttrue",
        "{}",
        text(&out.stderr)
    );
}

/// en/lua/system/system.md, "Shutdown": `system.exit(code)` from a running service stops
/// the whole runtime with that exit code.
#[test]
fn system_exit_stops_the_run_with_its_code() {
    let d = app(&[
        (
            "app.yaml",
            r#"version: "1.0"
namespace: app
entries:
  - {name: host, kind: process.host, host: {workers: 1}}
  - {name: quitter, kind: process.lua, source: file://quitter.lua, method: main, modules: [system]}
  - {name: svc, kind: process.service, process: quitter, host: host, lifecycle: {auto_start: true}}
"#,
        ),
        (
            "quitter.lua",
            r#"local system = require("system")
return { main = function()
  local ok = system.exit(3)
  process.events():receive()
end }
"#,
        ),
    ]);
    let out = warden(&["run", "-d", d.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("system.exit(3) called, stopping"));
}

const TERMINALS: &str = r#"version: "1.0"
namespace: app
entries:
  - {name: term1, kind: terminal.host}
  - {name: term2, kind: terminal.host}
  - {name: cli, kind: process.lua, source: file://cli.lua, method: main, modules: [io, system, logger]}
"#;

const CLI: &str = r#"local io = require("io")
local system = require("system")
local logger = require("logger")
local function where()
  for _, h in ipairs({"app:term1", "app:term2"}) do
    for _, p in ipairs(system.hosts.processes(h)) do
      if p.pid == tostring(process.pid()) then return h end
    end
  end
  return "?"
end
return {
  main = function(arg)
    logger:info("a log line of the program")
    io.print("on " .. where() .. " " .. type(arg))
    return 0
  end,
  shout = function() io.print("SHOUT on " .. where()) return 0 end,
}
"#;

/// `warden` as a user runs it: no RUST_LOG.
fn warden_plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run warden")
}

/// en/guides/cli.md (`wippy run`: `-x`, `--host`, `-o`; global `-v`) and
/// en/tutorials/cli.md ("the -x flag auto-detects your terminal.host and runs in silent
/// mode"): with two terminal hosts `-x` asks for `--host`; the program runs on the named
/// host, prints only what it writes (its arguments are strings), `-v` brings the log
/// lines back, and `-o namespace:entry:field=value` changes an entry before the start.
#[test]
fn run_x_picks_the_terminal_host_runs_silent_and_takes_overrides() {
    let d = app(&[("app.yaml", TERMINALS), ("cli.lua", CLI)]);
    let dir = d.path().to_str().unwrap();
    let out = warden_plain(&["run", "-d", dir, "-x", "app:cli"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "multiple terminal hosts found (app:term1, app:term2), use --host to specify"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = warden_plain(&[
        "run",
        "-d",
        dir,
        "-x",
        "app:cli",
        "--host",
        "app:term2",
        "42",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "on app:term2 string\n");
    assert_eq!(text(&out.stderr), "", "silent: no log lines");
    let out = warden_plain(&[
        "run",
        "-d",
        dir,
        "-v",
        "-x",
        "app:cli",
        "--host",
        "app:term2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("a log line of the program"));
    let out = warden_plain(&[
        "run",
        "-d",
        dir,
        "-o",
        "app:cli:method=shout",
        "--host",
        "app:term1",
        "-x",
        "app:cli",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SHOUT on app:term1\n");
    let out = warden_plain(&["run", "-d", dir, "-o", "app:cli=1", "-x", "app:cli"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error: -o app:cli=1: missing \":\""));
    let out = warden_plain(&["run", "-d", dir, "--host", "app:cli", "-x", "app:cli"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--host app:cli: app:cli is a process.lua, not a host"));
}
