//! The table of the built-in modules `require` gives: each name with the function that
//! builds it (once per worker, then frozen). The names are the loader's
//! [`BUILTIN_MODULES`] (which an entry's `modules:` is checked against); a test keeps the
//! two the same. `test` is built apart (it needs the `supervisor` and `time` tables), and
//! the globals that apps may also list (`process`, `channel`...) come from the sandbox.

pub mod env;
pub mod events;
pub mod io;
pub mod json;
pub(super) mod logger;
pub mod pg;
pub(super) mod random;
pub(super) mod registry_api;
pub mod security;
pub(super) mod supervisor;
pub mod system;
pub mod test;
pub mod time;
pub(super) mod types;
pub(super) mod uuid;

use super::funcs;
use mlua::{Lua, Table};

pub use crate::registry::loader::BUILTIN_MODULES;

/// Builds one module in a worker's Lua state.
pub(super) type Constructor = fn(&Lua) -> mlua::Result<Table>;

/// Every built-in module but `test` and the globals, by name.
pub(super) const CONSTRUCTORS: &[(&str, Constructor)] = &[
    ("time", time::module),
    ("json", json::module),
    ("logger", logger::module),
    ("funcs", funcs::module),
    ("ctx", funcs::ctx_module),
    ("supervisor", supervisor::module),
    ("io", io::module),
    ("uuid", uuid::module),
    ("pg", pg::module),
    ("system", system::module),
    ("env", env::module),
    ("events", events::module),
    ("registry", registry_api::module),
    ("security", security::module),
];

/// The module built apart, with what it needs of the others.
pub(super) const TEST: &str = "test";

/// Globals that may also be listed under `modules` and required (Wippy apps do):
/// `require` gives the global.
pub(super) const GLOBAL_MODULES: &[&str] = &["os", "process", "channel", "errors", "payload"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaders_list_is_the_table() {
        let mut built: Vec<&str> = CONSTRUCTORS.iter().map(|(n, _)| *n).collect();
        built.push(TEST);
        built.extend(GLOBAL_MODULES);
        built.sort();
        let mut listed = BUILTIN_MODULES.to_vec();
        listed.sort();
        assert_eq!(built, listed);
    }
}
