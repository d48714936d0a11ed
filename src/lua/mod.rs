//! The Lua runtime: runs `process.lua` entries as processes.
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
//! or registers the task's waker, and the Lua side yields until woken (see `process/channel.rs`).
//! A hook, armed by a watchdog only once a coroutine has computed for a whole time slice
//! (see `vm/watchdog.rs`), yields it back to the worker (like the BEAM's reductions) and stops a
//! terminated process even inside a tight loop.
//!
//! This module knows the process core and the registry; it does not know hosts' threads
//! or the CLI.

//! The files, by layer: `context.rs` (who runs now: the bottom), `services.rs` (what the
//! runtime hands the Lua runtime), `errors.rs` (error values); `vm/` (the worker's Lua state
//! and sandbox, preemption: hook, limits and watchdog; the raw C calls; timer tasks);
//! `process/` (a process: its state, its driver task, channels, the process API with the
//! general send beside the fast one, payloads); `call/` (`funcs.call` on the caller's side,
//! running a `function.lua` on the callee's, WIT values, calls run as processes);
//! `modules/` (the built-in modules, one file each, under one table of constructors).
//! The modules keep their old names here (`lua::channel`, `lua::funcs`...).

mod call;
mod context;
pub mod errors;
mod modules;
mod process;
pub mod services;
mod vm;

use call::wit;
pub use call::{call_process, funcs, function_call};
pub use modules::{env, events, io, json, pg, security, system, test, time};
use modules::{logger, random, supervisor, types};
pub use process::{channel, payload};
use process::{driver, message, proc_ctx, process_api, send};
use vm::{preempt, raw, tasks, watchdog, worker};

pub use tasks::alive as timer_tasks;

pub(crate) use context::{current, current_any, current_or, running, Current, CurrentGuard};
pub use driver::launcher;
use driver::Driver;
pub(crate) use preempt::{Limits, RunState};
pub use preempt::{DEFAULT_LUA_MEMORY, HOOK_INSTRUCTIONS};
pub(crate) use proc_ctx::ProcCtx;
pub use services::Services;
use worker::WORKER;
pub use worker::{heap_bytes, worker, LuaWorker, BUILTIN_MODULES};
