//! The registry: the app's YAML entries, loaded and validated.
//!
//! An app is a directory tree of YAML files; each file declares a `namespace` and a list
//! of `entries`. [`load_dir`] reads them all, validates every entry of the kinds warden
//! supports and returns a [`Registry`], or every error of the load at once ([`LoadErrors`]).

pub mod actor;
pub mod changes;
pub mod fields;
pub mod finder;
pub mod hint;
pub mod loader;
pub mod pool;

pub use loader::{
    builtin_library, layout::LOCK_FILE, load_changes, load_dir, load_dir_partial, Item, LoadError,
    LoadErrors,
};
pub use pool::{PoolKind, PoolSpec};

/// The capability groups a wasm entry may list in `imports` (besides any `warden:...` name).
pub const WASM_CAPABILITY_GROUPS: &[&str] = &[
    "wasi:cli",
    "wasi:io",
    "wasi:poll",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:random",
    "wasi:sockets",
    "wasi:http",
];

/// warden's own host interfaces for guests (`wit/warden.wit`), granted like WASI groups.
/// `warden:process` is for `process.wasm` entries only.
pub const WARDEN_GROUPS: &[&str] = &["warden:process", "warden:funcs"];

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// An entry id `namespace:name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    /// The (possibly dotted) namespace, e.g. `app.workers`.
    pub namespace: String,
    /// The entry name inside the namespace.
    pub name: String,
}

impl Id {
    /// Builds an id from its two parts (no validation).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Id {
        Id {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses "ns:name" (namespace may be dotted, e.g. "app.workers:worker"). Errors: empty
    /// string, no ':', empty namespace, empty name or more than one ':' -> `Err` with a
    /// one-line reason.
    pub fn parse(s: &str) -> Result<Id, String> {
        if s.is_empty() {
            return Err("empty id (expected namespace:name)".to_string());
        }
        let Some((namespace, name)) = s.split_once(':') else {
            return Err(format!(
                "id \"{s}\" has no namespace (expected namespace:name)"
            ));
        };
        if namespace.is_empty() {
            return Err(format!(
                "id \"{s}\" has an empty namespace (expected namespace:name)"
            ));
        }
        if name.is_empty() {
            return Err(format!(
                "id \"{s}\" has an empty name (expected namespace:name)"
            ));
        }
        if name.contains(':') {
            return Err(format!(
                "id \"{s}\" has more than one ':' (expected namespace:name)"
            ));
        }
        Ok(Id::new(namespace, name))
    }

    /// Resolves a reference written inside namespace `ns`: "ns2:x" as is, bare "x" -> ns:x.
    pub fn resolve(reference: &str, ns: &str) -> Result<Id, String> {
        if reference.contains(':') {
            return Id::parse(reference);
        }
        if reference.is_empty() {
            return Err("empty reference (expected name or namespace:name)".to_string());
        }
        if ns.is_empty() {
            return Err(format!(
                "cannot resolve bare name \"{reference}\": no namespace"
            ));
        }
        Ok(Id::new(ns, reference))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for Id {
    type Err = String;

    /// Same as [`Id::parse`].
    fn from_str(s: &str) -> Result<Id, String> {
        Id::parse(s)
    }
}

/// One loaded entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's id, `namespace:name`.
    pub id: Id,
    /// The kind as written, e.g. "process.lua".
    pub kind: String,
    /// The YAML file that declared it (absolute path).
    pub file: PathBuf,
    /// The entry's `meta` mapping (Null when absent).
    pub meta: serde_json::Value,
    /// The whole entry mapping as JSON (for kinds parsed by later modules).
    pub raw: serde_json::Value,
    /// The validated, kind-specific fields.
    pub spec: EntrySpec,
}

/// The kind-specific part of an entry.
#[derive(Clone, Debug)]
pub enum EntrySpec {
    /// `process.host`: a scheduler that runs processes.
    ProcessHost(HostSpec),
    /// `process.lua`: Lua source for a process.
    ProcessLua(LuaSpec),
    /// `library.lua`: a Lua module other entries import by alias.
    LibraryLua(LuaSpec),
    /// `function.lua`: a stateless Lua function.
    FunctionLua(LuaSpec),
    /// `fs.directory`: a host directory.
    FsDirectory {
        /// Absolute, resolved relative to the YAML file's dir; exists.
        directory: PathBuf,
    },
    /// `env.variable`: a literal value, or one read from the host environment or from an
    /// `env.storage.*` entry.
    EnvVariable {
        /// The literal value (`value:`), if given.
        value: Option<String>,
        /// The variable to read (`variable:`): from `storage` when set, else from the host
        /// environment. With a storage and no `variable:`, the entry's name.
        variable: Option<String>,
        /// The fallback when `variable` is unset (`default:`), if given.
        default: Option<String>,
        /// The `env.storage.*` entry the variable lives in (`storage:`), if given.
        storage: Option<Id>,
        /// `read_only: true`: `env.set` refuses it.
        read_only: bool,
    },
    /// `env.storage.os`, `env.storage.memory`, `env.storage.file`: where `env.variable`
    /// entries keep their values.
    EnvStorage(EnvStorage),
    /// `terminal.host`: the terminal host (no fields).
    TerminalHost,
    /// `function.wat`, `function.wasm`, `process.wasm`: a WebAssembly module or component.
    Wasm(WasmSpec),
    /// A kind of the spec that a later module validates (process.service, supervisor): kept
    /// raw in `Entry::raw`.
    Deferred,
    /// `registry.entry`: plain data for code to read with the `registry` module (kept in
    /// `Entry::raw`).
    Data,
    /// `security.policy`, `security.policy.expr`: a policy of Wippy's security model
    /// (en/system/security.md).
    SecurityPolicy(Arc<crate::security::Policy>),
}

impl EntrySpec {
    /// The Lua source, method, modules and imports of a Lua entry (`process.lua`,
    /// `function.lua`, `library.lua`).
    pub fn lua(&self) -> Option<&LuaSpec> {
        match self {
            EntrySpec::ProcessLua(l) | EntrySpec::LibraryLua(l) | EntrySpec::FunctionLua(l) => {
                Some(l)
            }
            _ => None,
        }
    }

    /// Whether the entry is a host processes run on (`process.host`, `terminal.host`).
    pub fn is_host(&self) -> bool {
        matches!(self, EntrySpec::ProcessHost(_) | EntrySpec::TerminalHost)
    }
}

/// The fields of a `process.host` entry (`host:` mapping).
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// `host.workers`; default: number of CPUs (`std::thread::available_parallelism`).
    pub workers: usize,
    /// `host.queue_size`; default 1024.
    pub queue_size: usize,
    /// `host.local_queue_size`; default 256.
    pub local_queue_size: usize,
}

impl Default for HostSpec {
    /// The defaults: workers = number of CPUs, queue_size 1024, local_queue_size 256.
    fn default() -> Self {
        HostSpec {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            queue_size: 1024,
            local_queue_size: 256,
        }
    }
}

/// The fields of a `process.lua`, `function.lua` or `library.lua` entry.
#[derive(Clone, Debug)]
pub struct LuaSpec {
    /// Lua source text (inline, or read from `file://`).
    pub source: Arc<str>,
    /// For Lua error messages: the .lua path (relative to the root) for `file://` sources,
    /// else "<yaml path>#ns:name".
    pub chunk_name: String,
    /// The exported function run as the body; required for process.lua and function.lua.
    pub method: Option<String>,
    /// Built-in modules the entry may `require` (only warden built-ins, deduplicated).
    pub modules: Vec<String>,
    /// alias -> library.lua entry id, in YAML order.
    pub imports: Vec<(String, Id)>,
    /// function.lua only: the parsed `pool` field (None: the default pool).
    pub pool: Option<PoolSpec>,
}

/// An `env.storage.*` entry.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvStorage {
    /// `env.storage.os`: the host environment (read only).
    Os,
    /// `env.storage.memory`: values held by the runtime, starting from `values:`.
    Memory(BTreeMap<String, String>),
    /// `env.storage.file`: a `.env` file (`KEY=VALUE` lines), read at load and written by
    /// `env.set`.
    File(PathBuf),
    /// `env.storage.static`: values baked into the entry (read only).
    Static(BTreeMap<String, String>),
    /// `env.storage.router`: other storages, read in order until one has the variable;
    /// writes go to the first.
    Router(Vec<Id>),
}

/// How a memory storage is read: (its id, its declared values, the key) -> the value.
pub type MemoryRead<'a> = dyn Fn(&Id, &BTreeMap<String, String>, &str) -> Option<String> + 'a;

/// How deep routers may nest (a router that names itself, directly or not, stops here).
pub const ENV_ROUTER_DEPTH: usize = 8;

/// The fields of a `function.wat`, `function.wasm` or `process.wasm` entry.
#[derive(Clone, Debug)]
pub struct WasmSpec {
    /// The module text or bytes, read (and for binaries hash-checked) at load.
    pub source: WasmSource,
    /// The export to call: `name` (a root export) or `iface#name` (a function of an exported
    /// interface).
    pub method: String,
    /// For core modules: a bare function declaration (`answer: func() -> s32;`) or a full
    /// WIT package with a world (inline, or read from `file://`).
    pub wit: Option<String>,
    /// The parsed `pool` field (None: the default pool). process.wasm: accepted, ignored.
    pub pool: Option<PoolSpec>,
    /// Capability groups granted (`wasi:cli`, `wasi:io`, ... or any `warden:...` name),
    /// deduplicated, in YAML order.
    pub imports: Vec<String>,
    /// The WASI context of each instance.
    pub wasi: WasiSpec,
    /// Execution limits.
    pub limits: WasmLimits,
}

/// Where a wasm entry's module comes from.
#[derive(Clone, Debug)]
pub enum WasmSource {
    /// `function.wat`: WebAssembly text (inline, or read from `file://`).
    Wat {
        /// The text.
        text: Arc<str>,
    },
    /// `function.wasm` / `process.wasm`: a binary from an `fs.directory` entry.
    Binary {
        /// The file on the host (absolute).
        path: PathBuf,
        /// Its bytes.
        bytes: Arc<[u8]>,
        /// Its sha256 (lowercase hex, checked against the entry's `hash`).
        sha256: String,
    },
}

/// The `wasi:` mapping of a wasm entry. Nothing is inherited from the host: a guest sees
/// only what is declared here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WasiSpec {
    /// Program arguments (`wasi.args`).
    pub args: Vec<String>,
    /// Initial working directory (`wasi.cwd`), absolute.
    pub cwd: Option<String>,
    /// Environment variables from `env.variable` entries (`wasi.env`).
    pub env: Vec<EnvMapping>,
    /// Host directories from `fs.directory` entries preopened in the guest (`wasi.mounts`).
    pub mounts: Vec<Mount>,
}

/// One `wasi.env` item: the guest variable `name` takes the value of entry `id`.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvMapping {
    /// The `env.variable` entry.
    pub id: Id,
    /// The variable name the guest sees.
    pub name: String,
    /// Whether a missing value is an error (else the variable is left out).
    pub required: bool,
}

/// One `wasi.mounts` item: directory entry `fs` seen by the guest at `guest`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    /// The `fs.directory` entry.
    pub fs: Id,
    /// The absolute guest path.
    pub guest: String,
    /// Whether writes are refused.
    pub read_only: bool,
}

/// The `limits:` mapping of a wasm entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WasmLimits {
    /// A call (or process step) running longer is interrupted with a TIMEOUT error.
    pub max_execution_ms: Option<u64>,
    /// Linear memory of an instance may not grow beyond this many bytes.
    pub max_memory: Option<u64>,
}

/// The loaded app.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// The (absolute) directory the app was loaded from.
    pub root: PathBuf,
    /// Every loaded entry by id.
    pub entries: BTreeMap<Id, Arc<Entry>>,
    /// The version: 1 as loaded, one more for each change applied to the running app.
    pub version: u64,
    /// Warnings of the load (or of the change that made this version), one line each, e.g.
    /// "app/_index.yaml: kind http.service is not supported; entry app:api skipped".
    pub warnings: Vec<String>,
    /// The root directory of each module loaded from a Wippy project (`org/module`): its
    /// entries' relative paths resolve there.
    pub modules: BTreeMap<String, PathBuf>,
}

/// Reads a `.env` text: `KEY=VALUE` lines (an optional `export ` before the key, values
/// optionally in single or double quotes); blank lines and `#` comments are skipped.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    out
}

impl Registry {
    /// The value of `env.variable` entry `id` as the app starts: its literal value, else
    /// its variable in its storage (the host environment, a memory storage's initial
    /// values, a `.env` file) or in the host environment, else its default.
    pub fn env_value(&self, id: &Id) -> Option<String> {
        self.env_value_of(self.get(id)?, &|_, declared, key| {
            declared.get(key).cloned()
        })
    }

    /// The value of `env.variable` entry `e`: its literal value, else its variable in its
    /// storage (or in the host environment), else its default. `memory` reads a memory
    /// storage (its id, its declared values, the key): a running node keeps their
    /// current values.
    pub fn env_value_of(&self, e: &Entry, memory: &MemoryRead<'_>) -> Option<String> {
        let EntrySpec::EnvVariable {
            value,
            variable,
            default,
            storage,
            ..
        } = &e.spec
        else {
            return None;
        };
        if let Some(v) = value {
            return Some(v.clone());
        }
        let from_storage = variable.as_ref().and_then(|name| match storage {
            Some(st) => self.env_read(st, name, 0, memory),
            None => std::env::var(name).ok(),
        });
        from_storage.or_else(|| default.clone())
    }

    /// Variable `name` in storage `storage`: the host environment, a memory storage's
    /// values (`memory` gives a running node's current ones, None: the declared ones), a
    /// `.env` file, a static storage, or the first storage of a router that has it.
    pub fn env_read(
        &self,
        storage: &Id,
        name: &str,
        depth: usize,
        memory: &MemoryRead<'_>,
    ) -> Option<String> {
        match self.get(storage).map(|e| &e.spec) {
            Some(EntrySpec::EnvStorage(EnvStorage::Memory(values))) => {
                memory(storage, values, name)
            }
            Some(EntrySpec::EnvStorage(EnvStorage::Static(values))) => values.get(name).cloned(),
            Some(EntrySpec::EnvStorage(EnvStorage::File(path))) => std::fs::read_to_string(path)
                .ok()
                .and_then(|t| parse_dotenv(&t).remove(name)),
            Some(EntrySpec::EnvStorage(EnvStorage::Router(list))) if depth < ENV_ROUTER_DEPTH => {
                list.iter()
                    .find_map(|s| self.env_read(s, name, depth + 1, memory))
            }
            Some(EntrySpec::EnvStorage(EnvStorage::Router(_))) => None,
            _ => std::env::var(name).ok(),
        }
    }

    /// The entry with this id.
    pub fn get(&self, id: &Id) -> Option<&Arc<Entry>> {
        self.entries.get(id)
    }

    /// The `security.policy` entry with this id.
    pub fn policy(&self, id: &Id) -> Option<&Arc<crate::security::Policy>> {
        match &self.get(id)?.spec {
            EntrySpec::SecurityPolicy(p) => Some(p),
            _ => None,
        }
    }

    /// The policies of group `group` declared in namespace `ns` (`security.named_scope
    /// ("ns:group")`), in id order.
    pub fn policies_in_group(&self, ns: &str, group: &str) -> Vec<Arc<crate::security::Policy>> {
        self.entries
            .values()
            .filter(|e| e.id.namespace == ns)
            .filter_map(|e| match &e.spec {
                EntrySpec::SecurityPolicy(p) if p.groups.iter().any(|g| g == group) => {
                    Some(p.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// All entries of one kind (e.g. "process.lua"), in id order.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Arc<Entry>> + 'a {
        self.entries.values().filter(move |e| e.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_id_parse_ok() {
        let id = Id::parse("app.workers:worker").unwrap();
        assert_eq!(id.namespace, "app.workers");
        assert_eq!(id.name, "worker");
        assert_eq!(id.to_string(), "app.workers:worker");
        assert_eq!("a:b".parse::<Id>().unwrap(), Id::new("a", "b"));
    }

    #[test]
    fn registry_id_parse_errors() {
        assert!(Id::parse("").unwrap_err().contains("empty id"));
        assert!(Id::parse("worker")
            .unwrap_err()
            .contains("has no namespace"));
        assert!(Id::parse(":worker")
            .unwrap_err()
            .contains("empty namespace"));
        assert!(Id::parse("app:").unwrap_err().contains("empty name"));
        assert!(Id::parse("a:b:c")
            .unwrap_err()
            .contains("more than one ':'"));
    }

    #[test]
    fn registry_id_resolve() {
        assert_eq!(Id::resolve("x", "app").unwrap(), Id::new("app", "x"));
        assert_eq!(
            Id::resolve("lib.util:x", "app").unwrap(),
            Id::new("lib.util", "x")
        );
        assert!(Id::resolve("", "app").is_err());
        assert!(Id::resolve("app:", "app").is_err());
        assert!(Id::resolve("x", "").is_err());
    }

    #[test]
    fn registry_of_kind_and_get() {
        let mut reg = Registry::default();
        for (name, kind) in [("a", "process.lua"), ("b", "terminal.host")] {
            let id = Id::new("app", name);
            reg.entries.insert(
                id.clone(),
                Arc::new(Entry {
                    id,
                    kind: kind.to_string(),
                    file: PathBuf::from("x.yaml"),
                    meta: serde_json::Value::Null,
                    raw: serde_json::Value::Null,
                    spec: EntrySpec::TerminalHost,
                }),
            );
        }
        let ids: Vec<String> = reg
            .of_kind("process.lua")
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(ids, ["app:a"]);
        assert!(reg.get(&Id::new("app", "b")).is_some());
        assert!(reg.get(&Id::new("app", "c")).is_none());
    }
}
