//! warden: an actor-model process supervisor and Lua/WebAssembly runtime.
//!
//! Apps are declared in YAML ([`registry`]); processes are lightweight actors on host
//! worker threads ([`process`]); `process.lua` entries run in the Lua runtime ([`lua`]);
//! [`runtime`] wires them together and [`cli`] is the `warden` command.

pub mod admin;
pub mod alloc;
pub mod cli;
pub mod cluster;
pub mod duration;
pub mod functions;
pub mod lua;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod security;
pub mod supervision;
pub mod testing;
pub mod value;
pub mod wasm;
pub mod watch;
