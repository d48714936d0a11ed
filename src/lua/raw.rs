//! The Lua C API where mlua's safe wrappers cost too much: building the table of every
//! message a Lua process receives and `msg:payload():data()`, `process.send`, copying
//! plain values off the stack and pushing them back (`funcs.call`), and preemption of
//! busy coroutines (a hook armed by a watchdog, see the notes above `SLICE`).
//!
//! Building `{topic, from, n, payload...}` through mlua's safe API costs a registry
//! reference, a stack guard and a type check per field (about 5,000 instructions a message,
//! a quarter of a message hop, by callgrind); here the whole table is built with the C API,
//! right on the stack of the `ch:receive()` that takes the message (`channel.rs`), or in
//! one protected call (`Lua::exec_raw`) elsewhere.
//! `send_fast` reads a send's arguments straight off the stack for the same reason, and
//! leaves every other case to the general mlua function.

use crate::value::Value;
use mlua::ffi;
use std::os::raw::{c_char, c_int};

/// Pushes `v` onto the stack of `l` (one slot; tables nested as deep as the value).
///
/// # Safety
/// Runs inside `Lua::exec_raw` (a protected call) or a C function called by Lua: a Lua
/// error raised here (out of memory, stack overflow) unwinds through this frame to it.
/// Only borrows are alive across these calls; a caller that owns the value keeps it in a
/// `ManuallyDrop` until the push returns (leaked, not freed twice, if it never does).
pub(crate) unsafe fn push_value(l: *mut ffi::lua_State, v: &Value) {
    if ffi::lua_checkstack(l, 3) == 0 {
        ffi::luaL_error(l, c"a message payload is nested too deeply".as_ptr());
    }
    match v {
        Value::Nil => ffi::lua_pushnil(l),
        Value::Bool(b) => ffi::lua_pushboolean(l, *b as c_int),
        Value::Int(i) => ffi::lua_pushinteger(l, *i),
        Value::Num(n) => ffi::lua_pushnumber(l, *n),
        Value::Str(s) => {
            ffi::lua_pushlstring(l, s.as_ptr() as *const c_char, s.len());
        }
        Value::Array(items) => {
            ffi::lua_createtable(l, len_hint(items.len()), 0);
            for (i, item) in items.iter().enumerate() {
                push_value(l, item);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
            }
        }
        Value::Map(pairs) => {
            ffi::lua_createtable(l, 0, len_hint(pairs.len()));
            for (k, val) in pairs {
                push_value(l, k);
                push_value(l, val);
                ffi::lua_rawset(l, -3);
            }
        }
    }
}

/// A size hint for `lua_createtable`.
pub(crate) fn len_hint(n: usize) -> c_int {
    n.min(c_int::MAX as usize) as c_int
}

/// The continuation of a C function that handed its work to a Lua function with
/// `lua_callk` (and calls it itself when that returns without yielding): whatever the
/// callee returned are its results.
pub(crate) unsafe extern "C-unwind" fn all_results(
    l: *mut ffi::lua_State,
    _status: c_int,
    _ctx: ffi::lua_KContext,
) -> c_int {
    ffi::lua_gettop(l)
}

/// Pushes the table of one message, `{topic, from, n, payload...}`, with the table at
/// `mt` (the shared message metatable, an absolute or pseudo index) as its metatable.
/// `from` is the sender's pid text, if any.
///
/// # Safety
/// As [`push_value`]: a Lua error raised here unwinds through this frame, so the caller
/// must hold nothing with a destructor (only borrows) across the call.
pub(crate) unsafe fn push_message(
    l: *mut ffi::lua_State,
    mt: c_int,
    topic: &str,
    from: Option<&str>,
    payload: &[Value],
) {
    if ffi::lua_checkstack(l, 4) == 0 {
        ffi::luaL_error(l, c"stack overflow building a message".as_ptr());
    }
    ffi::lua_createtable(l, len_hint(payload.len() + 3), 0);
    ffi::lua_pushlstring(l, topic.as_ptr() as *const c_char, topic.len());
    ffi::lua_rawseti(l, -2, 1);
    if let Some(f) = from {
        ffi::lua_pushlstring(l, f.as_ptr() as *const c_char, f.len());
        ffi::lua_rawseti(l, -2, 2);
    }
    ffi::lua_pushinteger(l, payload.len() as ffi::lua_Integer);
    ffi::lua_rawseti(l, -2, 3);
    for (i, v) in payload.iter().enumerate() {
        push_value(l, v);
        ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 4);
    }
    ffi::lua_pushvalue(l, mt);
    ffi::lua_setmetatable(l, -2);
}

/// The Lua table of one message (see [`push_message`]), built in one protected call, for
/// code outside a Lua call (`channel.select`, the general receive).
pub(crate) fn message_table(
    lua: &mlua::Lua,
    mt: &mlua::Table,
    topic: &str,
    from: Option<&str>,
    payload: &[Value],
) -> mlua::Result<mlua::Value> {
    // SAFETY: the closure only uses the Lua C API on the stack it is given, with values it
    // borrows; exec_raw runs it protected and checks the stack it leaves.
    unsafe {
        lua.exec_raw::<mlua::Value>(mt, |l| {
            // the stack holds mt at 1
            push_message(l, 1, topic, from, payload);
            ffi::lua_remove(l, 1);
        })
    }
}

/// The bytes of the string at `idx`, if it is a string (numbers are not converted).
///
/// # Safety
/// `idx` must be a valid stack index of `l`; the bytes live while the value stays there.
pub(crate) unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    (!p.is_null()).then(|| std::slice::from_raw_parts(p as *const u8, len))
}

/// A scalar at `idx` as a [`Value`]; None for tables and everything else (the general path
/// copies those, with its checks and error texts).
///
/// # Safety
/// `idx` must be a valid stack index of `l`.
unsafe fn scalar_at(l: *mut ffi::lua_State, idx: c_int) -> Option<Value> {
    Some(match ffi::lua_type(l, idx) {
        ffi::LUA_TNIL => Value::Nil,
        ffi::LUA_TBOOLEAN => Value::Bool(ffi::lua_toboolean(l, idx) != 0),
        ffi::LUA_TNUMBER => {
            if ffi::lua_isinteger(l, idx) != 0 {
                Value::Int(ffi::lua_tointegerx(l, idx, std::ptr::null_mut()))
            } else {
                Value::Num(ffi::lua_tonumberx(l, idx, std::ptr::null_mut()))
            }
        }
        ffi::LUA_TSTRING => Value::Str(string_at(l, idx)?.to_vec()),
        _ => return None,
    })
}

/// `msg:payload():data()`, a C function: the payload values of a message table
/// (`{topic, from, n, payload...}`), `n` of them from index 4.
unsafe extern "C-unwind" fn message_data(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TTABLE);
    ffi::lua_rawgeti(l, 1, 3);
    let mut is_int = 0;
    let n = ffi::lua_tointegerx(l, -1, &mut is_int);
    ffi::lua_pop(l, 1);
    if is_int == 0 || !(0..=i32::MAX as ffi::lua_Integer).contains(&n) {
        ffi::luaL_error(l, c"data: not a message payload".as_ptr());
    }
    if ffi::lua_checkstack(l, n as c_int) == 0 {
        ffi::luaL_error(l, c"data: too many payload values".as_ptr());
    }
    for i in 0..n {
        ffi::lua_rawgeti(l, 1, i + 4);
    }
    n as c_int
}

/// The function behind `data` in the message metatable (see [`message_data`]).
pub(crate) fn message_data_function(lua: &mlua::Lua) -> mlua::Result<mlua::Function> {
    // SAFETY: creates a C function.
    unsafe { lua.create_c_function(message_data) }
}

/// The value at `idx` copied into a [`Value`], as `value::from_lua` copies it (tables with
/// keys 1..n become arrays, other tables maps), for plain data only: None for anything
/// the general copier refuses or describes (functions, userdata, cyclic or too deeply
/// nested tables, keys of other types), which the caller then leaves to it. Raises no
/// Lua error (`lua_next` on a table not changed meanwhile does not).
///
/// # Safety
/// `idx` must be a valid stack index of `l`.
pub(crate) unsafe fn copy_at(l: *mut ffi::lua_State, idx: c_int) -> Option<Value> {
    let mut path = Vec::new();
    copy_in(l, ffi::lua_absindex(l, idx), &mut path)
}

/// # Safety
/// As [`copy_at`]; `idx` is absolute; `path` holds the tables being copied around it.
unsafe fn copy_in(
    l: *mut ffi::lua_State,
    idx: c_int,
    path: &mut Vec<*const std::ffi::c_void>,
) -> Option<Value> {
    if ffi::lua_type(l, idx) != ffi::LUA_TTABLE {
        return scalar_at(l, idx);
    }
    let ptr = ffi::lua_topointer(l, idx);
    if path.len() >= crate::value::MAX_DEPTH
        || path.contains(&ptr)
        || ffi::lua_checkstack(l, 3) == 0
    {
        return None;
    }
    path.push(ptr);
    let len = ffi::lua_rawlen(l, idx);
    let mut pairs: Vec<(Value, Value)> = Vec::with_capacity(len);
    let mut is_array = true;
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        let top = ffi::lua_gettop(l);
        let key = match ffi::lua_type(l, top - 1) {
            ffi::LUA_TNUMBER | ffi::LUA_TSTRING | ffi::LUA_TBOOLEAN => scalar_at(l, top - 1),
            _ => None,
        };
        let Some((key, val)) = key.and_then(|k| Some((k, copy_in(l, top, path)?))) else {
            ffi::lua_settop(l, top - 2);
            path.pop();
            return None;
        };
        if !matches!(key, Value::Int(i) if i >= 1 && (i as usize) <= len) {
            is_array = false;
        }
        pairs.push((key, val));
        ffi::lua_settop(l, top - 1);
    }
    path.pop();
    Some(crate::value::table_value(pairs, len, is_array))
}

/// `process.send(dest, topic, ...)` for the common case: a string destination and topic
/// and scalar payload values, sent from a process. Reads the arguments straight off the
/// stack; anything else, and every failure, is left to the general function, which does
/// the same with full checks and `nil, err` answers.
///
/// # Safety
/// Called by Lua with the arguments on the stack of `l`.
unsafe fn try_send(l: *mut ffi::lua_State) -> bool {
    let n = ffi::lua_gettop(l);
    if n < 2 {
        return false;
    }
    let (Some(dest), Some(topic)) = (string_at(l, 1), string_at(l, 2)) else {
        return false;
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return false;
    };
    let mut payload = Vec::with_capacity((n - 2) as usize);
    for i in 3..=n {
        match scalar_at(l, i) {
            Some(v) => payload.push(v),
            None => return false,
        }
    }
    let Ok(ctx) = super::current() else {
        return false;
    };
    // a process under a scope has its sends checked: the general function does it
    if super::security::checked(&ctx.node, ctx.call_context.get().map(|c| &**c)) {
        return false;
    }
    let cached = match ctx.last_dest.borrow().as_ref() {
        Some((text, pid)) if **text == *dest => Some(pid.clone()),
        _ => None,
    };
    let to = match cached {
        Some(pid) => pid,
        None => {
            let Ok(text) = std::str::from_utf8(dest) else {
                return false;
            };
            let Ok(pid) = ctx.node.resolve(text) else {
                return false;
            };
            // a pid text always names the same process; a name may be registered anew
            if text.starts_with('{') {
                *ctx.last_dest.borrow_mut() = Some((dest.into(), pid.clone()));
            }
            pid
        }
    };
    ctx.node.send(Some(ctx.pid()), &to, topic, payload).is_ok()
}

/// The C function behind `process.send`; its upvalue is the general `send`.
unsafe extern "C-unwind" fn send_fast(l: *mut ffi::lua_State) -> c_int {
    // no Rust value is alive past this line: the calls below may raise Lua errors
    let sent = std::panic::catch_unwind(|| try_send(l)).unwrap_or(false);
    if sent {
        ffi::lua_pushboolean(l, 1);
        return 1;
    }
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, ffi::LUA_MULTRET);
    ffi::lua_gettop(l)
}

/// `process.send`: [`send_fast`] in front of `general`, the mlua function that handles
/// every case.
pub(crate) fn fast_send(lua: &mlua::Lua, general: mlua::Function) -> mlua::Result<mlua::Function> {
    // SAFETY: pushes one C closure over the function it is given.
    unsafe {
        lua.exec_raw::<mlua::Function>(general, |l| {
            ffi::lua_pushcclosure(l, send_fast, 1);
        })
    }
}

// ---- Preemption -------------------------------------------------------------------------
//
// A count hook makes Lua 5.4 call into the debug machinery on every instruction (whatever
// the count), which cost a sixth of a message hop. So the coroutines a driver resumes (a
// process's main coroutine, `coroutine.spawn` ones, function calls) run without a hook,
// and a watchdog thread arms one only for a coroutine that has run a whole time slice:
// every tick it looks at each worker's resume counter, and when the same resume is still
// running it sends the worker thread a signal whose handler sets a count hook of 1 on the
// running coroutine (`lua_sethook` is made to be called from a signal handler, as lua.c
// does on Ctrl-C). The hook (mlua's, calling `preempt_hook`) then yields or stops it.
// Arming costs the same at any stack depth: the vendored Lua's `lua_sethook` marks only the
// running Lua function and the next Lua function below it, and others as control returns
// to them (vendor/mlua/WARDEN-PATCH.md). The watchdog arms a resume once and waits for the hook to
// fire; only if it has not fired after `REARM_TICKS` ticks (a signal that landed in one of
// the few instructions where the interpreter can miss it) does it send the signal again.
// Coroutines created by Lua code (`coroutine.create`, `coroutine.wrap`) keep a count hook
// every `HOOK_INSTRUCTIONS` instructions, which checks termination and limits as before.

use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// How often the watchdog looks; a coroutine is preempted after running one to two ticks.
pub const SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// Ticks an armed hook may take to fire before the watchdog arms it again. The hook fires
/// at the running function's next jump, call or return; a signal that lands while a
/// function is returning without hooks can be missed by a loop that makes no call.
const REARM_TICKS: u32 = 16;

/// The signal that arms the hook (ignored by default, like Go's preemption signal).
const PREEMPT_SIGNAL: c_int = libc::SIGURG;

/// mlua's global hook function, taken from the worker's main state once it is set.
static HOOK_PROC: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The coroutine a driver is resuming on this thread right now (null: none).
    static RUNNING: Cell<*mut ffi::lua_State> = const { Cell::new(std::ptr::null_mut()) };
    /// This worker thread's slot in the watchdog's list.
    static SLOT: std::cell::OnceCell<SlotGuard> = const { std::cell::OnceCell::new() };
}

struct Slot {
    thread: libc::pthread_t,
    /// Bumped at every resume and every return from one.
    seq: AtomicU64,
    /// A resume is under way.
    busy: AtomicBool,
    /// False once the thread is ending; the watchdog signals only under this lock.
    alive: Mutex<bool>,
}

struct SlotGuard(Arc<Slot>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        *self.0.alive.lock() = false;
    }
}

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

fn hook_proc() -> Option<ffi::lua_Hook> {
    match HOOK_PROC.load(Ordering::Relaxed) {
        0 => None,
        // SAFETY: the value was read from lua_gethook, a function of this type
        p => Some(unsafe { std::mem::transmute::<usize, ffi::lua_Hook>(p) }),
    }
}

extern "C" fn on_preempt_signal(_: c_int) {
    let l = RUNNING.with(|r| r.get());
    if !l.is_null() {
        if let Some(hook) = hook_proc() {
            // SAFETY: l is the coroutine being resumed on this very thread; lua_sethook is
            // safe to call from a signal handler that interrupts it (see ldebug.c).
            unsafe { ffi::lua_sethook(l, Some(hook), ffi::LUA_MASKCOUNT, 1) };
        }
    }
}

/// What the watchdog saw of one worker thread at its last tick.
struct Seen {
    /// The worker's slot (its address).
    slot: usize,
    /// The worker's resume counter then.
    seq: u64,
    /// Ticks since the watchdog armed the hook of this resume, if it did. A hook that fires
    /// ends the resume (it yields or fails the code), so a resume still running is one
    /// whose hook has not fired: the worker itself records nothing.
    armed_for: Option<u32>,
}

fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        // SAFETY: installs a handler that only reads a thread-local and calls lua_sethook.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_preempt_signal as extern "C" fn(c_int) as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(PREEMPT_SIGNAL, &sa, std::ptr::null_mut());
        }
        let spawned = std::thread::Builder::new()
            .name("warden-preempt".into())
            .spawn(|| {
                let mut seen: Vec<Seen> = Vec::new();
                loop {
                    std::thread::sleep(SLICE);
                    let mut slots = SLOTS.lock();
                    slots.retain(|s| *s.alive.lock());
                    seen.retain(|e| slots.iter().any(|s| Arc::as_ptr(s) as usize == e.slot));
                    for s in slots.iter() {
                        let slot = Arc::as_ptr(s) as usize;
                        let seq = s.seq.load(Ordering::Relaxed);
                        let Some(e) = seen.iter_mut().find(|e| e.slot == slot) else {
                            seen.push(Seen {
                                slot,
                                seq,
                                armed_for: None,
                            });
                            continue;
                        };
                        let same = e.seq == seq;
                        e.seq = seq;
                        if !same || !s.busy.load(Ordering::Relaxed) {
                            e.armed_for = None;
                            continue;
                        }
                        match e.armed_for {
                            Some(ticks) if ticks + 1 < REARM_TICKS => {
                                e.armed_for = Some(ticks + 1);
                                continue;
                            }
                            _ => e.armed_for = Some(0),
                        }
                        let alive = s.alive.lock();
                        if *alive {
                            // SAFETY: the thread is alive while `alive` holds
                            unsafe { libc::pthread_kill(s.thread, PREEMPT_SIGNAL) };
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the preemption watchdog: {e}");
        }
    });
}

/// Called once per worker Lua state, after mlua's global hook is set on it: remembers that
/// hook, registers this thread with the watchdog, and starts the watchdog.
pub(crate) fn install(lua: &mlua::Lua) -> mlua::Result<()> {
    // SAFETY: reads the hook of the state it is given.
    unsafe {
        lua.exec_raw::<()>((), |l| {
            if let Some(h) = ffi::lua_gethook(l) {
                HOOK_PROC.store(h as usize, Ordering::Relaxed);
            }
        })?;
    }
    SLOT.with(|s| {
        s.get_or_init(|| {
            let slot = Arc::new(Slot {
                // SAFETY: pthread_self has no preconditions
                thread: unsafe { libc::pthread_self() },
                seq: AtomicU64::new(0),
                busy: AtomicBool::new(false),
                alive: Mutex::new(true),
            });
            SLOTS.lock().push(slot.clone());
            SlotGuard(slot)
        });
    });
    start_watchdog();
    Ok(())
}

/// Takes the count hook off a coroutine that a driver resumes (see the module notes).
pub(crate) fn unhook(thread: &mlua::Thread) {
    let l = thread.to_pointer() as *mut ffi::lua_State;
    // SAFETY: to_pointer of a thread is its lua_State; it is not running now.
    unsafe { ffi::lua_sethook(l, None, 0, 0) };
}

/// Sets the count hook of a coroutine created by Lua code: every `count` instructions.
///
/// # Safety
/// `l` must be a coroutine of this thread's Lua state that is not running.
unsafe fn hook_every(l: *mut ffi::lua_State, count: c_int) {
    if let Some(hook) = hook_proc() {
        ffi::lua_sethook(l, Some(hook), ffi::LUA_MASKCOUNT, count);
    }
}

/// In the hook: the running coroutine `l` gets the hook of a Lua-created coroutine again
/// (`preempted` false), or none, since the driver yields it now (`preempted` true).
pub(crate) fn rearm(l: *const std::ffi::c_void, preempted: bool) {
    let l = l as *mut ffi::lua_State;
    // SAFETY: called from the hook of l, where lua_sethook is allowed.
    unsafe {
        if preempted {
            ffi::lua_sethook(l, None, 0, 0);
        } else {
            hook_every(l, super::HOOK_INSTRUCTIONS as c_int);
        }
    }
}

/// Marks a driver's resume of `thread` on this worker, for the watchdog; dropped when the
/// resume returns. Nests (a function call resumed inside a process's resume).
pub(crate) struct Running {
    this: *mut ffi::lua_State,
    prev: *mut ffi::lua_State,
}

impl Running {
    /// The driver is about to resume the coroutine whose `to_pointer()` is `thread`.
    pub(crate) fn enter(thread: *const std::ffi::c_void) -> Running {
        let this = thread as *mut ffi::lua_State;
        let prev = RUNNING.with(|r| r.replace(this));
        SLOT.with(|s| {
            if let Some(s) = s.get() {
                s.0.seq.fetch_add(1, Ordering::Relaxed);
                s.0.busy.store(true, Ordering::Relaxed);
            }
        });
        Running { this, prev }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|r| r.set(self.prev));
        // A signal that came after the coroutine stopped (but before the line above) armed
        // a hook that would fire at the start of its next resume, as if it had run a whole
        // slice: take it off. The watchdog arms only the RUNNING coroutine, no longer this.
        // SAFETY: this coroutine is suspended or finished, on this thread.
        unsafe {
            if ffi::lua_gethookmask(self.this) != 0 {
                ffi::lua_sethook(self.this, None, 0, 0);
            }
        }
        let busy = !self.prev.is_null();
        SLOT.with(|s| {
            if let Some(s) = s.get() {
                s.0.seq.fetch_add(1, Ordering::Relaxed);
                s.0.busy.store(busy, Ordering::Relaxed);
            }
        });
    }
}

/// `coroutine.create(f)`: as Lua's, with the hook of a Lua-created coroutine.
unsafe extern "C-unwind" fn co_create(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TFUNCTION);
    let nl = ffi::lua_newthread(l);
    hook_every(nl, super::HOOK_INSTRUCTIONS as c_int);
    ffi::lua_pushvalue(l, 1);
    ffi::lua_xmove(l, nl, 1);
    1
}

/// `coroutine.wrap(f)`: Lua's (the upvalue), then the hook on the coroutine it wraps (the
/// first upvalue of the function it returns).
unsafe extern "C-unwind" fn co_wrap(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TFUNCTION);
    ffi::lua_settop(l, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, 1, 1);
    if !ffi::lua_getupvalue(l, -1, 1).is_null() {
        let co = ffi::lua_tothread(l, -1);
        if !co.is_null() {
            hook_every(co, super::HOOK_INSTRUCTIONS as c_int);
        }
        ffi::lua_pop(l, 1);
    }
    1
}

/// `coroutine.create` and `coroutine.wrap` for the sandbox; `wrap` is Lua's own.
pub(crate) fn coroutine_functions(
    lua: &mlua::Lua,
    wrap: mlua::Function,
) -> mlua::Result<(mlua::Function, mlua::Function)> {
    // SAFETY: pushes two C functions, one a closure over the function it is given.
    unsafe {
        lua.exec_raw::<(mlua::Function, mlua::Function)>(wrap, |l| {
            ffi::lua_pushcclosure(l, co_wrap, 1);
            ffi::lua_pushcfunction(l, co_create);
            ffi::lua_insert(l, -2);
        })
    }
}
