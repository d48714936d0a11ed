//! The message object a Lua process receives (`inbox:receive()`, a listener made with
//! `{message = true}`, `channel.select`): a userdata, as Wippy's `process.Message` is
//! (en/lua/core/process.md, "Message Objects"), with `msg:topic()`, `msg:from()`,
//! `msg:payload()` and `msg:payload():data()`.
//!
//! A message is one allocation, made with the C API right on the stack of the receive that
//! takes it: a userdata whose block holds a [`Head`] (the number of payload values and the
//! lengths of the topic and the sender's text) followed by the bytes of the topic and of the
//! sender's pid text, and whose user values are its payload values (1, 2, ...). Up to
//! [`INLINE_MAX`] values are user values of their own; more go in one table at user value 1
//! (a userdata has at most 65,535 user values). The topic and the sender become Lua strings
//! only when `msg:topic()` or `msg:from()` asks (a message passed on by its payload alone
//! never interns them), and each of the two functions keeps the last short string it made
//! in an upvalue, so a worker hearing the same topic or sender again reuses it instead of
//! hashing the text again. A table per message took two allocations and a resize of its
//! array part; the topic and the sender as user values took two strings and two stores a
//! message.
//!
//! The metatable is made here and filled by the sandbox (`vm/sandbox.lua`); mlua knows it as
//! userdata of no Rust type, so a message copied into a `Value` (sent on, or wrapped by
//! `payload.new`) goes through its `__copy`: its payload data, as a payload copies.

use crate::value::Value;
use mlua::{ffi, Lua, Table};
use std::os::raw::{c_char, c_int};

/// The most payload values a message keeps as user values of their own; more go in one
/// table at user value 1.
const INLINE_MAX: usize = 64;

/// The start of a message's block; the topic's bytes follow it, then the sender's.
#[repr(C)]
struct Head {
    /// The number of payload values.
    n: usize,
    /// The length of the topic.
    topic_len: usize,
    /// The length of the sender's pid text; [`NO_SENDER`] when it has none.
    from_len: usize,
}

/// [`Head::from_len`] of a message from outside any process.
const NO_SENDER: usize = usize::MAX;

/// Pushes one message with the table at `mt` (the message metatable, an absolute or pseudo
/// index) as its metatable; `from` is the sender's pid text (None: a message from outside
/// any process).
///
/// # Safety
/// As `raw::push_value`: a Lua error raised here unwinds through this frame, so the caller
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
    let n = payload.len();
    let spilled = n > INLINE_MAX;
    let user_values = if spilled { 1 } else { n };
    let from_bytes = from.map_or(&[][..], str::as_bytes);
    let size = std::mem::size_of::<Head>()
        .saturating_add(topic.len())
        .saturating_add(from_bytes.len());
    let block = ffi::lua_newuserdatauv(l, size, user_values as c_int) as *mut u8;
    // SAFETY: the block has room for the head and both texts, and Lua aligns a block for
    // any C type.
    (block as *mut Head).write(Head {
        n,
        topic_len: topic.len(),
        from_len: from.map_or(NO_SENDER, str::len),
    });
    let text = block.add(std::mem::size_of::<Head>());
    std::ptr::copy_nonoverlapping(topic.as_ptr(), text, topic.len());
    std::ptr::copy_nonoverlapping(from_bytes.as_ptr(), text.add(topic.len()), from_bytes.len());
    if spilled {
        ffi::lua_createtable(l, crate::lua::raw::len_hint(n), 0);
        for (i, v) in payload.iter().enumerate() {
            crate::lua::raw::push_value(l, v);
            ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
        }
        ffi::lua_setiuservalue(l, -2, 1);
    } else {
        for (i, v) in payload.iter().enumerate() {
            crate::lua::raw::push_value(l, v);
            ffi::lua_setiuservalue(l, -2, i as c_int + 1);
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
            push_message(l, 1, topic, from, payload);
            ffi::lua_remove(l, 1);
        })
    }
}

/// The head of the message at index 1 of a message function (its metatable is upvalue 1),
/// or an error `what` when that is not a message.
///
/// # Safety
/// In a C function made by [`install`]; the head lives while the message stays at 1.
unsafe fn head<'a>(l: *mut ffi::lua_State, what: &std::ffi::CStr) -> &'a Head {
    let block = crate::lua::raw::userdata_with_metatable(l, 1, ffi::lua_upvalueindex(1));
    if !block.is_null() {
        return &*(block as *const Head);
    }
    ffi::luaL_error(l, c"%s: not a message".as_ptr(), what.as_ptr());
    unreachable!("luaL_error does not return")
}

/// The topic's and the sender's bytes after `head`.
///
/// # Safety
/// `head` is the head of a message block (see [`push_message`]).
unsafe fn texts(head: &Head) -> (&[u8], &[u8]) {
    let text = (head as *const Head as *const u8).add(std::mem::size_of::<Head>());
    let from_len = if head.from_len == NO_SENDER {
        0
    } else {
        head.from_len
    };
    (
        std::slice::from_raw_parts(text, head.topic_len),
        std::slice::from_raw_parts(text.add(head.topic_len), from_len),
    )
}

/// The longest text [`push_kept`] keeps: Lua interns strings up to this length (longer ones
/// are made afresh each time anyway), and a long topic is not held after its message.
const KEPT_MAX: usize = 40;

/// Pushes `text` as a Lua string: the one kept in upvalue 2 when it has the same bytes (a
/// string is immutable, so which of two equal strings Lua code gets is not observable),
/// else a new one, kept there in its place when it is short.
///
/// # Safety
/// In a C function made by [`install`], with room for two more values.
unsafe fn push_kept(l: *mut ffi::lua_State, text: &[u8]) {
    let kept = ffi::lua_upvalueindex(2);
    if crate::lua::raw::string_at(l, kept) == Some(text) {
        ffi::lua_pushvalue(l, kept);
        return;
    }
    ffi::lua_pushlstring(l, text.as_ptr() as *const c_char, text.len());
    if text.len() <= KEPT_MAX {
        ffi::lua_pushvalue(l, -1);
        ffi::lua_replace(l, kept);
    }
}

/// `msg:topic()`.
unsafe extern "C-unwind" fn topic(l: *mut ffi::lua_State) -> c_int {
    let head = head(l, c"topic");
    push_kept(l, texts(head).0);
    1
}

/// `msg:from()`: the sender's pid text, nil when the runtime sent it.
unsafe extern "C-unwind" fn from(l: *mut ffi::lua_State) -> c_int {
    let head = head(l, c"from");
    if head.from_len == NO_SENDER {
        ffi::lua_pushnil(l);
    } else {
        push_kept(l, texts(head).1);
    }
    1
}

/// Pushes the `n` payload values of the message at 1 (room for them checked).
unsafe fn push_payload(l: *mut ffi::lua_State, n: usize, what: &std::ffi::CStr) -> c_int {
    if n >= i32::MAX as usize || ffi::lua_checkstack(l, n as c_int + 1) == 0 {
        ffi::luaL_error(l, c"%s: too many payload values".as_ptr(), what.as_ptr());
    }
    if n > INLINE_MAX {
        ffi::lua_getiuservalue(l, 1, 1);
        let t = ffi::lua_gettop(l);
        for i in 1..=n {
            ffi::lua_rawgeti(l, t, i as ffi::lua_Integer);
        }
        ffi::lua_remove(l, t);
    } else {
        for i in 0..n {
            ffi::lua_getiuservalue(l, 1, i as c_int + 1);
        }
    }
    n as c_int
}

/// `msg:payload():data()` (the message is its own payload): its payload values.
unsafe extern "C-unwind" fn data(l: *mut ffi::lua_State) -> c_int {
    let n = head(l, c"data").n;
    push_payload(l, n, c"data")
}

/// `__copy`: what a message is when it is copied into a value (sent on, wrapped in a
/// payload): its data, as a payload copies as its data; several payload values as an
/// array of them, none as nil.
unsafe extern "C-unwind" fn copy(l: *mut ffi::lua_State) -> c_int {
    let n = head(l, c"copy").n;
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

/// Makes the message metatable (empty: the sandbox fills it) and its functions (C closures
/// over the metatable and, for `topic` and `from`, the last string they made), puts them
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
        // SAFETY: pushes one C closure over the metatable it is given and an empty string
        // (the kept string of `topic` and `from`).
        let func = unsafe {
            lua.exec_raw::<mlua::Function>(&mt, |l| {
                ffi::lua_pushstring(l, c"".as_ptr());
                ffi::lua_pushcclosure(l, f, 2);
            })?
        };
        rust.set(name, func)?;
    }
    Ok(mt)
}
