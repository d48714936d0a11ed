//! Function calls from Lua and into Lua: the caller's side, `funcs` and `ctx`
//! (`funcs.rs`); the callee's side, running a `function.lua` (`function_call.rs`); WIT
//! values for WebAssembly callees (`wit.rs`); calls that run as processes
//! (`call_process.rs`).

pub mod call_process;
pub mod funcs;
pub mod function_call;
pub(super) mod wit;
