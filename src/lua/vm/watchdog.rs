//! The watchdog that arms the preemption hook: a thread that looks at every worker each
//! time slice and signals the one whose coroutine has run a whole slice; the signal
//! handler sets a count hook on the running coroutine, and the hook (`preempt.rs`) yields
//! or stops it. Also the sandbox's `coroutine.create` / `coroutine.wrap`, whose coroutines
//! keep a count hook of their own.

use mlua::ffi;
use std::os::raw::c_int;

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
            hook_every(l, crate::lua::HOOK_INSTRUCTIONS as c_int);
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
                // only this thread writes seq: a plain add, no locked instruction
                let seq = &s.0.seq;
                seq.store(
                    seq.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Relaxed,
                );
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
                // only this thread writes seq: a plain add, no locked instruction
                let seq = &s.0.seq;
                seq.store(
                    seq.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Relaxed,
                );
                s.0.busy.store(busy, Ordering::Relaxed);
            }
        });
    }
}

/// `coroutine.create(f)`: as Lua's, with the hook of a Lua-created coroutine.
unsafe extern "C-unwind" fn co_create(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TFUNCTION);
    let nl = ffi::lua_newthread(l);
    hook_every(nl, crate::lua::HOOK_INSTRUCTIONS as c_int);
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
            hook_every(co, crate::lua::HOOK_INSTRUCTIONS as c_int);
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
