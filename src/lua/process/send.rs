//! `process.send` on its fast path: a C function reads a send's arguments straight off the
//! Lua stack (a string destination and topic, scalar payload values, a process under no
//! security scope) and sends; every other case, and every failure, goes to the general
//! function in `process_api.rs`, which does the same with full checks and `nil, err`
//! answers. mlua's argument conversion cost about 3,000 instructions a message.

use crate::lua::proc_ctx::LastDest;
use crate::lua::raw::{scalar_at, string_at};
use mlua::ffi;
use std::os::raw::c_int;
use std::sync::Arc;

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
    let Ok(ctx) = crate::lua::current() else {
        return false;
    };
    // a process under a scope has its sends checked: the general function does it
    if crate::lua::security::checked(&ctx.node, ctx.call_context.get().map(|c| &**c)) {
        return false;
    }
    // the last destination again: its handle while the process lives, else its pid
    let cached = ctx
        .last_dest
        .borrow()
        .as_ref()
        .filter(|d| *d.text == *dest)
        .map(|d| d.handle.upgrade().ok_or_else(|| d.pid.clone()));
    let to = match cached {
        Some(Ok(handle)) => {
            return ctx
                .node
                .send_to(Some(ctx.pid()), &handle, topic, payload)
                .is_ok()
        }
        Some(Err(pid)) => pid,
        None => {
            let Ok(text) = std::str::from_utf8(dest) else {
                return false;
            };
            let Ok(pid) = ctx.node.resolve(text) else {
                return false;
            };
            // a pid text always names the same process; a name may be registered anew
            if text.starts_with('{') {
                let handle = ctx
                    .node
                    .process(&pid)
                    .map(|h| Arc::downgrade(&h))
                    .unwrap_or_default();
                *ctx.last_dest.borrow_mut() = Some(Box::new(LastDest {
                    text: dest.into(),
                    pid: pid.clone(),
                    handle,
                }));
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
