//! The Lua C API where mlua's safe wrappers cost too much: copying plain values off the
//! stack and pushing them back (message payloads, `funcs.call`, the fast `process.send` in
//! `send.rs`; the message objects themselves are built in `process/message.rs`). Through
//! mlua's safe API every value pushed costs a registry reference, a stack guard and a type
//! check; here values go straight onto the stack of the C function that needs them, or
//! through one protected call (`Lua::exec_raw`) elsewhere. The preemption watchdog is in
//! `watchdog.rs`.
//!
//! Also here, where a Lua frame would cost memory: the body of every process coroutine
//! ([`boot`]) and the protected call of a function instance ([`run_protected`]), which
//! leave no frame of their own under the code they run.

use crate::value::Value;
use mlua::ffi;
use std::os::raw::{c_char, c_int};

/// Pushes `v` onto the stack of `l` (one slot; tables nested as deep as the value).
///
/// # Safety
/// Runs inside `Lua::exec_raw` (a protected call) or a C function called by Lua, with room
/// on the stack for one more value (a table checks for the room its items need): a Lua
/// error raised here (out of memory, stack overflow) unwinds through this frame to it.
/// Only borrows are alive across these calls; a caller that owns the value keeps it in a
/// `ManuallyDrop` until the push returns (leaked, not freed twice, if it never does).
pub(crate) unsafe fn push_value(l: *mut ffi::lua_State, v: &Value) {
    if matches!(v, Value::Array(_) | Value::Map(_)) && ffi::lua_checkstack(l, 3) == 0 {
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

extern "C-unwind" {
    /// Lua with warden's patch (`vendor/lua-src`, lapi.c): the memory of the full userdata
    /// at `idx` when its metatable is the table at `mtidx`, else null.
    fn lua_touserdatamt(l: *mut ffi::lua_State, idx: c_int, mtidx: c_int) -> *mut std::ffi::c_void;
}

/// The memory of the userdata at `idx` if its metatable is the table at `mt` (an absolute
/// or pseudo index), else null: how the C functions over a kind of userdata (channels,
/// messages) know theirs, cheaper than mlua's type-id lookup. One call into Lua, where
/// fetching the metatable, comparing it and taking the memory took four.
///
/// # Safety
/// `idx` and `mt` must be valid indices of `l`.
#[inline]
pub(crate) unsafe fn userdata_with_metatable(
    l: *mut ffi::lua_State,
    idx: c_int,
    mt: c_int,
) -> *mut std::ffi::c_void {
    lua_touserdatamt(l, idx, mt)
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
pub(in crate::lua) unsafe fn scalar_at(l: *mut ffi::lua_State, idx: c_int) -> Option<Value> {
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

/// The body of every process coroutine, `boot(factory, env, id, method, ...)`: runs the
/// entry's compiled chunk with the process's own globals (`factory(env)`), finds the
/// method (a field of the table the chunk returned, or a global it defined), and calls it
/// with the spawn arguments as [`run_protected`] does. Written in C rather than Lua so
/// that no frame of its own stays below the method's: while a process waits, its
/// coroutine holds the method's frame and the receive only, within the 40 stack slots Lua
/// gives a new coroutine (a Lua bootstrap's frame took it past them, and Lua doubled the
/// stack: 640 bytes more per idle process).
///
/// # Safety
/// A C function for Lua: upvalue 1 the message handler, upvalue 2 the test runners.
unsafe extern "C-unwind" fn boot(l: *mut ffi::lua_State) -> c_int {
    ffi::lua_pushvalue(l, 1);
    ffi::lua_pushvalue(l, 2);
    // top-level code may wait (a call, a sleep): the continuation goes on from there
    ffi::lua_callk(l, 1, 1, 0, Some(boot_loaded));
    boot_loaded(l, ffi::LUA_OK, 0)
}

/// The rest of [`boot`] once the chunk ran: its result is on top.
unsafe extern "C-unwind" fn boot_loaded(
    l: *mut ffi::lua_State,
    _status: c_int,
    _ctx: ffi::lua_KContext,
) -> c_int {
    let module = ffi::lua_gettop(l);
    if ffi::lua_type(l, module) == ffi::LUA_TTABLE {
        ffi::lua_pushvalue(l, 4);
        ffi::lua_gettable(l, module);
    } else {
        ffi::lua_pushnil(l);
    }
    if ffi::lua_type(l, -1) == ffi::LUA_TNIL {
        ffi::lua_pop(l, 1);
        ffi::lua_pushvalue(l, 4);
        ffi::lua_rawget(l, 2);
    }
    if ffi::lua_type(l, -1) != ffi::LUA_TFUNCTION {
        {
            let id = text_at(l, 3);
            let method = text_at(l, 4);
            let msg = format!(
                "entry {id}: method {method} not found (the source must return a table with a function {method}, or define a global function {method})"
            );
            ffi::lua_pushlstring(l, msg.as_ptr() as *const c_char, msg.len());
        }
        ffi::lua_error(l);
    }
    // factory, env, id, method, args..., module, f  ->  handler, f, args...
    ffi::lua_replace(l, module);
    ffi::lua_rotate(l, 5, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_replace(l, 4);
    ffi::lua_rotate(l, 1, -3);
    ffi::lua_settop(l, -4);
    let nargs = ffi::lua_gettop(l) - 2;
    let status = ffi::lua_pcallk(l, nargs, ffi::LUA_MULTRET, 1, 0, Some(run_protected_done));
    run_protected_done(l, status, 0)
}

/// The string at `idx` (for a message), lossily.
///
/// # Safety
/// `idx` must be a valid index of `l`.
unsafe fn text_at(l: *mut ffi::lua_State, idx: c_int) -> String {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    if p.is_null() {
        return String::new();
    }
    String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned()
}

/// The C closure [`boot`] over `describe` (the message handler) and the test runners.
pub(crate) fn boot_function(
    lua: &mlua::Lua,
    describe: &mlua::Function,
    runners: &mlua::Table,
) -> mlua::Result<mlua::Function> {
    // SAFETY: pushes one C closure over the two values it is given.
    unsafe {
        lua.exec_raw::<mlua::Function>((describe, runners), |l| {
            ffi::lua_pushcclosure(l, boot, 2);
        })
    }
}

/// `run(f, ...)`: calls `f(...)` protected, with upvalue 1 (`describe_error`) as the
/// message handler, and returns what `f` returned or raises its error again, unchanged:
/// what `xpcall` and a Lua function around it did, in C. When upvalue 2 is a table (the
/// test runners `test.run_cases` made) and `f` returned one of them, that runner is called
/// the same way and its results are returned instead ([`boot`] ends in the same
/// continuation, [`run_protected_done`]).
///
/// # Safety
/// A C function for Lua (called by Lua with a function at index 1).
unsafe extern "C-unwind" fn run_protected(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    let status = ffi::lua_pcallk(l, n - 1, ffi::LUA_MULTRET, 1, 0, Some(run_protected_done));
    run_protected_done(l, status, 0)
}

/// The rest of [`run_protected`] once the call returned (`ctx` 1: the runner's call).
unsafe extern "C-unwind" fn run_protected_done(
    l: *mut ffi::lua_State,
    status: c_int,
    ctx: ffi::lua_KContext,
) -> c_int {
    if status != ffi::LUA_OK && status != ffi::LUA_YIELD {
        // the described error value is on top
        ffi::lua_error(l);
    }
    // the handler is at 1, the results from 2 up
    if ctx == 0
        && ffi::lua_gettop(l) >= 2
        && ffi::lua_type(l, 2) == ffi::LUA_TFUNCTION
        && ffi::lua_type(l, ffi::lua_upvalueindex(2)) == ffi::LUA_TTABLE
    {
        ffi::lua_pushvalue(l, 2);
        let runner = ffi::lua_rawget(l, ffi::lua_upvalueindex(2)) != ffi::LUA_TNIL
            && ffi::lua_toboolean(l, -1) != 0;
        ffi::lua_settop(l, if runner { 2 } else { ffi::lua_gettop(l) - 1 });
        if runner {
            let status = ffi::lua_pcallk(l, 0, ffi::LUA_MULTRET, 1, 1, Some(run_protected_done));
            return run_protected_done(l, status, 1);
        }
    }
    ffi::lua_gettop(l) - 1
}

/// The C closure [`run_protected`] over `describe` (the message handler), for function
/// instances: no test runners (upvalue 2 nil).
pub(crate) fn run_protected_function(
    lua: &mlua::Lua,
    describe: &mlua::Function,
) -> mlua::Result<mlua::Function> {
    // SAFETY: pushes one C closure over the handler and a nil.
    unsafe {
        lua.exec_raw::<mlua::Function>(describe, |l| {
            ffi::lua_pushnil(l);
            ffi::lua_pushcclosure(l, run_protected, 2);
        })
    }
}

/// `require` of one instance, a C closure: upvalue 1 its entry's resolver, upvalue 2 what
/// it required so far (a table made by its first call). A value already required is
/// returned as is; else `resolve(name)` gives it (kept) or `nil, err` (returned, not
/// kept), so libraries are per instance. A C closure is one allocation where a Lua one
/// made per instance took two (the closure and its shared upvalue).
///
/// # Safety
/// A C function for Lua, with the upvalues above.
unsafe extern "C-unwind" fn require(l: *mut ffi::lua_State) -> c_int {
    ffi::lua_settop(l, 1);
    let loaded = ffi::lua_upvalueindex(2);
    if ffi::lua_type(l, loaded) != ffi::LUA_TTABLE {
        ffi::lua_createtable(l, 0, 2);
        ffi::lua_replace(l, loaded);
    }
    ffi::lua_pushvalue(l, 1);
    if ffi::lua_rawget(l, loaded) != ffi::LUA_TNIL {
        return 1;
    }
    ffi::lua_pop(l, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_pushvalue(l, 1);
    ffi::lua_call(l, 1, 2);
    // name, r, err
    if ffi::lua_type(l, 2) == ffi::LUA_TNIL {
        return 2;
    }
    ffi::lua_pushvalue(l, 1);
    ffi::lua_pushvalue(l, 2);
    ffi::lua_rawset(l, loaded);
    ffi::lua_settop(l, 2);
    1
}

/// Pushes new globals for one instance of an entry: a table whose metatable is the value
/// at `mt` (the worker's globals metatable), with `_G` (itself) and `require` (see
/// [`require`]) bound to the resolver at `resolve`.
///
/// # Safety
/// Inside a protected call or a C function called by Lua; `mt` and `resolve` are valid
/// absolute or pseudo indices of `l`.
unsafe fn push_env(l: *mut ffi::lua_State, mt: c_int, resolve: c_int) {
    // room for its two names: a process that defines globals grows it (most define none)
    ffi::lua_createtable(l, 0, 2);
    let env = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, mt);
    ffi::lua_setmetatable(l, env);
    // lua_pushstring finds a static name in Lua's cache of C strings by its address,
    // without hashing it again
    ffi::lua_pushstring(l, c"_G".as_ptr());
    ffi::lua_pushvalue(l, env);
    ffi::lua_rawset(l, env);
    ffi::lua_pushstring(l, c"require".as_ptr());
    ffi::lua_pushvalue(l, resolve);
    ffi::lua_pushnil(l);
    ffi::lua_pushcclosure(l, require, 2);
    ffi::lua_rawset(l, env);
}

/// New globals for one instance of an entry (see [`push_env`]), `resolve` its resolver.
/// One protected call makes it.
pub(crate) fn new_env(
    lua: &mlua::Lua,
    env_mt: &mlua::Table,
    resolve: &mlua::Function,
) -> mlua::Result<mlua::Table> {
    // SAFETY: exec_raw runs the closure as a protected call with the two arguments at
    // 1 and 2; a Lua error (out of memory) unwinds to it.
    unsafe {
        lua.exec_raw::<mlua::Table>((env_mt, resolve), |l| {
            push_env(l, 1, 2);
            ffi::lua_replace(l, 1);
            ffi::lua_settop(l, 1);
        })
    }
}

/// `starter(args...) -> co, env`, a C closure made once per entry and worker (see
/// [`starter`]): new globals for a process of the entry (as [`new_env`]) and its main
/// coroutine, not started, holding `boot(factory, env, id, method, args...)` (see
/// [`boot`]). Upvalues: 1 the globals metatable, 2 the entry's resolver, 3 `boot`, 4 the
/// entry's factory, 5 its id, 6 its method.
unsafe extern "C-unwind" fn start(l: *mut ffi::lua_State) -> c_int {
    let nargs = ffi::lua_gettop(l);
    push_env(l, ffi::lua_upvalueindex(1), ffi::lua_upvalueindex(2));
    let env = nargs + 1;
    let co = ffi::lua_newthread(l);
    // a coroutine inherits the creating state's hook; a process's is set by its driver
    ffi::lua_sethook(co, None, 0, 0);
    if ffi::lua_checkstack(co, 5 + nargs) == 0 || ffi::lua_checkstack(l, 5) == 0 {
        ffi::luaL_error(l, c"too many spawn arguments".as_ptr());
    }
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(4));
    ffi::lua_pushvalue(l, env);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(5));
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(6));
    ffi::lua_xmove(l, co, 5);
    for i in 1..=nargs {
        ffi::lua_pushvalue(l, i);
    }
    ffi::lua_xmove(l, co, nargs);
    ffi::lua_pushvalue(l, env);
    2
}

/// The starter of an entry's processes (see [`start`]).
pub(crate) fn starter(
    lua: &mlua::Lua,
    env_mt: &mlua::Table,
    resolve: &mlua::Function,
    boot: &mlua::Function,
    factory: &mlua::Function,
    id: &mlua::String,
    method: &mlua::String,
) -> mlua::Result<mlua::Function> {
    // SAFETY: one C closure over the six values exec_raw pushed.
    unsafe {
        lua.exec_raw::<mlua::Function>((env_mt, resolve, boot, factory, id, method), |l| {
            ffi::lua_pushcclosure(l, start, 6);
        })
    }
}

/// Runs `starter` (see [`start`]) with `args`: a process's main coroutine, ready for its
/// first resume, and its globals. One protected call, the arguments pushed straight from
/// the values.
pub(crate) fn process_coroutine(
    lua: &mlua::Lua,
    starter: &mlua::Function,
    args: &[Value],
) -> mlua::Result<(mlua::Thread, mlua::Table)> {
    // SAFETY: exec_raw runs the closure as a protected call with the starter at 1; only a
    // borrow of `args` is alive while it pushes them (a Lua error unwinds to exec_raw).
    unsafe {
        lua.exec_raw::<(mlua::Thread, mlua::Table)>(starter, |l| {
            if ffi::lua_checkstack(l, args.len().min(c_int::MAX as usize) as c_int + 2) == 0 {
                ffi::luaL_error(l, c"too many spawn arguments".as_ptr());
            }
            for v in args {
                push_value(l, v);
            }
            ffi::lua_call(l, args.len() as c_int, 2);
        })
    }
}
