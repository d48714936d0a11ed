//! One callable wasm entry: [`WasmFunction`].
//!
//! A call converts its arguments to WIT values, makes a fresh `Store` (its own WASI
//! context and memory cap), instantiates the component from the entry's `InstancePre`
//! (linked once, at load) and calls the export asynchronously: a guest waiting on a
//! pollable or a clock suspends the calling task, not its thread. Nothing survives a
//! call, so a trap or a timeout never affects the next one. Calls must run inside a tokio
//! runtime with time and I/O enabled (a `current_thread` one is enough): the host side of
//! WASI is built on tokio.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use wasmtime::component::types::Type;
use wasmtime::component::{ComponentExportIndex, InstancePre, ResourceTable, Val};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::store::{MemoryLimitExceeded, MemoryLimiter, StoreState};
use super::values::{self, type_name};
use crate::functions::{CallContext, CallError};
use crate::registry::{Id, WasmLimits};
use crate::value::Value;
use wasmtime::component::Func;

thread_local! {
    /// Set when a guest on this thread began to wait in its mailbox `receive`.
    static MESSAGE_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks that a guest polled on this thread waits in its mailbox `receive`.
pub(crate) fn mark_message_wait() {
    MESSAGE_WAIT.with(|m| m.set(true));
}

/// Whether a guest polled on this thread began to wait in its mailbox `receive` since
/// the last call (clears the mark).
pub(crate) fn take_message_wait() -> bool {
    MESSAGE_WAIT.with(|m| m.replace(false))
}

/// What a successful call returned. A WIT `result<T, E>` return is split: its `ok` value
/// is `Ok`, its `err` value is `Err` (the Lua side returns `nil, err`). Any other return
/// type is `Ok`; a function without results returns `Ok(Value::Nil)`.
#[derive(Clone, Debug, PartialEq)]
pub enum WasmResult {
    /// The returned value (or the `ok` case of a returned result).
    Ok(Value),
    /// The `err` case of a returned result, mapped like any value.
    Err(Value),
}

/// The WASI context of an entry, resolved at load: values of `env.variable` entries and
/// host directories of `fs.directory` entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WasiPlan {
    /// Program arguments.
    pub args: Vec<String>,
    /// Initial working directory.
    pub cwd: Option<String>,
    /// Environment variables (name, value).
    pub env: Vec<(String, String)>,
    /// Preopened directories: (host path, guest path, read only).
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// Whether the entry grants any `wasi:` group. Without one, none of its imports can
    /// reach a WASI context, so its stores are made without one (making one seeds random
    /// number generators and boxes clocks and streams: about 5% of a spawn's time).
    pub granted: bool,
}

/// The error returned by the epoch callback when a call runs past its deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("max_execution_ms exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// One compiled, linked wasm entry, ready to be called any number of times, concurrently.
pub struct WasmFunction {
    id: Id,
    method: String,
    name: String,
    engine: Engine,
    pre: InstancePre<StoreState>,
    export: ComponentExportIndex,
    params: Vec<(String, Type)>,
    result: Option<Type>,
    wasi: WasiPlan,
    limits: WasmLimits,
    from_cache: bool,
    slots: Arc<super::engine::InstanceLimit>,
    /// Instances kept between calls by pools that reuse workers.
    idle: parking_lot::Mutex<Vec<Warm>>,
}

/// A permit for one live instance, taken at spawn (see [`WasmFunction::reserve`]).
pub struct Reserved(tokio::sync::OwnedSemaphorePermit);

/// An instantiated component ready for another call.
struct Warm {
    store: Store<StoreState>,
    func: Func,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl WasmFunction {
    /// Assembles a function (used by [`super::compile_registry`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: Id,
        method: String,
        engine: Engine,
        pre: InstancePre<StoreState>,
        export: ComponentExportIndex,
        params: Vec<(String, Type)>,
        result: Option<Type>,
        wasi: WasiPlan,
        limits: WasmLimits,
        from_cache: bool,
        slots: Arc<super::engine::InstanceLimit>,
    ) -> WasmFunction {
        let name = method
            .rsplit_once('#')
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| method.clone());
        WasmFunction {
            id,
            method,
            name,
            engine,
            pre,
            export,
            params,
            result,
            wasi,
            limits,
            from_cache,
            slots,
            idle: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The entry id.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// The export called, as written in the entry (`name` or `iface#name`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The WIT signature, e.g. `transform-users(users: list<record>) -> list<record>`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {}", type_name(t)))
            .collect();
        match &self.result {
            Some(r) => format!("{}({}) -> {}", self.name, params.join(", "), type_name(r)),
            None => format!("{}({})", self.name, params.join(", ")),
        }
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// The resolved WASI context.
    pub fn wasi(&self) -> &WasiPlan {
        &self.wasi
    }

    /// The limits.
    pub fn limits(&self) -> &WasmLimits {
        &self.limits
    }

    /// Converts call arguments to WIT values. Errors (kind INVALID) name the function,
    /// the parameter and the path inside it, e.g.
    /// `transform-users: users[2].tags[1]: expected string, got number`.
    pub fn convert_args(&self, args: &[Value]) -> Result<Vec<Val>, CallError> {
        let n = self.params.len();
        if args.len() > n
            || (args.len() < n
                && self.params[args.len()..]
                    .iter()
                    .any(|(_, t)| !matches!(t, Type::Option(_))))
        {
            let sig: Vec<String> = self
                .params
                .iter()
                .map(|(p, t)| format!("{p}: {}", type_name(t)))
                .collect();
            return Err(CallError::new(
                "INVALID",
                format!(
                    "{}: expected {n} argument{} ({}), got {}",
                    self.name,
                    if n == 1 { "" } else { "s" },
                    sig.join(", "),
                    args.len()
                ),
            ));
        }
        self.params
            .iter()
            .enumerate()
            .map(|(i, (pname, ty))| {
                let v = args.get(i).unwrap_or(&Value::Nil);
                values::to_val(v, ty).map_err(|e| {
                    CallError::new(
                        "INVALID",
                        format!("{}: {pname}{}: {}", self.name, e.path, e.message),
                    )
                })
            })
            .collect()
    }

    /// A fresh store with this entry's WASI context and memory cap; the epoch callback
    /// enforces the deadline of whichever call runs.
    fn new_store(&self, stdio: bool) -> Result<Store<StoreState>, CallError> {
        let wasi = if self.wasi.granted || stdio {
            Some(Box::new(self.wasi_ctx(stdio)?))
        } else {
            None
        };
        let state = StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory: self.limits.max_memory,
            },
            deadline: None,
            host: None,
            busy: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every epoch tick a running guest yields to the executor (so a busy guest cannot
        // starve the other tasks of its thread); past the deadline it is interrupted.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if ctx.data().deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(wasmtime::Error::new(DeadlineExceeded));
            }
            if let Some((clock, limit)) = &ctx.data().busy {
                if clock.busy() > *limit {
                    return Err(wasmtime::Error::new(DeadlineExceeded));
                }
                clock.tick_yield();
            }
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        Ok(store)
    }

    /// The entry's WASI context: its args, env and mounts; stdout and stderr inherited
    /// when `stdio`.
    fn wasi_ctx(&self, stdio: bool) -> Result<wasmtime_wasi::WasiCtx, CallError> {
        let mut b = WasiCtxBuilder::new();
        if stdio {
            b.inherit_stdout().inherit_stderr();
        }
        b.args(&self.wasi.args);
        for (k, v) in &self.wasi.env {
            b.env(k, v);
        }
        if let Some(cwd) = &self.wasi.cwd {
            b.initial_cwd(cwd);
        }
        for (host, guest, read_only) in &self.wasi.mounts {
            let perms = if *read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(host, guest, perms).map_err(|e| {
                CallError::new(
                    "INTERNAL",
                    format!(
                        "function {}: cannot open mount {} for {guest}: {}",
                        self.id,
                        host.display(),
                        super::error_text(&e)
                    ),
                )
            })?;
        }
        Ok(b.build())
    }

    /// Calls the function with `args` in a fresh instance. Errors: INVALID for arguments
    /// that do not fit the WIT signature, TIMEOUT past `max_execution_ms`, INTERNAL for a
    /// trap (the message carries the trap text), a refused memory growth or a failed
    /// instantiation.
    pub async fn call(&self, args: Vec<Value>, ctx: &CallContext) -> Result<WasmResult, CallError> {
        self.call_keeping(args, ctx, 0).await
    }

    /// Like [`call`](Self::call), but reuses an idle instance when there is one and keeps
    /// the instance afterwards when fewer than `keep` are idle (pools that keep workers).
    /// An instance that trapped or timed out is never kept.
    pub async fn call_keeping(
        &self,
        args: Vec<Value>,
        ctx: &CallContext,
        keep: usize,
    ) -> Result<WasmResult, CallError> {
        self.call_with(args, ctx, keep, None, false).await
    }

    /// The general call: `host` is what warden's host interfaces act for (the process, or
    /// the caller's context for functions); `stdio` lets a fresh instance write to the
    /// runtime's stdout and stderr (process entries that grant `wasi:cli`).
    pub async fn call_with(
        &self,
        args: Vec<Value>,
        ctx: &CallContext,
        keep: usize,
        host: Option<super::store::GuestCtx>,
        stdio: bool,
    ) -> Result<WasmResult, CallError> {
        let params = self.convert_args(&args)?;
        let result = self.call_vals(params, ctx, keep, host, stdio).await?;
        Ok(self.split(result))
    }

    /// A permit for one more live instance, for a spawn that must fail now, not later,
    /// when the runtime is at its cap (see `EngineOptions::max_instances`).
    pub fn reserve(&self) -> Result<Reserved, String> {
        self.slots
            .try_acquire()
            .map(Reserved)
            .ok_or_else(|| self.slots.exhausted())
    }

    /// [`call_with`](Self::call_with) for a `process.wasm`: its instance takes the permit
    /// the spawn reserved.
    pub async fn run_process(
        &self,
        args: Vec<Value>,
        ctx: &CallContext,
        host: super::store::GuestCtx,
        stdio: bool,
        reserved: Reserved,
    ) -> Result<WasmResult, CallError> {
        let params = self.convert_args(&args)?;
        let result = self
            .call_inner(params, ctx, 0, Some(host), stdio, Some(reserved.0))
            .await?;
        Ok(self.split(result))
    }

    fn split(&self, result: Option<Val>) -> WasmResult {
        match self.outcome(result) {
            Ok(v) => WasmResult::Ok(v.as_ref().map(values::from_val).unwrap_or(Value::Nil)),
            Err(payload) => WasmResult::Err(payload),
        }
    }

    /// The parameters of the export: names and WIT types.
    pub fn params(&self) -> &[(String, Type)] {
        &self.params
    }

    /// What a call returned, split: a WIT `result`'s `ok` payload (None: nothing) or its
    /// `err` payload as a [`Value`] (a message naming the function when it has none); any
    /// other return is `Ok` as is.
    pub fn outcome(&self, result: Option<Val>) -> Result<Option<Val>, Value> {
        match result {
            Some(Val::Result(r)) if matches!(self.result, Some(Type::Result(_))) => match r {
                Ok(v) => Ok(v.map(|b| *b)),
                Err(v) => Err(v
                    .as_deref()
                    .map(values::from_val)
                    .unwrap_or_else(|| Value::str(format!("{} returned an error", self.name)))),
            },
            other => Ok(other),
        }
    }

    /// Calls the export with arguments already converted to WIT values (see
    /// [`convert_args`](Self::convert_args)) and returns its raw result (None for an
    /// export without results). The rest is as [`call_with`](Self::call_with).
    pub async fn call_vals(
        &self,
        params: Vec<Val>,
        ctx: &CallContext,
        keep: usize,
        host: Option<super::store::GuestCtx>,
        stdio: bool,
    ) -> Result<Option<Val>, CallError> {
        self.call_inner(params, ctx, keep, host, stdio, None).await
    }

    async fn call_inner(
        &self,
        params: Vec<Val>,
        ctx: &CallContext,
        keep: usize,
        host: Option<super::store::GuestCtx>,
        stdio: bool,
        reserved: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Option<Val>, CallError> {
        tracing::trace!(function = %self.id, actor = ?ctx.actor, "wasm call");
        let max = self.limits.max_execution_ms.map(Duration::from_millis);
        // a process's limit is on each stretch without waiting; its instantiation (and a
        // function call as a whole) must end within the limit
        let process = host.as_ref().is_some_and(|h| h.me.is_some());
        let init_deadline = max.map(|d| Instant::now() + d);
        let deadline = if process { None } else { init_deadline };
        let warm = if keep > 0 {
            self.idle.lock().pop()
        } else {
            None
        };
        let mut warm = match warm {
            Some(w) => w,
            // boxed: a rare, large future that would make every call's future (moved
            // into a box by callers) as large as it
            None => {
                Box::pin(self.instantiate(init_deadline, host.clone(), stdio, reserved)).await?
            }
        };
        let busy = (process && max.is_some()).then(|| Arc::new(super::store::BusyClock::default()));
        warm.store.data_mut().deadline = deadline;
        warm.store.data_mut().host = host;
        warm.store.data_mut().busy = busy.clone().zip(max);
        warm.store.set_epoch_deadline(1);
        let func = warm.func;
        let with_result = self.result.is_some();
        let outcome = {
            let store = &mut warm.store;
            let run = async {
                let mut results = [values::placeholder()];
                let n = usize::from(with_result);
                func.call_async(&mut *store, &params, &mut results[..n])
                    .await?;
                Ok::<_, wasmtime::Error>(
                    with_result.then(|| std::mem::replace(&mut results[0], values::placeholder())),
                )
            };
            let guarded = std::panic::AssertUnwindSafe(run).catch_unwind();
            let mut guarded = std::pin::pin!(guarded);
            let guarded = std::future::poll_fn(|cx| match &busy {
                Some(clock) => {
                    clock.poll_started();
                    let r = std::future::Future::poll(guarded.as_mut(), cx);
                    clock.poll_ended(r.is_pending());
                    r
                }
                None => std::future::Future::poll(guarded.as_mut(), cx),
            });
            match deadline {
                Some(d) => {
                    let limited =
                        tokio::time::timeout_at(tokio::time::Instant::from_std(d), guarded);
                    match Box::pin(limited).await {
                        Ok(r) => r,
                        Err(_) => return Err(self.timeout_error()),
                    }
                }
                None => guarded.await,
            }
        };
        let result = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(self.map_error(&e)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(CallError::new(
                    "INTERNAL",
                    format!("function {}: host panic during the call: {what}", self.id),
                ));
            }
        };
        if keep > 0 {
            // an idle instance must not hold the caller's node (a reference cycle)
            warm.store.data_mut().host = None;
            let mut idle = self.idle.lock();
            if idle.len() < keep {
                idle.push(warm);
            }
        }
        Ok(result)
    }

    /// A new instance. At the runtime's cap on live instances, a function call waits for
    /// one to end (until its deadline); a process fails at once.
    async fn instantiate(
        &self,
        deadline: Option<Instant>,
        host: Option<super::store::GuestCtx>,
        stdio: bool,
        reserved: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Warm, CallError> {
        let process = host.as_ref().is_some_and(|h| h.me.is_some());
        let slot = match reserved.or_else(|| self.slots.try_acquire()) {
            Some(s) => s,
            None if process => {
                return Err(CallError::new(
                    "UNAVAILABLE",
                    format!("{}: cannot start: {}", self.id, self.slots.exhausted()),
                ))
            }
            None => self.slots.acquire().await,
        };
        let mut store = self.new_store(stdio)?;
        store.data_mut().deadline = deadline;
        store.data_mut().host = host;
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.map_error(&e))?;
        let func = instance.get_func(&mut store, self.export).ok_or_else(|| {
            CallError::new(
                "INTERNAL",
                format!("function {}: export {} not found", self.id, self.method),
            )
        })?;
        Ok(Warm {
            store,
            func,
            _slot: slot,
        })
    }

    fn timeout_error(&self) -> CallError {
        CallError::new(
            "TIMEOUT",
            format!(
                "function {}: interrupted after max_execution_ms ({} ms)",
                self.id,
                self.limits.max_execution_ms.unwrap_or_default()
            ),
        )
    }

    fn map_error(&self, e: &wasmtime::Error) -> CallError {
        let find = |f: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| e.chain().any(f);
        if find(&|c| c.is::<DeadlineExceeded>()) {
            return self.timeout_error();
        }
        if let Some(m) = e
            .chain()
            .find_map(|c| c.downcast_ref::<MemoryLimitExceeded>())
        {
            return CallError::new("INTERNAL", format!("function {}: {m}", self.id));
        }
        if let Some(t) = e.chain().find_map(|c| c.downcast_ref::<Trap>()) {
            if *t == Trap::Interrupt {
                return self.timeout_error();
            }
            return CallError::new("INTERNAL", format!("function {}: {t}", self.id));
        }
        if let Some(exit) = e
            .chain()
            .find_map(|c| c.downcast_ref::<wasmtime_wasi::I32Exit>())
        {
            return CallError {
                kind: "EXIT",
                message: format!(
                    "function {}: the guest exited with status {}",
                    self.id, exit.0
                ),
                payload: Some(Value::Int(exit.0 as i64)),
            };
        }
        CallError::new(
            "INTERNAL",
            format!("function {}: {}", self.id, super::error_text(e)),
        )
    }
}
