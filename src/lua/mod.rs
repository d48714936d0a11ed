//! The Lua host: runs `process.lua` entries as processes.
//!
//! Each host worker thread owns one Lua state ([`LuaWorker`]). A process is a coroutine in
//! that state with its own globals table, whose metatable falls back to a shared, read-only
//! base (see `sandbox.lua`): processes on one worker share the interpreter and the compiled
//! chunks, never their globals or the built-in modules. An entry's chunk is compiled once
//! per worker into a factory `function(_ENV, ...)`, and instantiated per process with that
//! process's globals.
//!
//! Blocking calls (`select`, `time.sleep`, `funcs.call`) are mlua async functions: the
//! coroutine yields, the process task returns `Pending`, and the worker thread runs other
//! processes. `ch:receive()` does the same without a future: a plain function takes a value
//! or registers the task's waker, and the Lua side yields until woken (see `channel.rs`).
//! A hook, armed by a watchdog only once a coroutine has computed for a whole time slice
//! (see `raw.rs`), yields it back to the worker (like the BEAM's reductions) and stops a
//! terminated process even inside a tight loop.
//!
//! This module knows the process core and the registry; it does not know hosts' threads
//! or the CLI.

pub mod call_process;
pub mod channel;
pub mod env;
pub mod errors;
pub mod events;
pub mod funcs;
pub mod io;
pub mod json;
mod modules;
pub mod payload;
pub mod pg;
mod process_api;
mod random;
mod raw;
mod registry_api;
pub mod security;
mod supervisor;
pub mod system;
mod tasks;
pub use tasks::alive as timer_tasks;
pub mod test;
pub mod time;
mod types;
mod uuid;
mod wit;

use crate::process::{
    Body, Exit, ExitError, Message, Node, Pid, ProcessContext, ProcessHandle, Signal,
};
use crate::registry::{Entry, EntrySpec, Id, LuaSpec};
use crate::value::{self, Value};
use channel::Chan;
use futures::stream::{FuturesUnordered, StreamExt};
use mlua::{AnyUserData, Function, HookTriggers, Lua, LuaOptions, StdLib, Table, VmState};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Instructions between two runs of the hook in coroutines created by Lua code (the
/// coroutines a driver resumes get a hook only when the watchdog arms it, see `raw.rs`).
pub const HOOK_INSTRUCTIONS: u32 = 1000;
/// Messages routed into Lua channels per poll of a process, before it lets others run.
const MESSAGES_PER_POLL: usize = 256;
/// A Lua channel fed from the mailbox gets at most this many unread messages; the rest
/// wait in the (bounded) mailbox, so a flood is refused to its senders.
const ROUTE_AHEAD: usize = 64;

/// The built-in modules an entry may `require` (when listed in its `modules`).
pub use crate::registry::loader::BUILTIN_MODULES;

/// Globals that may also be listed under `modules` and required (Wippy apps do).
const GLOBAL_MODULES: &[&str] = &["os", "process", "channel", "errors", "payload"];

thread_local! {
    static WORKER: RefCell<Option<Rc<LuaWorker>>> = const { RefCell::new(None) };
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Whose Lua code runs on this thread right now: a process, or a function call.
#[derive(Clone)]
pub(crate) enum Current {
    Process(Rc<ProcCtx>),
    Call(Rc<funcs::CallCtx>),
}

impl Current {
    /// The node the code runs on.
    pub(crate) fn node(&self) -> &Arc<Node> {
        match self {
            Current::Process(p) => &p.node,
            Current::Call(c) => &c.node,
        }
    }

    /// The entry whose code runs (ids it names resolve in its namespace).
    pub(crate) fn entry(&self) -> Arc<Entry> {
        match self {
            Current::Process(p) => p.entry(),
            Current::Call(c) => c.entry.clone(),
        }
    }
}

/// The current process or call, or an error naming `module` for code outside both.
pub(crate) fn current_or(module: &str) -> mlua::Result<Current> {
    current_any().ok_or_else(|| mlua::Error::runtime(format!("{module}: not inside a process")))
}

/// Preemption bookkeeping of whatever runs: hook ticks, and the coroutine its driver is
/// resuming (the only one the hook may yield).
#[derive(Default)]
pub(crate) struct RunState {
    polling: Cell<usize>,
    /// The worker's Lua heap may not be above this while this code runs (bytes).
    mem_limit: u64,
    /// The entry's `limits.max_execution_ms`: the longest it may compute without waiting.
    limit: Option<std::time::Duration>,
    /// Since when it computes without having waited (preemption does not count).
    busy_since: Cell<Option<std::time::Instant>>,
    /// Set when the hook yielded (preemption) rather than the code waiting.
    preempted: Cell<bool>,
}

impl RunState {
    /// The limits of `entry`: `max_execution_ms`, and `max_memory` (never above the
    /// worker-wide watermark).
    pub(crate) fn for_entry(entry: &Entry) -> RunState {
        RunState::with(&Limits::of(entry))
    }

    /// A fresh state with `limits`.
    pub(crate) fn with(limits: &Limits) -> RunState {
        RunState {
            limit: limits.max_execution,
            mem_limit: limits.mem_limit,
            ..Default::default()
        }
    }

    /// Called before the driver resumes code: a fresh budget after a real wait.
    fn resuming(&self) {
        if self.busy_since.get().is_none() {
            self.busy_since.set(Some(std::time::Instant::now()));
        }
        self.preempted.set(false);
    }

    /// Called when the code returned Pending: a wait ends the busy stretch, a preemption
    /// does not.
    fn suspended(&self) {
        if !self.preempted.get() {
            self.busy_since.set(None);
        }
    }

    fn over_limit(&self) -> bool {
        match (self.limit, self.busy_since.get()) {
            (Some(limit), Some(since)) => since.elapsed() > limit,
            _ => false,
        }
    }
}

/// The limits of a Lua entry, read from its `limits:` once (function pools keep them).
pub(crate) struct Limits {
    /// `max_execution_ms`.
    pub max_execution: Option<std::time::Duration>,
    /// `max_memory`, never above the worker-wide watermark (bytes).
    pub mem_limit: u64,
}

impl Limits {
    /// Reads the limits of `entry`.
    pub(crate) fn of(entry: &Entry) -> Limits {
        Limits {
            max_execution: max_execution(entry),
            mem_limit: max_memory(entry).map_or(*STATE_MEMORY, |m| m.min(*STATE_MEMORY)),
        }
    }
}

/// Default watermark of a worker's Lua heap: code that runs while the heap is above it
/// fails with "memory limit exceeded" (after a full collection did not bring it down).
/// `WARDEN_LUA_MAX_MEMORY` (e.g. `1GiB`) changes it; `limits.max_memory` on an entry
/// lowers it for that entry's code. mlua's own allocation limit, at twice the watermark,
/// is the last guard.
pub const DEFAULT_LUA_MEMORY: u64 = 512 << 20;

static STATE_MEMORY: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::env::var("WARDEN_LUA_MAX_MEMORY")
        .ok()
        .and_then(|v| crate::registry::loader::parse_byte_size(&v).ok())
        .unwrap_or(DEFAULT_LUA_MEMORY)
});

/// `limits.max_memory` of a Lua entry (bytes, or a size like `64MiB`).
pub(crate) fn max_memory(entry: &Entry) -> Option<u64> {
    match entry.raw.get("limits")?.get("max_memory")? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => crate::registry::loader::parse_byte_size(s).ok(),
        _ => None,
    }
}

/// Whether the heap is over `limit` even after a full collection.
fn over_memory(lua: &Lua, limit: u64) -> bool {
    if (lua.used_memory() as u64) <= limit {
        return false;
    }
    let _ = lua.gc_collect();
    if (lua.used_memory() as u64) <= limit {
        return false;
    }
    // the first pass ran finalizers (the channels of ended processes) that let go of more
    let _ = lua.gc_collect();
    lua.used_memory() as u64 > limit
}

/// `limits.max_execution_ms` of an entry (milliseconds, or a duration string).
pub(crate) fn max_execution(entry: &Entry) -> Option<std::time::Duration> {
    let v = entry.raw.get("limits")?.get("max_execution_ms")?;
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(std::time::Duration::from_millis),
        serde_json::Value::String(s) => crate::duration::parse(s).ok(),
        _ => None,
    }
}

/// Idle instances of one function entry version: (method, globals, idle since).
pub(crate) type IdleInstances = (Arc<Entry>, Vec<(Function, Table, std::time::Instant)>);

/// The Lua state of one worker thread and what is compiled in it.
pub struct LuaWorker {
    /// The state.
    pub lua: Lua,
    env_mt: Table,
    message_mt: Table,
    bootstrap: Function,
    instantiate: Function,
    method_of: Function,
    make_require: Function,
    modules: HashMap<&'static str, Table>,
    factories: RefCell<HashMap<Id, (Arc<Entry>, Function)>>,
    requires: RefCell<HashMap<Id, (Arc<Entry>, Function)>>,
    /// Idle function instances kept by pools, per function entry.
    pub(crate) idle: RefCell<HashMap<Id, IdleInstances>>,
}

/// The Lua heap of this thread's worker state, if this thread has one (bytes).
pub fn heap_bytes() -> Option<usize> {
    WORKER.with(|w| w.borrow().as_ref().map(|w| w.lua.used_memory()))
}

/// The Lua worker of the current thread, created on first use.
pub fn worker() -> mlua::Result<Rc<LuaWorker>> {
    WORKER.with(|w| {
        if let Some(w) = w.borrow().as_ref() {
            return Ok(w.clone());
        }
        let created = Rc::new(LuaWorker::new()?);
        *w.borrow_mut() = Some(created.clone());
        Ok(created)
    })
}

/// The process whose Lua code is running on this thread.
pub(crate) fn current() -> mlua::Result<Rc<ProcCtx>> {
    match current_any() {
        Some(Current::Process(p)) => Ok(p),
        // a function call can do all a process can: it becomes one on first need
        Some(Current::Call(c)) => c.as_process(),
        None => Err(mlua::Error::runtime(
            "this function can only be called from inside a process",
        )),
    }
}

/// Who runs the Lua code on this thread: its node, its entry, and its pid when it is a
/// process (None for a function call).
pub(crate) fn running() -> Option<(Arc<Node>, Arc<Entry>, Option<Pid>)> {
    match current_any()? {
        Current::Process(p) => Some((p.node.clone(), p.entry(), Some(p.me.pid.clone()))),
        Current::Call(c) => Some((
            c.node.clone(),
            c.entry.clone(),
            c.unit().map(|p| p.me.pid.clone()),
        )),
    }
}

/// The process or function call whose Lua code is running on this thread.
pub(crate) fn current_any() -> Option<Current> {
    CURRENT.with(|c| c.borrow().clone())
}

fn preempt_hook(lua: &Lua, _: &mlua::Debug) -> mlua::Result<VmState> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let run = match c.as_ref() {
            None => return Ok(VmState::Continue),
            Some(Current::Process(p)) => {
                if p.me.kill_requested.load(Ordering::Relaxed) {
                    return Err(mlua::Error::runtime("process terminated"));
                }
                if over_memory(lua, p.run.mem_limit) {
                    return Err(mlua::Error::runtime(p.memory_error()));
                }
                if p.run.over_limit() {
                    return Err(mlua::Error::runtime(format!(
                        "process {} ({}): execution time limit exceeded (max_execution_ms {})",
                        p.pid_str,
                        p.entry().id,
                        p.run.limit.map(|l| l.as_millis()).unwrap_or_default()
                    )));
                }
                &p.run
            }
            Some(Current::Call(call)) => {
                if let Some(e) = call.interrupted() {
                    return Err(mlua::Error::runtime(e));
                }
                if over_memory(lua, call.run.mem_limit) {
                    return Err(mlua::Error::runtime(call.memory_error()));
                }
                &call.run
            }
        };
        // Only yield a coroutine the driver resumes itself (its hook was armed by the
        // watchdog: it has run a whole time slice); a user coroutine (coroutine.wrap) must
        // not see a yield it did not ask for.
        let current = lua.current_thread().to_pointer();
        let preempt = current as usize == run.polling.get();
        raw::rearm(current, preempt);
        if preempt {
            run.preempted.set(true);
            Ok(VmState::Yield)
        } else {
            Ok(VmState::Continue)
        }
    })
}

/// The functions of Lua's `os` library that no process gets: removed from the worker's
/// state once the sandbox is built.
const OS_REMOVED: &[&str] = &[
    "execute",
    "exit",
    "remove",
    "rename",
    "getenv",
    "tmpname",
    "setlocale",
];

impl LuaWorker {
    fn new() -> mlua::Result<LuaWorker> {
        let lua = Lua::new_with(
            StdLib::TABLE
                | StdLib::STRING
                | StdLib::MATH
                | StdLib::UTF8
                | StdLib::COROUTINE
                | StdLib::OS,
            LuaOptions::new(),
        )?;
        let rust = lua.create_table()?;
        rust.set("process", process_api::create(&lua)?)?;
        rust.set("channel", channel::create(&lua)?)?;
        rust.set("load", lua.create_function(sandboxed_load)?)?;
        rust.set("coroutine_spawn", lua.create_function(coroutine_spawn)?)?;
        let lua_wrap: Function = lua.globals().get::<Table>("coroutine")?.get("wrap")?;
        let (co_create, co_wrap) = raw::coroutine_functions(&lua, lua_wrap)?;
        rust.set("coroutine_create", co_create)?;
        rust.set("coroutine_wrap", co_wrap)?;
        rust.set("describe_error", lua.create_function(errors::describe)?)?;
        rust.set("errors", errors::module(&lua)?)?;
        rust.set("payload", payload::module(&lua)?)?;
        rust.set("message_data", raw::message_data_function(&lua)?)?;
        let (math_random, math_randomseed) = random::functions(&lua)?;
        rust.set("math_random", math_random)?;
        rust.set("math_randomseed", math_randomseed)?;
        rust.set("log_print", lua.create_function(modules::log_print)?)?;
        // the functions `test.run_cases` made (weak keys): the bootstrap runs one that a
        // test's method returns
        let test_runners = lua.create_table()?;
        let weak_keys = lua.create_table()?;
        weak_keys.set("__mode", "k")?;
        test_runners.set_metatable(Some(weak_keys))?;
        rust.set("test_runners", test_runners.clone())?;
        let setup: Table = lua
            .load(include_str!("sandbox.lua"))
            .set_name("=warden sandbox")
            .call(rust)?;
        // What the sandbox never hands out goes from the real globals as well, so that a
        // hole found later still cannot reach a shell, the host's files or its environment.
        let os: Table = lua.globals().get("os")?;
        for name in OS_REMOVED {
            os.raw_set(*name, mlua::Value::Nil)?;
        }
        for name in ["dofile", "loadfile", "load"] {
            lua.globals().raw_set(name, mlua::Value::Nil)?;
        }
        let message_mt: Table = setup.get("message_mt")?;
        channel::install_receive(&lua, &message_mt)?;
        let freeze: Function = setup.get("freeze")?;
        let mut modules = HashMap::new();
        modules.insert("time", freeze.call((time::module(&lua)?, "time"))?);
        modules.insert("json", freeze.call((json::module(&lua)?, "json"))?);
        modules.insert("logger", freeze.call((modules::logger(&lua)?, "logger"))?);
        modules.insert("funcs", freeze.call((funcs::module(&lua)?, "funcs"))?);
        modules.insert("ctx", freeze.call((funcs::ctx_module(&lua)?, "ctx"))?);
        modules.insert(
            "supervisor",
            freeze.call((supervisor::module(&lua)?, "supervisor"))?,
        );
        modules.insert("io", freeze.call((io::module(&lua)?, "io"))?);
        modules.insert("uuid", freeze.call((uuid::module(&lua)?, "uuid"))?);
        modules.insert("pg", freeze.call((pg::module(&lua)?, "pg"))?);
        modules.insert("system", freeze.call((system::module(&lua)?, "system"))?);
        let test = test::module(
            &lua,
            test_runners,
            supervisor::module(&lua)?,
            time::module(&lua)?,
        )?;
        modules.insert("test", freeze.call((test, "test"))?);
        modules.insert("env", freeze.call((env::module(&lua)?, "env"))?);
        modules.insert("events", freeze.call((events::module(&lua)?, "events"))?);
        modules.insert(
            "registry",
            freeze.call((registry_api::module(&lua)?, "registry"))?,
        );
        modules.insert(
            "security",
            freeze.call((security::module(&lua)?, "security"))?,
        );
        // globals that Wippy apps also list under `modules`: require gives the global
        let env_mt: Table = setup.get("env_mt")?;
        let base: Table = env_mt.raw_get("__index")?;
        for name in GLOBAL_MODULES {
            modules.insert(name, base.raw_get(*name)?);
        }
        // types as values (en/lua/types.md): `Number`, `Integer`..., `typeof`, and the
        // constructor the loader's code for a `type` declaration calls
        for (name, v) in types::globals(&lua)? {
            base.raw_set(name, v)?;
        }
        lua.set_memory_limit((*STATE_MEMORY as usize).saturating_mul(2))?;
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
            preempt_hook,
        )?;
        raw::install(&lua)?;
        Ok(LuaWorker {
            env_mt: setup.get("env_mt")?,
            message_mt,
            bootstrap: setup.get("bootstrap")?,
            instantiate: setup.get("instantiate")?,
            method_of: setup.get("method_of")?,
            make_require: setup.get("make_require")?,
            modules,
            factories: RefCell::new(HashMap::new()),
            requires: RefCell::new(HashMap::new()),
            idle: RefCell::new(HashMap::new()),
            lua,
        })
    }

    /// A fresh globals table for one instance of `entry` (a process or a library).
    fn new_env(&self, entry: &Arc<Entry>) -> mlua::Result<Table> {
        let env = self.lua.create_table_with_capacity(0, 4)?;
        env.set_metatable(Some(self.env_mt.clone()))?;
        env.raw_set("_G", &env)?;
        let require: Function = self.make_require.call(self.require_fn(entry)?)?;
        env.raw_set("require", require)?;
        Ok(env)
    }

    /// The compiled factory of an entry's chunk (compiled once per worker and entry
    /// version).
    fn factory(&self, entry: &Arc<Entry>, spec: &LuaSpec) -> mlua::Result<Function> {
        if let Some((e, f)) = self.factories.borrow().get(&entry.id) {
            if Arc::ptr_eq(e, entry) {
                return Ok(f.clone());
            }
        }
        let src: &str = &spec.source;
        let body = if src.starts_with("#!") {
            format!("--{src}")
        } else {
            src.to_string()
        };
        // One line of prefix keeps Lua's line numbers those of the file.
        let wrapped = format!("return function(_ENV, ...) {body}\nend");
        let f: Function = self
            .lua
            .load(wrapped)
            .set_name(format!("@{}", spec.chunk_name))
            .set_mode(mlua::ChunkMode::Text)
            .eval()?;
        self.factories
            .borrow_mut()
            .insert(entry.id.clone(), (entry.clone(), f.clone()));
        Ok(f)
    }

    /// Instantiates a function entry: its chunk with fresh globals, and the method to call.
    pub(crate) fn function_instance(&self, entry: &Arc<Entry>) -> mlua::Result<(Function, Table)> {
        let spec = lua_spec(entry).ok_or_else(|| mlua::Error::runtime("not a Lua entry"))?;
        let factory = self.factory(entry, spec)?;
        let env = self.new_env(entry)?;
        let method = spec.method.clone().unwrap_or_else(|| "main".into());
        let f = self
            .method_of
            .call((factory, env.clone(), entry.id.to_string(), method))?;
        Ok((f, env))
    }

    /// The resolver behind an entry's `require`: its imports and its allowed built-in
    /// modules (each instance caches what it loaded, see `make_require` in sandbox.lua).
    fn require_fn(&self, entry: &Arc<Entry>) -> mlua::Result<Function> {
        if let Some((e, f)) = self.requires.borrow().get(&entry.id) {
            if Arc::ptr_eq(e, entry) {
                return Ok(f.clone());
            }
        }
        let owner = entry.clone();
        let f = self.lua.create_function(move |lua, name: String| {
            match require(lua, &owner, &name) {
                Ok(v) => Ok(mlua::MultiValue::from_vec(vec![v])),
                Err(msg) => errors::LuaError::new("NOT_FOUND", msg).into_nil_err(lua),
            }
        })?;
        self.requires
            .borrow_mut()
            .insert(entry.id.clone(), (entry.clone(), f.clone()));
        Ok(f)
    }
}

pub(crate) fn lua_spec(entry: &Entry) -> Option<&LuaSpec> {
    match &entry.spec {
        EntrySpec::ProcessLua(s) | EntrySpec::LibraryLua(s) | EntrySpec::FunctionLua(s) => Some(s),
        _ => None,
    }
}

fn require(lua: &Lua, owner: &Arc<Entry>, name: &str) -> Result<mlua::Value, String> {
    let spec = lua_spec(owner).ok_or_else(|| format!("require({name:?}): not a Lua entry"))?;
    let w = worker().map_err(|e| e.to_string())?;
    if let Some((_, lib_id)) = spec.imports.iter().find(|(alias, _)| alias == name) {
        if let Some(module) = crate::registry::builtin_library(lib_id) {
            if let Some(m) = w.modules.get(module) {
                return Ok(mlua::Value::Table(m.clone()));
            }
        }
        let registry = match current_any() {
            Some(Current::Process(p)) => p.node.registry(),
            Some(Current::Call(c)) => c.node.registry(),
            None => {
                return Err(format!(
                    "require({name:?}): not inside a process or a function"
                ))
            }
        };
        let lib = registry
            .get(lib_id)
            .ok_or_else(|| format!("require({name:?}): library {lib_id} not found"))?
            .clone();
        let lib_spec = lua_spec(&lib)
            .ok_or_else(|| format!("require({name:?}): {lib_id} is not a library.lua"))?;
        let load = || -> mlua::Result<mlua::Value> {
            let factory = w.factory(&lib, lib_spec)?;
            let env = w.new_env(&lib)?;
            w.instantiate.call((factory, env))
        };
        let v = load().map_err(|e| {
            format!(
                "require({name:?}): library {lib_id} failed to load: {}",
                errors::message(&e)
            )
        })?;
        let _ = lua;
        return Ok(v);
    }
    if let Some(m) = w.modules.get(name) {
        if spec.modules.iter().any(|m| m == name) {
            return Ok(mlua::Value::Table(m.clone()));
        }
        return Err(format!(
            "require({name:?}): module {name} is not listed in the modules of {} (field modules)",
            owner.id
        ));
    }
    Err(format!(
        "require({name:?}): {} has no import named {name} (field imports) and {name} is not a built-in module (field modules)",
        owner.id
    ))
}

fn sandboxed_load(
    lua: &Lua,
    (chunk, name, _mode, env): (mlua::Value, Option<String>, Option<String>, Option<Table>),
) -> mlua::Result<mlua::MultiValue> {
    let mlua::Value::String(src) = chunk else {
        return errors::LuaError::new("INVALID", "load: only source strings can be loaded")
            .into_nil_err(lua);
    };
    let env = match (env, current_any()) {
        (Some(e), _) => e,
        (None, Some(Current::Process(p))) => p.env(),
        (None, Some(Current::Call(c))) => c.env.clone(),
        (None, None) => return Err(mlua::Error::runtime("load: not inside a process")),
    };
    let loaded = lua
        .load(src.as_bytes().to_vec())
        .set_name(name.unwrap_or_else(|| "=(load)".into()))
        .set_mode(mlua::ChunkMode::Text)
        .set_environment(env)
        .into_function();
    match loaded {
        Ok(f) => Ok(mlua::MultiValue::from_vec(vec![mlua::Value::Function(f)])),
        Err(e) => errors::LuaError::new("INVALID", errors::message(&e)).into_nil_err(lua),
    }
}

/// `coroutine.spawn(fn)`: runs `fn` beside the caller's code, resumed by its driver;
/// returns the new coroutine (en/lua/core/base.md).
fn coroutine_spawn(lua: &Lua, f: Function) -> mlua::Result<mlua::Thread> {
    let ctx = current()?;
    let t = lua.create_thread(f)?;
    raw::unhook(&t);
    ctx.spawned.borrow_mut().push(t.clone());
    Ok(t)
}

struct Listener {
    chan: Chan,
    ud: AnyUserData,
    message: bool,
}

/// Messages a process's task took from its mailbox while the channel they go to (the
/// inbox, or a topic's listener) had [`ROUTE_AHEAD`] unread values, in the order they
/// arrived: one queue for the inbox, one per listened topic. Holding them here instead of
/// stopping at the first full channel means a topic nobody reads never holds back one
/// that is read (as Erlang's selective receive never does). They count against the
/// mailbox's limit (`ProcessHandle::add_parked`), so a flood is still refused to its
/// senders.
#[derive(Default)]
struct Parked {
    inbox: VecDeque<Message>,
    topics: HashMap<String, VecDeque<Message>>,
}

/// What the Lua API needs to know about the process it is called from.
pub(crate) struct ProcCtx {
    pub node: Arc<Node>,
    pub me: Arc<ProcessHandle>,
    pub pid_str: String,
    /// The entry whose code runs (another one after `process.upgrade`).
    entry: RefCell<Arc<Entry>>,
    pub host: Arc<crate::process::Host>,
    pub lua: Lua,
    /// The environment of that code (its modules and imports).
    env: RefCell<Table>,
    /// Set by `process.upgrade`: the code to run next in this process, with its arguments.
    upgrade: RefCell<Option<(Arc<Entry>, Vec<Value>)>>,
    /// Whether `upgrade` holds a request (one load per poll on the hot path).
    upgrade_asked: Cell<bool>,
    inbox: Chan,
    events: Chan,
    inbox_ud: RefCell<Option<AnyUserData>>,
    events_ud: RefCell<Option<AnyUserData>>,
    listeners: RefCell<HashMap<String, Listener>>,
    /// Messages taken from the mailbox while their channel was full (allocated when the
    /// first one is held back: most processes never hold one).
    parked: RefCell<Option<Box<Parked>>>,
    /// How many messages `parked` holds (read on every routed message).
    parked_count: Cell<u32>,
    /// Its timer tasks (aborted when it ends).
    pub(crate) tasks: tasks::TaskSet,
    /// It subscribed to events (its subscriptions end when it ends).
    pub(crate) subscribed: Cell<bool>,
    pub trap_links: Cell<bool>,
    spawned: RefCell<Vec<mlua::Thread>>,
    run: RunState,
    /// The sender of the last message received from another process, and its pid text.
    last_from: RefCell<Option<(Pid, Rc<str>)>>,
    /// The pid text this process last sent to, and the pid it names (`process.send`'s
    /// fast path: a process mostly sends to the same few pids).
    pub(crate) last_dest: RefCell<Option<(Box<[u8]>, Pid)>>,
    /// The call context of this process's `funcs.call`s without context values.
    pub(crate) call_context: std::cell::OnceCell<Arc<crate::functions::CallContext>>,
    /// Its `funcs.call`s that wait for a result (dropped with the process).
    pub(crate) pending: funcs::PendingCalls,
    /// Where it reports the end of its start to the supervisor that waits (taken once).
    start: RefCell<Option<crate::process::StartNotice>>,
    /// Set by `supervisor.ignore()`: the process ends normally with `ignore` at once.
    ignored: Cell<bool>,
}

impl ProcCtx {
    /// The context of a process (or of a function call that became one) running `entry`
    /// in `env`: its call context is `context`, with itself as the actor if that names
    /// none.
    #[allow(clippy::too_many_arguments)]
    fn new(
        node: Arc<Node>,
        me: Arc<ProcessHandle>,
        entry: Arc<Entry>,
        host: Arc<crate::process::Host>,
        lua: Lua,
        env: Table,
        context: Option<Arc<crate::functions::CallContext>>,
        start: Option<crate::process::StartNotice>,
    ) -> ProcCtx {
        let pid_str = me.pid.to_string();
        ProcCtx {
            pid_str: pid_str.clone(),
            node,
            me,
            entry: RefCell::new(entry.clone()),
            host,
            lua,
            env: RefCell::new(env),
            upgrade: RefCell::new(None),
            upgrade_asked: Cell::new(false),
            inbox: Chan::unbounded(),
            events: Chan::unbounded(),
            inbox_ud: RefCell::new(None),
            events_ud: RefCell::new(None),
            listeners: RefCell::new(HashMap::new()),
            parked: RefCell::new(None),
            parked_count: Cell::new(0),
            tasks: tasks::TaskSet::default(),
            subscribed: Cell::new(false),
            trap_links: Cell::new(false),
            spawned: RefCell::new(Vec::new()),
            run: RunState::for_entry(&entry),
            last_from: RefCell::new(None),
            last_dest: RefCell::new(None),
            // a context given at spawn, with this process as the actor if it names none
            call_context: match context {
                Some(c) if c.actor.is_none() => {
                    std::cell::OnceCell::from(Arc::new(crate::functions::CallContext {
                        actor: Some(pid_str.clone()),
                        actor_meta: None,
                        values: c.values.clone(),
                        scope: c.scope.clone(),
                        from_cluster: c.from_cluster,
                    }))
                }
                Some(c) => std::cell::OnceCell::from(c),
                None => std::cell::OnceCell::new(),
            },
            pending: funcs::PendingCalls::default(),
            start: RefCell::new(start),
            ignored: Cell::new(false),
        }
    }

    fn pid(&self) -> &Pid {
        &self.me.pid
    }

    /// Lets go of what the process holds outside its Lua values when it ends: its timer
    /// tasks and its event subscriptions.
    pub(crate) fn release(&self) {
        self.tasks.abort_all();
        if self.subscribed.get() {
            crate::events::unsubscribe_all(&self.node, &self.me.pid);
        }
    }

    /// Reports the end of its start to the supervisor waiting for it (`supervisor.started`
    /// and `supervisor.ignore`); false when none waits (any more).
    pub(crate) fn ack_start(&self, how: crate::process::Started) -> bool {
        if how == crate::process::Started::Ignore {
            self.ignored.set(true);
        }
        match self.start.borrow_mut().take() {
            Some(n) => {
                n.send(how);
                true
            }
            None => false,
        }
    }

    fn inbox_userdata(&self) -> mlua::Result<AnyUserData> {
        cached_userdata(&self.lua, &self.inbox_ud, &self.inbox)
    }

    fn events_userdata(&self) -> mlua::Result<AnyUserData> {
        self.me.sees_cancel.store(true, Ordering::Relaxed);
        cached_userdata(&self.lua, &self.events_ud, &self.events)
    }

    /// The channel of `topic`'s messages: the one already listening (a second `listen`
    /// returns it, whatever its `message` option), or a new one, which first gets the
    /// messages of that topic waiting in the inbox, in the order they arrived.
    fn listen(&self, topic: &str, message: bool) -> Result<AnyUserData, String> {
        if let Some(existing) = self.listeners.borrow().get(topic) {
            return Ok(existing.ud.clone());
        }
        // no borrow of the listeners while Lua allocates (a collection may run finalizers)
        let chan = Chan::unbounded();
        let ud = channel::to_userdata(&self.lua, chan.clone()).map_err(|e| e.to_string())?;
        for m in self.inbox.take_messages(topic) {
            let item = if message {
                channel::Item::Message(m)
            } else {
                self.payload_item(&m.payload).map_err(|e| e.to_string())?
            };
            chan.push_polled(item, None);
        }
        let held: Vec<Message> = {
            let mut p = self.parked.borrow_mut();
            if let Some(p) = p
                .as_mut()
                .filter(|p| p.inbox.iter().any(|m| m.topic == topic))
            {
                let (held, rest): (VecDeque<Message>, VecDeque<Message>) =
                    std::mem::take(&mut p.inbox)
                        .into_iter()
                        .partition(|m| m.topic == topic);
                p.inbox = rest;
                held.into()
            } else {
                Vec::new()
            }
        };
        if !held.is_empty() {
            self.count_parked(-(held.len() as isize));
        }
        for m in held {
            let item = self.listener_item(m, message).map_err(|e| e.to_string())?;
            chan.push_polled(item, None);
        }
        self.listeners.borrow_mut().insert(
            topic.to_string(),
            Listener {
                chan,
                ud: ud.clone(),
                message,
            },
        );
        Ok(ud)
    }

    fn unlisten(&self, ch: &Chan) -> bool {
        let mut l = self.listeners.borrow_mut();
        let topic = l
            .iter()
            .find(|(_, v)| v.chan.same(ch))
            .map(|(k, _)| k.clone());
        match topic {
            Some(t) => {
                if let Some(lst) = l.remove(&t) {
                    lst.chan.close();
                    drop(lst.ud);
                }
                // what waited for the listener goes to the inbox now
                if let Some(p) = self.parked.borrow_mut().as_mut() {
                    if let Some(q) = p.topics.remove(&t) {
                        p.inbox.extend(q);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// A message as it waits in a Lua channel, until a receive makes it the table Lua
    /// sees (`msg:topic()`, `msg:from()`, `msg:payload():data()`).
    fn lazy_message(&self, m: Message) -> channel::Item {
        let from = m.from.map(|p| {
            if &p == self.pid() {
                return Rc::from(self.pid_str.as_str());
            }
            // a process mostly hears from the same few senders: keep the last one's text
            let mut last = self.last_from.borrow_mut();
            match last.as_ref() {
                Some((lp, text)) if *lp == p => text.clone(),
                _ => {
                    let text: Rc<str> = p.to_string().into();
                    *last = Some((p, text.clone()));
                    text
                }
            }
        });
        channel::Item::Message(channel::LazyMessage {
            topic: m.topic,
            from,
            payload: m.payload,
        })
    }

    /// What a topic listener gets of a message: the message itself with `message = true`,
    /// else its first payload value.
    fn listener_item(&self, m: Message, message: bool) -> mlua::Result<channel::Item> {
        if message {
            Ok(self.lazy_message(m))
        } else {
            self.payload_item(&m.payload)
        }
    }

    /// Counts `delta` more (or fewer) held-back messages, here and against the mailbox's
    /// limit.
    fn count_parked(&self, delta: isize) {
        self.parked_count
            .set(self.parked_count.get().saturating_add_signed(delta as i32));
        self.me.add_parked(delta);
    }

    /// What a listener without `message = true` gets of a message: its first payload value.
    fn payload_item(&self, payload: &[Value]) -> mlua::Result<channel::Item> {
        let v = payload.first().unwrap_or(&Value::Nil);
        Ok(channel::Item::Lua(value::to_lua(&self.lua, v)?))
    }

    /// The error of this process when the Lua heap stays over its memory limit.
    /// The entry whose code runs.
    pub fn entry(&self) -> Arc<Entry> {
        self.entry.borrow().clone()
    }

    /// The environment of the code that runs.
    pub fn env(&self) -> Table {
        self.env.borrow().clone()
    }

    /// Asks for the process to go on with `entry`'s code (see `Driver::upgrade`).
    pub fn request_upgrade(&self, entry: Arc<Entry>, args: Vec<Value>) {
        *self.upgrade.borrow_mut() = Some((entry, args));
        self.upgrade_asked.set(true);
    }

    fn memory_error(&self) -> String {
        format!(
            "process {} ({}): memory limit exceeded (the Lua heap is over {} MiB)",
            self.pid_str,
            self.entry().id,
            self.run.mem_limit >> 20
        )
    }

    /// Whether a message with `topic` must wait: the channel it goes to is full, or
    /// earlier messages for that channel wait already (their order is kept).
    #[inline]
    fn must_wait(&self, topic: &str) -> bool {
        if self.parked_count.get() == 0 && self.listeners.borrow().is_empty() {
            return self.inbox.len() >= ROUTE_AHEAD;
        }
        self.must_wait_slow(topic)
    }

    #[inline(never)]
    fn must_wait_slow(&self, topic: &str) -> bool {
        let listeners = self.listeners.borrow();
        let parked = self.parked.borrow();
        let parked = parked.as_deref();
        match listeners.get(topic) {
            Some(l) => {
                l.chan.len() >= ROUTE_AHEAD
                    || parked.is_some_and(|p| p.topics.get(topic).is_some_and(|q| !q.is_empty()))
            }
            None => self.inbox.len() >= ROUTE_AHEAD || parked.is_some_and(|p| !p.inbox.is_empty()),
        }
    }

    /// Holds back a message whose channel is full.
    #[inline(never)]
    fn park(&self, m: Message) {
        let listening = self.listeners.borrow().contains_key(&m.topic);
        let mut p = self.parked.borrow_mut();
        let p = p.get_or_insert_with(Default::default);
        if listening {
            p.topics.entry(m.topic.clone()).or_default().push_back(m);
        } else {
            p.inbox.push_back(m);
        }
        self.count_parked(1);
    }

    /// Whether a held-back message now has room in its channel.
    #[inline]
    fn parked_has_room(&self) -> bool {
        self.parked_count.get() > 0 && self.parked_has_room_slow()
    }

    #[inline(never)]
    fn parked_has_room_slow(&self) -> bool {
        let p = self.parked.borrow();
        let Some(p) = p.as_deref() else {
            return false;
        };
        if !p.inbox.is_empty() && self.inbox.len() < ROUTE_AHEAD {
            return true;
        }
        let listeners = self.listeners.borrow();
        p.topics.iter().any(|(t, q)| {
            !q.is_empty() && listeners.get(t).is_some_and(|l| l.chan.len() < ROUTE_AHEAD)
        })
    }

    /// Moves held-back messages into their channels while those have room; true when
    /// one moved.
    #[inline(never)]
    fn unpark(&self, polled: Option<&std::task::Waker>) -> mlua::Result<bool> {
        let mut moved = 0usize;
        while self.inbox.len() < ROUTE_AHEAD {
            let next = self
                .parked
                .borrow_mut()
                .as_mut()
                .and_then(|p| p.inbox.pop_front());
            let Some(m) = next else {
                break;
            };
            self.inbox.push_polled(self.lazy_message(m), polled);
            moved += 1;
        }
        let topics: Vec<String> = match self.parked.borrow().as_deref() {
            Some(p) => p.topics.keys().cloned().collect(),
            None => Vec::new(),
        };
        for t in topics {
            let Some((chan, message)) = self
                .listeners
                .borrow()
                .get(&t)
                .map(|l| (l.chan.clone(), l.message))
            else {
                continue;
            };
            while chan.len() < ROUTE_AHEAD {
                let next = self
                    .parked
                    .borrow_mut()
                    .as_mut()
                    .and_then(|p| p.topics.get_mut(&t))
                    .and_then(VecDeque::pop_front);
                let Some(m) = next else { break };
                moved += 1;
                chan.push_polled(self.listener_item(m, message)?, polled);
            }
            let mut p = self.parked.borrow_mut();
            let Some(p) = p.as_mut() else { continue };
            if p.topics.get(&t).is_some_and(VecDeque::is_empty) {
                p.topics.remove(&t);
            }
        }
        if moved > 0 {
            self.count_parked(-(moved as isize));
            if self.parked_count.get() == 0 {
                *self.parked.borrow_mut() = None;
            }
        }
        Ok(moved > 0)
    }

    /// Puts a message from the mailbox into the channel it goes to. `polled` is the waker
    /// of this process's task, polled right now, when its coroutines last stopped in a real
    /// wait (see [`Chan::push_polled`]).
    fn deliver(&self, m: Message, polled: Option<&std::task::Waker>) -> mlua::Result<()> {
        let listeners = self.listeners.borrow();
        if let Some(l) = (!listeners.is_empty())
            .then(|| listeners.get(&m.topic))
            .flatten()
        {
            l.chan
                .push_polled(self.listener_item(m, l.message)?, polled);
            return Ok(());
        }
        self.inbox.push_polled(self.lazy_message(m), polled);
        Ok(())
    }

    fn exit_event(&self, kind: &str, from: &Pid, exit: &Exit) -> mlua::Result<Table> {
        let ev = self.lua.create_table()?;
        ev.set("kind", kind)?;
        ev.set("from", from.to_string())?;
        let result = self.lua.create_table()?;
        match exit {
            Exit::Normal(v) => result.set("value", value::to_lua(&self.lua, v)?)?,
            // an error object, as for `err` of calls: a string where Lua wants one, and
            // its kind (CANCELED for a process stopped from outside)
            Exit::Error(e) => {
                result.set("error", errors::LuaError::new(e.kind, e.message.clone()))?
            }
            Exit::Killed(e) => result.set("error", errors::LuaError::new("CANCELED", e.clone()))?,
        }
        ev.set("result", result)?;
        Ok(ev)
    }

    /// Handles a control signal; returns the exit when the signal ends the process.
    fn on_signal(&self, sig: Signal) -> mlua::Result<Option<Exit>> {
        match sig {
            Signal::Terminate(why) => {
                return Ok(Some(Exit::Killed(
                    why.unwrap_or_else(|| "terminated".into()),
                )))
            }
            Signal::Down { from, exit } => {
                let ev = self.exit_event("EXIT", &from, &exit)?;
                self.events.push(mlua::Value::Table(ev));
            }
            Signal::LinkDown { from, exit } => {
                if !self.trap_links.get() {
                    return Ok(Some(Exit::Killed(format!(
                        "linked process {from} failed: {}",
                        exit.error().unwrap_or("unknown error")
                    ))));
                }
                let ev = self.exit_event("LINK_DOWN", &from, &exit)?;
                self.events.push(mlua::Value::Table(ev));
            }
            Signal::Outdated => {
                let sources: Vec<String> = self
                    .me
                    .take_outdated()
                    .iter()
                    .map(|id| id.to_string())
                    .collect();
                let ev = self.lua.create_table()?;
                ev.set("kind", "OUTDATED")?;
                ev.set("sources", sources)?;
                self.events.push(mlua::Value::Table(ev));
            }
            Signal::Cancel { from, reason } => {
                let ev = self.lua.create_table()?;
                ev.set("kind", "CANCEL")?;
                ev.set("from", from.map(|p| p.to_string()))?;
                ev.set("reason", reason)?;
                self.events.push(mlua::Value::Table(ev));
            }
        }
        Ok(None)
    }
}

fn cached_userdata(
    lua: &Lua,
    slot: &RefCell<Option<AnyUserData>>,
    chan: &Chan,
) -> mlua::Result<AnyUserData> {
    if let Some(ud) = slot.borrow().as_ref() {
        return Ok(ud.clone());
    }
    let ud = channel::to_userdata(lua, chan.clone())?;
    *slot.borrow_mut() = Some(ud.clone());
    Ok(ud)
}

/// Sets the current process or call while one of its futures is polled.
pub(crate) struct CurrentGuard(Option<Current>);

impl CurrentGuard {
    pub(crate) fn enter(cur: Current) -> CurrentGuard {
        CurrentGuard(CURRENT.with(|c| c.borrow_mut().replace(cur)))
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// A coroutine started with `coroutine.spawn`.
struct Spawned {
    ptr: *const std::ffi::c_void,
    fut: mlua::AsyncThread<()>,
}

impl Future for Spawned {
    type Output = (*const std::ffi::c_void, mlua::Result<()>);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ptr = self.ptr;
        CURRENT.with(|c| {
            if let Some(Current::Process(ctx)) = c.borrow().as_ref() {
                ctx.run.polling.set(ptr as usize);
            }
        });
        let _running = raw::Running::enter(ptr);
        Pin::new(&mut self.fut).poll(cx).map(|r| (ptr, r))
    }
}

/// The task of one Lua process: routes its mailbox into Lua channels and resumes its
/// coroutines.
struct Driver {
    ctx: Rc<ProcCtx>,
    main: mlua::AsyncThread<mlua::MultiValue>,
    main_ptr: *const std::ffi::c_void,
    /// Coroutines started with `coroutine.spawn` (created on first use).
    coros: Option<FuturesUnordered<Spawned>>,
    /// Messages were moved into Lua channels in this poll.
    routed: bool,
    /// It drives a function call that became a process: the main coroutine's results are
    /// kept here for the caller, as a function call returns them (the driver then ends
    /// with a placeholder exit). Boxed: every process's task carries the slot, few use it.
    call_result: Option<Box<Option<mlua::Result<mlua::MultiValue>>>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.ctx.release();
    }
}

impl Driver {
    /// The driver of a function call that became a process: it goes on with the call's
    /// coroutine `main` and keeps its results for the caller.
    pub(crate) fn for_call(
        ctx: Rc<ProcCtx>,
        main: mlua::AsyncThread<mlua::MultiValue>,
        main_ptr: *const std::ffi::c_void,
    ) -> Driver {
        Driver {
            ctx,
            main,
            main_ptr,
            coros: None,
            routed: false,
            call_result: Some(Box::new(None)),
        }
    }

    /// The process it drives.
    pub(crate) fn ctx(&self) -> &Rc<ProcCtx> {
        &self.ctx
    }

    /// The results of a call's coroutine, once it returned (see [`Driver::for_call`]).
    pub(crate) fn take_call_result(&mut self) -> Option<mlua::Result<mlua::MultiValue>> {
        self.call_result.as_mut()?.take()
    }

    /// How a body's return ends the process: `nil, err` or `false, err` is a failure
    /// with that error (as Wippy reads a Lua result); anything else returns its first
    /// value.
    fn exit_of(&self, r: mlua::Result<mlua::MultiValue>) -> Exit {
        match r {
            Ok(values) => {
                let mut it = values.into_iter();
                match (it.next(), it.next()) {
                    (None, _) => Exit::Normal(Value::Nil),
                    (Some(mlua::Value::Nil | mlua::Value::Boolean(false)), Some(err))
                        if !err.is_nil() =>
                    {
                        Exit::Error(ExitError::new(
                            errors::kind_of_value(&err),
                            errors::text_of(&err),
                        ))
                    }
                    (Some(v), _) => match value::from_lua(&v) {
                        Ok(v) => Exit::Normal(v),
                        Err(e) => Exit::Error(ExitError::new(
                            "INVALID",
                            format!("the process result cannot be copied: {e}"),
                        )),
                    },
                }
            }
            Err(e) => self.error_exit(&e),
        }
    }

    fn error_exit(&self, e: &mlua::Error) -> Exit {
        // made in every case: it reads back the raised error's kind, none is left over
        let exit = raised_exit(e);
        if self.ctx.me.kill_requested.load(Ordering::Relaxed) {
            Exit::Killed(self.ctx.me.terminate_reason())
        } else {
            exit
        }
    }

    /// Moves messages from the mailbox into Lua channels while they have room.
    fn route(&mut self, cx: &mut Context<'_>) -> Option<Exit> {
        let me = &self.ctx.me;
        // a coroutine stopped by preemption may be about to yield `poll_pending` without
        // looking at its channel again: wake it as usual then
        let polled = (!self.ctx.run.preempted.get()).then(|| cx.waker());
        if self.ctx.parked_count.get() > 0 {
            match self.ctx.unpark(polled) {
                Ok(moved) => self.routed |= moved,
                Err(e) => return Some(raised_exit(&e)),
            }
        }
        for _ in 0..MESSAGES_PER_POLL {
            let m = me.pop_message()?;
            if self.ctx.must_wait(&m.topic) {
                self.ctx.park(m);
                continue;
            }
            if let Err(e) = self.ctx.deliver(m, polled) {
                return Some(raised_exit(&e));
            }
            self.routed = true;
        }
        cx.waker().wake_by_ref();
        None
    }

    /// Goes on with the code `process.upgrade` asked for: the running code (its main
    /// thread and the coroutines it spawned) is dropped; the process keeps its pid, its
    /// mailbox and the messages waiting in its channels, its links, monitors, names and
    /// options, and runs the new entry's method with the given arguments, in that entry's
    /// environment.
    fn upgrade(&mut self, entry: Arc<Entry>, args: Vec<Value>) -> mlua::Result<()> {
        let w = worker()?;
        let spec = lua_spec(&entry).ok_or_else(|| mlua::Error::runtime("not a Lua entry"))?;
        let method = spec.method.clone().unwrap_or_else(|| "main".into());
        let factory = w.factory(&entry, spec)?;
        let env = w.new_env(&entry)?;
        let (main, main_ptr) = main_thread(&w, factory, env.clone(), &entry, &method, &args)?;
        tracing::debug!(pid = %self.ctx.pid_str, from = %self.ctx.entry().id, to = %entry.id, "process upgraded");
        *self.ctx.entry.borrow_mut() = entry;
        *self.ctx.env.borrow_mut() = env;
        self.ctx.spawned.borrow_mut().clear();
        self.coros = None;
        self.main = main;
        self.main_ptr = main_ptr;
        Ok(())
    }

    pub(crate) fn step(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        let r = self.step_code(cx);
        if r.is_pending() && self.ctx.ignored.get() {
            return Poll::Ready(Exit::Normal(Value::Str(b"ignore".to_vec())));
        }
        if r.is_pending() && self.ctx.upgrade_asked.replace(false) {
            let next = self.ctx.upgrade.borrow_mut().take();
            if let Some((entry, args)) = next {
                if let Err(e) = self.upgrade(entry, args) {
                    return Poll::Ready(raised_exit(&e));
                }
                cx.waker().wake_by_ref();
            }
        }
        r
    }

    fn step_code(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        let me = self.ctx.me.clone();
        me.register(cx.waker());
        while let Some(sig) = me.pop_signal() {
            match self.ctx.on_signal(sig) {
                Ok(None) => {}
                Ok(Some(exit)) => return Poll::Ready(exit),
                Err(e) => {
                    return Poll::Ready(Exit::Error(ExitError::new(
                        "INTERNAL",
                        errors::message(&e),
                    )))
                }
            }
        }
        if let Some(exit) = self.route(cx) {
            return Poll::Ready(exit);
        }
        // The hook checks the heap only in a coroutine that runs a whole time slice; a
        // process that grows the heap by receiving is caught here, after its messages
        // came in (not any process that happens to run while the heap is high).
        if std::mem::take(&mut self.routed) && over_memory(&self.ctx.lua, self.ctx.run.mem_limit) {
            return Poll::Ready(Exit::Error(ExitError::new(
                "INTERNAL",
                self.ctx.memory_error(),
            )));
        }
        let starting = self
            .ctx
            .start
            .borrow()
            .as_ref()
            .is_some_and(|n| !n.explicit);
        if starting {
            channel::take_message_wait();
        }
        self.ctx.run.polling.set(self.main_ptr as usize);
        self.ctx.run.resuming();
        let running = raw::Running::enter(self.main_ptr);
        let polled = Pin::new(&mut self.main).poll(cx);
        drop(running);
        if let Poll::Ready(r) = polled {
            if let Some(slot) = &mut self.call_result {
                **slot = Some(r);
                return Poll::Ready(Exit::Normal(Value::Nil));
            }
            return Poll::Ready(self.exit_of(r));
        }
        self.ctx.run.suspended();
        // its first wait for a message ends its start (OTP's init has returned), unless it
        // acknowledges explicitly; a sleep, a call or a channel of its own does not
        if starting {
            self.started_if_waiting();
        }
        // the coroutine may have made room in a full channel: route the rest soon
        if self.ctx.parked_has_room() {
            cx.waker().wake_by_ref();
        }
        if self.coros.is_none() && self.ctx.spawned.borrow().is_empty() {
            return Poll::Pending;
        }
        let coros = self.coros.get_or_insert_with(FuturesUnordered::new);
        loop {
            let new: Vec<mlua::Thread> = std::mem::take(&mut *self.ctx.spawned.borrow_mut());
            for t in new {
                let ptr = t.to_pointer();
                match t.into_async::<()>(()) {
                    Ok(fut) => coros.push(Spawned { ptr, fut }),
                    Err(e) => {
                        return Poll::Ready(Exit::Error(ExitError::new(
                            "INTERNAL",
                            errors::message(&e),
                        )))
                    }
                }
            }
            match coros.poll_next_unpin(cx) {
                Poll::Ready(Some((_, Err(e)))) => {
                    let exit = if self.ctx.me.kill_requested.load(Ordering::Relaxed) {
                        Exit::Killed(self.ctx.me.terminate_reason())
                    } else {
                        raised_exit(&e)
                    };
                    return Poll::Ready(match exit {
                        Exit::Error(e) => Exit::Error(ExitError::new(
                            e.kind,
                            format!("in a spawned coroutine: {}", e.message),
                        )),
                        other => other,
                    });
                }
                Poll::Ready(Some((_, Ok(())))) => continue,
                Poll::Ready(None) | Poll::Pending => {
                    if self.ctx.spawned.borrow().is_empty() {
                        if starting {
                            self.started_if_waiting();
                        }
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Reports the process started to the supervisor waiting for it, when its code (the
    /// main coroutine or a spawned one) now waits for a message.
    fn started_if_waiting(&self) {
        if !channel::take_message_wait() {
            return;
        }
        let mut start = self.ctx.start.borrow_mut();
        if start.as_ref().is_some_and(|n| !n.explicit) {
            if let Some(n) = start.take() {
                n.send(crate::process::Started::Running);
            }
        }
    }
}

impl Future for Driver {
    type Output = Exit;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Exit> {
        let _current = CurrentGuard::enter(Current::Process(self.ctx.clone()));
        self.step(cx)
    }
}

/// The exit of a process whose Lua code raised `e`: the raised error object's kind, or
/// INTERNAL (see `errors::kind_of_raised`).
fn raised_exit(e: &mlua::Error) -> Exit {
    let message = errors::message(e);
    Exit::Error(ExitError::new(errors::kind_of_raised(&message), message))
}

/// The launcher of `process.lua` entries (and of `function.lua` entries whose calls run
/// as processes, see `call_process`).
pub fn launcher(_node: &Arc<Node>, entry: &Arc<Entry>, _args: &[Value]) -> Result<Body, String> {
    match &entry.spec {
        EntrySpec::ProcessLua(_) | EntrySpec::FunctionLua(_) => {
            Ok(Box::new(|pctx: ProcessContext| {
                Box::pin(run_process(pctx)) as crate::process::BodyFuture
            }))
        }
        _ => Err(format!(
            "entry {} is a {}, not a process.lua",
            entry.id, entry.kind
        )),
    }
}

async fn run_process(pctx: ProcessContext) -> Exit {
    match start_process(pctx) {
        Ok(driver) => driver.await,
        Err(e) => raised_exit(&e),
    }
}

/// The thread that runs `method` of `entry` (compiled as `factory`, in `env`) with `args`.
fn main_thread(
    w: &LuaWorker,
    factory: mlua::Function,
    env: Table,
    entry: &Entry,
    method: &str,
    args: &[Value],
) -> mlua::Result<(mlua::AsyncThread<mlua::MultiValue>, *const std::ffi::c_void)> {
    let lua = &w.lua;
    let mut call_args = vec![
        mlua::Value::Function(factory),
        mlua::Value::Table(env),
        mlua::Value::String(lua.create_string(entry.id.to_string())?),
        mlua::Value::String(lua.create_string(method)?),
    ];
    call_args.extend(value::to_lua_multi(lua, args)?);
    let thread = lua.create_thread(w.bootstrap.clone())?;
    raw::unhook(&thread);
    let main_ptr = thread.to_pointer();
    let main = thread.into_async::<mlua::MultiValue>(mlua::MultiValue::from_vec(call_args))?;
    Ok((main, main_ptr))
}

fn start_process(pctx: ProcessContext) -> mlua::Result<Driver> {
    let w = worker()?;
    let ProcessContext {
        node,
        me,
        entry,
        host,
        args,
        context,
        start,
    } = pctx;
    let spec = lua_spec(&entry).ok_or_else(|| mlua::Error::runtime("not a Lua entry"))?;
    let method = spec.method.clone().unwrap_or_else(|| "main".into());
    let factory = w.factory(&entry, spec)?;
    let env = w.new_env(&entry)?;
    let ctx = Rc::new(ProcCtx::new(
        node,
        me,
        entry.clone(),
        host,
        w.lua.clone(),
        env.clone(),
        context,
        start,
    ));
    let (main, main_ptr) = main_thread(&w, factory, env, &entry, &method, &args)?;
    Ok(Driver {
        ctx,
        main,
        main_ptr,
        coros: None,
        routed: false,
        call_result: None,
    })
}
