//! Running `function.lua` entries: the callee's side of a call.
//!
//! A call runs on the caller's own worker thread: the caller's coroutine suspends in the
//! async `funcs.call` (`funcs.rs`), whose future takes a worker from the function's pool
//! (waiting up to the deadline when the pool is full), takes an idle instance of the
//! function on this thread or instantiates one, and resumes the function in a coroutine
//! of its own. While that coroutine runs, the current context is the call's
//! (`Current::Call`): its deadline is enforced by the preemption hook even in a tight loop,
//! and `ctx.get` reads the context that travelled with the call. Arguments and results are
//! copied, so caller and callee never share a table.

use crate::functions::{CallContext, CallError, Pool};
use crate::lua::errors::LuaError;
use crate::lua::funcs::PendingCalls;
use crate::lua::vm::worker::IdleInstance;
use crate::lua::{worker, Current, CurrentGuard, Driver, LuaWorker, ProcCtx, RunState};
use crate::process::Node;
use crate::process::{Exit, ExitError, Host};
use crate::registry::Entry;
use crate::value::{self, Value};
use mlua::{Function, MultiValue, Table};
use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// A running function call, as the Lua API and the preemption hook see it.
pub(crate) struct CallCtx {
    pub node: Arc<Node>,
    /// The runtime's services it reaches.
    pub services: Arc<crate::lua::Services>,
    /// The pool of the function (its entry is [`CallCtx::entry`]).
    pub pool: Arc<Pool>,
    pub env: Table,
    pub context: Arc<CallContext>,
    pub deadline: Instant,
    pub run: RunState,
    /// Its own `funcs.call`s that wait for a result.
    pub pending: PendingCalls,
    /// Its timer tasks (aborted when the call ends).
    pub(crate) tasks: crate::lua::tasks::TaskSet,
    /// The process it became (see [`CallCtx::as_process`]).
    unit: OnceCell<Rc<ProcCtx>>,
}

impl CallCtx {
    /// The function's entry.
    pub(crate) fn entry(&self) -> &Arc<Entry> {
        &self.pool.entry
    }

    /// The process this call became, if it became one.
    pub(crate) fn unit(&self) -> Option<&Rc<ProcCtx>> {
        self.unit.get()
    }

    /// The process this call runs as. A function call can do all a process can (Wippy's
    /// functions are full units of execution): the first time its code asks for what only
    /// a process has (its pid, inbox, events, `coroutine.spawn`, a send, a spawn, a
    /// monitor, an event subscription...), the call gets a pid and a mailbox, and its
    /// caller's task drives it as a process until the call ends (see [`InCall`]). Calls
    /// that never ask stay on the plain path.
    pub(crate) fn as_process(&self) -> mlua::Result<Rc<ProcCtx>> {
        if let Some(p) = self.unit.get() {
            return Ok(p.clone());
        }
        // the caller's host (the call runs on its caller's worker thread), or the
        // runtime's default host off the hosts' threads
        let host = crate::process::host::this_thread_host()
            .or_else(|| {
                let e = self.node.functions.executor("function.lua")?;
                Some(
                    e.as_any()
                        .downcast_ref::<LuaExecutor>()?
                        .default_host
                        .clone(),
                )
            })
            .ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "function {}: no process host to run on",
                    self.entry().id
                ))
            })?;
        let me = self.node.register_unit(self.entry().clone(), host);
        let ctx = Rc::new(ProcCtx::new(
            self.node.clone(),
            self.services.clone(),
            me,
            self.entry().clone(),
            worker()?.lua.clone(),
            self.env.clone(),
            Some(self.context.clone()),
            None,
            &crate::lua::Limits::of(self.entry()),
        ));
        // calls it started that still wait now belong to the process
        ctx.pending.adopt(&self.pending);
        let _ = self.unit.set(ctx.clone());
        Ok(ctx)
    }

    /// The error of this call when the Lua heap stays over its memory limit.
    pub(crate) fn memory_error(&self) -> String {
        format!(
            "function {}: memory limit exceeded (the Lua heap is over {} MiB)",
            self.entry().id,
            self.run.mem_limit >> 20
        )
    }

    /// Why the call must stop now (its deadline passed), if it must.
    pub fn interrupted(&self) -> Option<String> {
        (Instant::now() >= self.deadline).then(|| {
            format!(
                "function {}: execution time limit exceeded",
                self.entry().id
            )
        })
    }
}

/// How a call's code ended.
enum Outcome {
    /// Its coroutine returned or raised.
    Lua(mlua::Result<MultiValue>),
    /// It became a process, and that process was stopped (terminated, a link's exit, an
    /// error in a coroutine it spawned).
    Stopped(Exit),
}

/// Polls a function's coroutine with the call as the current context; once the call
/// became a process (see [`CallCtx::as_process`]), drives it as one.
struct InCall {
    call: Rc<CallCtx>,
    ptr: usize,
    fut: Option<mlua::AsyncThread<MultiValue>>,
    /// Boxed: most calls never need it, and the future of every call carries the slot.
    driver: Option<Box<Driver>>,
}

impl InCall {
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let Some(d) = self.driver.as_mut() else {
            return Poll::Pending;
        };
        let _g = CurrentGuard::enter(Current::Process(d.ctx().clone()));
        match d.step(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(exit) => Poll::Ready(match d.take_call_result() {
                Some(r) => Outcome::Lua(r),
                None => Outcome::Stopped(exit),
            }),
        }
    }
}

impl Future for InCall {
    type Output = Outcome;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else {
            return this.drive(cx);
        };
        let polled = {
            let _g = CurrentGuard::enter(Current::Call(this.call.clone()));
            this.call.run.polling.set(this.ptr);
            let _running =
                crate::lua::watchdog::Running::enter(this.ptr as *const std::ffi::c_void);
            Pin::new(fut).poll(cx)
        };
        match (polled, this.call.unit()) {
            (Poll::Ready(r), _) => Poll::Ready(Outcome::Lua(r)),
            (Poll::Pending, None) => Poll::Pending,
            // it became a process while it ran: from now on its driver runs it
            (Poll::Pending, Some(unit)) => {
                let main = this.fut.take().expect("polled above");
                this.driver = Some(Box::new(Driver::for_call(
                    unit.clone(),
                    main,
                    this.ptr as *const std::ffi::c_void,
                )));
                this.drive(cx)
            }
        }
    }
}

/// Publishes the exit of a call that became a process when the call ends, however it
/// ends (its monitors, links and names hear of it as of any process).
struct UnitExit {
    call: Rc<CallCtx>,
    exit: Option<Exit>,
}

impl Drop for UnitExit {
    fn drop(&mut self) {
        if let Some(unit) = self.call.unit() {
            unit.release();
            let exit = self.exit.take().unwrap_or_else(|| {
                Exit::Killed(format!("function {}: the call ended", self.call.entry().id))
            });
            self.call.node.publish_exit(&unit.me.pid, exit);
        }
    }
}

/// Lets go of idle instances that waited longer than the pool's `idle_timeout` (an
/// adaptive pool keeps its newest one), counting them off the pool.
fn prune(list: &mut Vec<IdleInstance>, pool: &Pool) {
    let Some(ttl) = pool.spec.idle_timeout else {
        return;
    };
    let keep_one = pool.spec.kind == crate::registry::PoolKind::Adaptive;
    let now = std::time::Instant::now();
    let before = list.len();
    let newest = list.len().saturating_sub(1);
    let mut i = 0;
    list.retain(|instance| {
        let fresh = instance.since.is_none_or(|t| now.duration_since(t) < ttl);
        let keep = fresh || (keep_one && i == newest);
        i += 1;
        keep
    });
    pool.idle
        .fetch_sub(before - list.len(), std::sync::atomic::Ordering::Relaxed);
}

fn take_instance(w: &LuaWorker, pool: &Pool) -> Option<IdleInstance> {
    let mut idle = w.idle.borrow_mut();
    let (e, list) = idle.get_mut(&pool.entry.id)?;
    if !Arc::ptr_eq(e, &pool.entry) {
        idle.remove(&pool.entry.id);
        return None;
    }
    prune(list, pool);
    let instance = list.pop()?;
    pool.idle.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Some(instance)
}

fn put_instance(
    w: &LuaWorker,
    pool: &Pool,
    func: Function,
    env: Table,
    thread: Option<mlua::Thread>,
) {
    let mut idle = w.idle.borrow_mut();
    // the id is cloned (two strings) only the first time
    if !idle.contains_key(&pool.entry.id) {
        idle.insert(pool.entry.id.clone(), (pool.entry.clone(), Vec::new()));
    }
    let Some(slot) = idle.get_mut(&pool.entry.id) else {
        return;
    };
    if !Arc::ptr_eq(&slot.0, &pool.entry) {
        *slot = (pool.entry.clone(), Vec::new());
    }
    prune(&mut slot.1, pool);
    if slot.1.len() < pool.spec.max_size {
        // the time it went idle matters only to a pool with an idle_timeout (`prune`):
        // no clock read per call for the others
        let since = pool.spec.idle_timeout.map(|_| std::time::Instant::now());
        slot.1.push(IdleInstance {
            func,
            env,
            thread,
            since,
        });
        pool.idle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The error a function returned as `nil, err`: an error object keeps its kind, a string
/// becomes a FAILED error with that message, any other value reaches the caller as is.
fn returned_error(v: &mlua::Value) -> CallError {
    match v {
        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
            Ok(e) => CallError::new(e.kind, e.text()),
            Err(_) => CallError::new("FAILED", "function returned an error object"),
        },
        mlua::Value::String(s) => CallError::new("FAILED", s.to_string_lossy()),
        other => match value::from_lua(other) {
            Ok(v) => CallError::returned(v),
            Err(e) => CallError::new(
                "FAILED",
                format!("function returned an error that cannot be copied: {e}"),
            ),
        },
    }
}

/// Runs `function.lua` calls (the executor of that kind).
pub struct LuaExecutor {
    /// The node whose functions these are (weak: the node owns its executors).
    pub node: std::sync::Weak<Node>,
    /// The runtime's services its calls reach.
    pub services: Arc<crate::lua::Services>,
    /// The host of the process a call becomes (see [`CallCtx::as_process`]) when its
    /// caller is not a process (the CLI, the cluster, a test).
    pub default_host: Arc<Host>,
}

impl crate::functions::Executor for LuaExecutor {
    fn execute(
        &self,
        pool: Arc<Pool>,
        args: Vec<Value>,
        context: Arc<CallContext>,
        deadline: Instant,
    ) -> futures::future::LocalBoxFuture<'static, Result<Value, CallError>> {
        let node = self.node.upgrade();
        let services = self.services.clone();
        Box::pin(async move {
            let node = node.ok_or_else(|| CallError::new("UNAVAILABLE", "the runtime stopped"))?;
            run_lua_function(node, services, pool, args, context, deadline).await
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Runs one call of a `function.lua` on this worker thread (the pool granted a worker).
pub(crate) async fn run_lua_function(
    node: Arc<Node>,
    services: Arc<crate::lua::Services>,
    pool: Arc<Pool>,
    args: Vec<Value>,
    context: Arc<CallContext>,
    deadline: Instant,
) -> Result<Value, CallError> {
    let internal = |e: mlua::Error| CallError::new("INTERNAL", crate::lua::errors::message(&e));
    let w = worker().map_err(internal)?;
    let limits = pool.derived(crate::lua::Limits::of);
    // limits.max_execution_ms caps the call whatever the caller's timeout
    let deadline = match limits.max_execution {
        Some(limit) => deadline.min(Instant::now() + limit),
        None => deadline,
    };
    let run = RunState::with(&limits);
    let booted = OnceCell::new();
    let (func, env, reused) = match take_instance(&w, &pool) {
        Some(i) => (i.func, i.env, i.thread),
        None => {
            // top-level code of the chunk runs here, under the call's context
            let boot = Rc::new(CallCtx {
                node: node.clone(),
                services: services.clone(),
                pool: pool.clone(),
                env: w.lua.create_table().map_err(internal)?,
                context: context.clone(),
                deadline,
                run: RunState::with(&limits),
                pending: PendingCalls::default(),
                tasks: Default::default(),
                unit: OnceCell::new(),
            });
            let _g = CurrentGuard::enter(Current::Call(boot.clone()));
            let entry = &pool.entry;
            let instance = w.function_instance(entry).map_err(|e| {
                CallError::new(
                    "INTERNAL",
                    format!("function {}: {}", entry.id, crate::lua::errors::message(&e)),
                )
            });
            // top-level code that used the process API made the call a process already
            if let Some(p) = boot.unit.get() {
                match &instance {
                    Ok(_) => {
                        p.pending.adopt(&boot.pending);
                        let _ = booted.set(p.clone());
                    }
                    Err(e) => {
                        p.release();
                        let exit = Exit::Error(ExitError::new(e.kind, e.message.clone()));
                        node.publish_exit(&p.me.pid, exit);
                    }
                }
            }
            let (func, env) = instance?;
            (func, env, None)
        }
    };
    drop(limits);
    let call = Rc::new(CallCtx {
        services,
        node,
        pool,
        env: env.clone(),
        context,
        deadline,
        run,
        pending: PendingCalls::default(),
        tasks: Default::default(),
        unit: booted,
    });
    let mut unit_exit = UnitExit {
        call: call.clone(),
        exit: None,
    };
    let lua_args = value::to_lua_multi(&w.lua, &args).map_err(internal)?;
    // the instance's own coroutine from its last call, or a new one (creating a
    // coroutine was an eighth of a call, with the collection steps its allocation drives)
    let thread = match reused {
        Some(t) if t.reset(func.clone()).is_ok() => t,
        _ => w.lua.create_thread(func.clone()).map_err(internal)?,
    };
    crate::lua::watchdog::unhook(&thread);
    let ptr = thread.to_pointer() as usize;
    let fut = thread
        .clone()
        .into_async::<MultiValue>(lua_args)
        .map_err(internal)?;
    let mut in_call = std::pin::pin!(InCall {
        call: call.clone(),
        ptr,
        fut: Some(fut),
        driver: None,
    });
    // Most calls end in their first run: they need no timer. One that waits goes on under
    // its deadline (while it runs, the preemption hook checks the deadline itself).
    let first = std::future::poll_fn(|cx| Poll::Ready(in_call.as_mut().poll(cx))).await;
    let outcome = match first {
        Poll::Ready(outcome) => Ok(outcome),
        Poll::Pending => tokio::time::timeout_at(deadline, in_call).await,
    };
    let result = match outcome {
        Err(_) => Err(CallError::new(
            "TIMEOUT",
            format!("function {}: timed out", call.entry().id),
        )),
        Ok(Outcome::Stopped(exit)) => Err(match &exit {
            Exit::Error(e) => CallError::new(e.kind, e.message.clone()),
            Exit::Killed(why) => CallError::new(
                "CANCELED",
                format!("function {}: stopped: {why}", call.entry().id),
            ),
            Exit::Normal(_) => {
                CallError::new("INTERNAL", format!("function {}: ended", call.entry().id))
            }
        }),
        Ok(Outcome::Lua(Err(e))) => match call.interrupted() {
            Some(why) => Err(CallError::new("TIMEOUT", why)),
            None => {
                let message = crate::lua::errors::message(&e);
                Err(CallError::new(
                    crate::lua::errors::kind_of_raised(&message),
                    message,
                ))
            }
        },
        Ok(Outcome::Lua(Ok(values))) => {
            if call.pool.keeps_instances() {
                // its coroutine finished: the instance's next call runs in it, unless
                // the call became a process (its coroutine was the process's)
                let thread = call.unit().is_none().then_some(thread);
                put_instance(&w, &call.pool, func, env, thread);
            }
            let mut it = values.into_iter();
            let first = it.next().unwrap_or(mlua::Value::Nil);
            match (first, it.next()) {
                (mlua::Value::Nil, Some(err)) if !err.is_nil() => Err(returned_error(&err)),
                (first, _) => value::from_lua(&first).map_err(|e| {
                    CallError::new(
                        "INTERNAL",
                        format!(
                            "function {}: the result cannot be copied: {e}",
                            call.entry().id
                        ),
                    )
                }),
            }
        }
    };
    // a call that became a process ends as one: what its monitors and links hear
    if call.unit().is_some() {
        unit_exit.exit = Some(match &result {
            Ok(v) => Exit::Normal(v.clone()),
            Err(e) if e.kind == "CANCELED" || e.kind == "TIMEOUT" => {
                Exit::Killed(e.message.clone())
            }
            Err(e) => Exit::Error(ExitError::new(e.kind, e.message.clone())),
        });
    }
    drop(unit_exit);
    result
}
