//! WebAssembly functions called from Lua through funcs.call / funcs.async.

mod common;

use common::App;
use serde_json::json;

fn fixtures() -> String {
    format!("{}/../shared/fixtures/wasm", env!("CARGO_MANIFEST_DIR"))
}

fn wasm_entry(name: &str, file: &str, hash: &str, method: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: function.wasm\n    fs: fixtures\n    path: /{file}\n    hash: sha256:{hash}\n    method: {method}\n{extra}"
    )
}

const COMPLEX: &str = "0b3b555c2dd2e9bb4e09dead45b0ba00c660abb3b9d5ea1f688dee9b17537b55";
const MAPPER: &str = "7304fc7d19778605458ae5804dae9a7343dcd3f5fc22bcc9415e98b5047192dd";
const SLEEP: &str = "0044be3a042b7a11dae878667e7eb967c14d041825b1448b72b16d97e9ac706d";

fn app() -> App {
    App::new().entry(&format!(
        "  - name: fixtures\n    kind: fs.directory\n    directory: {}\n",
        fixtures()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wit_values_map_both_ways_from_lua() {
    let v = app()
        .entry(&wasm_entry("point", "complex.wasm", COMPLEX, "echo-point", "    pool: {type: static, size: 2}\n"))
        .entry(&wasm_entry("divide", "complex.wasm", COMPLEX, "try-divide", ""))
        .entry(&wasm_entry("shape", "complex.wasm", COMPLEX, "echo-shape", ""))
        .entry(&wasm_entry("perms", "complex.wasm", COMPLEX, "echo-permissions", ""))
        .entry(&wasm_entry("maybe", "complex.wasm", COMPLEX, "maybe-point", ""))
        .entry(&wasm_entry("transform", "mapper.wasm", MAPPER, "transform-users", "    imports: [wasi:cli, wasi:io, wasi:clocks, wasi:filesystem]\n"))
        .entry(
            "  - name: compute\n    kind: function.wat\n    source: \"(module (func (export \\\"compute\\\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.mul))\"\n    wit: \"compute: func(a: s32, b: s32) -> s32;\"\n    method: compute\n",
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local out = {}
  out.compute = funcs.call("app:compute", 6, 7)
  out.point = funcs.call("app:point", { x = 1, y = 2 })
  out.point_again = funcs.call("app:point", { x = -5, y = 7 })
  out.quotient = funcs.call("app:divide", 9, 3)
  local q, err = funcs.call("app:divide", 1, 0)
  out.divide_error = { q == nil, err }
  out.circle = funcs.call("app:shape", { circle = 5 })
  out.none = funcs.call("app:shape", "none")
  out.perms = funcs.call("app:perms", { "read", "execute" })
  out.some = funcs.call("app:maybe", true)
  out.nothing = funcs.call("app:maybe", false) == nil
  local users = {
    { id = 1, name = "Alice", tags = { "admin" }, active = true },
    { id = 2, name = "Bob", tags = { "user" }, active = false },
  }
  out.users = funcs.call("app:transform", users)
  local bad = { users[1], { id = 2, name = "Bob", tags = { 5 }, active = false } }
  local r, e = funcs.call("app:transform", bad)
  out.bad = { r == nil, e:kind(), tostring(e) }
  local r2, e2 = funcs.call("app:point", { x = 1 })
  out.missing_field = tostring(e2)
  local r3, e3 = funcs.call("app:compute", 1)
  out.arg_count = tostring(e3)
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["compute"], 42);
    assert_eq!(v["point"], json!({"x": 1, "y": 2}));
    assert_eq!(v["point_again"], json!({"x": -5, "y": 7}));
    assert_eq!(v["quotient"], 3);
    assert_eq!(
        v["divide_error"],
        json!([true, {"code": 1, "message": "division by zero"}])
    );
    assert_eq!(v["circle"], json!({"circle": 5}));
    assert_eq!(v["none"], "none");
    let mut perms: Vec<String> = serde_json::from_value(v["perms"].clone()).unwrap();
    perms.sort();
    assert_eq!(perms, vec!["execute", "read"]);
    assert_eq!(v["some"], json!({"x": 42, "y": 24}));
    assert_eq!(v["nothing"], true);
    assert_eq!(
        v["users"],
        json!([
            {"id": 1, "display": "Alice [admin]", "tag-count": 1},
            {"id": 2, "display": "Bob [user]", "tag-count": 1}
        ])
    );
    assert_eq!(v["bad"][1], "Invalid");
    assert_eq!(
        v["bad"][2],
        "transform-users: users[2].tags[1]: expected string, got number"
    );
    assert!(
        v["missing_field"]
            .as_str()
            .unwrap()
            .contains("echo-point: p"),
        "{v}"
    );
    assert!(
        v["arg_count"]
            .as_str()
            .unwrap()
            .contains("expected 2 arguments"),
        "{v}"
    );
}

/// `funcs.call` converts plain arguments of a WebAssembly function straight off the Lua
/// stack and pushes its result straight back; `funcs.new():call` takes the general path
/// (Lua -> Value -> WIT and back). Every export of complex.wasm, with good arguments,
/// arguments the direct path leaves to the general one (floats, snake_case keys, extra
/// keys, lists built out of order) and bad ones, must give the same answer both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_general_paths_agree_on_every_complex_export() {
    let mut a = app();
    for (i, e) in common::COMPLEX_EXPORTS.iter().enumerate() {
        // half keep warm instances (static pool), half instantiate per call
        let pool = if i % 2 == 0 {
            "    pool: {type: static, size: 2}\n"
        } else {
            "    pool: {type: inline}\n"
        };
        a = a.entry(&wasm_entry(e, "complex.wasm", COMPLEX, e, pool));
    }
    let v = a
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, x in pairs(a) do if not same(x, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local function show(x)
  if type(x) ~= "table" then return tostring(x) end
  local keys = {}
  for k in pairs(x) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = k .. "=" .. show(x[k] == nil and x[tonumber(k)] or x[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
local reversed = {}
reversed[3] = 3; reversed[2] = 2; reversed[1] = 1
local rect = { ["top-left"] = { x = 1, y = 2 }, ["bottom-right"] = { x = 3, y = 4 } }
local cases = {
  { "echo-point", { x = 1, y = 2 } }, { "echo-point", { x = -5, y = 7 } },
  { "echo-point", { x = 1.0, y = 2 } }, { "echo-point", { x = 1 } },
  { "echo-point", { x = 1, y = 2, z = 3 } }, { "echo-point", { x = "a", y = 2 } },
  { "echo-point", { x = 2 ^ 31, y = 0 } }, { "echo-point", { x = 2147483648, y = 0 } },
  { "echo-point", {} }, { "echo-point", "str" }, { "echo-point" },
  { "echo-person", { name = "Ann", age = 30 } }, { "echo-person", { name = "Ann", age = -1 } },
  { "echo-person", { name = 5, age = 1 } }, { "echo-person", { name = "\xff", age = 1 } },
  { "echo-rectangle", rect },
  { "echo-rectangle", { top_left = { x = 1, y = 2 }, bottom_right = { x = 3, y = 4 } } },
  { "echo-rectangle", { ["top-left"] = { x = 1, y = 2 }, top_left = { x = 9, y = 9 },
                        ["bottom-right"] = { x = 3, y = 4 } } },
  { "echo-color", "red" }, { "echo-color", "green" }, { "echo-color", "purple" },
  { "echo-color", 1 },
  { "echo-shape", { circle = 5 } }, { "echo-shape", "none" }, { "echo-shape", { rect = rect } },
  { "echo-shape", { square = 2 } }, { "echo-shape", "circle" },
  { "echo-permissions", { "read", "execute" } }, { "echo-permissions", {} },
  { "echo-permissions", { read = true, write = false } }, { "echo-permissions", { "bogus" } },
  { "echo-list-s32", { 1, 2, 3 } }, { "echo-list-s32", {} }, { "echo-list-s32", { 1, "x" } },
  { "echo-list-s32", reversed }, { "echo-list-s32", { 1, 2, n = 3 } },
  { "echo-list-string", { "a", "b" } }, { "echo-list-string", { "a", 1 } },
  { "echo-list-point", { { x = 1, y = 2 }, { x = 3, y = 4 } } },
  { "echo-list-point", { { x = 1, y = 2 }, { x = 3 } } },
  { "maybe-point", true }, { "maybe-point", false }, { "maybe-point" },
  { "maybe-string", true }, { "maybe-string", false },
  { "try-divide", 9, 3 }, { "try-divide", 1, 0 }, { "try-divide", 1 }, { "try-divide", 1, 2, 3 },
  { "try-parse", "42" }, { "try-parse", "x" },
  { "swap-pair", 1, 2 }, { "triple", 7 }, { "triple", 7.5 },
  { "filter-adults", { { name = "A", age = 20 }, { name = "B", age = 10 } } },
  { "sum-list", { 1, 2, 3 } }, { "sum-list", { 2147483647, 2147483647 } },
  { "double-list", { 1, 2, 3 } },
}
return { main = function()
  local general = funcs.new()
  local out = { mismatches = {}, answers = {}, errors = 0 }
  for i, c in ipairs(cases) do
    local id = "app:" .. c[1]
    local r1, e1 = funcs.call(id, table.unpack(c, 2))
    local r2, e2 = general:call(id, table.unpack(c, 2))
    local s1 = show(r1) .. " / " .. show(e1)
    local s2 = show(r2) .. " / " .. show(e2)
    if not same(r1, r2) or s1 ~= s2 then
      out.mismatches[#out.mismatches + 1] = i .. " " .. c[1] .. ": " .. s1 .. " <> " .. s2
    end
    if e1 ~= nil then out.errors = out.errors + 1 end
    out.answers[i] = s1
  end
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["mismatches"], json!([]), "{v}");
    let answers = &v["answers"];
    assert_eq!(answers[0], "{x=1,y=2} / nil");
    assert_eq!(answers[2], "{x=1,y=2} / nil");
    assert!(
        answers[3].as_str().unwrap().contains("missing field y"),
        "{v}"
    );
    assert!(answers[7].as_str().unwrap().contains("out of range"), "{v}");
    // snake_case keys, and both spellings at once (the WIT name wins)
    for i in [16, 17] {
        assert_eq!(
            answers[i],
            "{bottom-right={x=3,y=4},top-left={x=1,y=2}} / nil"
        );
    }
    assert_eq!(answers[34], "{1=1,2=2,3=3} / nil");
    assert_eq!(answers[46], "nil / {code=1,message=division by zero}");
    assert_eq!(answers[55], "6 / nil");
    assert_eq!(answers[56], "4294967294 / nil");
    assert!(v["errors"].as_u64().unwrap() >= 15, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_guests_suspend_and_neighbours_keep_answering() {
    let v = app()
        .entry(&wasm_entry(
            "sleep",
            "sleep-test.wasm",
            SLEEP,
            "test-sleep#sleep-ms",
            "    imports: [wasi:io, wasi:clocks]\n    pool: {type: inline}\n",
        ))
        .lua(
            "echo",
            "return { main = function() local inbox = process.inbox() while true do local m = inbox:receive() process.send(m:from(), 'pong', 1) end end }",
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local echo = process.spawn("app:echo", "app:host")
  local t0 = time.now()
  local futures = {}
  for i = 1, 200 do futures[i] = funcs.async("app:sleep", 1000) end
  -- while 200 guests sleep, the neighbour answers: before the first sleep ends
  process.send(echo, "ping", 1)
  process.inbox():receive()
  local first = true
  for i = 1, 200 do if futures[i]:is_complete() then first = false end end
  local min_elapsed = math.huge
  for i = 1, 200 do
    local ns = futures[i]:response():receive():data()
    if ns < min_elapsed then min_elapsed = ns end
  end
  return { wall_ms = (time.now():sub(t0):seconds() * 1000), first = first, min_slept_ms = min_elapsed / 1e6 }
end }
"#,
        )
        .value("main")
        .await;
    let wall = v["wall_ms"].as_f64().unwrap();
    // one after another they would take 200 s
    assert!(wall < 20_000.0, "200 concurrent 1 s sleeps: {v}");
    assert!(v["min_slept_ms"].as_f64().unwrap() >= 999.0, "{v}");
    assert_eq!(v["first"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_traps_fail_the_call_and_the_pool_keeps_serving() {
    let v = App::new()
        .entry(
            "  - name: spin\n    kind: function.wat\n    source: \"(module (func (export \\\"spin\\\") (loop (br 0))))\"\n    wit: \"spin: func();\"\n    method: spin\n    limits: {max_execution_ms: 100}\n    pool: {type: static, size: 1}\n",
        )
        .entry(
            "  - name: trap\n    kind: function.wat\n    source: \"(module (func (export \\\"trap\\\") (param i32) (result i32) local.get 0 i32.eqz (if (then unreachable)) local.get 0))\"\n    wit: \"trap: func(x: s32) -> s32;\"\n    method: trap\n    pool: {type: static, size: 1}\n",
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local out = {}
  local t0 = time.now()
  local r, err = funcs.call("app:spin")
  out.spin = { err:kind(), tostring(err), (time.now():sub(t0):seconds() * 1000) }
  local r2, err2 = funcs.call("app:trap", 0)
  out.trap = { err2:kind(), tostring(err2) }
  out.after = funcs.call("app:trap", 7)
  out.again = funcs.call("app:trap", 8)
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["spin"][0], "Timeout");
    assert!(
        v["spin"][1].as_str().unwrap().contains("max_execution_ms"),
        "{v}"
    );
    assert!(v["spin"][2].as_f64().unwrap() < 2000.0, "{v}");
    assert_eq!(v["trap"][0], "Internal");
    assert!(
        v["trap"][1].as_str().unwrap().contains("unreachable"),
        "{v}"
    );
    assert_eq!(v["after"], 7);
    assert_eq!(v["again"], 8);
}

#[test]
fn the_wasm_example_and_warden_call_run() {
    let exe = env!("CARGO_BIN_EXE_warden");
    let dir = format!("{}/examples/wasm", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(exe)
        .args(["run", "-d", &dir, "--exec", "app:main"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(v["product"], 42);
    assert_eq!(v["quotient"], 42);
    assert_eq!(
        v["division_error"],
        json!({"code": 1, "message": "division by zero"})
    );
    assert_eq!(v["transformed"][1]["display"], "Bob [user]");
    let call = |args: &[&str]| {
        std::process::Command::new(exe)
            .args(["call", "-d", &dir])
            .args(args)
            .output()
            .unwrap()
    };
    let out = call(&["app:compute", "6", "7"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let out = call(&["app:divide", "1", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("division by zero"));
    let out = call(&["app:compute", "\"six\"", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("compute: a: expected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The caller's context travels through a WebAssembly function: a `function.wat` that calls
/// a `function.lua` through warden:funcs passes on the actor and the `with_context` values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_context_travels_through_a_wasm_function() {
    let wat = r#"(module
  (import "warden:host/funcs@0.1.0" "call" (func $call (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (data (i32.const 100) "app:read")
  (data (i32.const 120) "[]")
  (func (export "relay") (result i32)
    (call $call (i32.const 100) (i32.const 8) (i32.const 120) (i32.const 2) (i32.const 200))
    (i32.const 204)))"#;
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    let v = App::new()
        .func(
            "read",
            r#"local ctx = require("ctx")
return { main = function() return { trace = ctx.get("trace"), actor = ctx.actor() } end }"#,
            None,
        )
        .entry(&format!(
            "  - name: relay\n    kind: function.wat\n    method: relay\n    imports: [warden:funcs]\n    source: |\n{}    wit: |\n      import warden:host/funcs@0.1.0;\n      relay: func() -> string;\n",
            indent(wat)
        ))
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local json = require("json")
return { main = function()
  local text, err = funcs.new():with_context({ trace = "t-42" }):call("app:relay")
  assert(text, tostring(err))
  local got = json.decode(text)
  return { trace = got.trace, actor_is_me = got.actor == process.pid() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v, json!({"trace": "t-42", "actor_is_me": true}));
}
