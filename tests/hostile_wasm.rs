//! Hostile WebAssembly guests: each fails its own call with a clear error, the next call
//! works, and a neighbouring process keeps answering meanwhile.

mod common;

use common::App;
use std::time::Instant;

const ECHO: &str = r#"
return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    process.send(m:from(), "pong", 1)
  end
end }
"#;

fn wat_fn(name: &str, wat: &str, wit: &str, method: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: function.wat\n    source: {wat:?}\n    wit: {wit:?}\n    method: {method}\n    pool: {{type: static, size: 1}}\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_bombs_overflows_and_stuck_polls_fail_alone() {
    let fixtures = format!("{}/../shared/fixtures/wasm", env!("CARGO_MANIFEST_DIR"));
    let v = App::with_host(1, 1024)
        .lua("echo", ECHO)
        .entry(&wat_fn(
            "spin",
            "(module (func (export \"spin\") (param i32) (result i32) (block (loop (br_if 1 (i32.eqz (local.get 0))) (br 0))) local.get 0))",
            "spin: func(x: s32) -> s32;",
            "spin",
            "    limits: {max_execution_ms: 1000}\n",
        ))
        .entry(&wat_fn(
            "bomb",
            "(module (memory 1) (func (export \"bomb\") (param i32) (result i32) (if (local.get 0) (then (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))))) local.get 0))",
            "bomb: func(x: s32) -> s32;",
            "bomb",
            "    limits: {max_memory: 16MiB}\n",
        ))
        .entry(&wat_fn(
            "deep",
            "(module (func $f (export \"deep\") (param i32) (result i32) local.get 0 i32.eqz (if (result i32) (then i32.const 0) (else local.get 0 i32.const 1 i32.sub call $f))))",
            "deep: func(x: s32) -> s32;",
            "deep",
            "",
        ))
        .entry(&format!(
            "  - name: fixtures\n    kind: fs.directory\n    directory: {fixtures}\n  - name: sleepy\n    kind: function.wasm\n    fs: fixtures\n    path: /sleep-test.wasm\n    hash: sha256:0044be3a042b7a11dae878667e7eb967c14d041825b1448b72b16d97e9ac706d\n    method: test-sleep#sleep-ms\n    imports: [wasi:io, wasi:clocks]\n    limits: {{max_execution_ms: 1000}}\n  - name: list\n    kind: function.wasm\n    fs: fixtures\n    path: /complex.wasm\n    hash: sha256:0b3b555c2dd2e9bb4e09dead45b0ba00c660abb3b9d5ea1f688dee9b17537b55\n    method: echo-list-s32\n"
        ))
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local out = {}
  local echo = process.spawn("app:echo", "app:host")
  local function neighbour_ms()
    local t0 = time.now()
    process.send(echo, "ping", 1)
    process.inbox():receive()
    return (time.now():sub(t0):seconds() * 1000)
  end
  local function try(id, arg, ok_arg)
    local f = funcs.async(id, arg)
    time.sleep(20 * time.MILLISECOND)
    local ping = neighbour_ms()
    local first = not f:is_complete()
    f:response():receive()
    local err = f:error()
    return { kind = err and err:kind(), msg = err and tostring(err), ping_ms = ping, first = first,
             next = funcs.call(id, ok_arg) }
  end
  -- spin(1) never returns and bomb(1) grows memory until its limit; with 0 both return
  out.spin = try("app:spin", 1, 0)
  out.bomb = try("app:bomb", 1, 0)
  out.deep = try("app:deep", 100000000, 3)
  out.sleepy = try("app:sleepy", 10000000, 1)
  out.sleepy.next = out.sleepy.next ~= nil
  local big = {}
  for i = 1, 1000000 do big[i] = i end
  local t0 = time.now()
  local back = funcs.call("app:list", big)
  out.list = { n = #back, last = back[1000000], ms = (time.now():sub(t0):seconds() * 1000) }
  return out
end }
"#,
        )
        .value("main")
        .await;
    // the loop and the sleep run a second before their limit ends them: the neighbour
    // answered while they ran
    for key in ["spin", "sleepy"] {
        assert_eq!(
            v[key]["first"], true,
            "{key}: the neighbour answered late: {v}"
        );
    }
    // the bomb and the overflow fail at once; the neighbour still answers (a bound of
    // seconds: the point is that it answers at all)
    for key in ["bomb", "deep"] {
        assert!(v[key]["ping_ms"].as_f64().unwrap() < 5000.0, "{key}: {v}");
    }
    assert_eq!(v["spin"]["kind"], "Timeout");
    assert!(
        v["spin"]["msg"]
            .as_str()
            .unwrap()
            .contains("max_execution_ms"),
        "{v}"
    );
    assert_eq!(v["bomb"]["kind"], "Internal");
    assert!(
        v["bomb"]["msg"]
            .as_str()
            .unwrap()
            .contains("memory limit exceeded"),
        "{v}"
    );
    assert_eq!(v["deep"]["kind"], "Internal");
    assert!(v["deep"]["msg"].as_str().unwrap().contains("stack"), "{v}");
    for key in ["spin", "bomb", "deep"] {
        assert_eq!(v[key]["next"], 0, "{key}: the next call works: {v}");
    }
    assert_eq!(v["sleepy"]["kind"], "Timeout");
    assert_eq!(v["sleepy"]["next"], true);
    assert_eq!(v["list"]["n"], 1_000_000);
    assert_eq!(v["list"]["last"], 1_000_000);
}

#[test]
fn a_module_with_100_000_functions_loads_in_bounded_time() {
    let d = tempfile::tempdir().unwrap();
    let mut wat = String::from("(module\n");
    for i in 0..100_000 {
        wat.push_str(&format!("  (func $f{i} (result i32) i32.const {i})\n"));
    }
    wat.push_str("  (func (export \"answer\") (result i32) call $f99999))\n");
    std::fs::write(d.path().join("big.wat"), &wat).unwrap();
    std::fs::write(
        d.path().join("_index.yaml"),
        "version: \"1.0\"\nnamespace: app\nentries:\n  - name: big\n    kind: function.wat\n    source: file://big.wat\n    wit: \"answer: func() -> s32;\"\n    method: answer\n",
    )
    .unwrap();
    let t0 = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["call", "-d", d.path().to_str().unwrap(), "app:big"])
        .env("WARDEN_CACHE_DIR", d.path().join("cache"))
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "99999");
    assert!(
        took.as_secs() < 120,
        "compiling 100,000 functions took {took:?}"
    );
    println!("100,000 functions: loaded, compiled and called in {took:?}");
}
