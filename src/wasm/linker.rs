//! Host capabilities: which WASI interfaces a module may import, and the `Linker`s that
//! provide them.
//!
//! An entry's `imports:` lists capability groups; each group grants a set of WASI
//! preview 2 interfaces, and nothing else is linked:
//!
//! | group | interfaces |
//! |---|---|
//! | `wasi:cli` | environment, exit, stdin, stdout, stderr, terminal-input/output/stdin/stdout/stderr |
//! | `wasi:io` | error, poll, streams |
//! | `wasi:poll` | io/poll |
//! | `wasi:clocks` | monotonic-clock, wall-clock |
//! | `wasi:filesystem` | types, preopens |
//! | `wasi:random` | random, insecure, insecure-seed |
//! | `wasi:sockets` | network, instance-network, ip-name-lookup, tcp, tcp-create-socket, udp, udp-create-socket |
//! | `wasi:http` | refused for now |
//!
//! Granting a group links its interfaces; what the guest can reach through them is still
//! only what the entry declares (`wasi:` args, env, mounts; no network addresses are
//! allowed, stdin is empty and stdout/stderr are discarded).
//! One `Linker` is built per distinct set of groups and shared by every entry with that
//! set ([`LinkerCache`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};

use super::store::StoreState;

/// The WASI interfaces warden can link (names without version) and the groups that
/// grant each.
const INTERFACES: &[(&str, &[&str])] = &[
    ("wasi:io/error", &["wasi:io"]),
    ("wasi:io/streams", &["wasi:io"]),
    ("wasi:io/poll", &["wasi:io", "wasi:poll"]),
    ("wasi:cli/environment", &["wasi:cli"]),
    ("wasi:cli/exit", &["wasi:cli"]),
    ("wasi:cli/stdin", &["wasi:cli"]),
    ("wasi:cli/stdout", &["wasi:cli"]),
    ("wasi:cli/stderr", &["wasi:cli"]),
    ("wasi:cli/terminal-input", &["wasi:cli"]),
    ("wasi:cli/terminal-output", &["wasi:cli"]),
    ("wasi:cli/terminal-stdin", &["wasi:cli"]),
    ("wasi:cli/terminal-stdout", &["wasi:cli"]),
    ("wasi:cli/terminal-stderr", &["wasi:cli"]),
    ("wasi:clocks/monotonic-clock", &["wasi:clocks"]),
    ("wasi:clocks/wall-clock", &["wasi:clocks"]),
    ("wasi:filesystem/types", &["wasi:filesystem"]),
    ("wasi:filesystem/preopens", &["wasi:filesystem"]),
    ("wasi:random/random", &["wasi:random"]),
    ("wasi:random/insecure", &["wasi:random"]),
    ("wasi:random/insecure-seed", &["wasi:random"]),
    ("wasi:sockets/network", &["wasi:sockets"]),
    ("wasi:sockets/instance-network", &["wasi:sockets"]),
    ("wasi:sockets/ip-name-lookup", &["wasi:sockets"]),
    ("wasi:sockets/tcp", &["wasi:sockets"]),
    ("wasi:sockets/tcp-create-socket", &["wasi:sockets"]),
    ("wasi:sockets/udp", &["wasi:sockets"]),
    ("wasi:sockets/udp-create-socket", &["wasi:sockets"]),
    ("warden:host/process", &["warden:process"]),
    ("warden:host/funcs", &["warden:funcs"]),
];

/// `wasi:io/poll@0.2.0` -> `wasi:io/poll`.
fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// The groups that grant the import `name` (empty: no group does).
pub fn groups_granting(name: &str) -> &'static [&'static str] {
    let bare = unversioned(name);
    INTERFACES
        .iter()
        .find(|(i, _)| *i == bare)
        .map(|(_, g)| *g)
        .unwrap_or(&[])
}

/// Checks that every import of `component` is granted by `groups`. Returns one message
/// per import that is not, naming the import and the group that would grant it.
pub fn check_imports(component: &Component, engine: &Engine, groups: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        if types_only(&import.ty, engine) {
            // An interface imported only for its (non-resource) types, like the
            // `test:mapper/types` of a world that `use`s them: nothing to provide.
            continue;
        }
        let granting = groups_granting(name);
        if granting.iter().any(|g| groups.iter().any(|have| have == g)) {
            continue;
        }
        let bare = unversioned(name);
        let message = if !granting.is_empty() {
            let alts = granting.join(" or ");
            format!("the module imports {name}, which is not granted: add {alts} to `imports`")
        } else if bare.starts_with("wasi:http/") {
            format!(
                "the module imports {name}: the capability group wasi:http is not supported yet"
            )
        } else if bare.starts_with("wasi:") {
            format!("the module imports {name}, which no capability group grants (warden does not implement this WASI interface)")
        } else {
            format!("the module imports {name}, which no capability group grants (warden does not provide this host interface)")
        };
        problems.push(message);
    }
    problems
}

/// Whether `item` needs nothing from the host: an instance that exports only value types
/// (no functions, no resources), or a type alias at the root (its interface is checked as
/// its own import).
fn types_only(item: &ComponentItem, engine: &Engine) -> bool {
    match item {
        ComponentItem::Type(_) | ComponentItem::Resource(_) => true,
        ComponentItem::ComponentInstance(i) => i
            .exports(engine)
            .all(|(_, e)| matches!(e.ty, ComponentItem::Type(_))),
        _ => false,
    }
}

/// Resource-table access for the `wasi:io` bindings.
struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Builds a linker with the interfaces of `groups` (and nothing else).
pub fn build_linker(engine: &Engine, groups: &[String]) -> wasmtime::Result<Linker<StoreState>> {
    type T = StoreState;
    let has = |g: &str| groups.iter().any(|x| x == g);
    let mut linker = Linker::<T>::new(engine);
    let l = &mut linker;
    if has("wasi:io") {
        bindings::io::error::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
        bindings::io::streams::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    }
    if has("wasi:io") || has("wasi:poll") {
        bindings::io::poll::add_to_linker::<T, HasIo>(l, |t| &mut t.table)?;
    }
    if has("wasi:cli") {
        use bindings::cli;
        cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    }
    if has("wasi:clocks") {
        bindings::clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
        bindings::clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    }
    if has("wasi:filesystem") {
        bindings::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
        bindings::filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    }
    if has("wasi:random") {
        use bindings::random;
        random::random::add_to_linker::<T, WasiRandom>(l, |t| t.wasi().random())?;
        random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.wasi().random())?;
        random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.wasi().random())?;
    }
    if has("wasi:sockets") {
        use bindings::sockets;
        sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
        sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    }
    super::guest_api::add_to_linker(l, groups)?;
    Ok(linker)
}

/// The linkers of one engine, one per distinct set of capability groups.
pub struct LinkerCache {
    engine: Engine,
    linkers: Mutex<HashMap<Vec<String>, Arc<Linker<StoreState>>>>,
}

impl LinkerCache {
    /// An empty cache for `engine`.
    pub fn new(engine: &Engine) -> LinkerCache {
        LinkerCache {
            engine: engine.clone(),
            linkers: Mutex::new(HashMap::new()),
        }
    }

    /// The linker for `groups` (built on first use; `warden:*` names link nothing yet).
    pub fn linker(&self, groups: &[String]) -> wasmtime::Result<Arc<Linker<StoreState>>> {
        let mut key: Vec<String> = groups
            .iter()
            .filter(|g| g.starts_with("wasi:") || g.starts_with("warden:"))
            .cloned()
            .collect();
        key.sort();
        key.dedup();
        let mut linkers = self.linkers.lock();
        if let Some(l) = linkers.get(&key) {
            return Ok(l.clone());
        }
        let linker = Arc::new(build_linker(&self.engine, &key)?);
        linkers.insert(key, linker.clone());
        Ok(linker)
    }

    /// How many distinct linkers were built.
    pub fn len(&self) -> usize {
        self.linkers.lock().len()
    }

    /// Whether no linker was built yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
