//! process.wasm: WebAssembly actors with mailboxes (warden:process), calling functions
//! (warden:funcs), supervised, stopped, and run as CLI commands. The guests are WAT core
//! modules made into components with their WIT, as the runtime does for `source` + `wit`.

mod common;

use common::App;
use serde_json::json;
use warden::process::Exit;

/// A bump allocator for the canonical ABI (strings the host hands to the guest).
const ALLOC: &str = r#"
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
      (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (block $ok
      (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow (i32.add (i32.const 1)
        (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
                   (i32.const 65536))))))
    (local.get $p))
"#;

/// Echoes `count` messages back to their senders (shared with the benchmarks).
fn echo_wat() -> String {
    include_str!("guests/echo.wat").to_string()
}

/// Calls app:double with [21] (call-lua) or app:add with [1,2] (call-wat) and returns the
/// result (or the error) text. call() writes result<string, string> at 200.
fn caller_wat() -> String {
    format!(
        r#"(module
  (import "warden:host/funcs@0.1.0" "call" (func $call (param i32 i32 i32 i32 i32)))
  {ALLOC}
  (data (i32.const 100) "app:double")
  (data (i32.const 120) "[21]")
  (data (i32.const 140) "app:add")
  (data (i32.const 160) "[1,2]")
  (func (export "call-lua") (result i32)
    (call $call (i32.const 100) (i32.const 10) (i32.const 120) (i32.const 4) (i32.const 200))
    (i32.const 204))
  (func (export "call-wat") (result i32)
    (call $call (i32.const 140) (i32.const 7) (i32.const 160) (i32.const 5) (i32.const 200))
    (i32.const 204)))"#
    )
}

/// Waits for messages; traps (unreachable) on a message whose topic is 4 bytes long.
fn trapper_wat() -> String {
    format!(
        r#"(module
  (import "warden:host/process@0.1.0" "receive" (func $receive (param i32 i64 i32)))
  {ALLOC}
  (func (export "run") (result i32)
    (loop $next
      (call $receive (i32.const 0) (i64.const 0) (i32.const 16))
      (if (i32.eq (i32.load (i32.const 24)) (i32.const 4)) (then unreachable))
      (br $next))
    (i32.const 0)))"#
    )
}

fn wasm_process(name: &str, wat: &str, wit: &str, method: &str, extra: &str) -> String {
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    format!(
        "  - name: {name}\n    kind: process.wasm\n    method: {method}\n    source: |\n{}    wit: |\n{}{extra}",
        indent(wat),
        indent(wit)
    )
}

const ECHO_WIT: &str = "import warden:host/process@0.1.0;\nrun: func(count: u32) -> u32;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_echo_process_answers_lua_messages_with_tables_intact() {
    let v = App::new()
        .entry(&wasm_process(
            "echo",
            &echo_wat(),
            ECHO_WIT,
            "run",
            "    imports: [warden:process]\n",
        ))
        .lua(
            "main",
            r#"
return { main = function()
  local pid = assert(process.spawn_monitored("app:echo", "app:host", 3))
  local sent = { a = 1, list = { 1, 2, 3 }, nested = { s = "x", ok = true } }
  local got = {}
  for i = 1, 3 do
    process.send(pid, "hello", i == 2 and sent or i)
    local m = process.inbox():receive()
    got[i] = { topic = m:topic(), from_echo = m:from() == pid, data = m:payload():data() }
  end
  local ev = process.events():receive()
  local _, err = process.spawn("app:echo", "app:host", "three")
  return { got = got, exit = ev.result.value, bad_args = tostring(err), kind = err:kind() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v["got"][0],
        json!({"topic": "echo", "from_echo": true, "data": 1})
    );
    assert_eq!(
        v["got"][1]["data"],
        json!({"a": 1, "list": [1, 2, 3], "nested": {"s": "x", "ok": true}})
    );
    assert_eq!(v["exit"], 3);
    let bad = v["bad_args"].as_str().unwrap();
    assert!(
        bad.contains("app:echo") && bad.contains("run: count"),
        "{bad}"
    );
    assert_eq!(v["kind"], "Invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_process_calls_lua_and_wat_functions() {
    let wit =
        "import warden:host/funcs@0.1.0;\ncall-lua: func() -> string;\ncall-wat: func() -> string;";
    let v = App::new()
        .func("double", "return { main = function(x) return x * 2 end }", None)
        .entry(
            "  - name: add\n    kind: function.wat\n    source: \"(module (func (export \\\"add\\\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))\"\n    wit: \"add: func(a: s32, b: s32) -> s32;\"\n    method: add\n",
        )
        .entry(&wasm_process("lua_caller", &caller_wat(), wit, "call-lua", "    imports: [warden:funcs]\n"))
        .entry(&wasm_process("wat_caller", &caller_wat(), wit, "call-wat", "    imports: [warden:funcs]\n"))
        .lua(
            "main",
            r#"
return { main = function()
  return { lua = process.exec("app:lua_caller", "app:host"), wat = process.exec("app:wat_caller", "app:host") }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"lua": "42", "wat": "3"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_wasm_worker_is_restarted_after_a_trap_and_terminate_stops_a_loop() {
    let v = App::new()
        .entry(&wasm_process(
            "trapper",
            &trapper_wat(),
            "import warden:host/process@0.1.0;\nrun: func() -> u32;",
            "run",
            "    imports: [warden:process]\n",
        ))
        .entry(
            "  - name: spin\n    kind: process.wasm\n    source: \"(module (func (export \\\"spin\\\") (loop (br 0))))\"\n    wit: \"spin: func();\"\n    method: spin\n",
        )
        .entry(
            "  - name: bad_init\n    kind: process.wasm\n    source: \"(module (func $boom unreachable) (start $boom) (func (export \\\"run\\\")))\"\n    wit: \"run: func();\"\n    method: run\n",
        )
        .entry("  - name: tree\n    kind: supervisor\n    strategy: one_for_one\n    children: [{id: w, process: trapper}]\n")
        .entry("  - name: svc\n    kind: process.service\n    process: tree\n    host: host\n")
        .entry("  - name: spin_tree\n    kind: supervisor\n    children: [{id: s, process: spin, start_timeout: 300ms}]\n")
        .entry("  - name: svc2\n    kind: process.service\n    process: spin_tree\n    host: host\n    lifecycle: {restart: {max_attempts: 1}}\n")
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
local time = require("time")
return { main = function()
  local out = {}
  -- a guest is started at its first wait (receive here); one that only computes (its
  -- epoch yields are not waits) does not start within its start_timeout
  assert(supervisor.start("app:svc"))
  local _, spin_err = supervisor.start("app:svc2")
  out.spin_start = tostring(spin_err)
  local before = supervisor.children("app:tree")[1]
  process.monitor(before.pid)
  process.send(before.pid, "trap")
  local ev = process.events():receive()
  out.trap = ev.result.error
  local after
  for _ = 1, 400 do
    after = supervisor.children("app:tree")[1]
    if after.pid and after.pid ~= before.pid then break end
    time.sleep(5 * time.MILLISECOND)
  end
  out.restarted = after.pid ~= before.pid and after.restarts == 1
  local spin = process.spawn_monitored("app:spin", "app:host")
  time.sleep(20 * time.MILLISECOND)
  process.terminate(spin)
  out.terminated = process.events():receive().result.error
  local c = process.spawn_monitored("app:spin", "app:host")
  process.cancel(c, "enough")
  out.canceled = process.events():receive().result.error
  local b = process.spawn_monitored("app:bad_init", "app:host")
  out.init = process.events():receive().result.error
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert!(v["trap"].as_str().unwrap().contains("unreachable"), "{v}");
    assert_eq!(v["restarted"], true, "{v}");
    assert_eq!(v["terminated"], "terminated");
    assert_eq!(v["canceled"], "canceled");
    assert!(v["init"].as_str().unwrap().contains("unreachable"), "{v}");
    assert!(
        v["spin_start"]
            .as_str()
            .unwrap()
            .contains("child s did not start within 300ms"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_exit_results_reach_the_cli_runner() {
    // a wasm process entry as the target of Runtime::exec (what `warden run --exec` uses)
    let app = App::new().entry(&wasm_process(
        "answer",
        "(module (func (export \"answer\") (result i32) i32.const 42))",
        "answer: func() -> s32;",
        "answer",
        "",
    ));
    match app.run("answer", vec![]).await {
        Exit::Normal(v) => assert_eq!(v, warden::value::Value::Int(42)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wasm_command_runs_from_the_cli_and_a_trap_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: \"1.0\"\nnamespace: app\nentries:\n{}{}",
        wasm_process(
            "answer",
            "(module (func (export \"answer\") (param i32) (result i32) local.get 0 i32.const 2 i32.mul))",
            "answer: func(x: s32) -> s32;",
            "answer",
            "    meta: {command: {name: double, short: \"Doubles a number\"}}\n",
        ),
        wasm_process(
            "crash",
            "(module (func (export \"crash\") unreachable))",
            "crash: func();",
            "crash",
            "    meta: {command: {name: crash, short: \"Traps\"}}\n",
        )
    );
    std::fs::write(d.path().join("_index.yaml"), yaml).unwrap();
    let dir = d.path().to_str().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "-d", dir])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("double") && listing.contains("Doubles a number"),
        "{listing}"
    );
    let out = run(&["double", "21"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let out = run(&["crash"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

/// Runs `app:main` of the app in `dir` with the `warden` binary and one environment
/// variable set, and returns what it printed (its JSON result).
fn exec_main(dir: &std::path::Path, env: (&str, &str)) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "-d", dir.to_str().unwrap(), "--exec", "app:main"])
        .env(env.0, env.1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// The runtime caps live WebAssembly instances (by default from the kernel's
/// vm.max_map_count, which an unbounded number of them would exhaust and abort the
/// runtime): a spawn past the cap is a spawn error naming the limit, a function call past
/// it waits for an instance to end, and ending one makes room again.
#[test]
fn spawns_past_the_instance_cap_fail_with_the_limit_and_room_comes_back() {
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: \"1.0\"\nnamespace: app\nentries:\n  - {{name: host, kind: process.host, host: {{workers: 1}}}}\n{}{}  - {{name: main, kind: process.lua, source: file://main.lua, method: main, modules: [funcs, time]}}\n",
        wasm_process("echo", &echo_wat(), ECHO_WIT, "run", "    imports: [warden:process]\n"),
        "  - name: add\n    kind: function.wat\n    source: \"(module (func (export \\\"add\\\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))\"\n    wit: \"add: func(a: s32, b: s32) -> s32;\"\n    method: add\n    pool: {type: inline}\n",
    );
    std::fs::write(d.path().join("_index.yaml"), yaml).unwrap();
    std::fs::write(
        d.path().join("main.lua"),
        r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local pids, errors = {}, {}
  for i = 1, 5 do
    local pid, err = process.spawn("app:echo", "app:host", 100)
    if pid then pids[#pids + 1] = pid else errors[#errors + 1] = tostring(err) end
  end
  -- the call waits for an instance: a guest ends in 50 ms
  local f = funcs.async("app:add", 2, 3)
  time.sleep(50 * time.MILLISECOND)
  local waited = not f:is_complete()
  process.terminate(pids[1])
  local sum = f:response():receive():data()
  local again, err = process.spawn("app:echo", "app:host", 100)
  return { started = #pids, errors = errors, waited = waited, sum = sum, again = again ~= nil, err = err }
end }
"#,
    )
    .unwrap();
    let v = exec_main(d.path(), ("WARDEN_WASM_MAX_INSTANCES", "3"));
    assert_eq!(v["started"], 3, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        v["errors"][0],
        "process.spawn: entry app:echo: cannot start: 3 WebAssembly instances are alive, the most this runtime allows (max_instances is 3)"
    );
    assert_eq!(v["waited"], true, "{v}");
    assert_eq!(v["sum"], 5, "{v}");
    assert_eq!(v["again"], true, "{v}");
}

/// With the pooling allocator (opt-in), every slot holds a whole guest: an echo guest is
/// a component of three core instances (its module and the shims that lower its imports),
/// and all three guests of a 3-slot pool start and answer.
#[test]
fn every_pooling_slot_holds_a_guest_with_imports() {
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: \"1.0\"\nnamespace: app\nentries:\n  - {{name: host, kind: process.host, host: {{workers: 1}}}}\n{}  - {{name: main, kind: process.lua, source: file://main.lua, method: main, modules: [time]}}\n",
        wasm_process("echo", &echo_wat(), ECHO_WIT, "run", "    imports: [warden:process]\n"),
    );
    std::fs::write(d.path().join("_index.yaml"), yaml).unwrap();
    std::fs::write(
        d.path().join("main.lua"),
        r#"
local time = require("time")
return { main = function()
  local inbox = process.inbox()
  local answers, errors = 0, {}
  for i = 1, 4 do
    local pid, err = process.spawn("app:echo", "app:host", 2)
    if pid then process.send(pid, "ping", i) else errors[#errors + 1] = tostring(err) end
  end
  local deadline = time.after(5000 * time.MILLISECOND)
  for _ = 1, 3 do
    local r = channel.select({ inbox:case_receive(), deadline:case_receive() })
    if r.channel ~= inbox then break end
    if r.value:topic() == "echo" then answers = answers + 1 end
  end
  return { answers = answers, errors = errors }
end }
"#,
    )
    .unwrap();
    let v = exec_main(d.path(), ("WARDEN_WASM_POOLING", "3"));
    assert_eq!(v["answers"], 3, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("the pooling allocator has 3 slots"),
        "{v}"
    );
}

/// Writes "hello from wasm" to stdout through wasi:cli, then exits with an error status
/// when asked to (wasi:cli/exit takes a result: ok is 0, err is 1).
const STDOUT_WAT: &str = r#"(module
  (import "wasi:cli/stdout@0.2.12" "get-stdout" (func $get_stdout (result i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream" (func $drop (param i32)))
  (import "wasi:cli/exit@0.2.12" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
  (data (i32.const 16) "hello from wasm\n")
  (func (export "run") (param $fail i32)
    (local $out i32)
    (local.set $out (call $get_stdout))
    (call $write (local.get $out) (i32.const 16) (i32.const 16) (i32.const 64))
    (call $drop (local.get $out))
    (if (local.get $fail) (then (call $exit (i32.const 1))))))"#;

#[test]
fn a_wasm_command_writes_to_stdout_and_exits_with_its_wasi_status() {
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: \"1.0\"\nnamespace: app\nentries:\n{}",
        wasm_process(
            "hello",
            STDOUT_WAT,
            "import wasi:cli/stdout@0.2.12;\nimport wasi:cli/exit@0.2.12;\nrun: func(fail: bool);",
            "run",
            "    imports: [wasi:cli, wasi:io]\n    meta: {command: {name: hello, short: \"Says hello\"}}\n",
        )
    );
    std::fs::write(d.path().join("_index.yaml"), yaml).unwrap();
    let run = |arg: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "-d", d.path().to_str().unwrap(), "hello", arg])
            .output()
            .unwrap()
    };
    let out = run("false");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from wasm\n");
    let out = run("true");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from wasm\n");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exited with status 1"));
}

/// `run(code)`: 0 -> ok(7), anything else -> err("bad code"), as a WIT result.
fn result_wat() -> String {
    format!(
        r#"(module
  {ALLOC}
  (data (i32.const 300) "bad code")
  (func (export "run") (param i32) (result i32)
    (if (i32.eqz (local.get 0))
      (then
        (i32.store8 (i32.const 200) (i32.const 0))
        (i32.store (i32.const 204) (i32.const 7)))
      (else
        (i32.store8 (i32.const 200) (i32.const 1))
        (i32.store (i32.const 204) (i32.const 300))
        (i32.store (i32.const 208) (i32.const 8))))
    (i32.const 200)))"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_exits_reach_monitors_and_links_and_a_wasm_service_is_restarted() {
    let v = App::new()
        .entry(&wasm_process(
            "res",
            &result_wat(),
            "run: func(code: s32) -> result<u32, string>;",
            "run",
            "",
        ))
        .entry(&wasm_process(
            "trapper",
            &trapper_wat(),
            "import warden:host/process@0.1.0;\nrun: func() -> u32;",
            "run",
            "    imports: [warden:process]\n",
        ))
        .entry(&wasm_process(
            "echo",
            &echo_wat(),
            ECHO_WIT,
            "run",
            "    imports: [warden:process]\n",
        ))
        .entry("  - name: wsvc\n    kind: process.service\n    process: trapper\n    host: host\n    lifecycle: {restart: {initial_delay: 10ms}}\n")
        .lua(
            "middle",
            r#"
return { main = function(parent)
  local e = process.spawn_linked("app:echo", "app:host", 100)
  process.send(parent, "echo", e)
  process.inbox():receive()
  error("middle fails")
end }
"#,
        )
        .lua(
            "main",
            r#"
local supervisor = require("supervisor")
local time = require("time")
return { main = function()
  local out = {}
  local events = process.events()
  -- a WIT result: ok is the EXIT value, err the EXIT error
  process.spawn_monitored("app:res", "app:host", 0)
  out.ok = events:receive().result.value
  process.spawn_monitored("app:res", "app:host", 1)
  out.err = events:receive().result.error
  -- a WASM process that traps, linked to a Lua process trapping links: LINK_DOWN
  process.set_options({ trap_links = true })
  local t = process.spawn_linked("app:trapper", "app:host")
  process.send(t, "trap")
  local ev = events:receive()
  out.link = { kind = ev.kind, from = ev.from == t, trap = ev.result.error ~= nil }
  -- a WASM process linked to a Lua process that fails is stopped with it
  local mid = process.spawn_monitored("app:middle", "app:host", process.pid())
  local echo = process.inbox():receive():payload():data()
  process.monitor(echo)
  process.send(mid, "go")
  local downs = {}
  for _ = 1, 2 do
    local e = events:receive()
    downs[e.from == mid and "middle" or e.from == echo and "echo" or e.from] = e.result.error
  end
  out.downs = downs
  -- a process.wasm as a service: a trap restarts it
  assert(supervisor.start("app:wsvc"))
  local before = supervisor.info("app:wsvc")
  process.send(before.pid, "trap")
  local after = before
  for _ = 1, 2000 do
    after = supervisor.info("app:wsvc")
    if after.pid and after.pid ~= before.pid and after.state == "Running" then break end
    time.sleep(5 * time.MILLISECOND)
  end
  out.service = { restarted = after.pid ~= before.pid, state = after.state, restarts = after.restarts }
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["ok"], json!(7), "{v}");
    assert_eq!(v["err"], json!("bad code"), "{v}");
    assert_eq!(
        v["link"],
        json!({"kind": "LINK_DOWN", "from": true, "trap": true}),
        "{v}"
    );
    assert_eq!(
        v["downs"]["middle"],
        json!("middle.lua:6: middle fails"),
        "{v}"
    );
    let echo_down = v["downs"]["echo"].as_str().unwrap_or_default();
    assert!(
        echo_down.starts_with("linked process {")
            && echo_down.ends_with("failed: middle.lua:6: middle fails"),
        "{v}"
    );
    assert_eq!(
        v["service"],
        json!({"restarted": true, "state": "Running", "restarts": 1}),
        "{v}"
    );
}

/// A process.wasm's `max_execution_ms` bounds each stretch of computing without waiting,
/// as for Lua processes: a guest idle in `receive` for longer lives on, a loop is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_process_limit_counts_computing_not_waiting() {
    let v = App::new()
        .entry(&wasm_process(
            "echo",
            &echo_wat(),
            ECHO_WIT,
            "run",
            "    imports: [warden:process]\n    limits: {max_execution_ms: 200}\n",
        ))
        .entry(
            "  - name: spin\n    kind: process.wasm\n    source: \"(module (func (export \\\"spin\\\") (loop (br 0))))\"\n    wit: \"spin: func();\"\n    method: spin\n    limits: {max_execution_ms: 200}\n",
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local echo = process.spawn_monitored("app:echo", "app:host", 2)
  -- idle well past its limit, twice
  local answers = {}
  for i = 1, 2 do
    time.sleep(500 * time.MILLISECOND)
    process.send(echo, "ping", i)
    local r = channel.select({ process.inbox():case_receive(), time.after(2000 * time.MILLISECOND):case_receive() })
    answers[i] = r.value and r.value.payload and r.value:payload():data() or "no answer"
  end
  local echo_exit = process.events():receive()
  local spin = process.spawn_monitored("app:spin", "app:host")
  local t0 = time.now()
  local spin_exit = process.events():receive()
  return { answers = answers, echo_value = echo_exit.result.value,
           spin_error = spin_exit.result.error, spin_ms = (time.now():sub(t0):seconds() * 1000) }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["answers"], json!([1, 2]), "{v}");
    assert_eq!(v["echo_value"], json!(2), "{v}");
    let err = v["spin_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("app:spin") && err.contains("max_execution_ms"),
        "{v}"
    );
    let ms = v["spin_ms"].as_f64().unwrap();
    assert!((200.0..5000.0).contains(&ms), "{v}");
}
