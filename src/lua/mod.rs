//! The Lua host: runs `process.lua` entries as processes.
//!
//! Each host worker thread owns one Lua state ([`LuaWorker`]). A process is a coroutine in
//! that state with its own globals table, whose metatable falls back to a shared, read-only
//! base (see `sandbox.lua`): processes on one worker share the interpreter and the compiled
//! chunks, never their globals or the built-in modules. An entry's chunk is compiled once
//! per worker into a factory `function(_ENV, ...)`, and instantiated per process with that
//! process's globals.
//!
//! Blocking calls (`select`, `time.sleep`, `funcs.call`) are mlua async functions: the
//! coroutine yields, the process task returns `Pending`, and the worker thread runs other
//! processes. `ch:receive()` does the same without a future: a plain function takes a value
//! or registers the task's waker, and the Lua side yields until woken (see `channel.rs`).
//! A hook, armed by a watchdog only once a coroutine has computed for a whole time slice
//! (see `watchdog.rs`), yields it back to the worker (like the BEAM's reductions) and stops a
//! terminated process even inside a tight loop.
//!
//! This module knows the process core and the registry; it does not know hosts' threads
//! or the CLI.

pub mod call_process;
pub mod channel;
mod context;
mod driver;
pub mod env;
pub mod errors;
pub mod events;
pub mod funcs;
pub mod function_call;
pub mod io;
pub mod json;
mod logger;
mod modules;
pub mod payload;
pub mod pg;
mod preempt;
mod proc_ctx;
mod process_api;
mod random;
mod raw;
mod registry_api;
pub mod security;
mod send;
pub mod services;
mod supervisor;
pub mod system;
mod tasks;
pub use tasks::alive as timer_tasks;
pub mod test;
pub mod time;
mod types;
mod uuid;
mod watchdog;
mod wit;
mod worker;

pub(crate) use context::{current, current_any, current_or, running, Current, CurrentGuard};
pub use driver::launcher;
use driver::Driver;
pub(crate) use preempt::{Limits, RunState};
pub use preempt::{DEFAULT_LUA_MEMORY, HOOK_INSTRUCTIONS};
pub(crate) use proc_ctx::ProcCtx;
pub use services::Services;
use worker::WORKER;
pub use worker::{heap_bytes, worker, LuaWorker, BUILTIN_MODULES};
