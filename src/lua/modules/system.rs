//! The `system` module (en/lua/system/system.md): what a process can learn about the
//! runtime it runs on, in Wippy's names, mapped onto warden. Go's runtime figures have
//! warden's nearest (a goroutine is a live tokio task, GOMAXPROCS the worker threads of
//! the runtime); what has no counterpart here (a memory limit, the collector's percent,
//! Raft) is `nil, err` naming why. Every call returns `value, err`.
//!
//! - `exit(code)`: stops `warden run` with that exit code.
//! - `modules()`: the Lua modules warden has, `{name, description, class}`.
//! - `memory.stats()`, `memory.allocated()`; `gc.collect()` (this worker's Lua heap).
//! - `runtime.goroutines()` (live processes and tasks), `runtime.max_procs()`,
//!   `runtime.cpu_count()`.
//! - `process.pid()`, `process.hostname()`, `process.cwd()`.
//! - `hosts.list()`, `hosts.processes(host)`; `supervisor.state(id)`, `supervisor.states()`.
//! - `node.id()`, `node.role()`; `cluster.members()` (tables, this node first),
//!   `cluster.leader()`, `cluster.size()`; warden's older `cluster.node()` and
//!   `cluster.is_member(name)`.

use crate::lua::current_or;
use crate::lua::errors::LuaError;
use crate::process::Node;
use mlua::{IntoLua, Lua, MultiValue, Table};
use std::sync::{Arc, Mutex};

fn node() -> mlua::Result<Arc<Node>> {
    Ok(current_or("system")?.node().clone())
}

fn members(node: &Node) -> Vec<String> {
    node.members()
}

/// A request to stop the runtime with an exit code (`system.exit`), which `warden run`
/// waits for beside its other reasons to stop.
#[derive(Default)]
pub struct ExitRequest {
    code: Mutex<Option<i32>>,
    notify: tokio::sync::Notify,
}

impl ExitRequest {
    /// Asks the runtime to stop with `code` (the first request wins).
    pub fn request(&self, code: i32) {
        let mut c = self.code.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            *c = Some(code);
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Waits for a request; its code.
    pub async fn wait(&self) -> i32 {
        loop {
            let notified = self.notify.notified();
            if let Some(c) = *self.code.lock().unwrap_or_else(|e| e.into_inner()) {
                return c;
            }
            notified.await;
        }
    }
}

/// `v, nil`.
fn ok<T: IntoLua>(lua: &Lua, v: T) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        v.into_lua(lua)?,
        mlua::Value::Nil,
    ]))
}

/// `nil, err` of `kind`.
fn fail(lua: &Lua, kind: &'static str, msg: impl Into<String>) -> mlua::Result<MultiValue> {
    LuaError::new(kind, msg).into_nil_err(lua)
}

/// A call with no counterpart in warden: `nil, err` (INTERNAL, as the runtime reports
/// what it cannot reach) saying so.
fn not_here(lua: &Lua, what: &str, why: &str) -> mlua::Result<MultiValue> {
    fail(
        lua,
        "INTERNAL",
        format!("system.{what}: not available on warden ({why})"),
    )
}

/// The Lua modules warden has, with a line on each and Wippy's classes.
const MODULES: &[(&str, &str, &[&str])] = &[
    (
        "channel",
        "Channels between coroutines and processes",
        &["process"],
    ),
    ("ctx", "Values of the calling context", &["function"]),
    ("env", "Declared environment variables", &["system"]),
    ("errors", "Structured errors", &["core"]),
    ("events", "The event bus", &["process"]),
    ("funcs", "Calls of function entries", &["function"]),
    (
        "io",
        "Standard input and output of the runtime",
        &["system"],
    ),
    (
        "json",
        "JSON encoding, decoding and schema validation",
        &["encoding"],
    ),
    ("logger", "Structured logging", &["core"]),
    ("payload", "Payloads and format conversion", &["encoding"]),
    ("pg", "Process groups", &["process"]),
    (
        "process",
        "Processes: spawn, send, receive, monitor, link",
        &["process"],
    ),
    (
        "registry",
        "The entry registry, its versions and changes",
        &["system"],
    ),
    ("security", "Actors and scopes", &["security"]),
    ("supervisor", "Services and supervision trees", &["system"]),
    ("system", "Runtime information", &["system"]),
    ("test", "The test framework", &["test"]),
    ("time", "Time, durations, zones and timers", &["time"]),
    ("uuid", "UUIDs", &["security"]),
];

/// Nanoseconds since the Unix epoch of an instant of this process.
fn unix_nanos(at: std::time::Instant) -> i64 {
    let ago = at.elapsed();
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

fn hostname() -> std::io::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(name.trim().to_string())
}

/// The resident memory of the runtime's process, in bytes (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn service_table(
    lua: &Lua,
    id: &str,
    s: &crate::supervision::ServiceStatus,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("id", id)?;
    t.set("status", s.state.name().to_ascii_lowercase())?;
    t.set("retry_count", s.attempt)?;
    if let Some(e) = &s.last_error {
        t.set("details", e.as_str())?;
    }
    Ok(t)
}

/// The permission a call of `table.func` asks for (en/lua/system/system.md,
/// "Permissions"): the action and the resource.
fn permission(table: &str, func: &str, args: &MultiValue) -> (&'static str, String) {
    let first = || match args.iter().next() {
        Some(mlua::Value::String(s)) => s.to_string_lossy(),
        _ => String::new(),
    };
    let (action, resource): (&'static str, &str) = match (table, func) {
        ("", "exit") => ("system.exit", ""),
        ("", _) => ("system.read", "modules"),
        ("memory", "get_limit") => ("system.read", "memory_limit"),
        ("memory", "set_limit") => ("system.control", "memory_limit"),
        ("memory", _) => ("system.read", "memory"),
        ("gc", "collect") => ("system.gc", "gc"),
        ("gc", "set_percent") => ("system.gc", "gc_percent"),
        ("gc", _) => ("system.read", "gc_percent"),
        ("runtime", "goroutines") => ("system.read", "goroutines"),
        ("runtime", "max_procs") if !args.is_empty() => ("system.control", "gomaxprocs"),
        ("runtime", "max_procs") => ("system.read", "gomaxprocs"),
        ("runtime", _) => ("system.read", "cpu"),
        ("process", f) => return ("system.read", f.to_string()),
        ("raft", "stats") => ("system.read", "raft_stats"),
        ("lock", _) => return ("system.lock", first()),
        (other, _) => return ("system.read", other.to_string()),
    };
    (action, resource.to_string())
}

/// `f` behind the permission check of `table.name`: a refusal is `nil, err` (INVALID, as
/// the page's "Errors" table has it for this module).
fn guarded_fn(
    lua: &Lua,
    table: &'static str,
    name: String,
    f: mlua::Function,
) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, args: MultiValue| {
        let (action, resource) = permission(table, &name, &args);
        if let Err(e) = crate::lua::security::check_now(action, &resource) {
            return fail(lua, "INVALID", e.message);
        }
        f.call::<MultiValue>(args)
    })
}

/// Puts every function of `t` (and of its tables) behind its permission check.
fn guard_all(lua: &Lua, t: &Table, table: &'static str) -> mlua::Result<()> {
    let pairs: Vec<(String, mlua::Value)> = t.pairs().collect::<mlua::Result<_>>()?;
    for (k, v) in pairs {
        match v {
            mlua::Value::Function(f) => t.set(k.as_str(), guarded_fn(lua, table, k.clone(), f)?)?,
            mlua::Value::Table(sub) if table.is_empty() => {
                let name: &'static str = match k.as_str() {
                    "memory" => "memory",
                    "gc" => "gc",
                    "runtime" => "runtime",
                    "process" => "process",
                    "hosts" => "hosts",
                    "supervisor" => "supervisor",
                    "node" => "node",
                    "cluster" => "cluster",
                    "raft" => "raft",
                    "lock" => "lock",
                    _ => continue,
                };
                guard_all(lua, &sub, name)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Builds the module; every call asks its permission first.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = build(lua)?;
    guard_all(lua, &t, "")?;
    Ok(t)
}

fn build(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "exit",
        lua.create_function(|lua, code: Option<i64>| {
            let code = code.unwrap_or(0);
            if !(0..=255).contains(&code) {
                return fail(
                    lua,
                    "INVALID",
                    format!("system.exit: code {code} is not 0..255"),
                );
            }
            current_or("system")?.services().exit.request(code as i32);
            ok(lua, true)
        })?,
    )?;
    t.set(
        "modules",
        lua.create_function(|lua, ()| {
            let out = lua.create_table()?;
            for (i, (name, description, class)) in MODULES.iter().enumerate() {
                let m = lua.create_table()?;
                m.set("name", *name)?;
                m.set("description", *description)?;
                m.set("class", class.to_vec())?;
                out.raw_set(i + 1, m)?;
            }
            ok(lua, out)
        })?,
    )?;

    let memory = lua.create_table()?;
    memory.set(
        "stats",
        lua.create_function(|lua, ()| {
            let s = lua.create_table()?;
            // what warden can say: the Lua heap of this worker, the process's resident size
            let used = lua.used_memory();
            s.set("alloc", used)?;
            s.set("heap_alloc", used)?;
            if let Some(rss) = resident_bytes() {
                s.set("sys", rss)?;
            }
            ok(lua, s)
        })?,
    )?;
    memory.set(
        "allocated",
        lua.create_function(|lua, ()| ok(lua, lua.used_memory()))?,
    )?;
    for name in ["heap_objects", "set_limit", "get_limit"] {
        memory.set(
            name,
            lua.create_function(move |lua, _: MultiValue| {
                not_here(
                    lua,
                    &format!("memory.{name}"),
                    "Go's heap figures and limit",
                )
            })?,
        )?;
    }
    t.set("memory", memory)?;

    let gc = lua.create_table()?;
    gc.set(
        "collect",
        lua.create_function(|lua, ()| {
            lua.gc_collect()?;
            ok(lua, true)
        })?,
    )?;
    for name in ["set_percent", "get_percent"] {
        gc.set(
            name,
            lua.create_function(move |lua, _: MultiValue| {
                not_here(lua, &format!("gc.{name}"), "Go's collector target")
            })?,
        )?;
    }
    t.set("gc", gc)?;

    let runtime = lua.create_table()?;
    runtime.set(
        "goroutines",
        // Go's goroutines are warden's processes and the tasks of this thread's runtime
        lua.create_function(|lua, ()| {
            let tasks =
                tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
            ok(lua, node()?.process_count() + tasks)
        })?,
    )?;
    runtime.set(
        "max_procs",
        lua.create_function(|lua, n: Option<i64>| {
            if n.is_some() {
                return not_here(
                    lua,
                    "runtime.max_procs",
                    "worker threads are fixed when the runtime starts",
                );
            }
            match tokio::runtime::Handle::try_current() {
                Ok(h) => ok(lua, h.metrics().num_workers()),
                Err(_) => not_here(lua, "runtime.max_procs", "no async runtime here"),
            }
        })?,
    )?;
    runtime.set(
        "cpu_count",
        lua.create_function(|lua, ()| {
            ok(
                lua,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )
        })?,
    )?;
    t.set("runtime", runtime)?;

    let process = lua.create_table()?;
    process.set(
        "pid",
        lua.create_function(|lua, ()| ok(lua, std::process::id()))?,
    )?;
    process.set(
        "hostname",
        lua.create_function(|lua, ()| match hostname() {
            Ok(h) => ok(lua, h),
            Err(e) => fail(lua, "INTERNAL", format!("system.process.hostname: {e}")),
        })?,
    )?;
    process.set(
        "cwd",
        lua.create_function(|lua, ()| match std::env::current_dir() {
            Ok(d) => ok(lua, d.to_string_lossy().into_owned()),
            Err(e) => fail(lua, "INTERNAL", format!("system.process.cwd: {e}")),
        })?,
    )?;
    t.set("process", process)?;

    let hosts = lua.create_table()?;
    hosts.set(
        "list",
        lua.create_function(|lua, ()| {
            let node = node()?;
            let mut all = node.hosts();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            let mut counts = std::collections::HashMap::new();
            for p in node.process_handles() {
                *counts.entry(p.host.id.clone()).or_insert(0usize) += 1;
            }
            let out = lua.create_table()?;
            for (i, h) in all.iter().enumerate() {
                let r = lua.create_table()?;
                r.set("id", h.id.to_string())?;
                r.set("workers", h.worker_count())?;
                r.set("processes", counts.get(&h.id).copied().unwrap_or(0))?;
                r.set("queue_depth", h.pending())?;
                out.raw_set(i + 1, r)?;
            }
            ok(lua, out)
        })?,
    )?;
    hosts.set(
        "processes",
        lua.create_function(|lua, host: String| {
            let node = node()?;
            let Some(h) = crate::registry::Id::parse(&host)
                .ok()
                .and_then(|id| node.host(&id))
            else {
                return fail(
                    lua,
                    "NOT_FOUND",
                    format!("system.hosts.processes: no host {host}"),
                );
            };
            let mut procs: Vec<_> = node
                .process_handles()
                .into_iter()
                .filter(|p| p.host.id == h.id)
                .collect();
            procs.sort_by_key(|p| p.started);
            let out = lua.create_table()?;
            for (i, p) in procs.iter().enumerate() {
                let r = lua.create_table()?;
                r.set("pid", p.pid.to_string())?;
                r.set("host", h.id.to_string())?;
                r.set("source", p.entry.id.to_string())?;
                r.set("state", "running")?;
                r.set("started_at", unix_nanos(p.started))?;
                out.raw_set(i + 1, r)?;
            }
            ok(lua, out)
        })?,
    )?;
    t.set("hosts", hosts)?;

    let supervisor = lua.create_table()?;
    supervisor.set(
        "state",
        lua.create_function(|lua, id: String| {
            let Some(sup) = current_or("system")?.services().supervision() else {
                return fail(lua, "INTERNAL", "service info not available");
            };
            let status = crate::registry::Id::parse(&id)
                .ok()
                .and_then(|i| sup.status(&i));
            match status {
                Some(s) => ok(lua, service_table(lua, &id, &s)?),
                None => fail(
                    lua,
                    "INTERNAL",
                    format!("get service state: service {id} not found"),
                ),
            }
        })?,
    )?;
    supervisor.set(
        "states",
        lua.create_function(|lua, ()| {
            let Some(sup) = current_or("system")?.services().supervision() else {
                return fail(lua, "INTERNAL", "service info not available");
            };
            let mut all: Vec<_> = sup
                .statuses
                .iter()
                .map(|e| (e.key().to_string(), e.value().clone()))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            let out = lua.create_table()?;
            for (i, (id, s)) in all.iter().enumerate() {
                out.raw_set(i + 1, service_table(lua, id, s)?)?;
            }
            ok(lua, out)
        })?,
    )?;
    t.set("supervisor", supervisor)?;

    let node_t = lua.create_table()?;
    node_t.set(
        "id",
        lua.create_function(|lua, ()| ok(lua, node()?.name.to_string()))?,
    )?;
    node_t.set(
        "addr",
        lua.create_function(|lua, ()| {
            not_here(
                lua,
                "node.addr",
                "nodes meet through NATS and advertise no address",
            )
        })?,
    )?;
    // no Raft on warden: every node is a non-member, as Wippy's nodes without Raft
    node_t.set(
        "role",
        lua.create_function(|lua, ()| ok(lua, "non-member"))?,
    )?;
    t.set("node", node_t)?;

    let cluster = lua.create_table()?;
    cluster.set(
        "members",
        lua.create_function(|lua, ()| {
            let node = node()?;
            let me = node.name.to_string();
            let mut names = members(&node);
            names.sort();
            names.retain(|n| *n != me);
            names.insert(0, me.clone());
            let out = lua.create_table()?;
            for (i, n) in names.iter().enumerate() {
                let m = lua.create_table()?;
                m.set("id", n.as_str())?;
                m.set("is_local", *n == me)?;
                out.raw_set(i + 1, m)?;
            }
            ok(lua, out)
        })?,
    )?;
    cluster.set("leader", lua.create_function(|lua, ()| ok(lua, ""))?)?;
    cluster.set(
        "size",
        lua.create_function(|lua, ()| ok(lua, members(&*node()?).len()))?,
    )?;
    cluster.set(
        "node",
        lua.create_function(|_, ()| Ok(node()?.name.to_string()))?,
    )?;
    cluster.set(
        "is_member",
        lua.create_function(|_, name: String| Ok(members(&*node()?).contains(&name)))?,
    )?;
    t.set("cluster", cluster)?;

    let raft = lua.create_table()?;
    for name in [
        "is_leader",
        "is_member",
        "role",
        "term",
        "commit_index",
        "stats",
    ] {
        raft.set(
            name,
            lua.create_function(move |lua, ()| {
                fail(
                    lua,
                    "INTERNAL",
                    format!("system.raft.{name}: raft not available"),
                )
            })?,
        )?;
    }
    t.set("raft", raft)?;

    let lock = lua.create_table()?;
    for name in ["acquire", "release"] {
        lock.set(
            name,
            lua.create_function(move |lua, _: MultiValue| {
                not_here(
                    lua,
                    &format!("lock.{name}"),
                    "hold a cluster-wide name with process.registry.register(name, nil, process.registry.STRONG) instead",
                )
            })?,
        )?;
    }
    t.set("lock", lock)?;
    Ok(t)
}
