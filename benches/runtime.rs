//! Core runtime benchmarks, side by side with Erlang/OTP (shared/anchors/otp_bench.erl):
//! spawning idle Lua processes, a ring of 1000 processes, and a send + reply round trip.
//!
//! Run: `cargo bench --bench runtime`. Each measurement runs in a fresh child process (this
//! binary re-executed), so memory figures do not inherit an earlier run's heap. Erlang runs
//! in the same session when `erl` is installed (`apt-get install erlang-base`).

use std::process::Command;
use std::time::{Duration, Instant};
use warden::alloc::MiMalloc;
use warden::process::Exit;
use warden::registry::{load_dir, Id};
use warden::runtime::Runtime;
use warden::value::{to_json, Value};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const RUNS: usize = 5;
const SPAWN_N: i64 = 100_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn app() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bench.lua"), include_str!("bench.lua")).unwrap();
    std::fs::write(
        d.path().join("echo.wat"),
        include_str!("../tests/guests/echo.wat"),
    )
    .unwrap();
    let mut yaml = String::from(
        "version: \"1.0\"\nnamespace: bench\nentries:\n  - name: host\n    kind: process.host\n    host: {workers: 2, queue_size: 200000}\n",
    );
    // the idle process has its own small source, as Erlang's spawns one small function
    std::fs::write(
        d.path().join("idle.lua"),
        "return { idle = function() process.inbox():receive() end }\n",
    )
    .unwrap();
    yaml.push_str(
        "  - name: idle\n    kind: process.lua\n    source: file://idle.lua\n    method: idle\n",
    );
    for m in [
        "spawner",
        "ring_node",
        "ring",
        "echo",
        "roundtrip",
        "roundtrip_idle",
        "gc_pause",
        "call_latency",
        "call_loop",
        "sworker",
        "restarts",
        "restart_all",
    ] {
        yaml.push_str(&format!(
            "  - name: {m}\n    kind: process.lua\n    source: file://bench.lua\n    method: {m}\n    modules: [time, funcs, supervisor]\n"
        ));
    }
    for size in [1, 2, 4] {
        yaml.push_str(&format!(
            "  - name: noop{size}\n    kind: function.lua\n    source: file://bench.lua\n    method: noop\n    pool: {{type: static, size: {size}}}\n"
        ));
    }
    yaml.push_str("  - name: wecho\n    kind: process.wasm\n    source: file://echo.wat\n    wit: \"import warden:host/process@0.1.0; run: func(count: u32) -> u32;\"\n    method: run\n    imports: [warden:process]\n");
    let hundred: Vec<String> = (1..=100)
        .map(|i| format!("{{id: w{i}, process: sworker}}"))
        .collect();
    yaml.push_str(&format!(
        "  - name: tree1\n    kind: supervisor\n    strategy: one_for_one\n    intensity: {{max_restarts: 1000000, period: 1s}}\n    children: [{{id: w, process: sworker}}]\n  - name: tree100\n    kind: supervisor\n    strategy: one_for_all\n    intensity: {{max_restarts: 1000000, period: 1s}}\n    children: [{}]\n  - {{name: svc1, kind: process.service, process: tree1, host: host}}\n  - {{name: svc100, kind: process.service, process: tree100, host: host}}\n",
        hundred.join(", ")
    ));
    std::fs::write(d.path().join("_index.yaml"), yaml).unwrap();
    d
}

async fn exec(rt: &Runtime, name: &str, args: Vec<Value>) -> serde_json::Value {
    match rt.exec(&Id::new("bench", name), args).await.unwrap() {
        Exit::Normal(v) => to_json(&v).unwrap(),
        other => panic!("bench:{name} failed: {other:?}"),
    }
}

/// Sends `command` to `perf record --control fifo:$WARDEN_PERF_CTL` when that is set, to
/// profile only the measured part of a child (`perf record -D -1 --control fifo:F ...`).
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("WARDEN_PERF_CTL") {
        if let Err(e) = std::fs::write(&path, format!("{command}\n")) {
            eprintln!("cannot write to {path}: {e}");
        }
    }
}

/// Runs `f` inside a perf window (see [`perf_control`]).
async fn measured<T>(f: impl std::future::Future<Output = T>) -> T {
    perf_control("enable");
    let out = f.await;
    perf_control("disable");
    out
}

/// Guests that reached `receive` in [`raw_spawn`].
static RAW_WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The floor for a WebAssembly spawn: raw wasmtime, no runtime around it. `n` tasks on one
/// thread each make a store, instantiate the echo guest and call its `run`, whose
/// `receive` import never returns (so all `n` stay alive, suspended on their fibers, as
/// idle warden processes do). `engine_kind`: "wasmtime" is wasmtime's default
/// configuration (4 GiB reservations, copy-on-write images, 2 MiB fiber stacks, no epoch
/// yields), "warden" is warden's engine (the runtime's settings and caches, epoch yields).
fn raw_spawn(engine_kind: &str, n: usize) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    use wasmtime::component::{Linker, Val};
    let dir = app();
    let reg = load_dir(dir.path()).unwrap();
    let warden::registry::EntrySpec::Wasm(spec) = &reg.entries[&Id::new("bench", "wecho")].spec
    else {
        panic!("bench:wecho is not a wasm entry")
    };
    let bytes = warden::wasm::compile::component_bytes(spec).unwrap();
    let engine = match engine_kind {
        "wasmtime" => {
            let mut config = wasmtime::Config::new();
            config.wasm_component_model(true);
            wasmtime::Engine::new(&config).unwrap()
        }
        "warden" => warden::wasm::engine::new_engine(&Default::default()).unwrap(),
        other => panic!("unknown engine {other}"),
    };
    let epochs = engine_kind == "warden";
    let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    let mut inst = linker.instance("warden:host/process@0.1.0").unwrap();
    inst.func_new_async("receive", |_, _, _, _| {
        RAW_WAITING.fetch_add(1, Ordering::Relaxed);
        Box::new(std::future::pending())
    })
    .unwrap();
    inst.func_new("send", |_, _, _, _| Ok(())).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let (_, export) = component.get_export(None, "run").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let spawn = |count: usize| {
        for _ in 0..count {
            let (engine, pre) = (engine.clone(), pre.clone());
            tokio::task::spawn_local(async move {
                let mut store = wasmtime::Store::new(&engine, ());
                if epochs {
                    store.set_epoch_deadline(1);
                    store.epoch_deadline_async_yield_and_update(1);
                }
                let instance = pre.instantiate_async(&mut store).await.unwrap();
                let run = instance.get_func(&mut store, export).unwrap();
                let mut out = [Val::U32(0)];
                run.call_async(&mut store, &[Val::U32(1_000_000_000)], &mut out)
                    .await
                    .unwrap();
            });
        }
    };
    let wait = |target: usize| async move {
        while RAW_WAITING.load(Ordering::Relaxed) < target {
            tokio::task::yield_now().await;
        }
    };
    local.block_on(&rt, async {
        spawn(10);
        wait(10).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = rss_bytes();
        perf_control("enable");
        let t0 = Instant::now();
        spawn(n);
        wait(10 + n).await;
        let took = t0.elapsed();
        perf_control("disable");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = rss_bytes();
        serde_json::json!({
            "spawn_us": took.as_secs_f64() * 1e6 / n as f64,
            "bytes_per_process": after.saturating_sub(before) as f64 / n as f64,
            "live": RAW_WAITING.load(Ordering::Relaxed),
        })
    })
}

/// One measurement in this (child) process; prints one JSON line.
async fn child(which: &str) {
    if let Some(kind) = which.strip_prefix("wraw-") {
        let kind = kind.to_string();
        let out = tokio::task::spawn_blocking(move || raw_spawn(&kind, 10_000))
            .await
            .unwrap();
        println!("{out}");
        return;
    }
    let dir = app();
    let rt = Runtime::start(load_dir(dir.path()).unwrap()).await.unwrap();
    // WARDEN_BENCH_ADMIN=1: the admin endpoint on, scraped every second (its cost)
    if std::env::var("WARDEN_BENCH_ADMIN").is_ok_and(|v| v == "1") {
        let config = warden::admin::Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: None,
            read_only: true,
        };
        let addr = warden::admin::serve(&rt, config).await.unwrap();
        std::thread::spawn(move || loop {
            let _ = ureq::get(&format!("http://{addr}/metrics"))
                .call()
                .map(|mut r| r.body_mut().read_to_string());
            std::thread::sleep(Duration::from_secs(1));
        });
    }
    let out = match which {
        "spawn" => {
            // warm the worker's Lua state and the entry's compiled chunk
            exec(&rt, "spawner", vec![Value::Int(10)]).await;
            let host = rt.node().host(&Id::new("bench", "host")).unwrap();
            while host.pending() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let before = rss_bytes();
            perf_control("enable");
            let t0 = Instant::now();
            let ms = exec(&rt, "spawner", vec![Value::Int(SPAWN_N)]).await;
            while host.pending() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let started = t0.elapsed();
            perf_control("disable");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = rss_bytes();
            // the Lua heaps of the host's workers, to split memory between Lua and Rust
            let mut lua_heap = 0u64;
            for i in 0..host.worker_count() {
                let (tx, rx) = std::sync::mpsc::channel();
                host.run_on_worker(i, move || {
                    let _ = tx.send(
                        warden::lua::worker()
                            .map(|w| w.lua.used_memory())
                            .unwrap_or(0),
                    );
                });
                lua_heap += rx.recv_timeout(Duration::from_secs(5)).unwrap_or(0) as u64;
            }
            serde_json::json!({
                "lua_heap_per_process": lua_heap as f64 / SPAWN_N as f64,
                "spawn_us": ms.as_f64().unwrap() * 1000.0 / SPAWN_N as f64,
                "spawn_start_us": started.as_secs_f64() * 1e6 / SPAWN_N as f64,
                "bytes_per_process": (after.saturating_sub(before)) as f64 / SPAWN_N as f64,
                "live": rt.node().process_count(),
            })
        }
        "ring" => {
            let v = measured(exec(&rt, "ring", vec![Value::Int(1000), Value::Int(1000)])).await;
            serde_json::json!({ "msgs_per_s": v })
        }
        "roundtrip" => {
            measured(exec(
                &rt,
                "roundtrip",
                vec![Value::Int(2000), Value::Int(100)],
            ))
            .await
        }
        "rtidle" => {
            // the round trip beside 20,000 idle processes on the same worker: what a
            // collection costs where most processes wait
            measured(exec(
                &rt,
                "roundtrip_idle",
                vec![Value::Int(20_000), Value::Int(2000), Value::Int(100)],
            ))
            .await
        }
        "gcpause" => {
            // a minor collection of a worker's Lua state with 20,000 idle processes on it
            measured(exec(&rt, "gc_pause", vec![Value::Int(20_000)])).await
        }
        "wspawn" => {
            // 10,000 WASM echo processes, idle in receive
            let n = 10_000;
            let host = rt.node().host(&Id::new("bench", "host")).unwrap();
            exec(
                &rt,
                "spawner",
                vec![
                    Value::Int(10),
                    Value::str("bench:wecho"),
                    Value::Int(1_000_000_000),
                ],
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = rss_bytes();
            perf_control("enable");
            let t0 = Instant::now();
            let ms = exec(
                &rt,
                "spawner",
                vec![
                    Value::Int(n),
                    Value::str("bench:wecho"),
                    Value::Int(1_000_000_000),
                ],
            )
            .await;
            while host.pending() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let started = t0.elapsed();
            perf_control("disable");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = rss_bytes();
            serde_json::json!({
                "spawn_us": ms.as_f64().unwrap() * 1000.0 / n as f64,
                "spawn_start_us": started.as_secs_f64() * 1e6 / n as f64,
                "bytes_per_process": after.saturating_sub(before) as f64 / n as f64,
                "live": rt.node().process_count(),
            })
        }
        "wroundtrip" => {
            exec(
                &rt,
                "roundtrip",
                vec![Value::Int(2000), Value::Int(100), Value::str("bench:wecho")],
            )
            .await
        }
        "restart" => measured(exec(&rt, "restarts", vec![Value::Int(1000)])).await,
        "restart_all" => exec(&rt, "restart_all", vec![Value::Int(50)]).await,
        "call1" => {
            measured(exec(
                &rt,
                "call_latency",
                vec![Value::str("bench:noop2"), Value::Int(2000), Value::Int(100)],
            ))
            .await
        }
        w if w.starts_with("call100-") => {
            // 100 caller processes, spawned from outside so they spread over both workers
            let pool = &w["call100-".len()..];
            let per = 2000;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let t0 = Instant::now();
            for _ in 0..100 {
                let tx = tx.clone();
                let opts = warden::process::SpawnOptions {
                    on_exit: Some(Box::new(move |_, e| {
                        let _ = tx.send(e.is_abnormal());
                    })),
                    ..Default::default()
                };
                rt.spawn(
                    &Id::new("bench", "call_loop"),
                    Some(&Id::new("bench", "host")),
                    vec![Value::str(format!("bench:noop{pool}")), Value::Int(per)],
                    opts,
                )
                .unwrap();
            }
            for _ in 0..100 {
                assert!(!rx.recv().await.unwrap(), "a caller failed");
            }
            let secs = t0.elapsed().as_secs_f64();
            serde_json::json!({ "calls_per_s": 100.0 * per as f64 / secs })
        }
        other => panic!("unknown measurement {other}"),
    };
    println!("{out}");
    rt.shutdown().await;
}

fn run_child(which: &str) -> serde_json::Value {
    run_child_env(which, &[])
}

fn run_child_env(which: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .envs(env.iter().copied())
        .env("WARDEN_BENCH_CHILD", which)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap()
}

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

fn erlang() -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let anchors = format!("{}/../shared/anchors", env!("CARGO_MANIFEST_DIR"));
    for f in ["otp_bench.erl", "otp_bench_sup.erl"] {
        std::fs::copy(format!("{anchors}/{f}"), dir.path().join(f)).ok()?;
    }
    let ok = Command::new("erlc")
        .current_dir(dir.path())
        .args(["otp_bench.erl", "otp_bench_sup.erl"])
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let out = Command::new("erl")
        .current_dir(dir.path())
        .args(["-noshell", "-s", "otp_bench", "main", "-s", "init", "stop"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn erlang_figure(text: &str, prefix: &str, before: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let i = line.find(before)?;
    line[..i]
        .rsplit([' ', ','])
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

fn main() {
    warden::alloc::no_huge_pages();
    if let Ok(which) = std::env::var("WARDEN_BENCH_CHILD") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(child(&which));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("warden core benchmarks ({RUNS} runs each, each in a fresh process)");
    let erl = erlang();
    let spawns: Vec<serde_json::Value> = (0..RUNS).map(|_| run_child("spawn")).collect();
    let rings: Vec<f64> = (0..RUNS)
        .map(|_| run_child("ring")["msgs_per_s"].as_f64().unwrap())
        .collect();
    let rts: Vec<serde_json::Value> = (0..RUNS).map(|_| run_child("roundtrip")).collect();
    let call1: Vec<serde_json::Value> = (0..RUNS).map(|_| run_child("call1")).collect();
    let call100: Vec<(usize, Stats)> = [1, 2, 4]
        .into_iter()
        .map(|size| {
            let runs = (0..RUNS)
                .map(|_| {
                    run_child(&format!("call100-{size}"))["calls_per_s"]
                        .as_f64()
                        .unwrap()
                })
                .collect();
            (size, stats(runs))
        })
        .collect();

    let spawn_us = stats(
        spawns
            .iter()
            .map(|s| s["spawn_us"].as_f64().unwrap())
            .collect(),
    );
    let start_us = stats(
        spawns
            .iter()
            .map(|s| s["spawn_start_us"].as_f64().unwrap())
            .collect(),
    );
    let mem = stats(
        spawns
            .iter()
            .map(|s| s["bytes_per_process"].as_f64().unwrap())
            .collect(),
    );
    let mem_lua_median = mem.median;
    let ring = stats(rings);
    let rt_med = stats(rts.iter().map(|r| r["median"].as_f64().unwrap()).collect());
    let rt_p90 = stats(rts.iter().map(|r| r["p90"].as_f64().unwrap()).collect());

    let e = erl.as_deref().unwrap_or("");
    let e_spawn = erlang_figure(e, "spawn:", " us/spawn");
    let e_mem = erlang_figure(e, "spawn:", " bytes/proc");
    let e_ring = erlang_figure(e, "ring:", " msgs/s");
    let e_rt = erlang_figure(e, "call round trip:", " ns over").map(|ns| ns / 1000.0);
    let fmt = |v: Option<f64>, unit: &str| match v {
        Some(v) => format!("{v:.2} {unit}"),
        None => "n/a (erl not installed)".into(),
    };
    let ratio = |w: f64, e: Option<f64>| match e {
        Some(e) if e > 0.0 => format!("{:.2}x", w / e),
        _ => "-".into(),
    };
    println!();
    println!("| workload | warden median (min-max) | Erlang/OTP same run | warden / Erlang |");
    println!("|---|---|---|---|");
    println!(
        "| spawn an idle Lua process (100k), spawn call | {:.2} us ({:.2}-{:.2}) | {} | {} |",
        spawn_us.median,
        spawn_us.min,
        spawn_us.max,
        fmt(e_spawn, "us"),
        ratio(spawn_us.median, e_spawn)
    );
    println!(
        "| spawn + first run of each process (100k) | {:.2} us ({:.2}-{:.2}) | - | - |",
        start_us.median, start_us.min, start_us.max
    );
    println!(
        "| memory per idle process (RSS growth, 100k) | {:.0} B ({:.0}-{:.0}) | {} | {} |",
        mem.median,
        mem.min,
        mem.max,
        fmt(e_mem, "B"),
        ratio(mem.median, e_mem)
    );
    let lua_heap = stats(
        spawns
            .iter()
            .map(|s| s["lua_heap_per_process"].as_f64().unwrap_or(0.0))
            .collect(),
    );
    println!(
        "| of which in the workers' Lua heaps | {:.0} B ({:.0}-{:.0}) | - | - |",
        lua_heap.median, lua_heap.min, lua_heap.max
    );
    println!(
        "| ring 1000 processes x 1000 rounds | {:.2} M msgs/s ({:.2}-{:.2}) | {} | {} |",
        ring.median / 1e6,
        ring.min / 1e6,
        ring.max / 1e6,
        e_ring
            .map(|r| format!("{:.2} M msgs/s", r / 1e6))
            .unwrap_or_else(|| "n/a".into()),
        e_ring
            .map(|r| format!("{:.2}x", ring.median / r))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "| send + reply round trip (median of 2000 batches of 100) | {:.2} us ({:.2}-{:.2}); p90 {:.2} us | {} | {} |",
        rt_med.median, rt_med.min, rt_med.max, rt_p90.median, fmt(e_rt, "us"), ratio(rt_med.median, e_rt)
    );
    // warden's spawn and raw wasmtime's, alternated so that each round shares the
    // machine's state (this machine's speed drifts by 2x between days)
    let (mut wspawn, mut raw_warden, mut raw_default) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        wspawn.push(run_child("wspawn"));
        raw_warden.push(run_child("wraw-warden"));
        raw_default.push(run_child("wraw-wasmtime"));
    }
    let wspawn_pool: Vec<serde_json::Value> = (0..RUNS)
        .map(|_| run_child_env("wspawn", &[("WARDEN_WASM_POOLING", "12000")]))
        .collect();
    // what turning transparent huge pages off (warden::alloc::no_huge_pages) changes
    let wspawn_thp: Vec<serde_json::Value> = (0..RUNS)
        .map(|_| run_child_env("wspawn", &[("WARDEN_HUGE_PAGES", "1")]))
        .collect();
    let wrt: Vec<serde_json::Value> = (0..RUNS).map(|_| run_child("wroundtrip")).collect();
    let col = |runs: &[serde_json::Value], key: &str| {
        stats(runs.iter().map(|r| r[key].as_f64().unwrap()).collect())
    };
    println!();
    println!("| WebAssembly processes (10,000 echo guests idle in receive) | warden median (min-max) | Lua, same run | goal |");
    println!("|---|---|---|---|");
    for (label, runs) in [
        ("on-demand allocator", &wspawn),
        ("pooling allocator (12,000 slots)", &wspawn_pool),
        ("on-demand, huge pages left on", &wspawn_thp),
    ] {
        let sp = col(runs, "spawn_us");
        let st = col(runs, "spawn_start_us");
        let mem = col(runs, "bytes_per_process");
        println!(
            "| spawn, {label} | {:.2} us ({:.2}-{:.2}); with first run {:.2} us | {:.2} us | <= 20 us |",
            sp.median, sp.min, sp.max, st.median, spawn_us.median
        );
        println!(
            "| memory per idle process, {label} | {:.0} B ({:.0}-{:.0}) | {:.0} B | reported |",
            mem.median, mem.min, mem.max, mem_lua_median
        );
    }
    for (label, runs) in [
        ("raw wasmtime, warden's engine settings", &raw_warden),
        ("raw wasmtime, its default configuration", &raw_default),
    ] {
        let sp = col(runs, "spawn_us");
        let mem = col(runs, "bytes_per_process");
        let ratios: Vec<f64> = wspawn
            .iter()
            .zip(runs.iter())
            .map(|(w, r)| w["spawn_start_us"].as_f64().unwrap() / r["spawn_us"].as_f64().unwrap())
            .collect();
        let ratio = stats(ratios);
        println!(
            "| spawn and run to receive, {label} (the floor: no runtime, same guest) | {:.2} us ({:.2}-{:.2}); warden / this, per round: {:.2}x ({:.2}-{:.2}) | | |",
            sp.median, sp.min, sp.max, ratio.median, ratio.min, ratio.max
        );
        println!(
            "| memory per idle guest, {label} | {:.0} B ({:.0}-{:.0}) | | |",
            mem.median, mem.min, mem.max
        );
    }
    let w = col(&wrt, "median");
    let w90 = col(&wrt, "p90");
    println!(
        "| round trip Lua -> WASM echo process -> Lua (median of 2000 batches of 100) | {:.2} us ({:.2}-{:.2}); p90 {:.2} us | {:.2} us (Lua echo) | <= 10 us |",
        w.median, w.min, w.max, w90.median, rt_med.median
    );
    let restart: Vec<serde_json::Value> = (0..RUNS).map(|_| run_child("restart")).collect();
    let restart_all: Vec<serde_json::Value> = (0..RUNS).map(|_| run_child("restart_all")).collect();
    let r_med = stats(
        restart
            .iter()
            .map(|r| r["median"].as_f64().unwrap())
            .collect(),
    );
    let r_p90 = stats(restart.iter().map(|r| r["p90"].as_f64().unwrap()).collect());
    let ra = stats(
        restart_all
            .iter()
            .map(|r| r["median"].as_f64().unwrap())
            .collect(),
    );
    let e_restart = erlang_figure(e, "restart:", " ns crash").map(|ns| ns / 1000.0);
    println!();
    println!("| supervision | warden median (min-max) | Erlang/OTP same run | warden / Erlang |");
    println!("|---|---|---|---|");
    println!(
        "| crash of a permanent one_for_one child -> replacement running and received from (1000 crashes) | {:.1} us ({:.1}-{:.1}); p90 {:.1} us | {} | {} |",
        r_med.median, r_med.min, r_med.max, r_p90.median, fmt(e_restart, "us"), ratio(r_med.median, e_restart)
    );
    println!(
        "| one_for_all restart of 100 children (crash -> all 100 replaced, 50 rounds) | {:.2} ms ({:.2}-{:.2}) | - | - |",
        ra.median, ra.min, ra.max
    );
    let c1 = stats(
        call1
            .iter()
            .map(|r| r["median"].as_f64().unwrap())
            .collect(),
    );
    let c1_90 = stats(call1.iter().map(|r| r["p90"].as_f64().unwrap()).collect());
    println!();
    println!("| funcs.call to a trivial function.lua | warden median (min-max) | Erlang/OTP request/response, same run | warden / Erlang |");
    println!("|---|---|---|---|");
    println!(
        "| round trip from 1 caller, static pool of 2 (median of 2000 batches of 100) | {:.2} us ({:.2}-{:.2}); p90 {:.2} us | {} | {} |",
        c1.median, c1.min, c1.max, c1_90.median, fmt(e_rt, "us"), ratio(c1.median, e_rt)
    );
    for (size, s) in &call100 {
        println!(
            "| 100 caller processes x 2000 calls, static pool of {size} | {:.0} k calls/s ({:.0}-{:.0}) | - | - |",
            s.median / 1e3,
            s.min / 1e3,
            s.max / 1e3
        );
    }
    if let Some(e) = erl {
        println!("\nErlang/OTP output:\n{e}");
    }
}
