//! Preemption and limits: the hook that yields a coroutine that computed a whole time
//! slice (armed by the watchdog in `watchdog.rs`), stops a terminated process, and enforces
//! `max_execution_ms` and `max_memory`.

use crate::lua::context::{Current, CURRENT};
use crate::lua::watchdog;
use crate::registry::Entry;
use mlua::{Lua, VmState};
use std::cell::Cell;
use std::sync::atomic::Ordering;

/// Instructions between two runs of the hook in coroutines created by Lua code (the
/// coroutines a driver resumes get a hook only when the watchdog arms it, see `watchdog.rs`).
pub const HOOK_INSTRUCTIONS: u32 = 1000;

/// Preemption bookkeeping of whatever runs: hook ticks, and the coroutine its driver is
/// resuming (the only one the hook may yield).
#[derive(Default)]
pub(crate) struct RunState {
    pub(in crate::lua) polling: Cell<usize>,
    /// The worker's Lua heap may not be above this while this code runs (bytes).
    pub(in crate::lua) mem_limit: u64,
    /// The entry's `limits.max_execution_ms`: the longest it may compute without waiting.
    pub(in crate::lua) limit: Option<std::time::Duration>,
    /// Since when it computes without having waited (preemption does not count).
    pub(in crate::lua) busy_since: Cell<Option<std::time::Instant>>,
    /// Set when the hook yielded (preemption) rather than the code waiting.
    pub(in crate::lua) preempted: Cell<bool>,
}

impl RunState {
    /// A fresh state with `limits`.
    pub(crate) fn with(limits: &Limits) -> RunState {
        RunState {
            limit: limits.max_execution,
            mem_limit: limits.mem_limit,
            ..Default::default()
        }
    }

    /// Called before the driver resumes code: a fresh budget after a real wait.
    pub(in crate::lua) fn resuming(&self) {
        // only `max_execution_ms` reads the clock: without it, none is taken
        if self.limit.is_some() && self.busy_since.get().is_none() {
            self.busy_since.set(Some(std::time::Instant::now()));
        }
        self.preempted.set(false);
    }

    /// Called when the code returned Pending: a wait ends the busy stretch, a preemption
    /// does not.
    pub(in crate::lua) fn suspended(&self) {
        if !self.preempted.get() {
            self.busy_since.set(None);
        }
    }

    pub(in crate::lua) fn over_limit(&self) -> bool {
        match (self.limit, self.busy_since.get()) {
            (Some(limit), Some(since)) => since.elapsed() > limit,
            _ => false,
        }
    }
}

/// The limits of a Lua entry, read from its `limits:` once (function pools and an entry's
/// compiled chunk in each worker keep them).
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// `max_execution_ms`.
    pub max_execution: Option<std::time::Duration>,
    /// `max_memory`, never above the worker-wide watermark (bytes).
    pub mem_limit: u64,
}

impl Limits {
    /// Reads the limits of `entry`.
    pub(crate) fn of(entry: &Entry) -> Limits {
        Limits {
            max_execution: max_execution(entry),
            mem_limit: max_memory(entry).map_or(*STATE_MEMORY, |m| m.min(*STATE_MEMORY)),
        }
    }
}

/// Default watermark of a worker's Lua heap: code that runs while the heap is above it
/// fails with "memory limit exceeded" (after a full collection did not bring it down).
/// `WARDEN_LUA_MAX_MEMORY` (e.g. `1GiB`) changes it; `limits.max_memory` on an entry
/// lowers it for that entry's code. mlua's own allocation limit, at twice the watermark,
/// is the last guard.
pub const DEFAULT_LUA_MEMORY: u64 = 512 << 20;

pub(in crate::lua) static STATE_MEMORY: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::env::var("WARDEN_LUA_MAX_MEMORY")
        .ok()
        .and_then(|v| crate::registry::loader::parse_byte_size(&v).ok())
        .unwrap_or(DEFAULT_LUA_MEMORY)
});

/// `limits.max_memory` of a Lua entry (bytes, or a size like `64MiB`).
pub(crate) fn max_memory(entry: &Entry) -> Option<u64> {
    match entry.raw.get("limits")?.get("max_memory")? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => crate::registry::loader::parse_byte_size(s).ok(),
        _ => None,
    }
}

/// Whether the heap is over `limit` even after a full collection.
pub(in crate::lua) fn over_memory(lua: &Lua, limit: u64) -> bool {
    if (lua.used_memory() as u64) <= limit {
        return false;
    }
    let _ = lua.gc_collect();
    if (lua.used_memory() as u64) <= limit {
        return false;
    }
    // the first pass ran finalizers (the channels of ended processes) that let go of more
    let _ = lua.gc_collect();
    lua.used_memory() as u64 > limit
}

/// `limits.max_execution_ms` of an entry (milliseconds, or a duration string).
pub(crate) fn max_execution(entry: &Entry) -> Option<std::time::Duration> {
    let v = entry.raw.get("limits")?.get("max_execution_ms")?;
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(std::time::Duration::from_millis),
        serde_json::Value::String(s) => crate::duration::parse(s).ok(),
        _ => None,
    }
}

pub(in crate::lua) fn preempt_hook(lua: &Lua, _: &mlua::Debug) -> mlua::Result<VmState> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let run = match c.as_ref() {
            None => return Ok(VmState::Continue),
            Some(Current::Process(p)) => {
                if p.me.kill_requested.load(Ordering::Relaxed) {
                    return Err(mlua::Error::runtime("process terminated"));
                }
                if over_memory(lua, p.run.mem_limit) {
                    return Err(mlua::Error::runtime(p.memory_error()));
                }
                if p.run.over_limit() {
                    return Err(mlua::Error::runtime(format!(
                        "process {} ({}): execution time limit exceeded (max_execution_ms {})",
                        p.pid_str(),
                        p.entry().id,
                        p.run.limit.map(|l| l.as_millis()).unwrap_or_default()
                    )));
                }
                &p.run
            }
            Some(Current::Call(call)) => {
                if let Some(e) = call.interrupted() {
                    return Err(mlua::Error::runtime(e));
                }
                if over_memory(lua, call.run.mem_limit) {
                    return Err(mlua::Error::runtime(call.memory_error()));
                }
                &call.run
            }
        };
        // Only yield a coroutine the driver resumes itself (its hook was armed by the
        // watchdog: it has run a whole time slice); a user coroutine (coroutine.wrap) must
        // not see a yield it did not ask for.
        let current = lua.current_thread().to_pointer();
        let preempt = current as usize == run.polling.get();
        watchdog::rearm(current, preempt);
        if preempt {
            run.preempted.set(true);
            Ok(VmState::Yield)
        } else {
            Ok(VmState::Continue)
        }
    })
}
