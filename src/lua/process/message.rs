//! The message object a Lua process receives (`inbox:receive()`, a listener made with
//! `{message = true}`, `channel.select`): a userdata, as Wippy's `process.Message` is
//! (en/lua/core/process.md, "Message Objects"), with `msg:topic()`, `msg:from()`,
//! `msg:payload()` and `msg:payload():data()`.
//!
//! A message is one allocation, made with the C API right on the stack of the receive that
//! takes it: a userdata whose block holds the number of payload values, and whose user
//! values are its topic (1), its sender's pid text (2, nil when it has none) and its
//! payload values (3, 4, ...). Up to [`INLINE_MAX`] values are user values of their own;
//! more go in one table at user value 3 (a userdata has at most 65,535 user values). A
//! table per message, as before, took two allocations and a resize of its array part.
//!
//! The metatable is made here and filled by the sandbox (`vm/sandbox.lua`); mlua knows it as
//! userdata of no Rust type, so a message copied into a `Value` (sent on, or wrapped by
//! `payload.new`) goes through its `__copy`: its payload data, as a payload copies.

use crate::value::Value;
use mlua::{ffi, Lua, Table};
use std::os::raw::{c_char, c_int};

/// The most payload values a message keeps as user values of their own; more go in one
/// table at user value 3.
const INLINE_MAX: usize = 64;

/// The sender of a message as [`push_message`] gets it.
#[derive(Clone, Copy)]
pub(crate) enum Sender<'a> {
    /// None (a message from outside any process).
    None,
    /// The sender's pid text.
    Text(&'a str),
    /// The sender's pid text, kept as a Lua string in user value 1 of the userdata at
    /// absolute index `ud` (a channel: a process hears from the same sender again and
    /// again, and reusing the kept string saves hashing and interning the text per
    /// message); a different sender's text is pushed and kept in its place.
    Kept { ud: c_int, text: &'a str },
}

/// Pushes one message with the table at `mt` (the message metatable, an absolute or pseudo
/// index) as its metatable.
///
/// # Safety
/// As `raw::push_value`: a Lua error raised here unwinds through this frame, so the caller
/// must hold nothing with a destructor (only borrows) across the call.
pub(crate) unsafe fn push_message(
    l: *mut ffi::lua_State,
    mt: c_int,
    topic: &str,
    from: Sender<'_>,
    payload: &[Value],
) {
    if ffi::lua_checkstack(l, 4) == 0 {
        ffi::luaL_error(l, c"stack overflow building a message".as_ptr());
    }
    let n = payload.len();
    let spilled = n > INLINE_MAX;
    let user_values = 2 + if spilled { 1 } else { n };
    // the block: the number of payload values
    let block = ffi::lua_newuserdatauv(l, std::mem::size_of::<usize>(), user_values as c_int);
    (block as *mut usize).write(n);
    ffi::lua_pushlstring(l, topic.as_ptr() as *const c_char, topic.len());
    ffi::lua_setiuservalue(l, -2, 1);
    match from {
        Sender::None => {}
        Sender::Text(f) => {
            ffi::lua_pushlstring(l, f.as_ptr() as *const c_char, f.len());
            ffi::lua_setiuservalue(l, -2, 2);
        }
        Sender::Kept { ud, text } => {
            // the kept string, if it is this sender's (compared by content: pids are
            // never reused, and a string is immutable)
            let same = ffi::lua_getiuservalue(l, ud, 1) == ffi::LUA_TSTRING
                && crate::lua::raw::string_at(l, -1) == Some(text.as_bytes());
            if !same {
                ffi::lua_pop(l, 1);
                ffi::lua_pushlstring(l, text.as_ptr() as *const c_char, text.len());
                ffi::lua_pushvalue(l, -1);
                ffi::lua_setiuservalue(l, ud, 1);
            }
            ffi::lua_setiuservalue(l, -2, 2);
        }
    }
    if spilled {
        ffi::lua_createtable(l, crate::lua::raw::len_hint(n), 0);
        for (i, v) in payload.iter().enumerate() {
            crate::lua::raw::push_value(l, v);
            ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
        }
        ffi::lua_setiuservalue(l, -2, 3);
    } else {
        for (i, v) in payload.iter().enumerate() {
            crate::lua::raw::push_value(l, v);
            ffi::lua_setiuservalue(l, -2, i as c_int + 3);
        }
    }
    ffi::lua_pushvalue(l, mt);
    ffi::lua_setmetatable(l, -2);
}

/// One message (see [`push_message`]), built in one protected call, for code outside a Lua
/// call (`channel.select`, the general receive).
pub(crate) fn message_value(
    lua: &Lua,
    mt: &Table,
    topic: &str,
    from: Option<&str>,
    payload: &[Value],
) -> mlua::Result<mlua::Value> {
    // SAFETY: the closure only uses the Lua C API on the stack it is given, with values it
    // borrows; exec_raw runs it protected and checks the stack it leaves.
    unsafe {
        lua.exec_raw::<mlua::Value>(mt, |l| {
            // the stack holds mt at 1
            let from = from.map_or(Sender::None, Sender::Text);
            push_message(l, 1, topic, from, payload);
            ffi::lua_remove(l, 1);
        })
    }
}

/// The number of payload values of the message at index 1 of a message function (its
/// metatable is upvalue 1), or an error `what` when that is not a message.
///
/// # Safety
/// In a C function made by [`install`].
unsafe fn payload_len(l: *mut ffi::lua_State, what: &std::ffi::CStr) -> usize {
    if ffi::lua_type(l, 1) == ffi::LUA_TUSERDATA
        && crate::lua::raw::has_metatable(l, 1, ffi::lua_upvalueindex(1))
    {
        return *(ffi::lua_touserdata(l, 1) as *const usize);
    }
    ffi::luaL_error(l, c"%s: not a message".as_ptr(), what.as_ptr());
    unreachable!("luaL_error does not return")
}

/// `msg:topic()`.
unsafe extern "C-unwind" fn topic(l: *mut ffi::lua_State) -> c_int {
    payload_len(l, c"topic");
    ffi::lua_getiuservalue(l, 1, 1);
    1
}

/// `msg:from()`: the sender's pid text, nil when the runtime sent it.
unsafe extern "C-unwind" fn from(l: *mut ffi::lua_State) -> c_int {
    payload_len(l, c"from");
    ffi::lua_getiuservalue(l, 1, 2);
    1
}

/// Pushes the `n` payload values of the message at 1 (room for them checked).
unsafe fn push_payload(l: *mut ffi::lua_State, n: usize, what: &std::ffi::CStr) -> c_int {
    if n >= i32::MAX as usize || ffi::lua_checkstack(l, n as c_int + 1) == 0 {
        ffi::luaL_error(l, c"%s: too many payload values".as_ptr(), what.as_ptr());
    }
    if n > INLINE_MAX {
        ffi::lua_getiuservalue(l, 1, 3);
        let t = ffi::lua_gettop(l);
        for i in 1..=n {
            ffi::lua_rawgeti(l, t, i as ffi::lua_Integer);
        }
        ffi::lua_remove(l, t);
    } else {
        for i in 0..n {
            ffi::lua_getiuservalue(l, 1, i as c_int + 3);
        }
    }
    n as c_int
}

/// `msg:payload():data()` (the message is its own payload): its payload values.
unsafe extern "C-unwind" fn data(l: *mut ffi::lua_State) -> c_int {
    let n = payload_len(l, c"data");
    push_payload(l, n, c"data")
}

/// `__copy`: what a message is when it is copied into a value (sent on, wrapped in a
/// payload): its data, as a payload copies as its data; several payload values as an
/// array of them, none as nil.
unsafe extern "C-unwind" fn copy(l: *mut ffi::lua_State) -> c_int {
    let n = payload_len(l, c"copy");
    ffi::lua_settop(l, 1);
    let n = push_payload(l, n, c"copy");
    if n <= 1 {
        return n;
    }
    ffi::lua_createtable(l, n, 0);
    ffi::lua_rotate(l, 2, 1);
    for i in (1..=n).rev() {
        ffi::lua_rawseti(l, 2, i as ffi::lua_Integer);
    }
    1
}

/// Makes the message metatable (empty: the sandbox fills it) and its functions, puts them
/// in `rust` (`message_mt`, `message_topic`, `message_from`, `message_data`,
/// `message_copy`) and returns the metatable. Once per Lua state.
pub(crate) fn install(lua: &Lua, rust: &Table) -> mlua::Result<Table> {
    let mt = lua.create_table()?;
    lua.register_foreign_userdata_metatable(&mt);
    rust.set("message_mt", &mt)?;
    for (name, f) in [
        ("message_topic", topic as ffi::lua_CFunction),
        ("message_from", from),
        ("message_data", data),
        ("message_copy", copy),
    ] {
        // SAFETY: pushes one C closure over the metatable it is given.
        let func = unsafe {
            lua.exec_raw::<mlua::Function>(&mt, |l| {
                ffi::lua_pushcclosure(l, f, 1);
            })?
        };
        rust.set(name, func)?;
    }
    Ok(mt)
}
