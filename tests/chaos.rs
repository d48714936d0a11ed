//! Chaos: a three-level supervision tree of Lua and WebAssembly workers under a steady
//! load of function calls and messages, while a chaos process kills random workers and
//! random nested supervisors every few milliseconds. At the end every permanent service
//! runs, every call returned within its timeout, the restarts match the kills, and memory
//! did not grow.
//!
//! Runs 12 s in `cargo test` (the behaviour: restarts match kills, calls end, memory
//! stays); the soak is the same test for longer: `WARDEN_CHAOS_SECS=600 cargo test
//! --release --test chaos`.

mod common;

use common::ExecWithin;

use common::App;
use std::time::{Duration, Instant};
use warden::process::{Exit, SpawnOptions};
use warden::registry::Id;
use warden::value::Value;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

const LUA_WORKER: &str = r#"
return { main = function(name)
  process.registry.register(name)
  local inbox, events = process.inbox(), process.events()
  while true do
    local r = channel.select({ inbox:case_receive(), events:case_receive() })
    if r.channel == events then return "canceled" end
    local m = r.value
    process.send(m:from(), "pong", m:payload():data())
  end
end }
"#;

/// Calls functions and pings workers until told to stop; every wait has a timeout.
const LOADGEN: &str = r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local exec = funcs.new():with_options({ timeout = 1000 })
  local lat, ok, failed, worst = {}, 0, 0, 0
  local stop = process.listen("stop")
  local i = 0
  while true do
    local s = channel.select({ stop:case_receive(), default = true })
    if not s.default then break end
    i = i + 1
    local t0 = time.now()
    local r, err
    if i % 3 == 0 then
      r, err = exec:call("app:lua_fn", i)
    elseif i % 3 == 1 then
      r, err = exec:call("app:wat_fn", i, 1)
    else
      local sent = process.send("w" .. (i % 3 + 1), "ping", i)
      if sent then
        local got = channel.select({ process.inbox():case_receive(), time.after(200 * time.MILLISECOND):case_receive() })
        r = got.value and got.value.payload and got.value:payload():data()
      end
    end
    local ms = (time.now():sub(t0):seconds() * 1000)
    if ms > worst then worst = ms end
    if r ~= nil then ok = ok + 1 else failed = failed + 1 end
    -- the last 20,000 latencies (a fixed ring: the load generator must not grow)
    lat[(i - 1) % 20000 + 1] = ms
    if i % 50 == 0 then time.sleep(1 * time.MILLISECOND) end
  end
  table.sort(lat)
  return { ok = ok, failed = failed, worst_ms = worst,
           p50 = lat[math.max(1, #lat // 2)], p99 = lat[math.max(1, #lat * 99 // 100)] }
end }
"#;

/// Every few milliseconds kills a random worker of a random subtree (waiting for its exit,
/// so the tree hears of it before anything else happens), and one time in 25 a whole
/// nested supervisor, for `secs` seconds. Returns the kills of each kind.
const CHAOS: &str = r#"
local supervisor = require("supervisor")
local time = require("time")
return { main = function(secs)
  local trees = { "app:lua_tree", "app:wasm_tree", "app:top" }
  local subtrees = { "app:lua_tree", "app:wasm_tree" }
  local events = process.events()
  local killed, workers, sups = {}, 0, 0
  local t0 = time.now()
  while (time.now():sub(t0):seconds() * 1000) < secs * 1000 do
    if math.random(25) == 1 then
      if supervisor.kill(subtrees[math.random(#subtrees)]) then sups = sups + 1 end
    else
      local children = supervisor.children(trees[math.random(#trees)])
      local c = children and children[math.random(#children)]
      if c and c.kind == "process" and c.pid and not killed[c.pid] then
        process.monitor(c.pid)
        if process.terminate(c.pid) then
          killed[c.pid] = true
          workers = workers + 1
        end
        -- the EXIT event comes after the tree's own exit callback
        channel.select({ events:case_receive(), time.after(1000 * time.MILLISECOND):case_receive() })
      end
    end
    time.sleep(math.random(2, 8) * time.MILLISECOND)
  end
  return { workers = workers, supervisors = sups }
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_under_load_survives_random_kills() {
    let secs: u64 = std::env::var("WARDEN_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let echo = include_str!("guests/echo.wat")
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect::<String>();
    let app = App::new()
        .lua("worker", LUA_WORKER)
        .lua("loadgen", LOADGEN)
        .lua("chaos", CHAOS)
        .func("lua_fn", "return { main = function(x) return x + 1 end }", Some("{type: static, size: 4}"))
        .entry(
            "  - name: wat_fn\n    kind: function.wat\n    source: \"(module (func (export \\\"add\\\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))\"\n    wit: \"add: func(a: s32, b: s32) -> s32;\"\n    method: add\n    pool: {type: static, size: 4}\n",
        )
        .entry(&format!(
            "  - name: wasm_worker\n    kind: process.wasm\n    method: run\n    imports: [warden:process]\n    source: |\n{echo}    wit: \"import warden:host/process@0.1.0; run: func(count: u32) -> u32;\"\n"
        ))
        .entry("  - name: lua_tree\n    kind: supervisor\n    strategy: one_for_one\n    intensity: {max_restarts: 1000000, period: 1s}\n    children: [{id: w1, process: worker, args: [w1]}, {id: w2, process: worker, args: [w2]}, {id: w3, process: worker, args: [w3]}]\n")
        .entry("  - name: wasm_tree\n    kind: supervisor\n    strategy: one_for_one\n    intensity: {max_restarts: 1000000, period: 1s}\n    children: [{id: x1, process: wasm_worker, args: [1000000000]}, {id: x2, process: wasm_worker, args: [1000000000]}]\n")
        .entry("  - name: top\n    kind: supervisor\n    strategy: one_for_one\n    intensity: {max_restarts: 1000000, period: 1s}\n    children: [{id: lua, supervisor: lua_tree}, {id: wasm, supervisor: wasm_tree}, {id: solo, process: worker, args: [solo]}]\n")
        .entry("  - name: svc\n    kind: process.service\n    process: top\n    host: host\n    lifecycle: {auto_start: true}\n");
    let rt = app.start().await;
    let node = rt.node().clone();
    let sup = rt.supervision().clone();
    assert_eq!(
        sup.status(&Id::new("app", "svc")).unwrap().state.name(),
        "Running"
    );

    let (load_tx, load_rx) = tokio::sync::oneshot::channel();
    let loadgen = rt
        .spawn(
            &Id::new("app", "loadgen"),
            None,
            vec![],
            SpawnOptions {
                on_exit: Some(Box::new(move |_, e| {
                    let _ = load_tx.send((**e).clone());
                })),
                ..Default::default()
            },
        )
        .unwrap();
    // warm up, then the memory baseline
    tokio::time::sleep(Duration::from_secs(secs / 6 + 1)).await;
    let rss_warm = rss_bytes();
    let started = Instant::now();
    let (worker_kills, sup_kills) = match rt
        .exec_within(
            &Id::new("app", "chaos"),
            vec![Value::Int(secs as i64 * 2 / 3)],
        )
        .await
        .unwrap()
    {
        Exit::Normal(v) => {
            let j = warden::value::to_json(&v).unwrap();
            (
                j["workers"].as_u64().unwrap(),
                j["supervisors"].as_u64().unwrap(),
            )
        }
        other => panic!("chaos failed: {other:?}"),
    };
    let kills = worker_kills + sup_kills;
    node.send(None, &loadgen, "stop", vec![Value::Bool(true)])
        .unwrap();
    let load = match tokio::time::timeout(Duration::from_secs(30), load_rx)
        .await
        .expect("the load generator did not stop: a call was left waiting")
        .unwrap()
    {
        Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
        other => panic!("the load generator failed: {other:?}"),
    };

    // every restart lands: each killed worker and each killed supervisor was restarted
    // once by its parent tree, and every child runs again
    let deadline = Instant::now() + Duration::from_secs(20);
    let restarts = loop {
        let mut all_running = true;
        for tree in ["top", "lua_tree", "wasm_tree"] {
            match sup.children(&Id::new("app", tree)).await {
                Ok(children) => all_running &= children.iter().all(|c| c.running),
                Err(_) => all_running = false,
            }
        }
        let total = sup.restarts_total();
        if (total >= kills && all_running) || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rss_end = rss_bytes();
    println!(
        "chaos: {secs} s, {kills} kills ({worker_kills} workers, {sup_kills} supervisors), {restarts} restarts, calls ok {} / failed {}, p50 {:.1} us, p99 {:.1} us, worst {:.1} ms, RSS after warm-up {:.1} MB, at the end {:.1} MB ({:.0} s of chaos)",
        load["ok"],
        load["failed"],
        load["p50"].as_f64().unwrap_or(0.0) * 1000.0,
        load["p99"].as_f64().unwrap_or(0.0) * 1000.0,
        load["worst_ms"].as_f64().unwrap_or(0.0),
        rss_warm as f64 / 1e6,
        rss_end as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    assert!(
        worker_kills > 100,
        "the chaos process killed too few workers: {worker_kills}"
    );
    assert!(
        sup_kills > 3,
        "the chaos process killed too few supervisors: {sup_kills}"
    );
    assert_eq!(
        restarts, kills,
        "every kill of a permanent worker or supervisor is one restart"
    );
    assert_eq!(
        sup.status(&Id::new("app", "svc")).unwrap().state.name(),
        "Running"
    );
    assert!(load["ok"].as_u64().unwrap() > 1000, "{load}");
    // every call or ping had a 1000 ms (call) or 200 ms (ping) timeout: none waited much
    // longer (a timer that fires late on a busy machine gets seconds)
    assert!(load["worst_ms"].as_f64().unwrap() < 3000.0, "{load}");
    assert!(
        (rss_end as f64) < rss_warm as f64 * 1.10 + 8e6,
        "memory grew: {rss_warm} -> {rss_end}"
    );
    rt.shutdown().await;
}
