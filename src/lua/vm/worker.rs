//! The Lua state of a worker thread: the sandbox, the built-in modules, `require`, and the
//! chunks compiled once per worker.

use crate::lua::context::{current, current_any, Current};
use crate::lua::preempt::{preempt_hook, HOOK_INSTRUCTIONS, STATE_MEMORY};
use crate::lua::{
    channel, errors, logger, modules, payload, process_api, random, raw, supervisor, test, time,
    types, watchdog,
};
use crate::registry::{Entry, Id, LuaSpec};
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

thread_local! {
    pub(in crate::lua) static WORKER: RefCell<Option<Rc<LuaWorker>>> = const { RefCell::new(None) };
}

pub use crate::lua::modules::BUILTIN_MODULES;

/// Idle instances of one function entry version.
pub(crate) type IdleInstances = (Arc<Entry>, Vec<IdleInstance>);

/// An instance of a function waiting for its next call on this worker.
pub(crate) struct IdleInstance {
    /// Its method.
    pub func: Function,
    /// Its globals.
    pub env: Table,
    /// The coroutine its last call ran in, finished, for its next call: only this
    /// instance's own code has ever run in it (a call that failed, or became a process,
    /// leaves none).
    pub thread: Option<mlua::Thread>,
    /// Since when it is idle: kept only when the pool has an `idle_timeout`, the one
    /// reader.
    pub since: Option<std::time::Instant>,
}

/// The Lua state of one worker thread and what is compiled in it.
pub struct LuaWorker {
    /// The state.
    pub lua: Lua,
    pub(in crate::lua) env_mt: Table,
    pub(in crate::lua) message_mt: Table,
    pub(in crate::lua) bootstrap: Function,
    pub(in crate::lua) instantiate: Function,
    pub(in crate::lua) method_of: Function,
    pub(in crate::lua) modules: HashMap<&'static str, Table>,
    /// Compiled chunks by entry (Fx hashing, as `idle`: found on every spawn).
    pub(in crate::lua) factories: RefCell<rustc_hash::FxHashMap<Id, (Arc<Entry>, Factory)>>,
    pub(in crate::lua) requires: RefCell<rustc_hash::FxHashMap<Id, (Arc<Entry>, Function)>>,
    /// Idle function instances kept by pools, per function entry (looked up twice per
    /// call: Fx hashing, the ids are the app's own entries).
    pub(crate) idle: RefCell<rustc_hash::FxHashMap<Id, IdleInstances>>,
}

/// An entry's chunk compiled in a worker, with the names its instances start with (made
/// once per entry version, not per spawn).
#[derive(Clone)]
pub(in crate::lua) struct Factory {
    /// `function(_ENV, ...)` around the chunk: runs it in the given globals.
    pub(in crate::lua) func: Function,
    /// The entry id, as a Lua string.
    pub(in crate::lua) id: mlua::String,
    /// The method its processes and function instances run (`main` by default).
    pub(in crate::lua) method: mlua::String,
    /// Makes a process of the entry: its globals and its main coroutine (`raw::start`).
    pub(in crate::lua) starter: Function,
    /// The entry's `limits:`, read once (each of its processes starts with them).
    pub(in crate::lua) limits: crate::lua::Limits,
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

/// The functions of Lua's `os` library that no process gets: removed from the worker's
/// state once the sandbox is built.
pub(in crate::lua) const OS_REMOVED: &[&str] = &[
    "execute",
    "exit",
    "remove",
    "rename",
    "getenv",
    "tmpname",
    "setlocale",
];

impl LuaWorker {
    pub(in crate::lua) fn new() -> mlua::Result<LuaWorker> {
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
        let (co_create, co_wrap) = watchdog::coroutine_functions(&lua, lua_wrap)?;
        rust.set("coroutine_create", co_create)?;
        rust.set("coroutine_wrap", co_wrap)?;
        let describe = lua.create_function(errors::describe)?;
        rust.set("errors", errors::module(&lua)?)?;
        rust.set("payload", payload::module(&lua)?)?;
        let message_mt = crate::lua::message::install(&lua, &rust)?;
        let (math_random, math_randomseed) = random::functions(&lua)?;
        rust.set("math_random", math_random)?;
        rust.set("math_randomseed", math_randomseed)?;
        rust.set("log_print", lua.create_function(logger::log_print)?)?;
        // the functions `test.run_cases` made (weak keys): the bootstrap runs one that a
        // test's method returns
        let test_runners = lua.create_table()?;
        let weak_keys = lua.create_table()?;
        weak_keys.set("__mode", "k")?;
        test_runners.set_metatable(Some(weak_keys))?;
        // a function instance runs through this (vm/raw.rs)
        rust.set(
            "run_protected",
            raw::run_protected_function(&lua, &describe)?,
        )?;
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
        channel::install_receive(&lua, &message_mt)?;
        let freeze: Function = setup.get("freeze")?;
        let mut modules = HashMap::new();
        for (name, build) in modules::CONSTRUCTORS {
            modules.insert(*name, freeze.call((build(&lua)?, *name))?);
        }
        let bootstrap = raw::boot_function(&lua, &describe, &test_runners)?;
        let test = test::module(
            &lua,
            test_runners,
            supervisor::module(&lua)?,
            time::module(&lua)?,
        )?;
        modules.insert(modules::TEST, freeze.call((test, modules::TEST))?);
        // globals that Wippy apps also list under `modules`: require gives the global
        let env_mt: Table = setup.get("env_mt")?;
        let base: Table = env_mt.raw_get("__index")?;
        for name in modules::GLOBAL_MODULES {
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
        watchdog::install(&lua)?;
        Ok(LuaWorker {
            env_mt: setup.get("env_mt")?,
            message_mt,
            bootstrap,
            instantiate: setup.get("instantiate")?,
            method_of: setup.get("method_of")?,
            modules,
            factories: RefCell::new(Default::default()),
            requires: RefCell::new(Default::default()),
            idle: RefCell::new(Default::default()),
            lua,
        })
    }

    /// A fresh globals table for one instance of `entry` (a process or a library).
    pub(in crate::lua) fn new_env(&self, entry: &Arc<Entry>) -> mlua::Result<Table> {
        crate::lua::raw::new_env(&self.lua, &self.env_mt, &self.require_fn(entry)?)
    }

    /// The compiled factory of an entry's chunk (compiled once per worker and entry
    /// version).
    pub(in crate::lua) fn factory(
        &self,
        entry: &Arc<Entry>,
        spec: &LuaSpec,
    ) -> mlua::Result<Factory> {
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
        let func: Function = self
            .lua
            .load(wrapped)
            .set_name(format!("@{}", spec.chunk_name))
            .set_mode(mlua::ChunkMode::Text)
            .eval()?;
        let id = self.lua.create_string(entry.id.to_string())?;
        let method = self
            .lua
            .create_string(spec.method.as_deref().unwrap_or("main"))?;
        let starter = crate::lua::raw::starter(
            &self.lua,
            &self.env_mt,
            &self.require_fn(entry)?,
            &self.bootstrap,
            &func,
            &id,
            &method,
        )?;
        let f = Factory {
            func,
            id,
            method,
            starter,
            limits: crate::lua::Limits::of(entry),
        };
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
        let f = self
            .method_of
            .call((factory.func, env.clone(), factory.id, factory.method))?;
        Ok((f, env))
    }

    /// The resolver behind an entry's `require`: its imports and its allowed built-in
    /// modules (each instance keeps what it loaded, see `raw::new_env`).
    pub(in crate::lua) fn require_fn(&self, entry: &Arc<Entry>) -> mlua::Result<Function> {
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

/// The Lua part of a Lua entry.
pub(crate) fn lua_spec(entry: &Entry) -> Option<&LuaSpec> {
    entry.spec.lua()
}

pub(in crate::lua) fn require(
    lua: &Lua,
    owner: &Arc<Entry>,
    name: &str,
) -> Result<mlua::Value, String> {
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
            w.instantiate.call((factory.func, env))
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

pub(in crate::lua) fn sandboxed_load(
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
pub(in crate::lua) fn coroutine_spawn(lua: &Lua, f: Function) -> mlua::Result<mlua::Thread> {
    let ctx = current()?;
    let t = lua.create_thread(f)?;
    watchdog::unhook(&t);
    ctx.spawned.borrow_mut().push(t.clone());
    Ok(t)
}
