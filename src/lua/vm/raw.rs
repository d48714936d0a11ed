//! The Lua C API where mlua's safe wrappers cost too much: building the table of every
//! message a Lua process receives and `msg:payload():data()`, copying plain values off the
//! stack and pushing them back (`funcs.call`, the fast `process.send` in `send.rs`).
//!
//! Building `{topic, from, n, payload...}` through mlua's safe API costs a registry
//! reference, a stack guard and a type check per field (about 5,000 instructions a message,
//! a quarter of a message hop, by callgrind); here the whole table is built with the C API,
//! right on the stack of the `ch:receive()` that takes the message (`channel.rs`), or in
//! one protected call (`Lua::exec_raw`) elsewhere. The preemption watchdog is in
//! `watchdog.rs`.

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
