//! The WebAssembly engine through its Rust API: real components from
//! `shared/fixtures/wasm`, core modules written in WAT, limits, capabilities and the
//! compile cache.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use warden::functions::{CallContext, CallError};
use warden::registry::{load_dir, Id, LoadError};
use warden::value::Value;
use warden::wasm::{
    compile_registry_with, EngineOptions, WasmFunction, WasmOptions, WasmResult, WasmRuntime,
};

const COMPLEX: &str = "0b3b555c2dd2e9bb4e09dead45b0ba00c660abb3b9d5ea1f688dee9b17537b55";
const MAPPER: &str = "7304fc7d19778605458ae5804dae9a7343dcd3f5fc22bcc9415e98b5047192dd";
const SLEEP: &str = "0044be3a042b7a11dae878667e7eb967c14d041825b1448b72b16d97e9ac706d";
const MINIMAL: &str = "292b796376f8b4cc360acf2ea6b82d1084871c3607a079f30b446da8e5c984a4";

const MAPPER_IMPORTS: &str = "[wasi:cli, wasi:io, wasi:clocks, wasi:filesystem]";

// ---------------------------------------------------------------- helpers

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/wasm")
}

/// A cache directory shared by the tests of this binary (the cache tests use their own).
fn shared_cache() -> PathBuf {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| TempDir::new().unwrap())
        .path()
        .to_path_buf()
}

/// An app dir: `wasm/` holds every fixture, `data/` is an empty directory, and
/// `_index.yaml` declares namespace `app` with `assets` (wasm/) and `entries`.
fn app(entries: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    let wasm = dir.path().join("wasm");
    std::fs::create_dir_all(&wasm).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    for f in [
        "complex",
        "mapper",
        "sleep-test",
        "minimal",
        "strings",
        "counter",
        "calculator",
    ] {
        std::fs::copy(
            fixtures().join(format!("{f}.wasm")),
            wasm.join(format!("{f}.wasm")),
        )
        .unwrap();
    }
    let yaml = format!(
        "version: \"1.0\"\nnamespace: app\nentries:\n  - {{name: assets, kind: fs.directory, directory: ./wasm}}\n{entries}"
    );
    std::fs::write(dir.path().join("_index.yaml"), yaml).unwrap();
    dir
}

fn options(cache: Option<PathBuf>) -> WasmOptions {
    WasmOptions {
        cache_dir: cache,
        ..WasmOptions::default()
    }
}

fn compile_with(dir: &TempDir, opts: &WasmOptions) -> Result<WasmRuntime, Vec<LoadError>> {
    let reg = match load_dir(dir.path()) {
        Ok(r) => r,
        Err(e) => panic!("registry load failed:\n{e}"),
    };
    compile_registry_with(&reg, opts)
}

fn runtime(dir: &TempDir) -> WasmRuntime {
    match compile_with(dir, &options(Some(shared_cache()))) {
        Ok(r) => r,
        Err(errs) => panic!("compile failed:\n{}", lines(&errs)),
    }
}

fn lines(errs: &[LoadError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The load errors of `dir`, one line each.
fn load_errors(dir: &TempDir) -> Vec<String> {
    match compile_with(dir, &options(Some(shared_cache()))) {
        Ok(_) => panic!("expected load errors"),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

fn func(rt: &WasmRuntime, name: &str) -> std::sync::Arc<WasmFunction> {
    rt.function(&Id::new("app", name))
        .unwrap_or_else(|| panic!("no function app:{name}"))
}

async fn call(rt: &WasmRuntime, name: &str, args: Vec<Value>) -> Result<WasmResult, CallError> {
    func(rt, name).call(args, &CallContext::default()).await
}

/// The value of a call that must succeed with a non-error result.
async fn ok(rt: &WasmRuntime, name: &str, args: Vec<Value>) -> Value {
    match call(rt, name, args.clone()).await {
        Ok(WasmResult::Ok(v)) => v,
        other => panic!("app:{name}({args:?}): expected Ok(value), got {other:?}"),
    }
}

/// The message of a call that must fail with `kind`.
async fn fails(rt: &WasmRuntime, name: &str, args: Vec<Value>, kind: &str) -> String {
    match call(rt, name, args.clone()).await {
        Err(e) => {
            assert_eq!(e.kind, kind, "app:{name}({args:?}): {e:?}");
            e.message
        }
        other => panic!("app:{name}({args:?}): expected a {kind} error, got {other:?}"),
    }
}

fn s(x: &str) -> Value {
    Value::str(x)
}

fn i(x: i64) -> Value {
    Value::Int(x)
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn point(x: i64, y: i64) -> Value {
    map(&[("x", i(x)), ("y", i(y))])
}

fn person(name: &str, age: i64) -> Value {
    map(&[("name", s(name)), ("age", i(age))])
}

/// YAML entries, one per `(name, method)`, for a fixture.
fn fixture_entries(file: &str, hash: &str, imports: &str, methods: &[(&str, &str)]) -> String {
    methods
        .iter()
        .map(|(name, method)| {
            format!(
                "  - {{name: {name}, kind: function.wasm, fs: assets, path: /{file}, hash: \"sha256:{hash}\", method: \"{method}\", imports: {imports}}}\n"
            )
        })
        .collect()
}

const COMPLEX_EXPORTS: &[(&str, &str)] = &[
    ("echo_point", "echo-point"),
    ("echo_person", "echo-person"),
    ("echo_rectangle", "echo-rectangle"),
    ("echo_color", "echo-color"),
    ("echo_shape", "echo-shape"),
    ("echo_permissions", "echo-permissions"),
    ("echo_list_s32", "echo-list-s32"),
    ("echo_list_string", "echo-list-string"),
    ("echo_list_point", "echo-list-point"),
    ("maybe_point", "maybe-point"),
    ("maybe_string", "maybe-string"),
    ("try_divide", "try-divide"),
    ("try_parse", "try-parse"),
    ("swap_pair", "swap-pair"),
    ("triple", "triple"),
    ("filter_adults", "filter-adults"),
    ("sum_list", "sum-list"),
    ("double_list", "double-list"),
];

fn complex_app() -> (TempDir, WasmRuntime) {
    let dir = app(&fixture_entries(
        "complex.wasm",
        COMPLEX,
        "[]",
        COMPLEX_EXPORTS,
    ));
    let rt = runtime(&dir);
    (dir, rt)
}

fn mapper_app() -> (TempDir, WasmRuntime) {
    let dir = app(&fixture_entries(
        "mapper.wasm",
        MAPPER,
        MAPPER_IMPORTS,
        &[
            ("transform", "transform-users"),
            ("active", "filter-active"),
            ("tags", "aggregate-tags"),
        ],
    ));
    let rt = runtime(&dir);
    (dir, rt)
}

// ---------------------------------------------------------------- complex.wasm

#[tokio::test]
async fn complex_records_enums_and_signatures() {
    let (_d, rt) = complex_app();
    assert_eq!(
        func(&rt, "echo_point").signature(),
        "echo-point(p: record) -> record"
    );
    assert_eq!(
        func(&rt, "try_divide").signature(),
        "try-divide(a: s32, b: s32) -> result<s32, record>"
    );
    assert_eq!(ok(&rt, "echo_point", vec![point(1, 2)]).await, point(1, 2));
    // no wasi: group granted, so its stores are made without a WASI context
    assert!(!func(&rt, "echo_point").wasi().granted);
    assert_eq!(
        ok(&rt, "echo_point", vec![point(-2147483648, 2147483647)]).await,
        point(-2147483648, 2147483647)
    );
    // A float with no fraction is an integer.
    assert_eq!(
        ok(
            &rt,
            "echo_point",
            vec![map(&[("x", Value::Num(3.0)), ("y", i(4))])]
        )
        .await,
        point(3, 4)
    );
    assert_eq!(
        ok(&rt, "echo_person", vec![person("Ann", 4294967295)]).await,
        person("Ann", 4294967295)
    );
    let rect = map(&[("top-left", point(0, 1)), ("bottom-right", point(10, 5))]);
    assert_eq!(ok(&rt, "echo_rectangle", vec![rect.clone()]).await, rect);
    // snake_case spelling of kebab-case fields is accepted as input.
    let snake = map(&[("top_left", point(0, 1)), ("bottom_right", point(10, 5))]);
    assert_eq!(ok(&rt, "echo_rectangle", vec![snake]).await, rect);
    for c in ["red", "green", "blue"] {
        assert_eq!(ok(&rt, "echo_color", vec![s(c)]).await, s(c));
    }
}

#[tokio::test]
async fn complex_variants_and_flags() {
    let (_d, rt) = complex_app();
    let rect = map(&[("top-left", point(1, 2)), ("bottom-right", point(3, 4))]);
    for shape in [
        map(&[("circle", i(5))]),
        map(&[("square", i(7))]),
        map(&[("rect", rect.clone())]),
    ] {
        assert_eq!(ok(&rt, "echo_shape", vec![shape.clone()]).await, shape);
    }
    // A case without payload: the bare string, in and out.
    assert_eq!(ok(&rt, "echo_shape", vec![s("none")]).await, s("none"));
    assert_eq!(
        ok(&rt, "echo_shape", vec![map(&[("none", Value::Bool(true))])]).await,
        s("none")
    );
    // Flags: an array of names, or a set table; out in declaration order.
    assert_eq!(
        ok(
            &rt,
            "echo_permissions",
            vec![arr(vec![s("execute"), s("read")])]
        )
        .await,
        arr(vec![s("read"), s("execute")])
    );
    assert_eq!(
        ok(
            &rt,
            "echo_permissions",
            vec![map(&[
                ("write", Value::Bool(true)),
                ("read", Value::Bool(false))
            ])]
        )
        .await,
        arr(vec![s("write")])
    );
    assert_eq!(
        ok(&rt, "echo_permissions", vec![arr(vec![])]).await,
        arr(vec![])
    );
}

#[tokio::test]
async fn complex_lists_options_results_tuples() {
    let (_d, rt) = complex_app();
    let nums = arr(vec![i(1), i(-2), i(3)]);
    assert_eq!(ok(&rt, "echo_list_s32", vec![nums.clone()]).await, nums);
    assert_eq!(
        ok(&rt, "echo_list_s32", vec![arr(vec![])]).await,
        arr(vec![])
    );
    let strs = arr(vec![s("a"), s(""), s("héllo")]);
    assert_eq!(ok(&rt, "echo_list_string", vec![strs.clone()]).await, strs);
    let pts = arr(vec![point(1, 2), point(3, 4)]);
    assert_eq!(ok(&rt, "echo_list_point", vec![pts.clone()]).await, pts);

    assert_eq!(
        ok(&rt, "maybe_point", vec![Value::Bool(true)]).await,
        point(42, 24)
    );
    assert_eq!(
        ok(&rt, "maybe_point", vec![Value::Bool(false)]).await,
        Value::Nil
    );
    assert_eq!(
        ok(&rt, "maybe_string", vec![Value::Bool(true)]).await,
        s("hello")
    );
    assert_eq!(
        ok(&rt, "maybe_string", vec![Value::Bool(false)]).await,
        Value::Nil
    );

    assert_eq!(
        call(&rt, "try_divide", vec![i(10), i(3)]).await,
        Ok(WasmResult::Ok(i(3)))
    );
    assert_eq!(
        call(&rt, "try_divide", vec![i(1), i(0)]).await,
        Ok(WasmResult::Err(map(&[
            ("code", i(1)),
            ("message", s("division by zero"))
        ])))
    );
    assert_eq!(
        call(&rt, "try_parse", vec![s("42")]).await,
        Ok(WasmResult::Ok(i(42)))
    );
    assert_eq!(
        call(&rt, "try_parse", vec![s("abc")]).await,
        Ok(WasmResult::Err(s("cannot parse: abc")))
    );

    assert_eq!(
        ok(&rt, "swap_pair", vec![i(1), i(2)]).await,
        arr(vec![i(2), i(1)])
    );
    assert_eq!(
        ok(&rt, "triple", vec![i(7)]).await,
        arr(vec![i(7), i(14), i(21)])
    );
    let people = arr(vec![
        person("kid", 12),
        person("adult", 18),
        person("elder", 80),
    ]);
    assert_eq!(
        ok(&rt, "filter_adults", vec![people]).await,
        arr(vec![person("adult", 18), person("elder", 80)])
    );
    assert_eq!(
        ok(
            &rt,
            "sum_list",
            vec![arr(vec![i(2147483647), i(2147483647), i(1)])]
        )
        .await,
        i(4294967295)
    );
    assert_eq!(
        ok(&rt, "double_list", vec![arr(vec![i(1), i(-2), i(30)])]).await,
        arr(vec![i(2), i(-4), i(60)])
    );
}

#[tokio::test]
async fn complex_bad_inputs_name_the_path() {
    let (_d, rt) = complex_app();
    let m = fails(
        &rt,
        "echo_point",
        vec![map(&[("x", s("1")), ("y", i(2))])],
        "INVALID",
    )
    .await;
    assert_eq!(m, "echo-point: p.x: expected s32, got string");
    let m = fails(&rt, "echo_point", vec![map(&[("x", i(1))])], "INVALID").await;
    assert_eq!(m, "echo-point: p: missing field y (s32)");
    let m = fails(&rt, "echo_point", vec![s("1,2")], "INVALID").await;
    assert_eq!(m, "echo-point: p: expected record (a table), got string");
    let m = fails(
        &rt,
        "echo_point",
        vec![map(&[("x", Value::Num(1.5)), ("y", i(2))])],
        "INVALID",
    )
    .await;
    assert_eq!(
        m,
        "echo-point: p.x: expected s32, got number 1.5 (not an integer)"
    );
    let m = fails(&rt, "echo_person", vec![person("a", -1)], "INVALID").await;
    assert_eq!(
        m,
        "echo-person: p.age: -1 is out of range for u32 (0..4294967295)"
    );
    let m = fails(&rt, "echo_point", vec![point(2147483648, 0)], "INVALID").await;
    assert_eq!(
        m,
        "echo-point: p.x: 2147483648 is out of range for s32 (-2147483648..2147483647)"
    );
    let m = fails(&rt, "echo_point", vec![], "INVALID").await;
    assert_eq!(m, "echo-point: expected 1 argument (p: record), got 0");
    let m = fails(&rt, "swap_pair", vec![i(1), i(2), i(3)], "INVALID").await;
    assert_eq!(m, "swap-pair: expected 2 arguments (a: s32, b: s32), got 3");
    let m = fails(
        &rt,
        "echo_list_point",
        vec![arr(vec![
            point(1, 2),
            map(&[("x", i(1)), ("y", Value::Bool(true))]),
        ])],
        "INVALID",
    )
    .await;
    assert_eq!(m, "echo-list-point: items[2].y: expected s32, got boolean");
    let m = fails(&rt, "echo_color", vec![s("purple")], "INVALID").await;
    assert_eq!(
        m,
        "echo-color: c: unknown enum case \"purple\" (expected one of: red, green, blue)"
    );
    let m = fails(&rt, "echo_shape", vec![s("circle")], "INVALID").await;
    assert_eq!(
        m,
        "echo-shape: s: case circle needs a payload (u32): write {circle = value}"
    );
    let m = fails(
        &rt,
        "echo_shape",
        vec![map(&[("rect", map(&[("top-left", point(1, 2))]))])],
        "INVALID",
    )
    .await;
    assert_eq!(m, "echo-shape: s.rect: missing field bottom-right (record)");
    let m = fails(
        &rt,
        "echo_permissions",
        vec![arr(vec![s("read"), s("fly")])],
        "INVALID",
    )
    .await;
    assert_eq!(
        m,
        "echo-permissions: p[2]: unknown flags case \"fly\" (expected one of: read, write, execute)"
    );
    let m = fails(&rt, "echo_list_s32", vec![map(&[("a", i(1))])], "INVALID").await;
    assert_eq!(
        m,
        "echo-list-s32: items: expected list<s32> (an array), got a table with non-sequence keys"
    );
    // The function still works after bad calls.
    assert_eq!(ok(&rt, "echo_point", vec![point(5, 6)]).await, point(5, 6));
}

// ---------------------------------------------------------------- mapper.wasm

fn user(id: i64, name: &str, tags: &[&str], active: bool) -> Value {
    map(&[
        ("id", i(id)),
        ("name", s(name)),
        ("tags", arr(tags.iter().map(|t| s(t)).collect())),
        ("active", Value::Bool(active)),
    ])
}

fn output(id: i64, display: &str, tag_count: i64) -> Value {
    map(&[
        ("id", i(id)),
        ("display", s(display)),
        ("tag-count", i(tag_count)),
    ])
}

#[tokio::test]
async fn mapper_seed_example_and_friends() {
    let (_d, rt) = mapper_app();
    let users = arr(vec![
        user(1, "Alice", &["admin"], true),
        user(2, "Bob", &[], false),
        user(3, "Carol", &["zeta", "admin", "ops"], true),
    ]);
    assert_eq!(
        ok(
            &rt,
            "transform",
            vec![arr(vec![user(1, "Alice", &["admin"], true)])]
        )
        .await,
        arr(vec![output(1, "Alice [admin]", 1)])
    );
    assert_eq!(
        ok(&rt, "transform", vec![users.clone()]).await,
        arr(vec![
            output(1, "Alice [admin]", 1),
            output(2, "Bob []", 0),
            output(3, "Carol [zeta, admin, ops]", 3),
        ])
    );
    assert_eq!(
        ok(&rt, "active", vec![users.clone()]).await,
        arr(vec![
            output(1, "Alice [admin]", 1),
            output(3, "Carol [zeta, admin, ops]", 3),
        ])
    );
    assert_eq!(
        ok(&rt, "tags", vec![users]).await,
        arr(vec![s("admin"), s("zeta"), s("ops")])
    );
    assert_eq!(ok(&rt, "transform", vec![arr(vec![])]).await, arr(vec![]));
}

#[tokio::test]
async fn mapper_bad_input_path() {
    let (_d, rt) = mapper_app();
    let bad = arr(vec![
        user(1, "Alice", &["admin"], true),
        map(&[
            ("id", i(2)),
            ("name", s("Bob")),
            ("tags", arr(vec![i(7)])),
            ("active", Value::Bool(true)),
        ]),
    ]);
    let m = fails(&rt, "transform", vec![bad], "INVALID").await;
    assert_eq!(
        m,
        "transform-users: users[2].tags[1]: expected string, got number"
    );
    let m = fails(
        &rt,
        "transform",
        vec![arr(vec![map(&[
            ("id", i(1)),
            ("name", s("x")),
            ("tags", arr(vec![])),
        ])])],
        "INVALID",
    )
    .await;
    assert_eq!(m, "transform-users: users[1]: missing field active (bool)");
}

#[tokio::test]
async fn mapper_needs_its_capabilities() {
    let dir = app(&fixture_entries(
        "mapper.wasm",
        MAPPER,
        "[wasi:io]",
        &[("transform", "transform-users")],
    ));
    let errs = load_errors(&dir);
    let f = "_index.yaml: entry app:transform: field imports";
    assert_eq!(
        errs,
        [
            format!("{f}: the module imports wasi:cli/environment@0.2.3, which is not granted: add wasi:cli to `imports`"),
            format!("{f}: the module imports wasi:cli/exit@0.2.3, which is not granted: add wasi:cli to `imports`"),
            format!("{f}: the module imports wasi:cli/stdin@0.2.3, which is not granted: add wasi:cli to `imports`"),
            format!("{f}: the module imports wasi:cli/stdout@0.2.3, which is not granted: add wasi:cli to `imports`"),
            format!("{f}: the module imports wasi:cli/stderr@0.2.3, which is not granted: add wasi:cli to `imports`"),
            format!("{f}: the module imports wasi:filesystem/types@0.2.3, which is not granted: add wasi:filesystem to `imports`"),
            format!("{f}: the module imports wasi:filesystem/preopens@0.2.3, which is not granted: add wasi:filesystem to `imports`"),
        ]
    );
}

// ---------------------------------------------------------------- sleep-test.wasm

fn sleep_app(imports: &str) -> TempDir {
    app(&fixture_entries(
        "sleep-test.wasm",
        SLEEP,
        imports,
        &[
            ("sleep", "test-sleep#sleep-ms"),
            ("work", "test-sleep#work-with-sleep"),
        ],
    ))
}

#[tokio::test]
async fn sleep_suspends_and_returns_elapsed_ns() {
    let dir = sleep_app("[wasi:poll, wasi:clocks]");
    let rt = runtime(&dir);
    assert_eq!(func(&rt, "sleep").signature(), "sleep-ms(ms: u32) -> u64");
    let t = Instant::now();
    let ns = match ok(&rt, "sleep", vec![i(50)]).await {
        Value::Int(n) => n,
        other => panic!("{other:?}"),
    };
    assert!(ns >= 50_000_000, "slept {ns} ns");
    assert!(ns < 1_000_000_000, "slept {ns} ns");
    assert!(t.elapsed() >= Duration::from_millis(50));
}

#[tokio::test(flavor = "current_thread")]
async fn two_hundred_concurrent_sleeps_on_one_thread() {
    let dir = sleep_app("[wasi:poll, wasi:clocks]");
    let rt = runtime(&dir);
    let f = func(&rt, "sleep");
    let ctx = CallContext::default();
    let before = vm_status();
    let t = Instant::now();
    let calls = (0..200).map(|_| f.call(vec![i(100)], &ctx));
    // Halfway through, all 200 instances are alive: sample the process's memory.
    let sample = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        vm_status()
    };
    let (results, during) = tokio::join!(futures::future::join_all(calls), sample);
    let elapsed = t.elapsed();
    if let (Some((vm0, rss0)), Some((vm1, rss1))) = (before, during) {
        println!(
            "200 live instances: +{} KiB virtual, +{} KiB RSS per instance; all done in {elapsed:?}",
            (vm1 - vm0) / 200,
            (rss1 - rss0) / 200
        );
    }
    for r in results {
        match r {
            Ok(WasmResult::Ok(Value::Int(ns))) => assert!(ns >= 100_000_000, "{ns}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        elapsed < Duration::from_millis(1500),
        "200 concurrent 100 ms sleeps took {elapsed:?}"
    );
}

/// (VmSize, VmRSS) of this process in KiB (Linux only).
fn vm_status() -> Option<(i64, i64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<i64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmSize:")?, field("VmRSS:")?))
}

#[tokio::test]
async fn sleep_needs_poll_and_clocks() {
    let dir = sleep_app("[wasi:clocks]");
    let errs = load_errors(&dir);
    let f = "_index.yaml: entry app:sleep: field imports";
    let g = "_index.yaml: entry app:work: field imports";
    let m = "the module imports wasi:io/poll@0.2.8, which is not granted: add wasi:io or wasi:poll to `imports`";
    assert_eq!(errs, [format!("{f}: {m}"), format!("{g}: {m}")]);
}

#[tokio::test]
async fn unknown_method_lists_the_exports() {
    let dir = app(&fixture_entries(
        "sleep-test.wasm",
        SLEEP,
        "[wasi:poll, wasi:clocks]",
        &[
            ("a", "sleep-ms"),
            ("b", "test-sleep#nap"),
            ("c", "nope#sleep-ms"),
        ],
    ));
    let errs = load_errors(&dir);
    assert_eq!(
        errs,
        [
            "_index.yaml: entry app:a: field method: no exported function sleep-ms (exported functions: none; exported interfaces: test-sleep)",
            "_index.yaml: entry app:b: field method: interface test-sleep has no function nap (its functions: sleep-ms, work-with-sleep)",
            "_index.yaml: entry app:c: field method: no exported interface nope (exported functions: none; exported interfaces: test-sleep)",
        ]
    );
}

// ---------------------------------------------------------------- minimal.wasm

#[tokio::test]
async fn minimal_needs_a_host_interface_warden_lacks() {
    let dir = app(&format!(
        "  - {{name: compute, kind: function.wasm, fs: assets, path: /minimal.wasm, hash: \"sha256:{MINIMAL}\", method: compute, imports: [wasi:cli, warden:funcs]}}\n"
    ));
    let errs = load_errors(&dir);
    assert_eq!(
        errs,
        ["_index.yaml: entry app:compute: field imports: the module imports test:minimal/host@0.1.0, which no capability group grants (warden does not provide this host interface)"]
    );
}

/// The other fixtures with custom host imports, as functions and as a process: each load
/// error names the entry, the field and the import warden lacks.
#[tokio::test]
async fn every_fixture_with_a_custom_host_import_fails_to_load_naming_it() {
    let sha = |f: &str| {
        let bytes = std::fs::read(fixtures().join(format!("{f}.wasm"))).unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    };
    let mut entries = String::new();
    for (name, kind, file, method) in [
        ("strings", "function.wasm", "strings", "echo"),
        ("counter", "function.wasm", "counter", "run-test"),
        ("calculator", "function.wasm", "calculator", "process"),
        ("pminimal", "process.wasm", "minimal", "compute"),
    ] {
        entries.push_str(&format!(
            "  - {{name: {name}, kind: {kind}, fs: assets, path: /{file}.wasm, hash: \"sha256:{}\", method: {method}, imports: [wasi:cli, wasi:io, wasi:clocks, wasi:filesystem, wasi:random]}}\n",
            sha(file)
        ));
    }
    let dir = app(&entries);
    let errs = load_errors(&dir);
    for (name, import) in [
        ("strings", "test:strings/host"),
        ("counter", "test:counter/host"),
        ("calculator", "wisma:calculator/host"),
        ("pminimal", "test:minimal/host"),
    ] {
        assert!(
            errs.iter().any(|e| e.contains(&format!(
                "entry app:{name}: field imports: the module imports {import}"
            )) && e.contains("which no capability group grants")),
            "{name}: {errs:#?}"
        );
    }
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

// ---------------------------------------------------------------- core modules in WAT

/// A function.wat entry (YAML block) with `extra` fields (indented by 4 spaces).
fn wat_entry(name: &str, wat: &str, wit: &str, method: &str, extra: &str) -> String {
    let indent = |t: &str| {
        t.lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let wit = if wit.is_empty() {
        String::new()
    } else {
        format!("    wit: |\n{}\n", indent(wit))
    };
    format!(
        "  - name: {name}\n    kind: function.wat\n    method: \"{method}\"\n    source: |\n{}\n{wit}{extra}",
        indent(wat),
    )
}

#[tokio::test]
async fn wat_answer_with_a_bare_wit_declaration() {
    let dir = app(&wat_entry(
        "answer",
        r#"(module (func (export "answer") (result i32) i32.const 42))"#,
        "answer: func() -> s32;",
        "answer",
        "",
    ));
    let rt = runtime(&dir);
    assert_eq!(ok(&rt, "answer", vec![]).await, i(42));
    assert_eq!(func(&rt, "answer").signature(), "answer() -> s32");
}

const STRINGS_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "hello, ")
  (func $alloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "greet") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32)
    (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.add (local.get $len) (i32.const 7))))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 7))
    (memory.copy (i32.add (local.get $out) (i32.const 7)) (local.get $ptr) (local.get $len))
    (i32.store (i32.const 512) (local.get $out))
    (i32.store (i32.const 516) (i32.add (local.get $len) (i32.const 7)))
    (i32.const 512))
  (func (export "negate") (param i32) (result i32)
    (i32.sub (i32.const 0) (local.get 0)))
)"#;

const STRINGS_WIT: &str = "greet: func(name: string) -> string;\nnegate: func(x: s8) -> s8;";

#[tokio::test]
async fn wat_strings_through_the_canonical_abi_and_s8_ranges() {
    let dir = app(&format!(
        "{}{}",
        wat_entry("greet", STRINGS_WAT, STRINGS_WIT, "greet", ""),
        wat_entry("negate", STRINGS_WAT, STRINGS_WIT, "negate", "")
    ));
    let rt = runtime(&dir);
    assert_eq!(ok(&rt, "greet", vec![s("Wasm")]).await, s("hello, Wasm"));
    assert_eq!(ok(&rt, "greet", vec![s("ünï")]).await, s("hello, ünï"));
    assert_eq!(ok(&rt, "negate", vec![i(5)]).await, i(-5));
    assert_eq!(ok(&rt, "negate", vec![i(-127)]).await, i(127));
    let m = fails(&rt, "negate", vec![i(300)], "INVALID").await;
    assert_eq!(m, "negate: x: 300 is out of range for s8 (-128..127)");
    let m = fails(&rt, "greet", vec![i(1)], "INVALID").await;
    assert_eq!(m, "greet: name: expected string, got number");
    let m = fails(&rt, "greet", vec![Value::Str(vec![0xff, 0xfe])], "INVALID").await;
    assert_eq!(
        m,
        "greet: name: expected a UTF-8 string, got invalid UTF-8 bytes"
    );
}

#[tokio::test]
async fn wat_exports_that_do_not_match_the_wit_fail_to_load() {
    let answer = r#"(module (func (export "answer") (result i32) i32.const 42))"#;
    let dir = app(&format!(
        "{}{}{}{}",
        wat_entry(
            "missing",
            answer,
            "question: func() -> s32;",
            "question",
            ""
        ),
        wat_entry(
            "typed",
            answer,
            "answer: func(x: u32) -> s32;",
            "answer",
            ""
        ),
        wat_entry("nowit", answer, "", "answer", ""),
        wat_entry("badwit", answer, "answer: func( -> s32;", "answer", ""),
    ));
    let errs = load_errors(&dir);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    let prefix = |n: &str, f: &str| format!("_index.yaml: entry app:{n}: field {f}: ");
    assert!(
        errs[0].starts_with(&(prefix("badwit", "wit") + "WIT does not parse: ")),
        "{errs:#?}"
    );
    assert!(
        errs[1]
            .starts_with(&(prefix("missing", "wit") + "the core module does not match its WIT: "))
            && errs[1].contains("question"),
        "{errs:#?}"
    );
    assert_eq!(
        errs[2],
        prefix("nowit", "wit")
            + "a core module needs a `wit:` declaration of its exports (e.g. `answer: func() -> s32;`)"
    );
    assert!(
        errs[3].starts_with(&(prefix("typed", "wit") + "the core module does not match its WIT: "))
            && errs[3].contains("answer"),
        "{errs:#?}"
    );
}

#[tokio::test]
async fn wat_that_does_not_assemble_is_a_load_error() {
    let dir = app(&wat_entry(
        "bad",
        "(module (func (export \"f\") i32.const))",
        "f: func();",
        "f",
        "",
    ));
    let errs = load_errors(&dir);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("_index.yaml: entry app:bad: field source: WAT does not compile: "),
        "{errs:?}"
    );
}

#[tokio::test]
async fn hash_mismatch_is_a_load_error() {
    let dir = app(&format!(
        "  - {{name: x, kind: function.wasm, fs: assets, path: /complex.wasm, hash: \"sha256:{MAPPER}\", method: echo-point}}\n"
    ));
    let errs = load_dir(dir.path()).unwrap_err().to_string();
    assert_eq!(
        errs,
        format!("_index.yaml: entry app:x: field hash: hash mismatch: the entry declares sha256:{MAPPER}, but /complex.wasm has sha256:{COMPLEX}")
    );
}

const SPIN_WAT: &str = r#"(module
  (func (export "spin") (param $n i32) (result i32)
    (block $done
      (loop $forever
        (br_if $done (local.get $n))
        (br $forever)))
    (local.get $n)))"#;

#[tokio::test(flavor = "current_thread")]
async fn max_execution_ms_interrupts_a_tight_loop() {
    let dir = app(&wat_entry(
        "spin",
        SPIN_WAT,
        "spin: func(n: u32) -> u32;",
        "spin",
        "    limits: {max_execution_ms: 100}\n",
    ));
    let rt = runtime(&dir);
    let t = Instant::now();
    let m = fails(&rt, "spin", vec![i(0)], "TIMEOUT").await;
    let took = t.elapsed();
    assert_eq!(
        m,
        "function app:spin: interrupted after max_execution_ms (100 ms)"
    );
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    // The next call works.
    assert_eq!(ok(&rt, "spin", vec![i(5)]).await, i(5));
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_yields_to_other_tasks_on_its_thread() {
    let dir = app(&format!(
        "{}{}",
        wat_entry(
            "spin",
            SPIN_WAT,
            "spin: func(n: u32) -> u32;",
            "spin",
            "    limits: {max_execution_ms: 400}\n",
        ),
        wat_entry(
            "answer",
            r#"(module (func (export "answer") (result i32) i32.const 42))"#,
            "answer: func() -> s32;",
            "answer",
            "",
        )
    ));
    let rt = runtime(&dir);
    let t = Instant::now();
    let quick = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let v = ok(&rt, "answer", vec![]).await;
        (v, t.elapsed())
    };
    let (spun, (v, quick_at)) = tokio::join!(call(&rt, "spin", vec![i(0)]), quick);
    assert_eq!(spun.unwrap_err().kind, "TIMEOUT");
    assert_eq!(v, i(42));
    assert!(
        quick_at < Duration::from_millis(300),
        "the quick call finished after {quick_at:?}, behind the spinning guest"
    );
}

const MEMORY_WAT: &str = r#"(module
  (memory 1)
  (func (export "grow") (param $pages i32) (result i32)
    (memory.grow (local.get $pages)))
  (func (export "bomb") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (memory.size)))"#;

const MEMORY_WIT: &str = "grow: func(pages: u32) -> s32;\nbomb: func() -> s32;";

#[tokio::test]
async fn max_memory_caps_linear_memory() {
    let limits = "    limits: {max_memory: 16MiB}\n";
    let dir = app(&format!(
        "{}{}",
        wat_entry("grow", MEMORY_WAT, MEMORY_WIT, "grow", limits),
        wat_entry("bomb", MEMORY_WAT, MEMORY_WIT, "bomb", limits)
    ));
    let rt = runtime(&dir);
    // 1 + 200 pages = 12.6 MiB: allowed (memory.grow returns the old size).
    assert_eq!(ok(&rt, "grow", vec![i(200)]).await, i(1));
    let m = fails(&rt, "grow", vec![i(256)], "INTERNAL").await;
    assert_eq!(
        m,
        "function app:grow: memory limit exceeded: linear memory would grow to 16842752 bytes, max_memory is 16777216 bytes"
    );
    let m = fails(&rt, "bomb", vec![], "INTERNAL").await;
    assert_eq!(
        m,
        "function app:bomb: memory limit exceeded: linear memory would grow to 16842752 bytes, max_memory is 16777216 bytes"
    );
    assert_eq!(ok(&rt, "grow", vec![i(1)]).await, i(1));
}

const TRAP_WAT: &str = r#"(module
  (func (export "boom") unreachable)
  (func $deep (export "deep") (call $deep))
  (func (export "oob") (result i32) (i32.load (i32.const 100000)))
  (memory 1)
  (func (export "fine") (result i32) i32.const 7))"#;

const TRAP_WIT: &str = "boom: func();\ndeep: func();\noob: func() -> s32;\nfine: func() -> s32;";

#[tokio::test]
async fn traps_become_errors_with_the_trap_text() {
    let dir = app(&format!(
        "{}{}{}{}",
        wat_entry("boom", TRAP_WAT, TRAP_WIT, "boom", ""),
        wat_entry("deep", TRAP_WAT, TRAP_WIT, "deep", ""),
        wat_entry("oob", TRAP_WAT, TRAP_WIT, "oob", ""),
        wat_entry("fine", TRAP_WAT, TRAP_WIT, "fine", ""),
    ));
    let rt = runtime(&dir);
    let m = fails(&rt, "boom", vec![], "INTERNAL").await;
    assert_eq!(
        m,
        "function app:boom: wasm trap: wasm `unreachable` instruction executed"
    );
    assert_eq!(ok(&rt, "fine", vec![]).await, i(7));
    let m = fails(&rt, "deep", vec![], "INTERNAL").await;
    assert_eq!(m, "function app:deep: wasm trap: call stack exhausted");
    let m = fails(&rt, "oob", vec![], "INTERNAL").await;
    assert_eq!(
        m,
        "function app:oob: wasm trap: out of bounds memory access"
    );
    assert_eq!(ok(&rt, "fine", vec![]).await, i(7));
}

// ---------------------------------------------------------------- WASI context

const ENV_WAT: &str = r#"(module
  (import "wasi:cli/environment@0.2.0" "get-environment" (func $get_env (param i32)))
  (import "wasi:cli/environment@0.2.0" "get-arguments" (func $get_args (param i32)))
  (import "wasi:cli/environment@0.2.0" "initial-cwd" (func $get_cwd (param i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "env") (result i32) (call $get_env (i32.const 16)) (i32.const 16))
  (func (export "args") (result i32) (call $get_args (i32.const 32)) (i32.const 32))
  (func (export "cwd") (result i32) (call $get_cwd (i32.const 48)) (i32.const 48)))"#;

const ENV_WIT: &str = r#"package warden:envtest;

world root {
  import wasi:cli/environment@0.2.0;
  export env: func() -> list<tuple<string, string>>;
  export args: func() -> list<string>;
  export cwd: func() -> option<string>;
}

package wasi:cli@0.2.0 {
  interface environment {
    get-environment: func() -> list<tuple<string, string>>;
    get-arguments: func() -> list<string>;
    initial-cwd: func() -> option<string>;
  }
}"#;

#[tokio::test]
async fn wasi_args_env_and_cwd_come_from_the_entry_only() {
    std::env::set_var("WARDEN_TEST_WASM_HOST_VAR", "from-host");
    let wasi = r#"    imports: [wasi:cli]
    wasi:
      args: [prog, --verbose]
      cwd: /work
      env:
        - {id: literal, name: LITERAL}
        - {id: hosted, name: HOSTED, required: true}
        - {id: defaulted, name: DEFAULTED}
        - {id: absent, name: ABSENT}
"#;
    let vars = r#"  - {name: literal, kind: env.variable, value: "42"}
  - {name: hosted, kind: env.variable, variable: WARDEN_TEST_WASM_HOST_VAR, default: unused}
  - {name: defaulted, kind: env.variable, variable: WARDEN_TEST_WASM_UNSET_VAR, default: dflt}
  - {name: absent, kind: env.variable, variable: WARDEN_TEST_WASM_UNSET_VAR}
"#;
    let dir = app(&format!(
        "{vars}{}{}{}{}",
        wat_entry("env", ENV_WAT, ENV_WIT, "env", wasi),
        wat_entry("args", ENV_WAT, ENV_WIT, "args", wasi),
        wat_entry("cwd", ENV_WAT, ENV_WIT, "cwd", wasi),
        wat_entry("bare", ENV_WAT, ENV_WIT, "env", "    imports: [wasi:cli]\n"),
    ));
    let rt = runtime(&dir);
    assert_eq!(
        ok(&rt, "env", vec![]).await,
        arr(vec![
            arr(vec![s("LITERAL"), s("42")]),
            arr(vec![s("HOSTED"), s("from-host")]),
            arr(vec![s("DEFAULTED"), s("dflt")]),
        ])
    );
    assert_eq!(
        ok(&rt, "args", vec![]).await,
        arr(vec![s("prog"), s("--verbose")])
    );
    assert_eq!(ok(&rt, "cwd", vec![]).await, s("/work"));
    // Nothing is inherited from the host.
    assert_eq!(ok(&rt, "bare", vec![]).await, arr(vec![]));
    assert!(func(&rt, "bare").wasi().granted);
    assert_eq!(
        func(&rt, "env").wasi().env,
        [
            ("LITERAL".to_string(), "42".to_string()),
            ("HOSTED".to_string(), "from-host".to_string()),
            ("DEFAULTED".to_string(), "dflt".to_string()),
        ]
    );
}

#[tokio::test]
async fn required_env_without_a_value_and_ungranted_wasi_fail_to_load() {
    let dir = app(&format!(
        "  - {{name: absent, kind: env.variable, variable: WARDEN_TEST_WASM_UNSET_VAR}}\n{}{}",
        wat_entry(
            "env",
            ENV_WAT,
            ENV_WIT,
            "env",
            "    imports: [wasi:cli]\n    wasi: {env: [{id: absent, name: NEEDED, required: true}]}\n"
        ),
        wat_entry("nocap", ENV_WAT, ENV_WIT, "env", "    imports: [wasi:io]\n"),
    ));
    let errs = load_errors(&dir);
    assert_eq!(
        errs,
        [
            "_index.yaml: entry app:env: field wasi.env[0]: required variable NEEDED has no value: app:absent has no value, its host variable is unset and it has no default",
            "_index.yaml: entry app:nocap: field imports: the module imports wasi:cli/environment@0.2.0, which is not granted: add wasi:cli to `imports`",
        ]
    );
}

const FS_WAT: &str = r#"(module
  (import "wasi:filesystem/preopens@0.2.0" "get-directories" (func $dirs (param i32)))
  (import "wasi:filesystem/types@0.2.0" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  ;; Creates `path` for writing in the first preopened directory.
  (func (export "try-create") (param $path i32) (param $len i32) (result i32)
    (call $dirs (i32.const 16))
    (call $open_at
      (i32.load (i32.load (i32.const 16)))
      (i32.const 0)
      (local.get $path) (local.get $len)
      (i32.const 1)
      (i32.const 2)
      (i32.const 32))
    (i32.store8 (i32.const 64) (i32.load8_u (i32.const 32)))
    (i32.store8 (i32.const 65) (i32.load8_u (i32.const 36)))
    (i32.const 64)))"#;

const FS_WIT: &str = r#"package warden:fstest;

world root {
  import wasi:filesystem/preopens@0.2.0;
  use wasi:filesystem/types@0.2.0.{error-code};
  export try-create: func(path: string) -> result<_, error-code>;
}

package wasi:filesystem@0.2.0 {
  interface types {
    flags descriptor-flags { read, write, file-integrity-sync, data-integrity-sync, requested-write-sync, mutate-directory }
    flags path-flags { symlink-follow }
    flags open-flags { create, directory, exclusive, truncate }
    enum error-code {
      access, would-block, already, bad-descriptor, busy, deadlock, quota, exist,
      file-too-large, illegal-byte-sequence, in-progress, interrupted, invalid, io,
      is-directory, loop, too-many-links, message-size, name-too-long, no-device,
      no-entry, no-lock, insufficient-memory, insufficient-space, not-directory,
      not-empty, not-recoverable, unsupported, no-tty, no-such-device, overflow,
      not-permitted, pipe, read-only, invalid-seek, text-file-busy, cross-device
    }
    resource descriptor {
      open-at: func(path-flags: path-flags, path: string, open-flags: open-flags, %flags: descriptor-flags) -> result<descriptor, error-code>;
    }
  }
  interface preopens {
    use types.{descriptor};
    get-directories: func() -> list<tuple<descriptor, string>>;
  }
}"#;

#[tokio::test]
async fn read_only_mounts_refuse_writes() {
    let mount = |ro: bool| {
        format!("    imports: [wasi:filesystem]\n    wasi: {{mounts: [{{fs: data, guest: /data, read_only: {ro}}}]}}\n")
    };
    let dir = app(&format!(
        "  - {{name: data, kind: fs.directory, directory: ./data}}\n{}{}{}",
        wat_entry("ro", FS_WAT, FS_WIT, "try-create", &mount(true)),
        wat_entry("rw", FS_WAT, FS_WIT, "try-create", &mount(false)),
        wat_entry(
            "none",
            FS_WAT,
            FS_WIT,
            "try-create",
            "    imports: [wasi:filesystem, wasi:io]\n"
        ),
    ));
    let rt = runtime(&dir);
    let data = dir.path().join("data");
    assert_eq!(
        call(&rt, "ro", vec![s("ro.txt")]).await,
        Ok(WasmResult::Err(s("not-permitted")))
    );
    assert!(!data.join("ro.txt").exists());
    assert_eq!(
        call(&rt, "rw", vec![s("rw.txt")]).await,
        Ok(WasmResult::Ok(Value::Nil))
    );
    assert!(data.join("rw.txt").is_file());
    // Escaping the mount is refused too.
    assert_eq!(
        call(&rt, "rw", vec![s("../escape.txt")]).await,
        Ok(WasmResult::Err(s("not-permitted")))
    );
    assert!(!dir.path().join("escape.txt").exists());
    // Without a mount the guest has no directory at all: reading the first preopen
    // of an empty list reads garbage and fails, but never touches the host.
    let r = call(&rt, "none", vec![s("x.txt")]).await;
    assert!(
        !matches!(r, Ok(WasmResult::Ok(_))),
        "a guest without mounts created a file: {r:?}"
    );
}

// ---------------------------------------------------------------- the compile cache

#[tokio::test]
async fn second_compile_loads_from_the_cache() {
    let cache = TempDir::new().unwrap();
    let dir = app(&format!(
        "{}{}",
        fixture_entries("complex.wasm", COMPLEX, "[]", &COMPLEX_EXPORTS[..2]),
        wat_entry(
            "answer",
            r#"(module (func (export "answer") (result i32) i32.const 42))"#,
            "answer: func() -> s32;",
            "answer",
            "",
        )
    ));
    let opts = options(Some(cache.path().to_path_buf()));
    let t = Instant::now();
    let cold = compile_with(&dir, &opts).unwrap();
    let cold_time = t.elapsed();
    assert_eq!(cold.cache_stats().misses, 2, "two distinct modules");
    assert_eq!(cold.cache_stats().hits, 0);
    assert!(!func(&cold, "echo_point").from_cache());
    let files = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(files, 2);

    let t = Instant::now();
    let warm = compile_with(&dir, &opts).unwrap();
    let warm_time = t.elapsed();
    assert_eq!(warm.cache_stats().hits, 2);
    assert_eq!(warm.cache_stats().misses, 0);
    assert!(func(&warm, "echo_point").from_cache());
    assert!(func(&warm, "answer").from_cache());
    assert_eq!(
        ok(&warm, "echo_point", vec![point(1, 2)]).await,
        point(1, 2)
    );
    assert_eq!(ok(&warm, "answer", vec![]).await, i(42));
    println!("compile cold {cold_time:?}, from cache {warm_time:?}");

    // Another engine configuration does not use those artifacts.
    let other = WasmOptions {
        engine: EngineOptions {
            memory_reservation: 32 << 20,
            ..EngineOptions::default()
        },
        ..opts.clone()
    };
    let rt = compile_with(&dir, &other).unwrap();
    assert_eq!(rt.cache_stats().hits, 0);
    assert_eq!(rt.cache_stats().misses, 2);
    assert_eq!(ok(&rt, "answer", vec![]).await, i(42));

    // Other module bytes (another WAT) miss; the unchanged one still hits.
    let changed = app(&wat_entry(
        "answer",
        r#"(module (func (export "answer") (result i32) i32.const 43))"#,
        "answer: func() -> s32;",
        "answer",
        "",
    ));
    let rt = compile_with(&changed, &opts).unwrap();
    assert_eq!(
        rt.cache_stats(),
        warden::wasm::CacheStats { hits: 0, misses: 1 }
    );
    assert_eq!(ok(&rt, "answer", vec![]).await, i(43));

    // No cache: always compiled.
    let rt = compile_with(&dir, &options(None)).unwrap();
    assert_eq!(rt.cache_stats().hits, 0);
    assert!(!func(&rt, "answer").from_cache());
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_compiled_again() {
    let cache = TempDir::new().unwrap();
    let dir = app(&wat_entry(
        "answer",
        r#"(module (func (export "answer") (result i32) i32.const 42))"#,
        "answer: func() -> s32;",
        "answer",
        "",
    ));
    let opts = options(Some(cache.path().to_path_buf()));
    compile_with(&dir, &opts).unwrap();
    for f in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(f.unwrap().path(), b"garbage").unwrap();
    }
    let rt = compile_with(&dir, &opts).unwrap();
    assert_eq!(rt.cache_stats().misses, 1);
    assert_eq!(ok(&rt, "answer", vec![]).await, i(42));
    // And the rewritten artifact is good again.
    let rt = compile_with(&dir, &opts).unwrap();
    assert_eq!(rt.cache_stats().hits, 1);
}

#[cfg(unix)]
#[tokio::test]
async fn a_cache_dir_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = TempDir::new().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = app(&wat_entry(
        "answer",
        r#"(module (func (export "answer") (result i32) i32.const 42))"#,
        "answer: func() -> s32;",
        "answer",
        "",
    ));
    let opts = options(Some(cache.path().to_path_buf()));
    for _ in 0..2 {
        let rt = compile_with(&dir, &opts).unwrap();
        assert_eq!(rt.cache_stats().hits, 0);
        assert_eq!(ok(&rt, "answer", vec![]).await, i(42));
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------- misc

#[test]
fn calls_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (_d, rt) = complex_app();
    let f = func(&rt, "echo_point");
    let ctx = CallContext::default();
    let fut = f.call(vec![point(1, 2)], &ctx);
    assert_send(&fut);
    let v = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut);
    assert_eq!(v, Ok(WasmResult::Ok(point(1, 2))));
}

#[test]
fn bare_wit_declarations_are_wrapped_into_a_world() {
    assert_eq!(
        warden::wasm::compile::wit_world_text("answer: func() -> s32;"),
        "package warden:generated;\n\nworld root {\n  export answer: func() -> s32;\n}\n"
    );
    assert_eq!(
        warden::wasm::compile::wit_world_text(
            "record p { x: s32, y: s32 }\nmove: func(a: p) -> result<p, string>\nstop: func();"
        ),
        "package warden:generated;\n\nworld root {\n  record p { x: s32, y: s32 }\n  export move: func(a: p) -> result<p, string>;\n  export stop: func();\n}\n"
    );
    let full = "package a:b;\nworld w { export f: func(); }";
    assert_eq!(warden::wasm::compile::wit_world_text(full), full);
}

/// A fresh instance per call works with both allocators, on-demand and pooling (with more
/// calls than the pool has slots, so slots are reused). What they cost is measured in
/// `cargo bench --bench wasm` (BENCHMARKS.md), not here.
#[tokio::test(flavor = "current_thread")]
async fn instances_come_from_either_allocator() {
    let dir = app(&fixture_entries(
        "complex.wasm",
        COMPLEX,
        "[]",
        &COMPLEX_EXPORTS[..1],
    ));
    for pooling in [None, Some(4)] {
        let opts = WasmOptions {
            engine: EngineOptions {
                pooling,
                ..EngineOptions::default()
            },
            ..options(Some(shared_cache()))
        };
        let rt = compile_with(&dir, &opts).unwrap();
        let f = func(&rt, "echo_point");
        let ctx = CallContext::default();
        for k in 0..20 {
            assert_eq!(
                f.call(vec![point(k, 2)], &ctx).await,
                Ok(WasmResult::Ok(point(k, 2))),
                "pooling {pooling:?}, call {k}"
            );
        }
    }
}

#[tokio::test]
async fn resources_in_export_signatures_are_refused() {
    let wit = "package warden:restest;\n\ninterface host {\n  resource thing;\n}\n\nworld root {\n  use host.{thing};\n  export poke: func(t: borrow<thing>) -> u32;\n}";
    let dir = app(&wat_entry(
        "poke",
        r#"(module (func (export "poke") (param i32) (result i32) i32.const 1))"#,
        wit,
        "poke",
        "",
    ));
    let errs = load_errors(&dir);
    assert_eq!(
        errs,
        [
            "_index.yaml: entry app:poke: field method: poke: parameter t: resources are not supported yet",
            "_index.yaml: entry app:poke: field imports: the module imports warden:restest/host, which no capability group grants (warden does not provide this host interface)",
        ]
    );
}

#[tokio::test]
async fn process_wasm_entries_are_compiled_and_callable() {
    let dir = app(&format!(
        "  - {{name: main, kind: process.wasm, fs: assets, path: /complex.wasm, hash: \"sha256:{COMPLEX}\", method: sum-list, pool: {{type: static, size: 2}}}}\n"
    ));
    let rt = runtime(&dir);
    assert_eq!(
        rt.ids().iter().map(Id::to_string).collect::<Vec<_>>(),
        ["app:main"]
    );
    assert_eq!(
        ok(&rt, "main", vec![arr(vec![i(1), i(2), i(3)])]).await,
        i(6)
    );
    assert_eq!(rt.linker_count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn with_the_pooling_allocator_calls_wait_for_a_free_slot() {
    let dir = sleep_app("[wasi:poll, wasi:clocks]");
    let opts = WasmOptions {
        engine: EngineOptions {
            pooling: Some(2),
            ..EngineOptions::default()
        },
        ..options(Some(shared_cache()))
    };
    let rt = compile_with(&dir, &opts).unwrap();
    let f = func(&rt, "sleep");
    let ctx = CallContext::default();
    let t = Instant::now();
    let results = futures::future::join_all((0..6).map(|_| f.call(vec![i(30)], &ctx))).await;
    for r in results {
        assert!(
            matches!(r, Ok(WasmResult::Ok(Value::Int(ns))) if ns >= 30_000_000),
            "{r:?}"
        );
    }
    // 6 calls, 2 at a time, 30 ms each: at least 3 rounds.
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
}
