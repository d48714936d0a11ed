//! WebAssembly benchmarks (issue 6), side by side in one run: the raw wasmtime floor for
//! `complex.wasm`'s `echo-point`, the same export through `funcs.call` from a Lua process
//! on a static pool and on an inline pool, `mapper.wasm`'s `transform-users` on 1,000
//! users, and the boot time of an app with 20 `function.wasm` entries with a cold and a
//! warm compile cache.
//!
//! Run: `cargo bench --bench wasm`. Every measurement runs in a fresh child process (this
//! binary re-executed with `WARDEN_BENCH_CHILD`), 5 runs each; tables show the median
//! over the runs with their min-max. The Lua workloads are in `benches/wasm/bench.lua`,
//! the components in `shared/fixtures/wasm` (checked against their sha256 at load).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use warden::alloc::MiMalloc;
use warden::functions::CallContext;
use warden::process::Exit;
use warden::registry::{load_dir, Id};
use warden::runtime::Runtime;
use warden::value::{to_json, Value};
use warden::wasm::engine::{new_engine, EngineOptions};
use warden::wasm::{
    compile_registry, compile_registry_with, WasmFunction, WasmOptions, WasmResult,
};
use wasmtime::component::{Func, Linker, Val};
use wasmtime::Store;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const RUNS: usize = 5;
const COMPLEX: &str = "0b3b555c2dd2e9bb4e09dead45b0ba00c660abb3b9d5ea1f688dee9b17537b55";
const MAPPER: &str = "7304fc7d19778605458ae5804dae9a7343dcd3f5fc22bcc9415e98b5047192dd";
const MAPPER_IMPORTS: &str = "[wasi:cli, wasi:io, wasi:clocks, wasi:filesystem]";

/// Warm raw calls: untimed warm-up, single calls timed one by one, batches of 100.
const RAW_WARMUP: usize = 10_000;
const RAW_SINGLES: usize = 100_000;
const BATCHES: usize = 2_000;
const PER_BATCH: usize = 100;
/// Pairs of batches (raw, funcs.call) timed alternately in one process.
const PAIRS: usize = 500;
/// Calls that instantiate each time (raw `InstancePre`, `WasmFunction::call`).
const INST_SAMPLES: usize = 5_000;
/// `funcs.call` on the inline pool: batches of 100.
const INLINE_BATCHES: usize = 500;
/// `transform-users`: users per call, timed calls, untimed warm-up calls.
const USERS: i64 = 1_000;
const TRANSFORM_CALLS: usize = 300;
const TRANSFORM_WARMUP: usize = 30;

/// The exports of complex.wasm used by the 20-entry boot app (17 of its 18).
const COMPLEX_EXPORTS: &[&str] = &[
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
];
const MAPPER_EXPORTS: &[&str] = &["transform-users", "filter-active", "aggregate-tags"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/wasm")
}

// ---------------------------------------------------------------- apps

fn wasm_entry(name: &str, file: &str, method: &str, pool: &str) -> String {
    let (hash, imports) = if file == "mapper.wasm" {
        (MAPPER, MAPPER_IMPORTS)
    } else {
        (COMPLEX, "[]")
    };
    let pool = if pool.is_empty() {
        String::new()
    } else {
        format!("\n    pool: {pool}")
    };
    format!(
        "  - name: {name}\n    kind: function.wasm\n    fs: assets\n    path: /{file}\n    hash: sha256:{hash}\n    method: {method}\n    imports: {imports}{pool}\n"
    )
}

/// An app dir: `wasm/` holds complex.wasm and mapper.wasm (the `assets` directory), plus
/// bench.lua and `_index.yaml` (namespace `bench`) with `entries`.
fn app(entries: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let wasm = d.path().join("wasm");
    std::fs::create_dir_all(&wasm).unwrap();
    for f in ["complex.wasm", "mapper.wasm"] {
        std::fs::copy(fixtures().join(f), wasm.join(f)).unwrap();
    }
    std::fs::write(d.path().join("bench.lua"), include_str!("wasm/bench.lua")).unwrap();
    let yaml = format!(
        "version: \"1.0\"\nnamespace: bench\nentries:\n  - {{name: assets, kind: fs.directory, directory: ./wasm}}\n{entries}"
    );
    std::fs::write(d.path().join("_index.yaml"), yaml).unwrap();
    d
}

/// The app of the call workloads.
fn call_app() -> tempfile::TempDir {
    let mut e = String::from(
        "  - name: host\n    kind: process.host\n    host: {workers: 2, queue_size: 200000}\n",
    );
    e.push_str(&wasm_entry(
        "point",
        "complex.wasm",
        "echo-point",
        "{type: static, size: 2}",
    ));
    e.push_str(&wasm_entry(
        "point_inline",
        "complex.wasm",
        "echo-point",
        "{type: inline}",
    ));
    e.push_str(&wasm_entry(
        "transform",
        "mapper.wasm",
        "transform-users",
        "{type: static, size: 2}",
    ));
    for m in ["call_latency", "transform"] {
        e.push_str(&format!(
            "  - name: lua_{m}\n    kind: process.lua\n    source: file://bench.lua\n    method: {m}\n    modules: [time, funcs, json]\n"
        ));
    }
    app(&e)
}

/// 20 function.wasm entries: 17 exports of complex.wasm and the 3 of mapper.wasm.
fn boot_app() -> tempfile::TempDir {
    let mut e = String::new();
    for (i, m) in COMPLEX_EXPORTS.iter().enumerate() {
        e.push_str(&wasm_entry(&format!("c{i}"), "complex.wasm", m, ""));
    }
    for (i, m) in MAPPER_EXPORTS.iter().enumerate() {
        e.push_str(&wasm_entry(&format!("m{i}"), "mapper.wasm", m, ""));
    }
    app(&e)
}

// ---------------------------------------------------------------- measurements

/// Median, p10 and p90 of `v` (microseconds) as JSON.
fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    serde_json::json!({ "median": v[n / 2], "p10": v[n / 10], "p90": v[n * 9 / 10], "n": n })
}

fn point_val(x: i32, y: i32) -> Val {
    Val::Record(vec![("x".into(), Val::S32(x)), ("y".into(), Val::S32(y))])
}

fn point(x: i64, y: i64) -> Value {
    Value::Map(vec![
        (Value::str("x"), Value::Int(x)),
        (Value::str("y"), Value::Int(y)),
    ])
}

/// A store set up like warden's (epoch deadline 1 tick, yield to the executor at each).
fn raw_store(engine: &wasmtime::Engine) -> Store<()> {
    let mut store = Store::new(engine, ());
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// One raw `echo-point({x=1, y=2})`: the argument is built for each call, as any caller
/// of the dynamic API must.
async fn raw_echo(func: Func, store: &mut Store<()>) -> Val {
    let params = [point_val(1, 2)];
    let mut results = [Val::Bool(false)];
    func.call_async(&mut *store, &params, &mut results)
        .await
        .unwrap();
    let [r] = results;
    r
}

/// A warm instance of complex.wasm in a store of its own, and its `echo-point`, called
/// `RAW_WARMUP` times.
async fn raw_instance() -> (Store<()>, Func) {
    let engine = new_engine(&EngineOptions::default()).unwrap();
    let bytes = std::fs::read(fixtures().join("complex.wasm")).unwrap();
    let component = wasmtime::component::Component::from_binary(&engine, &bytes).unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    let mut store = raw_store(&engine);
    let instance = linker
        .instantiate_async(&mut store, &component)
        .await
        .unwrap();
    let func = instance.get_func(&mut store, "echo-point").unwrap();
    assert_eq!(raw_echo(func, &mut store).await, point_val(1, 2));
    for _ in 0..RAW_WARMUP {
        raw_echo(func, &mut store).await;
    }
    (store, func)
}

/// The floor: one instance, warm calls through the dynamic `Val` API.
async fn raw_warm() -> serde_json::Value {
    let (mut store, func) = raw_instance().await;
    let mut singles = Vec::with_capacity(RAW_SINGLES);
    for _ in 0..RAW_SINGLES {
        let t = Instant::now();
        raw_echo(func, &mut store).await;
        singles.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut batches = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..PER_BATCH {
            raw_echo(func, &mut store).await;
        }
        batches.push(t.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64);
    }
    serde_json::json!({ "single": summary(singles), "batch": summary(batches) })
}

/// Raw instantiate-per-call: a new Store, `InstancePre::instantiate_async`, one call,
/// drop (what an inline pool does, minus warden's WASI context and conversions).
async fn raw_instantiate() -> serde_json::Value {
    let engine = new_engine(&EngineOptions::default()).unwrap();
    let bytes = std::fs::read(fixtures().join("complex.wasm")).unwrap();
    let component = wasmtime::component::Component::from_binary(&engine, &bytes).unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    let pre = linker.instantiate_pre(&component).unwrap();
    let (_, export) = component.get_export(None, "echo-point").unwrap();
    let once = || async {
        let mut store = raw_store(&engine);
        let instance = pre.instantiate_async(&mut store).await.unwrap();
        let func = instance.get_func(&mut store, export).unwrap();
        raw_echo(func, &mut store).await
    };
    assert_eq!(once().await, point_val(1, 2));
    for _ in 0..INST_SAMPLES / 10 {
        once().await;
    }
    let mut v = Vec::with_capacity(INST_SAMPLES);
    for _ in 0..INST_SAMPLES {
        let t = Instant::now();
        once().await;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    serde_json::json!({ "single": summary(v) })
}

/// warden's `WasmFunction` from Rust, no Lua and no pool: `keep` 2 is what a static
/// pool of 2 passes (warm instances reused), 0 an inline pool (a fresh one per call).
/// `pooling`: the engine's pooling allocator with that many slots (warden's default,
/// and what `Runtime::start` uses, is None: on-demand allocation).
async fn direct(
    name: &str,
    args: Vec<Value>,
    keep: usize,
    n: usize,
    pooling: Option<u32>,
) -> serde_json::Value {
    let dir = call_app();
    let reg = load_dir(dir.path()).unwrap();
    let options = WasmOptions {
        engine: EngineOptions {
            pooling,
            ..EngineOptions::default()
        },
        ..WasmOptions::default()
    };
    let rt = compile_registry_with(&reg, &options).unwrap_or_else(|e| panic!("{e:?}"));
    let f: std::sync::Arc<WasmFunction> = rt.function(&Id::new("bench", name)).unwrap();
    let ctx = CallContext::default();
    let first = match f.call_keeping(args.clone(), &ctx, keep).await {
        Ok(WasmResult::Ok(v)) => v,
        other => panic!("bench:{name}: {other:?}"),
    };
    for _ in 0..n / 10 {
        f.call_keeping(args.clone(), &ctx, keep).await.unwrap();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let a = args.clone();
        let t = Instant::now();
        f.call_keeping(a, &ctx, keep).await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let bytes = to_json(&Value::Array(args)).unwrap().to_string().len() - 2
        + to_json(&first).unwrap().to_string().len();
    serde_json::json!({ "single": summary(v), "bytes": bytes })
}

fn users(n: i64) -> Value {
    Value::Array(
        (1..=n)
            .map(|i| {
                Value::Map(vec![
                    (Value::str("id"), Value::Int(i)),
                    (Value::str("name"), Value::str(format!("user{i}"))),
                    (
                        Value::str("tags"),
                        Value::Array(vec![Value::str("admin"), Value::str("user")]),
                    ),
                    (Value::str("active"), Value::Bool(i % 2 == 0)),
                ])
            })
            .collect(),
    )
}

async fn exec(rt: &Runtime, name: &str, args: Vec<Value>) -> serde_json::Value {
    match rt.exec(&Id::new("bench", name), args).await.unwrap() {
        Exit::Normal(v) => to_json(&v).unwrap(),
        other => panic!("bench:{name} failed: {other:?}"),
    }
}

/// `funcs.call` against the raw floor in one process, batch by batch: a batch of 100 raw
/// calls, then a batch of 100 `funcs.call`s from a Lua process (the order swapped every
/// pair), so both see the same state of a noisy machine. The ratio of each pair is the
/// statistic; its median is the "within 3x" figure.
async fn paired() -> serde_json::Value {
    let (mut store, func) = raw_instance().await;
    let dir = call_app();
    let rt = Runtime::start(load_dir(dir.path()).unwrap()).await.unwrap();
    let lua_batch = |warm: i64| {
        let rt = &rt;
        async move {
            let r = exec(
                rt,
                "lua_call_latency",
                vec![
                    Value::str("bench:point"),
                    Value::Int(1),
                    Value::Int(PER_BATCH as i64),
                    Value::Int(warm),
                ],
            )
            .await;
            r["median"].as_f64().unwrap()
        }
    };
    lua_batch(1000).await;
    let (mut raws, mut luas, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PAIRS {
        let mut raw_us = 0.0;
        let mut lua_us = 0.0;
        for step in 0..2 {
            if (i + step) % 2 == 0 {
                let t = Instant::now();
                for _ in 0..PER_BATCH {
                    raw_echo(func, &mut store).await;
                }
                raw_us = t.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64;
            } else {
                lua_us = lua_batch(0).await;
            }
        }
        raws.push(raw_us);
        luas.push(lua_us);
        ratios.push(lua_us / raw_us);
    }
    rt.shutdown().await;
    serde_json::json!({ "raw": summary(raws), "lua": summary(luas), "ratio": summary(ratios) })
}

/// A Lua workload in a booted runtime.
async fn lua(which: &str) -> serde_json::Value {
    let dir = call_app();
    let rt = Runtime::start(load_dir(dir.path()).unwrap()).await.unwrap();
    let out = match which {
        "lua-static" => {
            exec(
                &rt,
                "lua_call_latency",
                vec![
                    Value::str("bench:point"),
                    Value::Int(BATCHES as i64),
                    Value::Int(PER_BATCH as i64),
                    Value::Int(1000),
                ],
            )
            .await
        }
        "lua-inline" => {
            exec(
                &rt,
                "lua_call_latency",
                vec![
                    Value::str("bench:point_inline"),
                    Value::Int(INLINE_BATCHES as i64),
                    Value::Int(PER_BATCH as i64),
                    Value::Int(500),
                ],
            )
            .await
        }
        "lua-transform" => {
            exec(
                &rt,
                "lua_transform",
                vec![
                    Value::str("bench:transform"),
                    Value::Int(USERS),
                    Value::Int(TRANSFORM_CALLS as i64),
                    Value::Int(TRANSFORM_WARMUP as i64),
                ],
            )
            .await
        }
        other => panic!("unknown measurement {other}"),
    };
    rt.shutdown().await;
    out
}

/// Boot of the 20-entry app; the compile cache is `$WARDEN_CACHE_DIR` (set by the parent).
async fn boot(which: &str) -> serde_json::Value {
    let dir = boot_app();
    let t = Instant::now();
    let reg = load_dir(dir.path()).unwrap();
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    match which {
        "boot-compile" => {
            let t = Instant::now();
            let rt = compile_registry(&reg).unwrap_or_else(|e| panic!("{e:?}"));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let s = rt.cache_stats();
            serde_json::json!({
                "load_ms": load_ms,
                "ms": ms,
                "hits": s.hits,
                "misses": s.misses,
                "functions": rt.ids().len(),
                "linkers": rt.linker_count(),
            })
        }
        "boot-start" => {
            let t = Instant::now();
            let rt = Runtime::start(reg).await.unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            rt.shutdown().await;
            serde_json::json!({ "load_ms": load_ms, "ms": ms })
        }
        other => panic!("unknown measurement {other}"),
    }
}

/// One measurement in this (child) process; prints one JSON line.
fn child(which: &str) {
    let current = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let multi = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let out = match which {
        "raw" => current().block_on(raw_warm()),
        "paired" => multi().block_on(paired()),
        "raw-inst" => current().block_on(raw_instantiate()),
        "direct-static" => {
            current().block_on(direct("point", vec![point(1, 2)], 2, RAW_SINGLES / 2, None))
        }
        "direct-inline" => current().block_on(direct(
            "point_inline",
            vec![point(1, 2)],
            0,
            INST_SAMPLES,
            None,
        )),
        "direct-inline-pooling" => current().block_on(direct(
            "point_inline",
            vec![point(1, 2)],
            0,
            INST_SAMPLES,
            Some(64),
        )),
        "direct-transform" => current().block_on(direct(
            "transform",
            vec![users(USERS)],
            2,
            TRANSFORM_CALLS,
            None,
        )),
        w if w.starts_with("lua-") => multi().block_on(lua(w)),
        w if w.starts_with("boot-") => multi().block_on(boot(w)),
        other => panic!("unknown measurement {other}"),
    };
    println!("{out}");
}

fn run_child(which: &str, cache: &Path) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .env("WARDEN_BENCH_CHILD", which)
        .env("WARDEN_CACHE_DIR", cache)
        // EngineOptions::default() would turn the pooling allocator on
        .env_remove("WARDEN_WASM_POOLING")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap()
}

// ---------------------------------------------------------------- report

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stats {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// `key` (a JSON pointer) of every run.
fn field(runs: &[serde_json::Value], key: &str) -> Stats {
    stats(
        runs.iter()
            .map(|r| {
                r.pointer(key)
                    .and_then(|v| v.as_f64())
                    .unwrap_or_else(|| panic!("no {key} in {r}"))
            })
            .collect(),
    )
}

fn us(s: &Stats) -> String {
    let p = if s.median < 10.0 { 2 } else { 1 };
    format!("{:.p$} us ({:.p$}-{:.p$})", s.median, s.min, s.max, p = p)
}

fn ms(s: &Stats) -> String {
    format!("{:.1} ms ({:.1}-{:.1})", s.median, s.min, s.max)
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

fn main() {
    warden::alloc::no_huge_pages();
    if let Ok(which) = std::env::var("WARDEN_BENCH_CHILD") {
        child(&which);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("warden WebAssembly benchmarks ({RUNS} runs each, each in a fresh process)");
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = loadavg();
    // The call workloads share one compile cache (primed by their first child); the boot
    // workloads make their own.
    let cache_root = tempfile::tempdir().unwrap();
    let cache = cache_root.path().join("cache");
    let runs = |which: &str| -> Vec<serde_json::Value> {
        (0..RUNS).map(|_| run_child(which, &cache)).collect()
    };
    let direct_static = runs("direct-static");
    let raw = runs("raw");
    let raw_inst = runs("raw-inst");
    let direct_inline = runs("direct-inline");
    let direct_pooling = runs("direct-inline-pooling");
    let lua_static = runs("lua-static");
    let pairs = runs("paired");
    let lua_inline = runs("lua-inline");
    let direct_transform = runs("direct-transform");
    let lua_transform = runs("lua-transform");

    let boot_runs = |which: &str, warm: bool| -> Vec<serde_json::Value> {
        let shared = tempfile::tempdir().unwrap();
        if warm {
            let primed = run_child("boot-compile", &shared.path().join("cache"));
            assert_eq!(primed["misses"], 2, "{primed}");
        }
        (0..RUNS)
            .map(|_| {
                let fresh = tempfile::tempdir().unwrap();
                let dir = if warm { shared.path() } else { fresh.path() };
                run_child(which, &dir.join("cache"))
            })
            .collect()
    };
    let compile_cold = boot_runs("boot-compile", false);
    let compile_warm = boot_runs("boot-compile", true);
    let start_cold = boot_runs("boot-start", false);
    let start_warm = boot_runs("boot-start", true);

    let floor = field(&raw, "/single/median");
    let ratio = |s: &Stats| format!("{:.2}x", s.median / floor.median);
    let row = |name: &str, runs: &[serde_json::Value], key: &str, goal: &str, met: &str| {
        let med = field(runs, &format!("/{key}median"));
        let p90 = field(runs, &format!("/{key}p90"));
        println!(
            "| {name} | {} | {:.2} us | {} | {goal} | {met} |",
            us(&med),
            p90.median,
            ratio(&med)
        );
    };

    println!();
    println!("| complex.wasm `echo-point({{x=1, y=2}})` | median (min-max of 5 runs) | p90 | vs raw (ratio) | goal | met |");
    println!("|---|---|---|---|---|---|");
    row(
        "raw wasmtime from Rust, one warm instance, dynamic `Val` API, current_thread (the floor; 100k calls timed one by one)",
        &raw,
        "single/",
        "floor (design.md: 1.6 us)",
        "-",
    );
    row(
        "the same, timed in 2000 batches of 100",
        &raw,
        "batch/",
        "-",
        "-",
    );
    row(
        "`WasmFunction::call_keeping` from Rust, warm instance reused (static-pool path, no Lua; 50k calls timed one by one)",
        &direct_static,
        "single/",
        "-",
        "-",
    );
    let ls = field(&lua_static, "/median");
    row(
        "`funcs.call` from a Lua process, static pool of 2 (2000 batches of 100)",
        &lua_static,
        "",
        "<= 10 us",
        yes(ls.median <= 10.0),
    );
    let pr = field(&pairs, "/ratio/median");
    println!(
        "| `funcs.call` / raw, interleaved in one process ({PAIRS} pairs of batches of {PER_BATCH}: raw {}, funcs.call {}) | ratio {:.2}x ({:.2}-{:.2}) | ratio p90 {:.2}x | {:.2}x | <= 3x raw | {} |",
        us(&field(&pairs, "/raw/median")),
        us(&field(&pairs, "/lua/median")),
        pr.median,
        pr.min,
        pr.max,
        field(&pairs, "/ratio/p90").median,
        pr.median,
        yes(pr.median <= 3.0),
    );
    row(
        "raw wasmtime from Rust: new Store + `InstancePre::instantiate_async` + call per call (5000 timed one by one)",
        &raw_inst,
        "single/",
        "-",
        "-",
    );
    row(
        "`WasmFunction::call` from Rust, fresh instance per call (inline-pool path, no Lua; 5000 timed one by one)",
        &direct_inline,
        "single/",
        "-",
        "-",
    );
    row(
        "the same with the engine's pooling allocator (`EngineOptions { pooling: Some(64) }`; opt-in, not what `Runtime::start` uses)",
        &direct_pooling,
        "single/",
        "-",
        "-",
    );
    let li = field(&lua_inline, "/median");
    row(
        "`funcs.call` from a Lua process, inline pool (instantiate per call; 500 batches of 100)",
        &lua_inline,
        "",
        "<= 50 us",
        yes(li.median <= 50.0),
    );

    // transform-users: bytes = compact JSON of the argument list's single element (the
    // 1,000 users) + compact JSON of the returned list.
    let lua_bytes =
        |r: &serde_json::Value| r["in_bytes"].as_f64().unwrap() + r["out_bytes"].as_f64().unwrap();
    let bytes = lua_bytes(&lua_transform[0]);
    let mbps = |runs: &[serde_json::Value], key: &str| {
        stats(
            runs.iter()
                .map(|r| bytes / r.pointer(key).unwrap().as_f64().unwrap())
                .collect(),
        )
    };
    let tr_row = |name: &str, runs: &[serde_json::Value], key: &str| {
        let med = field(runs, &format!("/{key}median"));
        let p90 = field(runs, &format!("/{key}p90"));
        let tput = mbps(runs, &format!("/{key}median"));
        println!(
            "| {name} | {} | {:.0} us | - | report us | - |",
            us(&med),
            p90.median
        );
        println!(
            "| {name}: throughput, MB/s of mapped JSON (at the median) | {:.1} MB/s ({:.1}-{:.1}) | - | - | report MB/s | - |",
            tput.median, tput.min, tput.max
        );
    };
    println!();
    println!(
        "| mapper.wasm `transform-users`, {USERS} users ({:.0} KB in + {:.0} KB out as compact JSON = {:.3} MB per call) | median (min-max of 5 runs) | p90 | vs raw (ratio) | goal | met |",
        lua_transform[0]["in_bytes"].as_f64().unwrap() / 1e3,
        lua_transform[0]["out_bytes"].as_f64().unwrap() / 1e3,
        bytes / 1e6
    );
    println!("|---|---|---|---|---|---|");
    tr_row(
        "`WasmFunction::call_keeping` from Rust, users built in Rust, warm instance (no Lua; 300 calls timed one by one)",
        &direct_transform,
        "single/",
    );
    tr_row(
        "`funcs.call` from a Lua process, users built in Lua, static pool of 2 (300 calls timed one by one)",
        &lua_transform,
        "",
    );
    for r in &direct_transform {
        assert_eq!(
            r["bytes"].as_f64().unwrap(),
            bytes,
            "Rust and Lua inputs encode to the same size"
        );
    }

    println!();
    println!("| boot of an app with 20 `function.wasm` entries (17 exports of complex.wasm, 3 of mapper.wasm) | median (min-max of 5 runs) | p90 | vs raw (ratio) | goal | met |");
    println!("|---|---|---|---|---|---|");
    let all_loads: Vec<serde_json::Value> =
        compile_cold.iter().chain(&compile_warm).cloned().collect();
    println!(
        "| `load_dir` (parse YAML, read + sha256-check the 20 module files) | {} | - | - | report | - |",
        ms(&field(&all_loads, "/load_ms"))
    );
    let c = &compile_cold[0];
    println!(
        "| `compile_registry`, cold cache (empty `WARDEN_CACHE_DIR`): {} distinct modules compiled for {} entries, {} linkers | {} | - | - | report | - |",
        c["misses"], c["functions"], c["linkers"], ms(&field(&compile_cold, "/ms"))
    );
    let w = &compile_warm[0];
    println!(
        "| `compile_registry`, warm cache (second boot, same dir): {} modules loaded from the cache, {} compiled | {} | - | - | report | - |",
        w["hits"], w["misses"], ms(&field(&compile_warm, "/ms"))
    );
    println!(
        "| `Runtime::start` (whole boot after `load_dir`), cold cache | {} | - | - | report | - |",
        ms(&field(&start_cold, "/ms"))
    );
    println!(
        "| `Runtime::start` (whole boot after `load_dir`), warm cache | {} | - | - | report | - |",
        ms(&field(&start_warm, "/ms"))
    );
    println!(
        "\nload average before: {}; after: {}",
        load_before.trim(),
        loadavg().trim()
    );
    for r in &compile_cold {
        assert_eq!(
            (r["misses"].as_u64(), r["hits"].as_u64()),
            (Some(2), Some(0)),
            "{r}"
        );
    }
    for r in &compile_warm {
        assert_eq!(
            (r["misses"].as_u64(), r["hits"].as_u64()),
            (Some(0), Some(2)),
            "{r}"
        );
    }
}
