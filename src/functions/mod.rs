//! Functions: resolving a function id to its pool, and the pools' concurrency bounds.
//!
//! A call is routed by id: [`FunctionTable::resolve`] checks the id, finds the entry in the
//! current registry snapshot and returns the entry's [`Pool`] (created on first use and
//! replaced when a registry change gives the entry a new version). The pool bounds how
//! many calls run at once; callers beyond the bound wait, up to their deadline, and then
//! get a TIMEOUT error (nothing is dropped silently). Running the function is the job of
//! the language host (`lua::funcs` for `function.lua`); this module knows neither Lua nor
//! WebAssembly.

use crate::registry::{Entry, EntrySpec, Id, PoolKind, PoolSpec, Registry};
use crate::value::Value;
use dashmap::DashMap;
use futures::future::LocalBoxFuture;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Timeout of a call when the caller sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The entry kinds that are functions.
pub const FUNCTION_KINDS: &[&str] = &["function.lua", "function.wat", "function.wasm"];

/// Why a call failed. `kind` is what `err:kind()` answers in Lua.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// `INVALID`, `NOT_FOUND`, `TIMEOUT`, `CANCELED`, `INTERNAL`, `FAILED`, ...
    pub kind: &'static str,
    /// One line.
    pub message: String,
    /// The error value the function returned, when it returned one (a WIT `result`'s error
    /// case): callers get this value as `err`, mapped like any value.
    pub payload: Option<Value>,
}

impl CallError {
    /// An error of `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> CallError {
        CallError {
            kind,
            message: message.into(),
            payload: None,
        }
    }

    /// The error value a function returned (kind FAILED).
    pub fn returned(payload: Value) -> CallError {
        CallError {
            kind: "FAILED",
            message: crate::value::display(&payload),
            payload: Some(payload),
        }
    }
}

/// Runs the calls of one kind of function entry (registered per kind by the runtime:
/// `function.lua` by the Lua runtime, `function.wat` / `function.wasm` by the WebAssembly
/// engine). It runs on the caller's worker thread, after the pool granted a worker.
pub trait Executor: Send + Sync {
    /// Runs one call of `pool`'s function; must give up at `deadline`.
    fn execute(
        &self,
        pool: Arc<Pool>,
        args: Vec<Value>,
        context: Arc<CallContext>,
        deadline: Instant,
    ) -> LocalBoxFuture<'static, Result<Value, CallError>>;

    /// The executor itself, for a caller with a faster path for one kind (the Lua runtime
    /// converts arguments of WebAssembly functions straight off its stack).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What travels with a call: who started the chain of calls, and the values set with
/// `with_context`. Nested calls inherit it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallContext {
    /// The pid of the process that started the chain (None: the runtime or the CLI), or
    /// the actor a caller named with `with_actor`.
    pub actor: Option<String>,
    /// The metadata of the actor a caller named with `with_actor` (`security.new_actor`'s
    /// `meta`), for the conditions of security policies.
    pub actor_meta: Option<Value>,
    /// Values visible to callees through `ctx.get(key)`.
    pub values: Vec<(String, Value)>,
    /// The security scope a caller named with `with_scope`: policy ids (None: none).
    pub scope: Option<Vec<String>>,
    /// The chain came from another node of the cluster: its calls run on this node
    /// (a full pool waits here rather than overflow back).
    pub from_cluster: bool,
}

impl CallContext {
    /// This context with `values` added (later values replace earlier ones of the same key).
    pub fn with(&self, values: Vec<(String, Value)>) -> CallContext {
        let mut out = self.clone();
        for (k, v) in values {
            match out.values.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => out.values.push((k, v)),
            }
        }
        out
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Counters of a pool, for tests, logs and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Calls running now.
    pub running: usize,
    /// Callers waiting for a worker now.
    pub waiting: usize,
    /// Most calls that ran at once.
    pub peak: usize,
    /// Calls started.
    pub calls: u64,
    /// Callers that gave up waiting (timeout or cancel).
    pub gave_up: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// Idle `function.lua` instances kept for the next calls (over all threads).
    pub idle: usize,
}

/// The pool of one function entry.
pub struct Pool {
    /// The function entry (this version of it).
    pub entry: Arc<Entry>,
    /// Its settings.
    pub spec: PoolSpec,
    /// Whether `max_size` bounds the calls running at once (every kind but inline).
    bounded: bool,
    /// Calls running now: a call takes a worker by raising it while it is under
    /// `max_size` (one atomic step, no lock), and gives it back by lowering it.
    running: AtomicUsize,
    /// Callers waiting for a worker. While there are any, a new caller queues behind
    /// them instead of taking a worker that was just given back (first come, first
    /// served).
    waiting: AtomicUsize,
    /// Wakes the longest-waiting caller when a worker is given back.
    freed: Notify,
    peak: AtomicUsize,
    calls: AtomicU64,
    gave_up: AtomicU64,
    errors: AtomicU64,
    /// How long its calls took (timed once [`time_calls`] was called).
    pub latency: Latency,
    /// Idle instances kept by the executors (counted by them).
    pub idle: AtomicUsize,
    /// What the executor derived once from the entry (see [`Pool::derived`]).
    derived: std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
    /// Each call runs as a process of its own (a `process.lua` entry called as a
    /// function): the executor registered as [`AS_PROCESS`] runs it.
    pub as_process: bool,
}

/// Whether calls are timed (set once the admin endpoint serves their latency).
static TIMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Times every call from now on, for the latency histograms of [`Pool::latency`] (the
/// admin endpoint turns it on; a node without it reads no clock per call).
pub fn time_calls() {
    TIMING.store(true, Ordering::Relaxed);
}

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000,
];

/// A latency histogram read at one moment: (sum in seconds, count, calls per bucket as
/// (upper bound in seconds, calls)).
pub type LatencySnapshot = (f64, u64, Vec<(f64, u64)>);

/// A histogram of call latencies (buckets of [`LATENCY_BOUNDS_US`], then one above).
#[derive(Default)]
pub struct Latency {
    buckets: [AtomicU64; 15],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Latency {
    fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (sum in seconds, count, calls per bucket: upper bound in seconds, then +inf).
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_US
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| (*b as f64 / 1e6, n.load(Ordering::Relaxed)))
            .collect();
        buckets.push((f64::INFINITY, self.buckets[14].load(Ordering::Relaxed)));
        (
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            self.count.load(Ordering::Relaxed),
            buckets,
        )
    }
}

/// What [`Pool::derived`] gives: the value kept with the pool, or one derived afresh.
pub enum Derived<'a, T> {
    /// Kept with the pool.
    Kept(&'a T),
    /// Derived for this call only (the pool keeps a value of another type).
    Fresh(Box<T>),
}

impl<T> std::ops::Deref for Derived<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Derived::Kept(t) => t,
            Derived::Fresh(t) => t,
        }
    }
}

/// The executor key of calls that run as processes (see [`Pool::as_process`]).
pub const AS_PROCESS: &str = "process";

/// A running call's hold on a pool worker; released when dropped. It borrows its pool
/// (`&Pool`, from [`Pool::acquire`]) or owns a count of it (`Arc<Pool>`, from
/// [`Pool::try_acquire`], for a call kept in a future of its own).
pub struct Permit<P: std::borrow::Borrow<Pool> = Arc<Pool>> {
    pool: P,
    started: Option<Instant>,
}

impl<P: std::borrow::Borrow<Pool>> Drop for Permit<P> {
    fn drop(&mut self) {
        let pool: &Pool = self.pool.borrow();
        pool.running.fetch_sub(1, Ordering::SeqCst);
        // a caller that queued before this load is woken; one that queues after it
        // sees the worker free when it looks again (`Pool::acquire`)
        if pool.waiting.load(Ordering::SeqCst) > 0 {
            pool.freed.notify_one();
        }
        if let Some(t) = self.started {
            pool.latency.observe(t.elapsed());
        }
    }
}

struct Waiting<'a>(&'a Pool, bool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        if !self.1 {
            self.0.gave_up.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Pool {
    /// A pool for `entry` with `spec`.
    pub fn new(entry: Arc<Entry>, spec: PoolSpec) -> Pool {
        Pool {
            entry,
            bounded: spec.kind != PoolKind::Inline,
            spec,
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            peak: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Latency::default(),
            idle: AtomicUsize::new(0),
            derived: std::sync::OnceLock::new(),
            as_process: false,
        }
    }

    /// Data an executor derives from the entry once per pool (this entry version) instead
    /// of on every call, such as its parsed limits: `make` runs on first use.
    pub fn derived<T: std::any::Any + Send + Sync>(
        &self,
        make: impl Fn(&Entry) -> T,
    ) -> Derived<'_, T> {
        let kept = self.derived.get_or_init(|| Arc::new(make(&self.entry)));
        // one executor serves a pool, so the type always matches; if not, derive afresh
        match kept.downcast_ref::<T>() {
            Some(t) => Derived::Kept(t),
            None => Derived::Fresh(Box::new(make(&self.entry))),
        }
    }

    /// Waits for a worker until `deadline`. Waiting is cancel-safe: a caller that gives up
    /// leaves no trace in the pool. Callers are served in the order they queued.
    pub async fn acquire(&self, deadline: Instant) -> Result<Permit<&Pool>, CallError> {
        if self.waiting.load(Ordering::SeqCst) == 0 && self.take_worker() {
            return Ok(Pool::granted(self));
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = Waiting(self, false);
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                // registered before looking, so a worker given back after the look
                // wakes this caller
                let freed = self.freed.notified();
                let mut freed = std::pin::pin!(freed);
                freed.as_mut().enable();
                if self.take_worker() {
                    return;
                }
                freed.await;
            }
        })
        .await;
        if waited.is_err() {
            let why = if queued >= self.spec.buffer {
                format!(
                    "the pool and its queue are full ({} workers, {} waiting)",
                    self.spec.max_size, queued
                )
            } else {
                format!("all {} workers stayed busy", self.spec.max_size)
            };
            return Err(CallError::new(
                "TIMEOUT",
                format!(
                    "function {}: timed out waiting for a worker: {why}",
                    self.entry.id
                ),
            ));
        }
        w.1 = true;
        drop(w);
        Ok(Pool::granted(self))
    }

    /// Takes a worker if one is free (an unbounded pool always has one).
    fn take_worker(&self) -> bool {
        if !self.bounded {
            self.running.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        let max = self.spec.max_size;
        self.running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Every worker is busy (a call now would wait).
    pub fn is_full(&self) -> bool {
        self.bounded && self.running.load(Ordering::SeqCst) >= self.spec.max_size
    }

    /// A worker now, if one is free and no caller waits for one (None: the caller would
    /// have to wait).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        (self.waiting.load(Ordering::SeqCst) == 0 && self.take_worker())
            .then(|| Pool::granted(self.clone()))
    }

    /// Counts a worker granted from `pool` (its `running` was raised by
    /// [`Pool::take_worker`]) and makes its permit.
    fn granted<P: std::borrow::Borrow<Pool>>(pool: P) -> Permit<P> {
        let p: &Pool = pool.borrow();
        let now = p.running.load(Ordering::Relaxed);
        if now > p.peak.load(Ordering::Relaxed) {
            p.peak.fetch_max(now, Ordering::Relaxed);
        }
        p.calls.fetch_add(1, Ordering::Relaxed);
        Permit {
            pool,
            started: TIMING.load(Ordering::Relaxed).then(Instant::now),
        }
    }

    /// Counts a call that ended in an error.
    pub fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a finished call's instance is kept for the next call.
    pub fn keeps_instances(&self) -> bool {
        matches!(
            self.spec.kind,
            PoolKind::Static | PoolKind::Adaptive | PoolKind::Default
        )
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            running: self.running.load(Ordering::Acquire),
            waiting: self.waiting.load(Ordering::Acquire),
            peak: self.peak.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            idle: self.idle.load(Ordering::Relaxed),
        }
    }
}

/// The function a thread called last, resolved: a caller that calls one id over and over
/// skips parsing it and three map lookups (about 1,300 instructions a call). Valid while
/// the registry snapshot is the same one (kept alive here, so its address is not reused;
/// a reload makes a new snapshot, and the next call resolves again).
struct LastCall {
    table: *const FunctionTable,
    registry: Arc<Registry>,
    target: String,
    pool: Arc<Pool>,
    executor: Arc<dyn Executor>,
}

thread_local! {
    static LAST_CALL: std::cell::RefCell<Option<LastCall>> = const { std::cell::RefCell::new(None) };
}

impl LastCall {
    fn find(
        table: &FunctionTable,
        registry: &Arc<Registry>,
        target: &str,
    ) -> Option<(Arc<Pool>, Arc<dyn Executor>)> {
        LAST_CALL.with(|c| {
            let c = c.try_borrow().ok()?;
            let last = c.as_ref()?;
            (std::ptr::eq(last.table, table)
                && Arc::ptr_eq(&last.registry, registry)
                && last.target == target)
                .then(|| (last.pool.clone(), last.executor.clone()))
        })
    }

    fn keep(
        table: &FunctionTable,
        registry: &Arc<Registry>,
        target: &str,
        pool: &Arc<Pool>,
        executor: &Arc<dyn Executor>,
    ) {
        LAST_CALL.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = Some(LastCall {
                    table,
                    registry: registry.clone(),
                    target: target.to_string(),
                    pool: pool.clone(),
                    executor: executor.clone(),
                });
            }
        })
    }
}

/// Calls of functions this node does not have, on the nodes that do (the cluster
/// implements it).
pub trait RemoteCalls: Send + Sync {
    /// Calls `target` on a node that runs it; None when no node does.
    fn call(
        &self,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'static, Option<Result<Value, CallError>>>;

    /// Calls `target` on another node than this one (this node's pool is full); None
    /// when no other node runs it.
    fn call_elsewhere(
        &self,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'static, Option<Result<Value, CallError>>>;
}

/// The pools of a node, by function id, and the executors by entry kind.
#[derive(Default)]
pub struct FunctionTable {
    pools: DashMap<Id, Arc<Pool>>,
    executors: DashMap<&'static str, Arc<dyn Executor>>,
    remote: arc_swap::ArcSwapOption<Box<dyn RemoteCalls>>,
}

impl FunctionTable {
    /// Sends calls of functions this node does not have to `remote` (joining a cluster).
    pub fn set_remote(&self, remote: Box<dyn RemoteCalls>) {
        self.remote.store(Some(Arc::new(remote)));
    }

    /// Stops sending calls to other nodes.
    pub fn clear_remote(&self) {
        self.remote.store(None);
    }

    /// The executor registered for `kind`.
    pub fn executor(&self, kind: &str) -> Option<Arc<dyn Executor>> {
        self.executors.get(kind).map(|e| e.clone())
    }

    /// Registers the executor of an entry kind.
    pub fn register(&self, kind: &'static str, executor: Arc<dyn Executor>) {
        self.executors.insert(kind, executor);
    }

    /// Calls function `target`: resolves it, waits for a worker of its pool (until the
    /// deadline), and runs it with the executor of its kind.
    pub async fn call(
        &self,
        registry: &Arc<Registry>,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let (pool, executor) = match self.route(registry, target) {
            Ok(found) => found,
            // not here: a node of the cluster that runs it, if one does
            Err(e) if e.kind == "NOT_FOUND" => match self.remote.load_full() {
                Some(r) => {
                    return r
                        .call(target, args, context, timeout)
                        .await
                        .unwrap_or(Err(e))
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        self.call_routed(pool, executor, target, args, context, timeout)
            .await
    }

    /// [`FunctionTable::call`] of a function already routed to its pool and executor
    /// (by [`FunctionTable::route`]).
    pub async fn call_routed(
        &self,
        pool: Arc<Pool>,
        executor: Arc<dyn Executor>,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.call_routed_with(pool, target, args, context, timeout, |pool, args, cx, d| {
            executor.execute(pool, args, cx, d)
        })
        .await
    }

    /// [`FunctionTable::call_routed`] with the run of the call given as `run` (pool,
    /// arguments, context, deadline): a language host that knows its executor calls it
    /// without the boxed future of [`Executor::execute`].
    pub async fn call_routed_with<F: std::future::Future<Output = Result<Value, CallError>>>(
        &self,
        pool: Arc<Pool>,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
        run: impl FnOnce(Arc<Pool>, Vec<Value>, Arc<CallContext>, Instant) -> F,
    ) -> Result<Value, CallError> {
        let deadline = Instant::now() + timeout;
        // every worker busy and the entry says `overflow: cluster`: another node that
        // runs it, if one does (else wait here)
        if pool.spec.overflow && !context.from_cluster && pool.is_full() {
            if let Some(r) = self.remote.load_full() {
                let elsewhere = r.call_elsewhere(target, args.clone(), context.clone(), timeout);
                if let Some(result) = elsewhere.await {
                    return result;
                }
            }
        }
        let permit = pool.acquire(deadline).await?;
        let result = run(pool.clone(), args, context, deadline).await;
        drop(permit);
        if result.is_err() {
            pool.failed();
        }
        result
    }

    /// The pool of function `target` and the executor of its kind (errors as
    /// [`resolve`](Self::resolve), or UNAVAILABLE when no executor runs its kind).
    pub fn route(
        &self,
        registry: &Arc<Registry>,
        target: &str,
    ) -> Result<(Arc<Pool>, Arc<dyn Executor>), CallError> {
        if let Some(found) = LastCall::find(self, registry, target) {
            return Ok(found);
        }
        let pool = self.resolve(registry, target)?;
        let key = if pool.as_process {
            AS_PROCESS
        } else {
            pool.entry.kind.as_str()
        };
        let executor = self.executors.get(key).map(|e| e.clone()).ok_or_else(|| {
            CallError::new(
                "UNAVAILABLE",
                format!(
                    "function {}: no executor for kind {} in this runtime",
                    pool.entry.id, pool.entry.kind
                ),
            )
        })?;
        LastCall::keep(self, registry, target, &pool, &executor);
        Ok((pool, executor))
    }

    /// Checks `target` and finds its pool in `registry`.
    /// Errors: empty target, missing namespace or name -> INVALID; unknown id or an entry
    /// that is not a function -> NOT_FOUND.
    pub fn resolve(&self, registry: &Registry, target: &str) -> Result<Arc<Pool>, CallError> {
        if target.is_empty() {
            return Err(CallError::new(
                "INVALID",
                "empty function id (expected namespace:name)",
            ));
        }
        let id = Id::parse(target).map_err(|e| CallError::new("INVALID", e))?;
        let entry = registry
            .get(&id)
            .ok_or_else(|| CallError::new("NOT_FOUND", format!("function {id} not found")))?;
        if !FUNCTION_KINDS.contains(&entry.kind.as_str()) && entry.kind != "process.lua" {
            return Err(CallError::new(
                "NOT_FOUND",
                format!("{id} is a {}, not a function", entry.kind),
            ));
        }
        if let Some(p) = self.pools.get(&id) {
            if Arc::ptr_eq(&p.entry, entry) {
                return Ok(p.clone());
            }
        }
        let spec = match &entry.spec {
            EntrySpec::FunctionLua(l) => l.pool.clone().unwrap_or_default(),
            EntrySpec::Wasm(w) => w.pool.clone().unwrap_or_default(),
            _ => PoolSpec::default(),
        };
        let mut pool = Pool::new(entry.clone(), spec);
        pool.as_process = matches!(entry.spec, EntrySpec::ProcessLua(_));
        let pool = Arc::new(pool);
        self.pools.insert(id, pool.clone());
        Ok(pool)
    }

    /// Every pool made so far (a function's pool is made at its first call).
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.iter().map(|p| p.value().clone()).collect()
    }

    /// The pool of function `id`, if it was called.
    pub fn pool(&self, id: &Id) -> Option<Arc<Pool>> {
        self.pools.get(id).map(|p| p.clone())
    }
}
