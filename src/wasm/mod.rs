//! The WebAssembly engine: compiling, linking and calling `function.wat`,
//! `function.wasm` and `process.wasm` entries.
//!
//! Owns: the one wasmtime `Engine` of a runtime and its epoch ticker ([`engine`]), the
//! compilation of every wasm entry at load with an on-disk artifact cache ([`compile`]),
//! the capability groups and the `Linker` per set of them ([`linker`]), the WIT <-> [`Value`]
//! mapping ([`values`]), and calling an entry's export with its WASI context and limits
//! ([`function`]). [`compile_registry`] returns a [`WasmRuntime`] with every entry ready
//! to call, or every load error at once.
//!
//! Must not know: Lua, processes, pools or call routing. Callers hand it [`Value`]s and a
//! [`CallContext`](crate::functions::CallContext) and get [`Value`]s or a
//! [`CallError`](crate::functions::CallError) back; running a `process.wasm` as a
//! process (mailbox, exit signals) and queueing calls in pools belong to the process
//! and functions modules.
//!
//! [`Value`]: crate::value::Value

pub mod compile;
pub mod engine;
pub mod function;
pub mod guest_api;
pub mod linker;
pub mod memories;
pub mod process;
pub mod stacks;
pub mod store;
pub mod values;

pub use compile::{default_cache_dir, CacheStats};
pub use engine::EngineOptions;
pub use function::{Reserved, WasiPlan, WasmFunction, WasmResult};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::Engine;

use crate::functions::{CallContext, CallError};
use crate::registry::{Entry, EntrySpec, Id, LoadError, Registry, WasmSpec};
use crate::value::Value;
use compile::{CompileCache, Compiled};
use linker::LinkerCache;

/// How to build a [`WasmRuntime`].
#[derive(Clone, Debug, PartialEq)]
pub struct WasmOptions {
    /// Engine settings.
    pub engine: EngineOptions,
    /// The compile cache directory (None: no cache). Default: [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Entries compiled at once. Default: the number of CPUs.
    pub threads: usize,
}

impl Default for WasmOptions {
    fn default() -> Self {
        WasmOptions {
            engine: EngineOptions::default(),
            cache_dir: Some(default_cache_dir()),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// A compiled entry: the entry version and its function.
type EntryFunction = (Arc<Entry>, Arc<WasmFunction>);

/// What compiling a set of entries gave.
struct Built {
    functions: Vec<EntryFunction>,
    errors: Vec<LoadError>,
    cache: CacheStats,
    linkers: usize,
}

/// The engine and every compiled wasm entry of the running registry version.
///
/// When the registry changes, the runtime's validator compiles the wasm entries a change
/// creates or updates ([`WasmRuntime::prepare`]) and, once the version is published,
/// [`WasmRuntime::follow`] swaps them in: new calls and spawns get the new code, calls
/// running keep the function they started with.
pub struct WasmRuntime {
    engine: Engine,
    options: WasmOptions,
    slots: Arc<engine::InstanceLimit>,
    /// By id: the entry version compiled, and its function.
    functions: arc_swap::ArcSwap<BTreeMap<Id, EntryFunction>>,
    /// Compiled by `prepare` for a version not yet published.
    pending: parking_lot::Mutex<Vec<EntryFunction>>,
    cache: CacheStats,
    linkers: usize,
}

impl WasmRuntime {
    /// Live WebAssembly instances and the cap on them.
    pub fn instances(&self) -> (u32, u32) {
        (self.slots.live(), self.slots.cap())
    }

    /// The function (or `process.wasm` body) of entry `id`.
    pub fn function(&self, id: &Id) -> Option<Arc<WasmFunction>> {
        self.functions.load().get(id).map(|(_, f)| f.clone())
    }

    /// The ids of every compiled entry, in order.
    pub fn ids(&self) -> Vec<Id> {
        self.functions.load().keys().cloned().collect()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How many entries came from the on-disk cache and how many were compiled.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache
    }

    /// How many distinct linkers (capability sets) were built.
    pub fn linker_count(&self) -> usize {
        self.linkers
    }

    /// Compiles and links `entries` of `reg` with this runtime's engine.
    fn compile(
        &self,
        reg: &Registry,
        entries: &[Arc<Entry>],
    ) -> Result<Vec<EntryFunction>, Vec<LoadError>> {
        let b = build(reg, &self.engine, &self.options, &self.slots, entries);
        if b.errors.is_empty() {
            Ok(b.functions)
        } else {
            Err(b.errors)
        }
    }

    /// Compiles the wasm entries of candidate registry `reg` that differ from what runs
    /// (a registry change being validated) and keeps them for [`WasmRuntime::follow`].
    /// Returns their errors (empty: they compile and link).
    pub fn prepare(&self, reg: &Registry) -> Vec<LoadError> {
        let current = self.functions.load();
        let changed: Vec<Arc<Entry>> = reg
            .entries
            .values()
            .filter(|e| matches!(e.spec, EntrySpec::Wasm(_)))
            .filter(|e| !current.get(&e.id).is_some_and(|(c, _)| Arc::ptr_eq(c, e)))
            .cloned()
            .collect();
        if changed.is_empty() {
            return Vec::new();
        }
        match self.compile(reg, &changed) {
            Ok(fs) => {
                *self.pending.lock() = fs;
                Vec::new()
            }
            Err(errors) => errors,
        }
    }

    /// Makes the wasm entries of published registry `reg` the ones that run: the same
    /// entry versions keep their functions, those `prepare` compiled are swapped in, any
    /// other (a rollback to an earlier version) is compiled now; entries no longer in
    /// `reg` are dropped.
    pub fn follow(&self, reg: &Registry) {
        let current = self.functions.load_full();
        let mut pending = std::mem::take(&mut *self.pending.lock());
        let mut next = BTreeMap::new();
        let mut missing = Vec::new();
        for e in reg.entries.values() {
            if !matches!(e.spec, EntrySpec::Wasm(_)) {
                continue;
            }
            if let Some(c) = current.get(&e.id).filter(|(c, _)| Arc::ptr_eq(c, e)) {
                next.insert(e.id.clone(), c.clone());
            } else if let Some(i) = pending.iter().position(|(p, _)| Arc::ptr_eq(p, e)) {
                next.insert(e.id.clone(), pending.swap_remove(i));
            } else {
                missing.push(e.clone());
            }
        }
        if !missing.is_empty() {
            match self.compile(reg, &missing) {
                Ok(fs) => next.extend(fs.into_iter().map(|(e, f)| (e.id.clone(), (e, f)))),
                Err(errors) => {
                    for e in errors {
                        tracing::error!("{e}");
                    }
                }
            }
        }
        self.functions.store(Arc::new(next));
    }
}

/// Compiles and links `entries`.
fn build(
    reg: &Registry,
    engine: &Engine,
    options: &WasmOptions,
    slots: &Arc<engine::InstanceLimit>,
    entries: &[Arc<Entry>],
) -> Built {
    let entries: Vec<(Arc<Entry>, &WasmSpec)> = entries
        .iter()
        .filter_map(|e| match &e.spec {
            EntrySpec::Wasm(w) => Some((e.clone(), w)),
            _ => None,
        })
        .collect();
    let cache = CompileCache::new(options.cache_dir.clone(), engine);
    let compiled = compile::compile_all(engine, &cache, &entries, options.threads);
    let linkers = LinkerCache::new(engine);
    let mut errors = Vec::new();
    let mut functions = Vec::new();
    for ((entry, spec), result) in entries.iter().zip(compiled) {
        let err = |field: &str, message: String| LoadError {
            file: relative(reg, entry),
            entry: Some(entry.id.to_string()),
            field: Some(field.to_string()),
            message,
        };
        match result {
            Err((field, message)) => errors.push(err(field, message)),
            Ok(c) => match link(reg, engine, &linkers, entry, spec, c, slots) {
                Ok(f) => functions.push((entry.clone(), Arc::new(f))),
                Err(problems) => errors.extend(problems.into_iter().map(|(f, m)| err(&f, m))),
            },
        }
    }
    Built {
        functions,
        errors,
        cache: cache.stats(),
        linkers: linkers.len(),
    }
}

/// The kinds compiled here.
pub const WASM_KINDS: &[&str] = &["function.wat", "function.wasm", "process.wasm"];

/// Compiles and links every wasm entry of `reg` with the default options.
pub fn compile_registry(reg: &Registry) -> Result<WasmRuntime, Vec<LoadError>> {
    compile_registry_with(reg, &WasmOptions::default())
}

/// Compiles and links every wasm entry of `reg`: all of them, or all their errors.
pub fn compile_registry_with(
    reg: &Registry,
    options: &WasmOptions,
) -> Result<WasmRuntime, Vec<LoadError>> {
    let engine = engine::new_engine(&options.engine).map_err(|e| {
        vec![LoadError {
            file: reg.root.clone(),
            entry: None,
            field: None,
            message: format!("cannot create the WebAssembly engine: {}", error_text(&e)),
        }]
    })?;
    // One permit per live instance (see `EngineOptions::max_instances`).
    let slots = Arc::new(engine::InstanceLimit::new(&options.engine));
    tracing::debug!(cap = slots.cap(), "live WebAssembly instances capped");
    let entries: Vec<Arc<Entry>> = reg.entries.values().cloned().collect();
    let Built {
        functions,
        errors,
        cache,
        linkers,
    } = build(reg, &engine, options, &slots, &entries);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(WasmRuntime {
        engine,
        options: options.clone(),
        slots,
        functions: arc_swap::ArcSwap::from_pointee(
            functions
                .into_iter()
                .map(|(e, f)| (e.id.clone(), (e, f)))
                .collect(),
        ),
        pending: parking_lot::Mutex::new(Vec::new()),
        cache,
        linkers,
    })
}

/// The entry's file relative to the registry root (as the loader reports it).
fn relative(reg: &Registry, entry: &Entry) -> PathBuf {
    entry
        .file
        .strip_prefix(&reg.root)
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|_| entry.file.clone())
}

/// Finds the export `method` (`name` or `iface#name`) of `component`.
pub fn find_export(
    component: &Component,
    engine: &Engine,
    method: &str,
) -> Result<(ComponentExportIndex, ComponentFunc), String> {
    let ty = component.component_type();
    let root: Vec<(String, ComponentItem)> = ty
        .exports(engine)
        .map(|(n, e)| (n.to_string(), e.ty))
        .collect();
    let describe_root = || {
        let funcs: Vec<&str> = root
            .iter()
            .filter(|(_, t)| matches!(t, ComponentItem::ComponentFunc(_)))
            .map(|(n, _)| n.as_str())
            .collect();
        let ifaces: Vec<&str> = root
            .iter()
            .filter(|(_, t)| matches!(t, ComponentItem::ComponentInstance(_)))
            .map(|(n, _)| n.as_str())
            .collect();
        format!(
            "exported functions: {}; exported interfaces: {}",
            if funcs.is_empty() {
                "none".to_string()
            } else {
                funcs.join(", ")
            },
            if ifaces.is_empty() {
                "none".to_string()
            } else {
                ifaces.join(", ")
            }
        )
    };
    let (parent, name) = match method.split_once('#') {
        None => (None, method),
        Some((iface, name)) => {
            let short = |full: &str| -> bool {
                let bare = full.split('@').next().unwrap_or(full);
                bare == iface || bare.rsplit_once('/').is_some_and(|(_, s)| s == iface)
            };
            let found = root
                .iter()
                .find(|(n, t)| n == iface && matches!(t, ComponentItem::ComponentInstance(_)))
                .or_else(|| {
                    root.iter()
                        .find(|(n, t)| short(n) && matches!(t, ComponentItem::ComponentInstance(_)))
                });
            let Some((full, _)) = found else {
                return Err(format!(
                    "no exported interface {iface} ({})",
                    describe_root()
                ));
            };
            let idx = component
                .get_export_index(None, full.as_str())
                .ok_or_else(|| format!("no exported interface {iface}"))?;
            (Some((idx, full.clone())), name)
        }
    };
    match component.get_export(parent.as_ref().map(|(i, _)| i), name) {
        Some((ComponentItem::ComponentFunc(f), idx)) => Ok((idx, f)),
        Some(_) => Err(format!("export {method} is not a function")),
        None => match parent {
            None => Err(format!("no exported function {name} ({})", describe_root())),
            Some((_, full)) => {
                let inner: Vec<String> = match ty.get_export(engine, &full).map(|e| e.ty) {
                    Some(ComponentItem::ComponentInstance(i)) => i
                        .exports(engine)
                        .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                        .map(|(n, _)| n.to_string())
                        .collect(),
                    _ => Vec::new(),
                };
                Err(format!(
                    "interface {full} has no function {name} (its functions: {})",
                    inner.join(", ")
                ))
            }
        },
    }
}

/// Links one compiled entry: finds its export, checks the signature and imports, builds
/// its `InstancePre` and resolves its WASI context. Errors are (field, message).
fn link(
    reg: &Registry,
    engine: &Engine,
    linkers: &LinkerCache,
    entry: &Entry,
    spec: &WasmSpec,
    compiled: Compiled,
    slots: &Arc<engine::InstanceLimit>,
) -> Result<WasmFunction, Vec<(String, String)>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let component = &compiled.component;

    let export = match find_export(component, engine, &spec.method) {
        Ok((idx, func)) => {
            let params: Vec<(String, wasmtime::component::types::Type)> =
                func.params().map(|(n, t)| (n.to_string(), t)).collect();
            let results: Vec<_> = func.results().collect();
            for (n, t) in &params {
                if let Some(why) = values::unsupported(t) {
                    problems.push((
                        "method".into(),
                        format!("{}: parameter {n}: {why}", spec.method),
                    ));
                }
            }
            for t in &results {
                if let Some(why) = values::unsupported(t) {
                    problems.push(("method".into(), format!("{}: result: {why}", spec.method)));
                }
            }
            if func.async_() {
                problems.push((
                    "method".into(),
                    format!(
                        "{}: async-lifted exports are not supported yet",
                        spec.method
                    ),
                ));
            }
            Some((idx, params, results.into_iter().next()))
        }
        Err(m) => {
            problems.push(("method".into(), m));
            None
        }
    };

    for m in linker::check_imports(component, engine, &spec.imports) {
        problems.push(("imports".into(), m));
    }
    let pre = if problems.iter().any(|(f, _)| f == "imports") {
        None
    } else {
        match linkers
            .linker(&spec.imports)
            .and_then(|l| l.instantiate_pre(component))
        {
            Ok(pre) => Some(pre),
            Err(e) => {
                problems.push((
                    "imports".into(),
                    format!("cannot link the module: {}", error_text(&e)),
                ));
                None
            }
        }
    };

    let wasi = wasi_plan(reg, spec, &mut problems);

    match (export, pre) {
        (Some((idx, params, result)), Some(pre)) if problems.is_empty() => Ok(WasmFunction::new(
            entry.id.clone(),
            spec.method.clone(),
            engine.clone(),
            pre,
            idx,
            params,
            result,
            wasi,
            spec.limits.clone(),
            compiled.from_cache,
            slots.clone(),
        )),
        _ => Err(problems),
    }
}

/// Resolves `wasi.env` values and `wasi.mounts` directories from the registry.
fn wasi_plan(reg: &Registry, spec: &WasmSpec, problems: &mut Vec<(String, String)>) -> WasiPlan {
    let mut plan = WasiPlan {
        args: spec.wasi.args.clone(),
        cwd: spec.wasi.cwd.clone(),
        granted: spec.imports.iter().any(|g| g.starts_with("wasi:")),
        ..WasiPlan::default()
    };
    for (i, e) in spec.wasi.env.iter().enumerate() {
        let value = match reg.get(&e.id).map(|x| &x.spec) {
            Some(EntrySpec::EnvVariable { .. }) => reg.env_value(&e.id),
            _ => {
                problems.push((
                    format!("wasi.env[{i}].id"),
                    format!("{} is not an env.variable entry", e.id),
                ));
                continue;
            }
        };
        match value {
            Some(v) => plan.env.push((e.name.clone(), v)),
            None if e.required => problems.push((
                format!("wasi.env[{i}]"),
                format!(
                    "required variable {} has no value: {} has no value, its host variable is unset and it has no default",
                    e.name, e.id
                ),
            )),
            None => {}
        }
    }
    for (i, m) in spec.wasi.mounts.iter().enumerate() {
        match reg.get(&m.fs).map(|x| &x.spec) {
            Some(EntrySpec::FsDirectory { directory }) => {
                plan.mounts
                    .push((directory.clone(), m.guest.clone(), m.read_only))
            }
            _ => problems.push((
                format!("wasi.mounts[{i}].fs"),
                format!("{} is not an fs.directory entry", m.fs),
            )),
        }
    }
    plan
}

/// "a: b: c" from a wasmtime error's chain.
pub fn error_text(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Runs `function.wat` and `function.wasm` calls (the executor of those kinds): a pool
/// that keeps workers (static, adaptive, default) reuses warm instances, up to its size;
/// inline and lazy pools instantiate per call.
pub struct WasmExecutor {
    /// The compiled functions.
    pub runtime: Arc<WasmRuntime>,
    /// The node (weak: the node owns its executors); guests calling functions use it.
    pub node: std::sync::Weak<crate::process::Node>,
}

impl WasmExecutor {
    /// What a call of `pool`'s function needs besides its arguments: the function (None:
    /// not compiled), how many idle instances its pool keeps, and what the guest's host
    /// calls act for.
    pub fn prepare(
        &self,
        pool: &crate::functions::Pool,
        context: &Arc<CallContext>,
    ) -> (Option<Arc<WasmFunction>>, usize, Option<store::GuestCtx>) {
        let f = self.runtime.function(&pool.entry.id);
        let keep = if pool.keeps_instances() {
            pool.spec.max_size.min(256)
        } else {
            0
        };
        let host = self.node.upgrade().map(|node| store::GuestCtx {
            node,
            me: None,
            context: context.clone(),
        });
        (f, keep, host)
    }
}

/// The error of a call still running at the caller's deadline.
pub fn timed_out(pool: &crate::functions::Pool) -> CallError {
    CallError::new("TIMEOUT", format!("function {}: timed out", pool.entry.id))
}

impl crate::functions::Executor for WasmExecutor {
    fn execute(
        &self,
        pool: Arc<crate::functions::Pool>,
        args: Vec<Value>,
        context: Arc<CallContext>,
        deadline: tokio::time::Instant,
    ) -> futures::future::LocalBoxFuture<'static, Result<Value, CallError>> {
        let (f, keep, host) = self.prepare(&pool, &context);
        Box::pin(async move {
            let f = f.ok_or_else(|| {
                CallError::new(
                    "NOT_FOUND",
                    format!("function {} was not compiled", pool.entry.id),
                )
            })?;
            match tokio::time::timeout_at(deadline, f.call_with(args, &context, keep, host, false))
                .await
            {
                Err(_) => Err(timed_out(&pool)),
                Ok(Ok(WasmResult::Ok(v))) => Ok(v),
                Ok(Ok(WasmResult::Err(payload))) => Err(CallError::returned(payload)),
                Ok(Err(e)) => Err(e),
            }
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
