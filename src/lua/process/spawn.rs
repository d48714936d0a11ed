//! `process.spawn` (and its linked and monitored forms) on its fast path: a C function
//! reads the entry id, the host id and scalar arguments straight off the Lua stack and
//! spawns, for a process under no security scope on a host of this node; every other
//! case, and every failure, goes to the general function in `process_api.rs`, which does
//! the same with full checks and `nil, err` answers. A spawn fails before it has any
//! effect (no pid is made until every check passed), so the general function's second
//! try is the only one that can act. mlua's callback and argument conversion were about
//! a fifth of a spawn call's instructions.

use super::process_api::{names_another_node, parsed_id, SpawnKind};
use crate::lua::raw::{scalar_at, string_at};
use crate::process::{Node, ProcessHandle, SpawnOptions};
use crate::registry::{Entry, Registry};
use mlua::ffi;
use std::cell::RefCell;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// The spawn the arguments on the stack of `l` ask for, done; None when it is not the
/// common case or fails (the general function then decides).
///
/// # Safety
/// Called by Lua with the arguments on the stack of `l`.
unsafe fn try_spawn(
    l: *mut ffi::lua_State,
    link: bool,
    monitor: bool,
) -> Option<Arc<ProcessHandle>> {
    let n = ffi::lua_gettop(l);
    let entry = string_at(l, 1)?;
    let host = match ffi::lua_type(l, 2) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => None,
        // a host of another node is the general function's
        ffi::LUA_TSTRING => Some(string_at(l, 2).filter(|h| !names_another_node(h))?),
        _ => return None,
    };
    let mut args = Vec::with_capacity((n - 2).max(0) as usize);
    for i in 3..=n {
        args.push(scalar_at(l, i)?);
    }
    let ctx = crate::lua::current().ok()?;
    // a spawn from code under a scope is checked: the general function does it
    if crate::lua::security::checked(&ctx.node, ctx.call_context.get().map(|c| &**c)) {
        return None;
    }
    let entry = entry_of(&ctx.node, entry)?;
    let host = match host {
        Some(h) => Some(parsed_id(h).ok()?),
        None => None,
    };
    let opts = SpawnOptions {
        link_to: link.then(|| ctx.pid().clone()),
        monitor_by: monitor.then(|| ctx.pid().clone()),
        ..SpawnOptions::default()
    };
    ctx.node
        .spawn_entry(
            None,
            entry,
            host.as_deref().unwrap_or(&ctx.me.host.id),
            args,
            opts,
        )
        .ok()
}

/// The entry a worker's last fast spawn named. A spawner mostly spawns one entry again and
/// again; the registry's lookup by id compares ids along a tree path (about 580
/// instructions a spawn).
struct LastEntry {
    /// The registry snapshot it was found in (held, so that its address names no other
    /// snapshot: any change of the registry makes a new one; an old snapshot stays alive
    /// until this worker's next fast spawn in a newer one).
    registry: Arc<Registry>,
    /// The id's text as the spawn gave it.
    text: Box<[u8]>,
    /// The entry that text named in that snapshot.
    entry: Arc<Entry>,
}

thread_local! {
    static LAST_ENTRY: RefCell<Option<LastEntry>> = const { RefCell::new(None) };
}

/// The entry `text` names in `node`'s current registry (None: not found or not an id,
/// which the general function reports).
fn entry_of(node: &Arc<Node>, text: &[u8]) -> Option<Arc<Entry>> {
    let registry = node.registry_now();
    let kept = LAST_ENTRY.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|l| Arc::ptr_eq(&l.registry, &registry) && *l.text == *text)
            .map(|l| l.entry.clone())
    });
    if kept.is_some() {
        return kept;
    }
    let id = parsed_id(text).ok()?;
    let entry = registry.get(&id)?.clone();
    LAST_ENTRY.with(|c| {
        *c.borrow_mut() = Some(LastEntry {
            registry: Arc::clone(&registry),
            text: text.into(),
            entry: entry.clone(),
        });
    });
    Some(entry)
}

/// Bits of upvalue 2 of [`spawn_fast`]: the new process is linked, monitored.
const LINK: i64 = 1;
const MONITOR: i64 = 2;

/// The C function behind a `spawn*`: upvalue 1 the general function, upvalue 2 its kind
/// ([`LINK`] and [`MONITOR`] bits).
unsafe extern "C-unwind" fn spawn_fast(l: *mut ffi::lua_State) -> c_int {
    let bits = ffi::lua_tointegerx(l, ffi::lua_upvalueindex(2), std::ptr::null_mut());
    let (link, monitor) = (bits & LINK != 0, bits & MONITOR != 0);
    let spawned = std::panic::catch_unwind(|| try_spawn(l, link, monitor)).unwrap_or(None);
    if let Some(handle) = spawned {
        // no Rust value is alive across the push (it may raise a memory error): the
        // handle is held as a raw pointer, let go after it
        let (text, len) = (handle.text.as_ptr(), handle.text.len());
        let raw = Arc::into_raw(handle);
        ffi::lua_pushlstring(l, text as *const c_char, len);
        drop(Arc::from_raw(raw));
        return 1;
    }
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, ffi::LUA_MULTRET);
    ffi::lua_gettop(l)
}

/// A `spawn*` function of kind `kind`: [`spawn_fast`] in front of `general`, the mlua
/// function that handles every case.
pub(super) fn fast_spawn(
    lua: &mlua::Lua,
    general: mlua::Function,
    kind: SpawnKind,
) -> mlua::Result<mlua::Function> {
    let bits = if kind.link { LINK } else { 0 } | if kind.monitor { MONITOR } else { 0 };
    // SAFETY: pushes one C closure over the two values it is given.
    unsafe {
        lua.exec_raw::<mlua::Function>((general, bits), |l| {
            ffi::lua_pushcclosure(l, spawn_fast, 2);
        })
    }
}
