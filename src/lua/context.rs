//! Who runs Lua code on this thread now: a process or a function call. The bottom of the
//! Lua runtime: the modules and the driver ask here for their node, entry and process.

use super::function_call;
use super::proc_ctx::ProcCtx;
use crate::process::{Node, Pid};
use crate::registry::Entry;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

thread_local! {
    pub(super) static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Whose Lua code runs on this thread right now: a process, or a function call.
#[derive(Clone)]
pub(crate) enum Current {
    Process(Rc<ProcCtx>),
    Call(Rc<function_call::CallCtx>),
}

impl Current {
    /// The node the code runs on.
    pub(crate) fn node(&self) -> &Arc<Node> {
        match self {
            Current::Process(p) => &p.node,
            Current::Call(c) => &c.node,
        }
    }

    /// The runtime's services it reaches.
    pub(crate) fn services(&self) -> &Arc<super::Services> {
        match self {
            Current::Process(p) => &p.services,
            Current::Call(c) => &c.services,
        }
    }

    /// The entry whose code runs (ids it names resolve in its namespace).
    pub(crate) fn entry(&self) -> Arc<Entry> {
        match self {
            Current::Process(p) => p.entry(),
            Current::Call(c) => c.entry().clone(),
        }
    }
}

/// The current process or call, or an error naming `module` for code outside both.
pub(crate) fn current_or(module: &str) -> mlua::Result<Current> {
    current_any().ok_or_else(|| mlua::Error::runtime(format!("{module}: not inside a process")))
}

/// The process whose Lua code is running on this thread.
pub(crate) fn current() -> mlua::Result<Rc<ProcCtx>> {
    match current_any() {
        Some(Current::Process(p)) => Ok(p),
        // a function call can do all a process can: it becomes one on first need
        Some(Current::Call(c)) => c.as_process(),
        None => Err(mlua::Error::runtime(
            "this function can only be called from inside a process",
        )),
    }
}

/// Who runs the Lua code on this thread: its node, its entry, and its pid when it is a
/// process (None for a function call).
pub(crate) fn running() -> Option<(Arc<Node>, Arc<Entry>, Option<Pid>)> {
    match current_any()? {
        Current::Process(p) => Some((p.node.clone(), p.entry(), Some(p.me.pid.clone()))),
        Current::Call(c) => Some((
            c.node.clone(),
            c.entry().clone(),
            c.unit().map(|p| p.me.pid.clone()),
        )),
    }
}

/// The process or function call whose Lua code is running on this thread.
pub(crate) fn current_any() -> Option<Current> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Sets the current process or call while one of its futures is polled.
pub(crate) struct CurrentGuard(Option<Current>);

impl CurrentGuard {
    pub(crate) fn enter(cur: Current) -> CurrentGuard {
        CurrentGuard(CURRENT.with(|c| c.borrow_mut().replace(cur)))
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}
