//! The floor under warden's message path: the runtime bench's workloads (spawn, memory per
//! idle process, ring, round trip, a function call) on bare tokio + mlua, no warden.
//!
//! Run: `cargo bench --bench floor` (each workload in a fresh child process, 5 runs,
//! median and range). It is the least any runtime built as warden is (one Lua state per
//! worker thread, a process = a Lua coroutine driven by a tokio task on a `LocalSet`,
//! messages copied out of Lua into Rust values and back) must spend, with nothing of what
//! warden adds: no pids as text, no registry, no links or monitors, no preemption, no
//! supervision, no message objects (`receive` returns the message's parts as values),
//! no error handling beyond a panic. BENCHMARKS.md compares warden with it.
//!
//! A process here is `spawn(name, ...)`: a new coroutine of the global function `name`,
//! with its own globals table (reading through to the shared ones, as a warden process
//! has), driven by a `spawn_local` task. `send(pid, topic, a, b)` copies its arguments into
//! a Rust message, pushes it to the pid's mailbox and wakes the task if it waits;
//! `receive()` returns `from, topic, a, b` or yields `Lua::poll_pending()` (the task
//! suspends until a send wakes it). `call(name, x)` copies `x` out and back, calls the
//! global function `name` and copies its result the same way: a function call's floor.

use mlua::{Function, Lua, MultiValue, Value as LuaValue};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::process::Command;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;
use warden::alloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const RUNS: usize = 5;

/// A value as it crosses between processes (the workloads send numbers and pids).
#[derive(Clone, Copy)]
enum Val {
    Nil,
    Int(i64),
    Num(f64),
    Bool(bool),
}

impl Val {
    fn of(v: &LuaValue) -> Val {
        match v {
            LuaValue::Integer(i) => Val::Int(*i),
            LuaValue::Number(n) => Val::Num(*n),
            LuaValue::Boolean(b) => Val::Bool(*b),
            _ => Val::Nil,
        }
    }

    fn lua(self) -> LuaValue {
        match self {
            Val::Nil => LuaValue::Nil,
            Val::Int(i) => LuaValue::Integer(i),
            Val::Num(n) => LuaValue::Number(n),
            Val::Bool(b) => LuaValue::Boolean(b),
        }
    }
}

struct Msg {
    from: i64,
    topic: String,
    a: Val,
    b: Val,
}

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<Msg>,
    waker: Option<Waker>,
    /// It has waited for a message once (it started).
    waited: bool,
}

thread_local! {
    /// Mailboxes by pid (a pid is an index; ended processes leave `None`).
    static PROCS: RefCell<Vec<Option<Rc<RefCell<Mailbox>>>>> = const { RefCell::new(Vec::new()) };
    /// Processes that have waited for a message at least once.
    static STARTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The pid whose task polls now.
    static CURRENT: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn mailbox(pid: i64) -> Option<Rc<RefCell<Mailbox>>> {
    PROCS.with(|p| p.borrow().get(pid as usize).cloned().flatten())
}

/// Starts a process: a coroutine of `f` with `args`, driven by a local task.
fn spawn(lua: &Lua, f: Function, args: MultiValue) -> mlua::Result<i64> {
    let env = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.set("__index", lua.globals())?;
    env.set_metatable(Some(meta))?;
    let thread = lua.create_thread(f)?;
    let pid = PROCS.with(|p| {
        let mut p = p.borrow_mut();
        p.push(Some(Rc::new(RefCell::new(Mailbox::default()))));
        (p.len() - 1) as i64
    });
    let fut = thread.into_async::<()>(args)?;
    tokio::task::spawn_local(async move {
        // the process's globals live as long as it does, as in warden
        let _env = env;
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            let prev = CURRENT.with(|c| c.replace(pid));
            let r = fut.as_mut().poll(cx);
            CURRENT.with(|c| c.set(prev));
            r
        })
        .await
        .expect("process failed");
        PROCS.with(|p| p.borrow_mut()[pid as usize] = None);
    });
    Ok(pid)
}

const SCRIPT: &str = r#"
-- as warden's workers (../shared/design.md: the generational collector for messages)
collectgarbage("generational")
local send, try_recv, spawn, self_pid, now, call = send, try_recv, spawn, self_pid, now, call
local yield, pending = coroutine.yield, PENDING

local function receive()
  while true do
    local from, topic, a, b = try_recv()
    if from then return from, topic, a, b end
    yield(pending)
  end
end

function idle() receive() end

function spawner(n)
  local t0 = now()
  for _ = 1, n do spawn("idle") end
  return (now() - t0) * 1e6 / n
end

function ring_node()
  local _, _, next_pid = receive()
  while true do
    local _, _, k, from = receive()
    if k == 0 then
      send(from, "done", true)
    else
      send(next_pid, "t", k - 1, from)
    end
  end
end

function ring(n, m)
  local pids = {}
  for i = 1, n do pids[i] = spawn("ring_node") end
  for i = 1, n do send(pids[i], "next", pids[i % n + 1]) end
  local t0 = now()
  send(pids[1], "t", n * m, self_pid())
  receive()
  return n * m / (now() - t0)
end

function echo()
  while true do
    local from, _, a = receive()
    send(from, "r", a)
  end
end

function roundtrip(batches, per)
  local e = spawn("echo")
  local me = self_pid()
  local samples = {}
  for b = 1, batches do
    local t0 = now()
    for i = 1, per do
      send(e, "q", i)
      receive()
    end
    samples[b] = (now() - t0) * 1e6 / per
  end
  table.sort(samples)
  return samples[batches // 2]
end

function noop(x) return x end

function call_latency(batches, per)
  for i = 1, 1000 do call("noop", i) end
  local samples = {}
  for b = 1, batches do
    local t0 = now()
    for i = 1, per do call("noop", i) end
    samples[b] = (now() - t0) * 1e6 / per
  end
  table.sort(samples)
  return samples[batches // 2]
end
"#;

fn install(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    g.set(
        "send",
        lua.create_function(
            |_, (pid, topic, a, b): (i64, mlua::String, LuaValue, LuaValue)| {
                let Some(mb) = mailbox(pid) else {
                    return Ok(false);
                };
                let mut mb = mb.borrow_mut();
                mb.queue.push_back(Msg {
                    from: CURRENT.with(|c| c.get()),
                    topic: topic.to_str()?.to_string(),
                    a: Val::of(&a),
                    b: Val::of(&b),
                });
                if let Some(w) = mb.waker.take() {
                    w.wake();
                }
                Ok(true)
            },
        )?,
    )?;
    g.set(
        "try_recv",
        lua.create_function(|lua, ()| {
            let pid = CURRENT.with(|c| c.get());
            let mb = mailbox(pid).expect("a live process");
            let mut mb = mb.borrow_mut();
            match mb.queue.pop_front() {
                Some(m) => Ok(MultiValue::from_vec(vec![
                    LuaValue::Integer(m.from),
                    LuaValue::String(lua.create_string(&m.topic)?),
                    m.a.lua(),
                    m.b.lua(),
                ])),
                None => {
                    if !mb.waited {
                        mb.waited = true;
                        STARTED.with(|s| s.set(s.get() + 1));
                    }
                    lua.with_current_waker(|w| mb.waker = Some(w.clone()));
                    Ok(MultiValue::new())
                }
            }
        })?,
    )?;
    g.set(
        "spawn",
        lua.create_function(|lua, (name, args): (String, MultiValue)| {
            let f: Function = lua.globals().get(name)?;
            spawn(lua, f, args)
        })?,
    )?;
    g.set(
        "self_pid",
        lua.create_function(|_, ()| Ok(CURRENT.with(|c| c.get())))?,
    )?;
    let t0 = Instant::now();
    g.set(
        "now",
        lua.create_function(move |_, ()| Ok(t0.elapsed().as_secs_f64()))?,
    )?;
    g.set(
        "call",
        lua.create_function(|lua, (name, x): (mlua::String, LuaValue)| {
            let f: Function = lua.globals().get(name)?;
            let arg = Val::of(&x);
            let out: LuaValue = f.call(arg.lua())?;
            Ok(Val::of(&out).lua())
        })?,
    )?;
    g.set("PENDING", Lua::poll_pending())?;
    lua.load(SCRIPT).set_name("floor").exec()?;
    Ok(())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Runs the global function `name` as a process and returns what it returned.
async fn run(lua: &Lua, name: &str, args: Vec<LuaValue>) -> f64 {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = RefCell::new(Some(tx));
    let f: Function = lua.globals().get(name).unwrap();
    let wrapper = lua
        .create_function(move |_, v: f64| {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(v);
            }
            Ok(())
        })
        .unwrap();
    let body: Function = lua
        .load("local f, out = ... ; return function(...) out(f(...)) end")
        .call((f, wrapper))
        .unwrap();
    spawn(lua, body, MultiValue::from_vec(args)).unwrap();
    rx.await.unwrap()
}

fn child(which: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let lua = Lua::new();
    install(&lua).unwrap();
    let out = local.block_on(&rt, async {
        match which {
            "spawn" => {
                let n = 100_000;
                run(&lua, "spawner", vec![LuaValue::Integer(10)]).await;
                tokio::task::yield_now().await;
                let before = rss_bytes();
                let heap0 = lua.used_memory();
                let started0 = STARTED.with(|s| s.get());
                let t0 = Instant::now();
                let us = run(&lua, "spawner", vec![LuaValue::Integer(n)]).await;
                // until every new process waits in its receive
                while STARTED.with(|s| s.get()) < started0 + n as usize {
                    tokio::task::yield_now().await;
                }
                let started = t0.elapsed();
                let after = rss_bytes();
                serde_json::json!({
                    "spawn_us": us,
                    "spawn_start_us": started.as_secs_f64() * 1e6 / n as f64,
                    "bytes_per_process": after.saturating_sub(before) as f64 / n as f64,
                    "lua_heap_per_process": (lua.used_memory() - heap0) as f64 / n as f64,
                })
            }
            "ring" => {
                let v = run(
                    &lua,
                    "ring",
                    vec![LuaValue::Integer(1000), LuaValue::Integer(1000)],
                )
                .await;
                serde_json::json!({ "msgs_per_s": v })
            }
            "roundtrip" => {
                let v = run(
                    &lua,
                    "roundtrip",
                    vec![LuaValue::Integer(2000), LuaValue::Integer(100)],
                )
                .await;
                serde_json::json!({ "median": v })
            }
            "call1" => {
                let v = run(
                    &lua,
                    "call_latency",
                    vec![LuaValue::Integer(2000), LuaValue::Integer(100)],
                )
                .await;
                serde_json::json!({ "median": v })
            }
            other => panic!("unknown workload {other}"),
        }
    });
    println!("{out}");
}

fn run_child(which: &str) -> serde_json::Value {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--child", which])
        .output()
        .expect("run a child");
    assert!(
        out.status.success(),
        "child {which} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!("{:.3} ({:.3}-{:.3})", v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1]);
        return;
    }
    let runs = std::env::var("FLOOR_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RUNS);
    println!("floor: bare tokio (one thread, LocalSet) + mlua, {runs} runs each; median (min-max)");
    let pick = |which: &str, key: &str| -> Vec<f64> {
        (0..runs)
            .map(|_| run_child(which)[key].as_f64().unwrap())
            .collect()
    };
    let spawns: Vec<serde_json::Value> = (0..runs).map(|_| run_child("spawn")).collect();
    let field = |k: &str| spawns.iter().map(|v| v[k].as_f64().unwrap()).collect();
    println!(
        "spawn an idle process (100k): {} us in the spawn calls, {} us until all wait",
        summary(field("spawn_us")),
        summary(field("spawn_start_us"))
    );
    println!(
        "memory per idle process: {} B, of which Lua heap {} B",
        summary(field("bytes_per_process")),
        summary(field("lua_heap_per_process"))
    );
    let ring = pick("ring", "msgs_per_s");
    println!(
        "ring 1000 x 1000: {} M msgs/s",
        summary(ring.iter().map(|v| v / 1e6).collect())
    );
    println!(
        "send + reply round trip: {} us",
        summary(pick("roundtrip", "median"))
    );
    println!(
        "function call round trip: {} us",
        summary(pick("call1", "median"))
    );
}
