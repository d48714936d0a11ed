//! Calling functions from Lua (`funcs`: `call`, `async`, `new():with_*`) and reading the
//! call context (`ctx`): the caller's side of a call, with its fast path for plain
//! arguments and WebAssembly functions. The callee's side, running a `function.lua`, is
//! in `function_call.rs`.

use crate::functions::{CallContext, CallError, DEFAULT_TIMEOUT};
use crate::lua::channel::{self, Chan};
use crate::lua::errors::LuaError;
use crate::lua::wit::Shape;
use crate::lua::{current_any, Current};
use crate::process::Node;
use crate::value::{self, Value};
use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataMethods, Variadic};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Calls function `target` with `args` from this worker thread and returns its result.
pub async fn execute(
    node: Arc<Node>,
    target: String,
    args: Vec<Value>,
    context: Arc<CallContext>,
    timeout: Duration,
) -> Result<Value, CallError> {
    node.functions
        .call(&node.registry(), &target, args, context, timeout)
        .await
}

/// The node and context of whoever calls now (a process or a function).
fn caller(values: &[(String, Value)]) -> mlua::Result<(Arc<Node>, Arc<CallContext>)> {
    match current_any() {
        Some(Current::Process(p)) => Ok((
            p.node.clone(),
            if values.is_empty() {
                // the same for every plain call of this process: made once
                p.call_context
                    .get_or_init(|| {
                        Arc::new(CallContext {
                            actor: Some(p.pid_str().to_string()),
                            ..CallContext::default()
                        })
                    })
                    .clone()
            } else {
                let mut base = p
                    .call_context
                    .get()
                    .map(|c| (**c).clone())
                    .unwrap_or_default();
                base.actor.get_or_insert_with(|| p.pid_str().to_string());
                Arc::new(base.with(values.to_vec()))
            },
        )),
        Some(Current::Call(c)) => Ok((
            c.node.clone(),
            if values.is_empty() {
                c.context.clone()
            } else {
                Arc::new(c.context.with(values.to_vec()))
            },
        )),
        None => Err(mlua::Error::runtime(
            "funcs: can only be called from inside a process or a function",
        )),
    }
}

type Prepared = (Arc<Node>, String, Vec<Value>, Arc<CallContext>, Duration);

fn prepare(
    target: &mlua::Value,
    args: &[mlua::Value],
    exec: &Executor,
) -> mlua::Result<Result<Prepared, CallError>> {
    let (node, mut context) = caller(&exec.values)?;
    if exec.actor.is_some() || exec.scope.is_some() {
        // en/lua/core/funcs.md, "Permissions": naming an actor or a scope is
        // `funcs.security` on "security", under the caller's own context
        if let Err(e) = crate::lua::security::check(&node, &context, "funcs.security", "security") {
            return Ok(Err(CallError::new(e.kind, e.message)));
        }
        let mut c = (*context).clone();
        if let Some((id, meta)) = &exec.actor {
            c.actor = Some(id.clone());
            c.actor_meta = Some(meta.clone());
        }
        if let Some(s) = &exec.scope {
            c.scope = Some(s.clone());
        }
        context = Arc::new(c);
    }
    if !exec.values.is_empty() {
        if let Err(e) = crate::lua::security::check(&node, &context, "funcs.context", "context") {
            return Ok(Err(CallError::new(e.kind, e.message)));
        }
    }
    let target = match target {
        mlua::Value::String(s) => s.to_string_lossy(),
        mlua::Value::Nil => String::new(),
        other => {
            return Ok(Err(CallError::new(
                "INVALID",
                format!("function id: expected a string, got {}", other.type_name()),
            )))
        }
    };
    // en/lua/core/funcs.md, "Permissions": `funcs.call` on the function's id, before
    // anything runs
    if let Err(e) = crate::lua::security::check(&node, &context, "funcs.call", &target) {
        return Ok(Err(CallError::new(e.kind, e.message)));
    }
    let args = match value::from_lua_multi(args) {
        Ok(a) => a,
        Err(e) => {
            return Ok(Err(CallError::new(
                "INVALID",
                format!("call of {target}: {e}"),
            )))
        }
    };
    Ok(Ok((
        node,
        target,
        args,
        context,
        exec.timeout.unwrap_or(DEFAULT_TIMEOUT),
    )))
}

/// `nil, err` for Lua: the returned error value when there is one, else an error object.
fn nil_err(lua: &Lua, e: CallError) -> mlua::Result<MultiValue> {
    match &e.payload {
        Some(p) => Ok(MultiValue::from_vec(vec![
            mlua::Value::Nil,
            value::to_lua(lua, p)?,
        ])),
        None => LuaError::new(e.kind, e.message).into_nil_err(lua),
    }
}

async fn call_with(
    lua: Lua,
    prepared: mlua::Result<Result<Prepared, CallError>>,
) -> mlua::Result<MultiValue> {
    let (node, target, args, context, timeout) = match prepared? {
        Ok(p) => p,
        Err(e) => return nil_err(&lua, e),
    };
    lua_result(&lua, execute(node, target, args, context, timeout).await)
}

/// What `funcs.call` returns for the result of a call: the value, or `nil, err`.
fn lua_result(lua: &Lua, r: Result<Value, CallError>) -> mlua::Result<MultiValue> {
    match r {
        Ok(v) => Ok(MultiValue::from_vec(vec![value::to_lua(lua, &v)?])),
        Err(e) => nil_err(lua, e),
    }
}

type CallFuture = futures::future::LocalBoxFuture<'static, mlua::Result<MultiValue>>;

/// The `funcs.call`s of one process or function call that are waiting for their result.
/// They belong to it: when it ends, they are dropped and their pool permits released.
#[derive(Default)]
pub(crate) struct PendingCalls {
    next: std::cell::Cell<u64>,
    calls: RefCell<rustc_hash::FxHashMap<u64, CallFuture>>,
}

impl PendingCalls {
    /// Takes over the waiting calls of `other` (a function call that became a process
    /// hands them to it), under the same tokens.
    pub(crate) fn adopt(&self, other: &PendingCalls) {
        self.next.set(self.next.get().max(other.next.get()));
        let moved = std::mem::take(&mut *other.calls.borrow_mut());
        self.calls.borrow_mut().extend(moved);
    }
}

fn with_pending<R>(f: impl FnOnce(&PendingCalls) -> R) -> mlua::Result<R> {
    match current_any() {
        Some(Current::Process(p)) => Ok(f(&p.pending)),
        Some(Current::Call(c)) => Ok(f(c.unit().map_or(&c.pending, |p| &p.pending))),
        None => Err(mlua::Error::runtime(
            "funcs.call: only available inside a process or a function",
        )),
    }
}

/// Polls a call once, with the waker of the task running this Lua code.
fn poll_call(lua: &Lua, fut: &mut CallFuture) -> Poll<mlua::Result<MultiValue>> {
    let waker = lua.current_waker();
    fut.as_mut().poll(&mut Context::from_waker(&waker))
}

fn still_pending(token: u64) -> MultiValue {
    MultiValue::from_vec(vec![
        mlua::Value::LightUserData(Lua::poll_pending()),
        mlua::Value::Integer(token as i64),
    ])
}

/// The Rust half of `funcs.call`: starts the call and polls it once. Done: its results.
/// Waiting: mlua's pending marker and a token, and the Lua half yields until woken, then
/// asks [`call_poll`]. The same as an mlua async function, without the boxed-future
/// userdata (and its finalizer) mlua makes for every call.
fn call_start(
    lua: &Lua,
    (target, args): (mlua::Value, Variadic<mlua::Value>),
) -> mlua::Result<MultiValue> {
    let prepared = prepare(&target, &args, &Executor::default());
    let mut fut: CallFuture = Box::pin(call_with(lua.clone(), prepared));
    match poll_call(lua, &mut fut) {
        Poll::Ready(r) => r,
        Poll::Pending => Ok(still_pending(keep_waiting(fut)?)),
    }
}

/// Keeps a call that waits with its caller; the token [`call_poll`] finds it by.
fn keep_waiting(fut: CallFuture) -> mlua::Result<u64> {
    with_pending(|p| {
        let token = p.next.get() + 1;
        p.next.set(token);
        p.calls.borrow_mut().insert(token, fut);
        token
    })
}

/// What [`call_fast`] did.
enum Fast {
    /// The call returned this value.
    Done(Value),
    /// A WebAssembly function returned this WIT value (None: nothing, nil for Lua).
    DoneWit(Option<wasmtime::component::Val>),
    /// The call waits, kept under this token.
    Waiting(u64),
    /// The call ended with an error, kept under this token for [`call_poll`] to return.
    Failed(u64),
    /// Not a case for the fast path (nothing was called): the general `call_start`'s.
    General,
}

/// # Safety
/// Called from [`call_fast`] with the arguments of `funcs.call` on the stack of `l`.
unsafe fn try_call_fast(l: *mut mlua::ffi::lua_State) -> Fast {
    let n = mlua::ffi::lua_gettop(l);
    let Some(Ok(target)) = (n >= 1)
        .then(|| crate::lua::raw::string_at(l, 1))
        .flatten()
        .map(std::str::from_utf8)
    else {
        return Fast::General;
    };
    let Some(lua) =
        crate::lua::WORKER.with(|w| w.try_borrow().ok()?.as_ref().map(|w| w.lua.clone()))
    else {
        return Fast::General;
    };
    let Ok((node, context)) = caller(&[]) else {
        return Fast::General;
    };
    // a context with a scope is checked against its policies: the general path does it
    if crate::lua::security::checked(&node, Some(&context)) {
        return Fast::General;
    }
    // routed once, here (an id that does not resolve here goes the general way, which
    // also asks the cluster)
    let Ok((pool, executor)) = node.functions.route(&node.registry_now(), target) else {
        return Fast::General;
    };
    if let Some(fast) = try_wasm_fast(l, n, &lua, &pool, &executor, &context) {
        return fast;
    }
    let mut args = Vec::with_capacity(n as usize - 1);
    for i in 2..=n {
        match crate::lua::raw::copy_at(l, i) {
            Some(v) => args.push(v),
            None => return Fast::General,
        }
    }
    // the id is needed past this call only to ask the cluster when the pool is full
    let target = if pool.spec.overflow {
        target.to_string()
    } else {
        String::new()
    };
    // a function.lua runs here, in this future (no boxed future of its executor)
    let lua_services = executor
        .as_any()
        .downcast_ref::<crate::lua::function_call::LuaExecutor>()
        .map(|e| e.services.clone());
    let mut fut = Box::pin(async move {
        let functions = &node.functions;
        match lua_services {
            Some(services) => {
                let run = |pool, args, cx, deadline| {
                    crate::lua::function_call::run_lua_function(
                        node.clone(),
                        services,
                        pool,
                        args,
                        cx,
                        deadline,
                    )
                };
                functions
                    .call_routed_with(pool, &target, args, context, DEFAULT_TIMEOUT, run)
                    .await
            }
            None => {
                functions
                    .call_routed(pool, executor, &target, args, context, DEFAULT_TIMEOUT)
                    .await
            }
        }
    });
    let result = match poll_once(&lua, fut.as_mut()) {
        Poll::Ready(r) => r,
        Poll::Pending => {
            return keep_waiting(Box::pin(async move { lua_result(&lua, fut.await) }))
                .map_or(Fast::General, Fast::Waiting)
        }
    };
    match result {
        Ok(v) => Fast::Done(v),
        Err(e) => failed(lua, e),
    }
}

/// Polls a call's future once with the waker of the running Lua task; a panic inside is
/// an INTERNAL error of that call.
fn poll_once<T, F: Future<Output = Result<T, CallError>>>(
    lua: &Lua,
    fut: Pin<&mut F>,
) -> Poll<Result<T, CallError>> {
    let waker = lua.current_waker();
    let polled = std::panic::AssertUnwindSafe(|| fut.poll(&mut Context::from_waker(&waker)));
    std::panic::catch_unwind(polled)
        .unwrap_or_else(|_| Poll::Ready(Err(CallError::new("INTERNAL", "the call panicked"))))
}

/// A call that ended in `e`, kept for [`call_poll`] to return as `nil, err`.
fn failed(lua: Lua, e: CallError) -> Fast {
    keep_waiting(Box::pin(async move { nil_err(&lua, e) })).map_or(Fast::General, Fast::Failed)
}

/// The parameter shapes of a WebAssembly function, kept with its pool.
struct WitShapes(Vec<Shape>);

/// `funcs.call` of a WebAssembly function with plain arguments and a free worker: the
/// arguments become WIT values straight off the stack (`wit.rs`), and a result in the
/// first poll goes straight back onto it. None (nothing called) for every other case:
/// another kind, an unknown id, arguments the general path must check, a full pool.
///
/// # Safety
/// As [`try_call_fast`].
unsafe fn try_wasm_fast(
    l: *mut mlua::ffi::lua_State,
    n: std::os::raw::c_int,
    lua: &Lua,
    pool: &Arc<crate::functions::Pool>,
    executor: &Arc<dyn crate::functions::Executor>,
    context: &Arc<CallContext>,
) -> Option<Fast> {
    let wasm = executor
        .as_any()
        .downcast_ref::<crate::wasm::WasmExecutor>()?;
    let (f, keep, host) = wasm.prepare(pool, context);
    let pool = pool.clone();
    let f = f?;
    let shapes =
        pool.derived(|_| WitShapes(f.params().iter().map(|(_, t)| Shape::of(t)).collect()));
    let params = crate::lua::wit::args_at(l, 2, n, &shapes.0)?;
    let permit = pool.try_acquire()?;
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let context = context.clone();
    let call_f = f.clone();
    let mut fut = Box::pin(async move {
        let r = call_f.call_vals(params, &context, keep, host, false).await;
        drop(permit);
        r
    });
    let result = match poll_once(lua, fut.as_mut()) {
        Poll::Ready(r) => r,
        Poll::Pending => {
            let lua = lua.clone();
            let waiting = Box::pin(async move {
                let r = match tokio::time::timeout_at(deadline, fut).await {
                    Err(_) => Err(crate::wasm::timed_out(&pool)),
                    Ok(r) => r.and_then(|v| {
                        f.outcome(v)
                            .map(|v| v.as_ref().map(crate::wasm::values::from_val))
                            .map(|v| v.unwrap_or(Value::Nil))
                            .map_err(CallError::returned)
                    }),
                };
                if r.is_err() {
                    pool.failed();
                }
                lua_result(&lua, r)
            });
            return Some(keep_waiting(waiting).map_or(Fast::General, Fast::Waiting));
        }
    };
    Some(match result.map(|v| f.outcome(v)) {
        Ok(Ok(v)) => Fast::DoneWit(v),
        Ok(Err(payload)) => {
            pool.failed();
            failed(lua.clone(), CallError::returned(payload))
        }
        Err(e) => {
            pool.failed();
            failed(lua.clone(), e)
        }
    })
}

/// `funcs.call`, a C function: when the id is a string and the arguments plain data, it
/// copies them straight off the stack, starts the call and polls it once, and pushes a
/// returned value straight onto the stack (no mlua conversions and no Lua frame around it:
/// most of the cost of a call to a small WebAssembly export, by callgrind). A call that
/// waits, or ended in an error, is handed to upvalue 2, a Lua loop that yields until
/// [`call_poll`] has its result; anything else goes to upvalue 1, the general path in Lua
/// around [`call_start`], which checks and describes every argument.
unsafe extern "C-unwind" fn call_fast(l: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
    use mlua::ffi;
    let got = std::panic::catch_unwind(|| try_call_fast(l)).unwrap_or(Fast::General);
    match got {
        Fast::Done(v) => {
            // no destructor may be pending while Lua may raise an error (out of memory):
            // the value is dropped by hand once it is pushed
            let v = std::mem::ManuallyDrop::new(v);
            crate::lua::raw::push_value(l, &v);
            drop(std::mem::ManuallyDrop::into_inner(v));
            1
        }
        Fast::DoneWit(v) => {
            let v = std::mem::ManuallyDrop::new(v);
            match &*v {
                Some(v) => crate::lua::wit::push_val(l, v),
                None => ffi::lua_pushnil(l),
            }
            drop(std::mem::ManuallyDrop::into_inner(v));
            1
        }
        Fast::Waiting(token) | Fast::Failed(token) => {
            let failed = matches!(got, Fast::Failed(_));
            ffi::lua_settop(l, 0);
            ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
            ffi::lua_pushinteger(l, token as ffi::lua_Integer);
            ffi::lua_pushboolean(l, failed as std::os::raw::c_int);
            ffi::lua_callk(
                l,
                2,
                ffi::LUA_MULTRET,
                0,
                Some(crate::lua::raw::all_results),
            );
            crate::lua::raw::all_results(l, ffi::LUA_OK, 0)
        }
        Fast::General => {
            ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
            ffi::lua_insert(l, 1);
            ffi::lua_callk(
                l,
                ffi::lua_gettop(l) - 1,
                ffi::LUA_MULTRET,
                0,
                Some(crate::lua::raw::all_results),
            );
            crate::lua::raw::all_results(l, ffi::LUA_OK, 0)
        }
    }
}

/// Polls the waiting call `token` again (see [`call_start`]).
fn call_poll(lua: &Lua, token: i64) -> mlua::Result<MultiValue> {
    let token = token as u64;
    // taken out while polled: the call may run Lua code that makes calls of its own
    let Some(mut fut) = with_pending(|p| p.calls.borrow_mut().remove(&token))? else {
        return Err(mlua::Error::runtime(
            "funcs.call: the call is no longer waiting",
        ));
    };
    match poll_call(lua, &mut fut) {
        Poll::Ready(r) => r,
        Poll::Pending => {
            with_pending(|p| p.calls.borrow_mut().insert(token, fut))?;
            Ok(still_pending(token))
        }
    }
}

struct FutureState {
    result: Option<Result<Value, CallError>>,
    canceled: bool,
}

/// `funcs.async`: a call running while the caller goes on.
pub struct LuaFuture {
    state: Rc<RefCell<FutureState>>,
    chan: Chan,
    task: tokio::task::AbortHandle,
}

impl UserData for LuaFuture {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        for name in ["response", "channel"] {
            m.add_method(name, |lua, f, ()| channel::to_userdata(lua, f.chan.clone()));
        }
        m.add_method("is_complete", |_, f, ()| {
            Ok(f.state.borrow().result.is_some())
        });
        m.add_method("is_canceled", |_, f, ()| Ok(f.state.borrow().canceled));
        // en/lua/core/future.md: `payload, nil` once it succeeded (a payload object, as
        // the response channel gives it), `nil, err` once it failed or was canceled,
        // `nil, nil` while it runs
        m.add_method("result", |lua, f, ()| {
            let out = match &f.state.borrow().result {
                Some(Ok(v)) => vec![
                    mlua::Value::UserData(
                        lua.create_userdata(crate::lua::payload::LuaPayload::lua(v.clone()))?,
                    ),
                    mlua::Value::Nil,
                ],
                Some(Err(e)) => vec![
                    mlua::Value::Nil,
                    mlua::Value::UserData(
                        lua.create_userdata(LuaError::new(e.kind, e.message.clone()))?,
                    ),
                ],
                None => vec![mlua::Value::Nil, mlua::Value::Nil],
            };
            Ok(MultiValue::from_vec(out))
        });
        // `err, true` once it failed (or was canceled), else `nil, false`
        m.add_method("error", |lua, f, ()| {
            let out = match &f.state.borrow().result {
                Some(Err(e)) => vec![
                    mlua::Value::UserData(
                        lua.create_userdata(LuaError::new(e.kind, e.message.clone()))?,
                    ),
                    mlua::Value::Boolean(true),
                ],
                _ => vec![mlua::Value::Nil, mlua::Value::Boolean(false)],
            };
            Ok(MultiValue::from_vec(out))
        });
        m.add_method("cancel", |_, f, ()| {
            let mut st = f.state.borrow_mut();
            if st.result.is_some() {
                return Ok(false);
            }
            f.task.abort();
            st.canceled = true;
            st.result = Some(Err(CallError::new("CANCELED", "the call was canceled")));
            f.chan.close();
            Ok(true)
        });
    }
}

fn start_async(
    lua: &Lua,
    prepared: mlua::Result<Result<Prepared, CallError>>,
) -> mlua::Result<MultiValue> {
    let (node, target, args, context, timeout) = match prepared? {
        Ok(p) => p,
        Err(e) => return nil_err(lua, e),
    };
    // a bad or unknown id fails now, not in the future
    if let Err(e) = node.functions.resolve(&node.registry(), &target) {
        return nil_err(lua, e);
    }
    let state = Rc::new(RefCell::new(FutureState {
        result: None,
        canceled: false,
    }));
    let chan = Chan::new(1);
    let (st, ch, lua2) = (state.clone(), chan.clone(), lua.clone());
    let task = tokio::task::spawn_local(async move {
        let r = execute(node, target, args, context, timeout).await;
        if let Ok(v) = &r {
            if let Ok(p) = lua2.create_userdata(crate::lua::payload::LuaPayload::lua(v.clone())) {
                ch.push(mlua::Value::UserData(p));
            }
        }
        ch.close();
        st.borrow_mut().result = Some(r);
    });
    let fut = LuaFuture {
        state,
        chan,
        task: task.abort_handle(),
    };
    Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
        lua.create_userdata(fut)?,
    )]))
}

/// The values of a `with_context` table, copied (string keys).
pub(crate) fn context_values(t: &Table) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for pair in t.pairs::<mlua::Value, mlua::Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let mlua::Value::String(k) = k else {
            return Err(format!("keys must be strings, found a {}", k.type_name()));
        };
        let k = k.to_string_lossy();
        let v = value::from_lua(&v).map_err(|err| format!("value of {k}: {err}"))?;
        out.push((k, v));
    }
    Ok(out)
}

/// `funcs.new()`: an immutable call configuration (context values, timeout).
#[derive(Clone, Default)]
pub struct Executor {
    values: Vec<(String, Value)>,
    timeout: Option<Duration>,
    actor: Option<(String, Value)>,
    scope: Option<Vec<String>>,
}

impl UserData for Executor {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("with_context", |_, e, t: Table| {
            let mut next = e.clone();
            let values = context_values(&t)
                .map_err(|err| mlua::Error::runtime(format!("with_context: {err}")))?;
            for (k, v) in values {
                next.values.retain(|(key, _)| *key != k);
                next.values.push((k, v));
            }
            Ok(next)
        });
        m.add_method(
            "with_actor",
            |_, e, a: mlua::UserDataRef<crate::lua::security::LuaActor>| {
                let mut next = e.clone();
                next.actor = Some((a.id.clone(), a.meta.clone()));
                Ok(next)
            },
        );
        m.add_method(
            "with_scope",
            |_, e, s: mlua::UserDataRef<crate::lua::security::LuaScope>| {
                let mut next = e.clone();
                next.scope = Some(s.policies.clone());
                Ok(next)
            },
        );
        m.add_method("with_options", |_, e, t: Table| {
            let mut next = e.clone();
            if let Some(v) = t.get::<Option<mlua::Value>>("timeout")? {
                let d = crate::duration::from_lua(&v)
                    .map_err(|err| mlua::Error::runtime(format!("with_options: timeout: {err}")))?;
                next.timeout = Some(d);
            }
            Ok(next)
        });
        m.add_async_method(
            "call",
            |lua, e, (target, args): (mlua::Value, Variadic<mlua::Value>)| {
                let prepared = prepare(&target, &args, &e);
                call_with(lua, prepared)
            },
        );
        m.add_method(
            "async",
            |lua, e, (target, args): (mlua::Value, Variadic<mlua::Value>)| {
                start_async(lua, prepare(&target, &args, e))
            },
        );
    }
}

/// The `funcs` module: `call`, `async`, `new`.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let coroutine: Table = lua.globals().get("coroutine")?;
    // the general path and the wait of a call, in Lua; `funcs.call` itself is call_fast
    let (general, wait): (Function, Function) = lua
        .load(
            r#"
local start, poll, pending, yield = ...
local function finish(a, b)
  while a == pending do
    yield(pending)
    a, b = poll(b)
  end
  if b == nil then return a end
  return a, b
end
local function general(...) return finish(start(...)) end
local function wait(token, failed)
  if failed then return finish(poll(token)) end
  return finish(pending, token)
end
return general, wait"#,
        )
        .set_name("=funcs.call")
        .call((
            lua.create_function(call_start)?,
            lua.create_function(call_poll)?,
            Lua::poll_pending(),
            coroutine.get::<Function>("yield")?,
        ))?;
    // SAFETY: pushes one C closure over the two functions it is given
    let call = unsafe {
        lua.exec_raw::<Function>((general, wait), |l| {
            mlua::ffi::lua_pushcclosure(l, call_fast, 2);
        })?
    };
    t.set("call", call)?;
    t.set(
        "async",
        lua.create_function(
            |lua, (target, args): (mlua::Value, Variadic<mlua::Value>)| {
                start_async(lua, prepare(&target, &args, &Executor::default()))
            },
        )?,
    )?;
    t.set("new", lua.create_function(|_, ()| Ok(Executor::default()))?)?;
    Ok(t)
}

fn context_now() -> Option<(Option<String>, Arc<CallContext>)> {
    match current_any()? {
        Current::Process(p) => Some((
            Some(p.pid_str().to_string()),
            p.call_context.get().cloned().unwrap_or_default(),
        )),
        Current::Call(c) => Some((c.context.actor.clone(), c.context.clone())),
    }
}

/// The `ctx` module: `get(key)` (`nil, err` NOT_FOUND for a key the context lacks),
/// `all()`, `actor()`.
pub fn ctx_module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, key: String| {
            match context_now().as_ref().and_then(|(_, c)| c.get(&key)) {
                Some(v) => Ok(MultiValue::from_vec(vec![value::to_lua(lua, v)?])),
                None => LuaError::new(
                    "NOT_FOUND",
                    format!("ctx.get: no value {key:?} in the context"),
                )
                .into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "all",
        lua.create_function(|lua, ()| {
            let out = lua.create_table()?;
            if let Some((_, c)) = context_now() {
                for (k, v) in &c.values {
                    out.set(k.as_str(), value::to_lua(lua, v)?)?;
                }
            }
            Ok(out)
        })?,
    )?;
    t.set(
        "actor",
        lua.create_function(|_, ()| Ok(context_now().and_then(|(a, _)| a)))?,
    )?;
    Ok(t)
}
