//! The two ends of a Lua message written against the Lua C API: building the table of
//! every message a process receives, and `process.send` for its common case.
//!
//! Building `{topic, from, n, payload...}` through mlua's safe API costs a registry
//! reference, a stack guard and a type check per field (about 5,000 instructions a message,
//! a quarter of a message hop, by callgrind); here the whole table is built in one
//! protected call (`Lua::exec_raw`), so a memory error still comes back as an error.
//! `send_fast` reads a send's arguments straight off the stack for the same reason, and
//! leaves every other case to the general mlua function.

use crate::value::Value;
use mlua::ffi;
use std::os::raw::{c_char, c_int};

/// Pushes `v` onto the stack of `l` (one slot; tables nested as deep as the value).
///
/// # Safety
/// Runs inside `Lua::exec_raw` (a protected call): a Lua error raised here (out of memory,
/// stack overflow) unwinds to it. Nothing owned by Rust is alive across these calls, only
/// borrows, so nothing is leaked when that happens.
unsafe fn push_value(l: *mut ffi::lua_State, v: &Value) {
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

fn len_hint(n: usize) -> c_int {
    n.min(c_int::MAX as usize) as c_int
}

/// The Lua table of one message: `{topic, from, n, payload...}` with `mt` (the shared
/// message metatable) as its metatable. `from` is the sender's pid string, if any.
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
            ffi::lua_pushvalue(l, 1);
            ffi::lua_setmetatable(l, -2);
            ffi::lua_remove(l, 1);
        })
    }
}

/// The bytes of the string at `idx`, if it is a string (numbers are not converted).
///
/// # Safety
/// `idx` must be a valid stack index of `l`; the bytes live while the value stays there.
unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a [u8]> {
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
    let (Ok(dest), Ok(topic)) = (std::str::from_utf8(dest), std::str::from_utf8(topic)) else {
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
    let Ok(to) = ctx.node.resolve(dest) else {
        return false;
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
