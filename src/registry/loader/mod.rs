//! Loading and validating the YAML files of an app: reading the files, the entry model
//! common to every kind, hosts and terminal hosts, and the field helpers. Each family of
//! kinds has its own file: `lua.rs` (process.lua, function.lua, library.lua), `wasm.rs`
//! (function.wat, function.wasm, process.wasm), `env.rs` (fs.directory, env.variable,
//! env.storage.*).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value as Yaml};

mod env;
pub mod layout;
mod lua;
mod typed_lua;
mod wasm;

pub use lua::{builtin_library, BUILTIN_LIBRARIES, BUILTIN_MODULES};
pub use wasm::parse_byte_size;
use wasm::PendingWasm;

use super::{
    Entry, EntrySpec, EnvMapping, EnvStorage, HostSpec, Id, LuaSpec, Mount, PoolSpec, Registry,
    WasiSpec, WasmLimits, WasmSource, WasmSpec, WARDEN_GROUPS, WASM_CAPABILITY_GROUPS,
};

/// Kinds warden validates fully in this module.
const SUPPORTED_KINDS: &[&str] = &[
    "process.host",
    "process.lua",
    "function.lua",
    "library.lua",
    "fs.directory",
    "env.variable",
    "env.storage.os",
    "env.storage.memory",
    "env.storage.file",
    "env.storage.static",
    "env.storage.router",
    "terminal.host",
    "registry.entry",
    "security.policy",
    "security.policy.expr",
    "function.wat",
    "function.wasm",
    "process.wasm",
];

/// The WebAssembly kinds (parsed by `Loader::wasm_entry`, completed by
/// `Loader::resolve_wasm` once every file is read).
const WASM_KINDS: &[&str] = &["function.wat", "function.wasm", "process.wasm"];

/// Kinds of the spec that a later module validates; stored as [`EntrySpec::Deferred`].
const DEFERRED_KINDS: &[&str] = &["process.service", "supervisor", "pg.scope", "cluster.nats"];

/// An unknown kind this close (edit distance) to a kind warden runs is taken for a typo of
/// it and is an error; any other kind warden does not run (`http.service`, `fs.embed`,
/// `workflow.lua`, `temporal.worker`...) is skipped with one warning, so that one entry
/// of a feature warden lacks never stops a whole Wippy app.
const TYPO_DISTANCE: usize = 2;

/// One load error: a single line naming the file, the entry and the field.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadError {
    /// The YAML file, relative to the loaded root dir when it is under it.
    pub file: PathBuf,
    /// The entry id (`ns:name`), or `entries[i]` for an entry without a usable name.
    pub entry: Option<String>,
    /// The field, e.g. `source` or `host.workers`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    /// "<file>: entry <ns:name>: field <field>: <message>", omitting the parts that are None.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(entry) = &self.entry {
            write!(f, ": entry {entry}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// All errors of one load.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// Loads every *.yaml / *.yml under `dir` recursively (sorted paths, deterministic; hidden
/// files and directories are skipped), validates, and returns all errors of the load
/// together (sorted by file, in the order found within a file).
pub fn load_dir(dir: &Path) -> Result<Registry, LoadErrors> {
    let (registry, errors) = load_dir_partial(dir);
    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Loads what can be loaded from `dir`: the entries without errors, and every error
/// (sorted by file). Lets a caller check those entries further (services, trees) and
/// report all errors of one load together.
pub fn load_dir_partial(dir: &Path) -> (Registry, Vec<LoadError>) {
    let empty = |root: PathBuf| Registry {
        root,
        version: 1,
        ..Registry::default()
    };
    let root = match std::path::absolute(dir) {
        Ok(p) => normalize(&p),
        Err(e) => {
            let err = LoadError {
                file: dir.to_path_buf(),
                entry: None,
                field: None,
                message: format!("cannot resolve directory: {e}"),
            };
            return (empty(dir.to_path_buf()), vec![err]);
        }
    };
    let mut loader = Loader::new(root.clone());
    loader.may_create = true;
    if !root.is_dir() {
        let message = if root.exists() {
            "not a directory".to_string()
        } else {
            "directory not found".to_string()
        };
        loader.error(&root, None, None, message);
        return (empty(root), loader.errors);
    }
    // a Wippy project (a wippy.lock): its source, replacements and vendored modules
    let paths = match layout::read(&root) {
        Ok(Some(layout)) => {
            loader.warnings.extend(layout.warnings);
            if !layout.paths[0].path.is_dir() {
                let src = layout.paths[0].path.display().to_string();
                loader.error(
                    &root.join(layout::LOCK_FILE),
                    None,
                    Some("directories.src"),
                    format!("{src} is not a directory"),
                );
            }
            layout.paths
        }
        Ok(None) => vec![layout::LoadPath {
            path: root.clone(),
            module: None,
            source_root: root.clone(),
        }],
        Err(e) => {
            loader.error(&root, None, None, e);
            return (empty(root), loader.errors);
        }
    };
    for p in &paths {
        if let Some((name, _)) = &p.module {
            loader
                .module_roots
                .insert(name.clone(), p.source_root.clone());
        }
    }
    let mut any = false;
    for p in &paths {
        if !p.path.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        loader.collect_yaml(&p.path, &mut files);
        files.sort();
        any |= !files.is_empty();
        loader.loading_module = p.module.clone();
        for file in &files {
            loader.load_file(file);
        }
        loader.loading_module = None;
    }
    if !any && loader.errors.is_empty() {
        loader.error(
            &root,
            None,
            None,
            "no *.yaml or *.yml files found".to_string(),
        );
    }
    loader.resolve_wasm();
    loader.check_imports();
    loader.check_env_storages();
    loader.check_cycles();
    let mut errors = loader.errors;
    errors.sort_by(|a, b| a.file.cmp(&b.file));
    let registry = Registry {
        root,
        entries: loader.entries,
        warnings: loader.warnings,
        modules: loader.module_roots,
        version: 1,
    };
    (registry, errors)
}

/// One entry to load from memory rather than from a file: a changeset's entry, or an
/// entry of the running registry validated again because something it names changed.
#[derive(Clone, Debug)]
pub struct Item {
    /// The file errors name: the YAML file that declared the entry, or a label such as
    /// `changeset` for an entry made by code.
    pub file: PathBuf,
    /// Where relative paths of the entry (`file://` sources, directories) are resolved.
    pub dir: PathBuf,
    /// The entry's namespace.
    pub namespace: String,
    /// The entry mapping as YAML would give it: `name`, `kind`, `meta` and the kind's fields.
    pub mapping: Json,
}

/// Validates a change to `base`: the entries `items` (new, or replacing the entry of the
/// same id) and the removal of `removed`, with exactly the checks of a load (each entry's
/// fields, its references, import cycles). Entries of `base` not named keep their
/// validated form (the same `Arc`), and every reference among all entries is checked
/// again, so removing an entry that another imports is an error of the importer. Returns
/// the new registry (version unchanged) and every error; the warnings of the change are
/// the registry's `warnings`.
pub fn load_changes(base: &Registry, items: &[Item], removed: &[Id]) -> (Registry, Vec<LoadError>) {
    let mut loader = Loader::new(base.root.clone());
    loader.module_roots = base.modules.clone();
    let mut replaced: BTreeSet<Id> = items
        .iter()
        .filter_map(|i| {
            let name = i.mapping.get("name")?.as_str()?;
            Some(Id::new(i.namespace.clone(), name))
        })
        .chain(removed.iter().cloned())
        .collect();
    // entries that name a changed one (a wasm entry's directory, an import) are loaded
    // again with the change, as a load would see them
    let mut items = items.to_vec();
    let removed_set: BTreeSet<&Id> = removed.iter().collect();
    let dependents: Vec<Arc<Entry>> = base
        .entries
        .values()
        .filter(|e| !replaced.contains(&e.id) && mentions_any(e, &replaced))
        .cloned()
        .collect();
    for e in dependents {
        replaced.insert(e.id.clone());
        items.push(Item {
            file: e.file.clone(),
            dir: e.file.parent().unwrap_or(&base.root).to_path_buf(),
            namespace: e.id.namespace.clone(),
            mapping: e.raw.clone(),
        });
    }
    items.retain(|i| {
        i.mapping
            .get("name")
            .and_then(Json::as_str)
            .is_none_or(|n| !removed_set.contains(&Id::new(i.namespace.clone(), n)))
    });
    for (id, e) in &base.entries {
        if replaced.contains(id) {
            continue;
        }
        loader.declared.insert(
            id.clone(),
            Declared {
                kind: e.kind.clone(),
                file: e.file.clone(),
            },
        );
        loader.entries.insert(id.clone(), e.clone());
    }
    for (index, item) in items.iter().enumerate() {
        let yaml = match serde_yaml_ng::to_value(&item.mapping) {
            Ok(y) => y,
            Err(e) => {
                loader.error(
                    &item.file,
                    None,
                    None,
                    format!("entry is not YAML data: {e}"),
                );
                continue;
            }
        };
        loader.load_entry(&item.file, &item.dir, &item.namespace, index, &yaml);
    }
    loader.resolve_wasm();
    loader.check_imports();
    loader.check_env_storages();
    loader.check_cycles();
    let registry = Registry {
        root: base.root.clone(),
        entries: loader.entries,
        warnings: loader.warnings,
        modules: loader.module_roots,
        version: base.version,
    };
    (registry, loader.errors)
}

/// Whether a string anywhere in `e`'s fields names one of `ids` (as `ns:name`, or by bare
/// name inside its own namespace).
fn mentions_any(e: &Entry, ids: &BTreeSet<Id>) -> bool {
    fn walk(j: &Json, hit: &dyn Fn(&str) -> bool) -> bool {
        match j {
            Json::String(s) => hit(s),
            Json::Array(a) => a.iter().any(|x| walk(x, hit)),
            Json::Object(m) => m.iter().any(|(k, v)| k != "name" && walk(v, hit)),
            _ => false,
        }
    }
    let hit = |s: &str| {
        ids.iter().any(|id| match s.split_once(':') {
            Some((ns, name)) => ns == id.namespace && name == id.name,
            None => id.namespace == e.id.namespace && id.name == s,
        })
    };
    walk(&e.raw, &hit)
}

/// Where an error of one entry is reported.
struct Ctx<'a> {
    /// The YAML file, absolute.
    file: &'a Path,
    /// The directory of the YAML file, absolute.
    dir: &'a Path,
    /// The entry's namespace.
    ns: &'a str,
    /// The entry's id.
    id: &'a Id,
}

/// A declared entry (also those with field errors or skipped kinds), for reference checks.
struct Declared {
    kind: String,
    file: PathBuf,
}

struct Loader {
    root: PathBuf,
    errors: Vec<LoadError>,
    warnings: Vec<String>,
    declared: HashMap<Id, Declared>,
    entries: BTreeMap<Id, Arc<Entry>>,
    lua: mlua::Lua,
    /// Wasm entries whose references are resolved after every file is read.
    pending_wasm: Vec<PendingWasm>,
    /// The root of each module loaded (`org/module` -> directory).
    module_roots: BTreeMap<String, PathBuf>,
    /// The module whose files load now (name, version): its entries get `meta.module`.
    loading_module: Option<(String, Option<String>)>,
    /// The load may create what an entry asks for (`fs.directory`'s `auto_init`): the
    /// app's own files, not a changeset made by code.
    may_create: bool,
}

impl Loader {
    fn new(root: PathBuf) -> Loader {
        Loader {
            root,
            errors: Vec::new(),
            warnings: Vec::new(),
            declared: HashMap::new(),
            entries: BTreeMap::new(),
            lua: mlua::Lua::new(),
            pending_wasm: Vec::new(),
            module_roots: BTreeMap::new(),
            loading_module: None,
            may_create: false,
        }
    }

    /// `path` relative to the root when it is under it.
    fn rel(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
            _ => path.to_path_buf(),
        }
    }

    fn error(&mut self, file: &Path, entry: Option<String>, field: Option<&str>, message: String) {
        let file = self.rel(file);
        self.errors.push(LoadError {
            file,
            entry,
            field: field.map(str::to_string),
            message,
        });
    }

    fn entry_error(&mut self, ctx: &Ctx, field: &str, message: String) {
        self.error(ctx.file, Some(ctx.id.to_string()), Some(field), message);
    }

    fn collect_yaml(&mut self, dir: &Path, out: &mut Vec<PathBuf>) {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => {
                self.error(dir, None, None, format!("cannot read directory: {e}"));
                return;
            }
        };
        for item in read {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    self.error(dir, None, None, format!("cannot read directory: {e}"));
                    continue;
                }
            };
            let name = item.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = item.path();
            let Ok(ft) = item.file_type() else { continue };
            if ft.is_dir() {
                self.collect_yaml(&path, out);
            } else if (ft.is_file() || (ft.is_symlink() && path.is_file()))
                && path.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
            {
                out.push(path);
            }
        }
    }

    fn load_file(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.error(path, None, None, format!("cannot read file: {e}"));
                return;
            }
        };
        let mut doc: Yaml = match serde_yaml_ng::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                let mut message = format!("invalid YAML: {e}");
                if let Some(loc) = e.location() {
                    if !message.contains("line ") {
                        message.push_str(&format!(" (line {})", loc.line()));
                    }
                }
                self.error(path, None, None, message);
                return;
            }
        };
        if let Err(e) = doc.apply_merge() {
            self.error(path, None, None, format!("invalid YAML merge key: {e}"));
            return;
        }
        let Yaml::Mapping(top) = &doc else {
            if doc.is_null() {
                self.error(
                    path,
                    None,
                    None,
                    "file is empty (expected a mapping with `namespace` and `entries`)".to_string(),
                );
                return;
            }
            self.error(
                path,
                None,
                None,
                format!(
                    "top level must be a mapping with `namespace` and `entries`, found {}",
                    describe(&doc)
                ),
            );
            return;
        };
        let ns = match top.get("namespace") {
            None => {
                self.error(
                    path,
                    None,
                    Some("namespace"),
                    "missing required field (expected a string)".to_string(),
                );
                None
            }
            Some(Yaml::String(s)) => match check_namespace(s) {
                Ok(()) => Some(s.clone()),
                Err(m) => {
                    self.error(path, None, Some("namespace"), m);
                    None
                }
            },
            Some(other) => {
                self.error(
                    path,
                    None,
                    Some("namespace"),
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        };
        let entries = match top.get("entries") {
            None => {
                self.error(
                    path,
                    None,
                    Some("entries"),
                    "missing required field (expected a sequence of entries)".to_string(),
                );
                None
            }
            Some(Yaml::Sequence(seq)) => Some(seq),
            Some(other) => {
                self.error(
                    path,
                    None,
                    Some("entries"),
                    format!("expected a sequence of entries, found {}", describe(other)),
                );
                None
            }
        };
        let (Some(ns), Some(entries)) = (ns, entries) else {
            return;
        };
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        for (i, item) in entries.iter().enumerate() {
            self.load_entry(path, &dir, &ns, i, item);
        }
    }

    fn load_entry(&mut self, file: &Path, dir: &Path, ns: &str, index: usize, item: &Yaml) {
        // a module's entries carry its name (and version), as Wippy tags them
        let tagged;
        // (a `meta` that is not a mapping is left for its field error)
        let item = match (&self.loading_module, item) {
            (Some((module, version)), Yaml::Mapping(m))
                if m.get("meta").is_none_or(|v| v.is_mapping() || v.is_null()) =>
            {
                let mut m = m.clone();
                let mut meta = m
                    .get("meta")
                    .and_then(Yaml::as_mapping)
                    .cloned()
                    .unwrap_or_default();
                meta.insert("module".into(), module.as_str().into());
                if let Some(v) = version {
                    meta.insert("module_version".into(), v.as_str().into());
                }
                m.insert("meta".into(), Yaml::Mapping(meta));
                tagged = Yaml::Mapping(m);
                &tagged
            }
            _ => item,
        };
        let label = format!("entries[{index}]");
        let Yaml::Mapping(map) = item else {
            self.error(
                file,
                Some(label),
                None,
                format!("entry must be a mapping, found {}", describe(item)),
            );
            return;
        };
        let name = match map.get("name") {
            None => {
                self.error(
                    file,
                    Some(label),
                    Some("name"),
                    "missing required field (expected a string)".to_string(),
                );
                return;
            }
            Some(Yaml::String(s)) => {
                if let Err(m) = check_name(s) {
                    self.error(file, Some(label), Some("name"), m);
                    return;
                }
                s.clone()
            }
            Some(other) => {
                self.error(
                    file,
                    Some(label),
                    Some("name"),
                    format!("expected a string, found {}", describe(other)),
                );
                return;
            }
        };
        let id = Id::new(ns, name);
        let kind = match map.get("kind") {
            None => {
                self.error(
                    file,
                    Some(id.to_string()),
                    Some("kind"),
                    "missing required field (expected a string)".to_string(),
                );
                return;
            }
            Some(Yaml::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                self.error(
                    file,
                    Some(id.to_string()),
                    Some("kind"),
                    format!("expected a non-empty string, found {}", describe(other)),
                );
                return;
            }
        };
        if let Some(prev) = self.declared.get(&id) {
            let prev_file = self.rel(&prev.file);
            self.error(
                file,
                Some(id.to_string()),
                Some("name"),
                format!(
                    "duplicate id {id}: already declared in {}",
                    prev_file.display()
                ),
            );
            return;
        }
        self.declared.insert(
            id.clone(),
            Declared {
                kind: kind.clone(),
                file: file.to_path_buf(),
            },
        );
        let ctx = Ctx {
            file,
            dir,
            ns,
            id: &id,
        };

        let known =
            SUPPORTED_KINDS.contains(&kind.as_str()) || DEFERRED_KINDS.contains(&kind.as_str());
        if !known {
            let all: Vec<&str> = SUPPORTED_KINDS
                .iter()
                .chain(DEFERRED_KINDS)
                .copied()
                .collect();
            let typo = all
                .iter()
                .any(|k| strsim::levenshtein(&kind, k) <= TYPO_DISTANCE);
            if typo {
                let message = format!("unknown kind {kind}{}", did_you_mean(&kind, &all));
                self.entry_error(&ctx, "kind", message);
            } else {
                self.warnings.push(format!(
                    "{}: kind {kind} is not supported; entry {id} skipped",
                    self.rel(file).display()
                ));
            }
            return;
        }

        let meta = match map.get("meta") {
            None | Some(Yaml::Null) => Json::Null,
            Some(m @ Yaml::Mapping(_)) => to_json(m),
            Some(other) => {
                self.entry_error(
                    &ctx,
                    "meta",
                    format!("expected a mapping, found {}", describe(other)),
                );
                Json::Null
            }
        };
        let spec = match kind.as_str() {
            "process.host" => self.host_spec(&ctx, map).map(EntrySpec::ProcessHost),
            "process.lua" => self.lua_spec(&ctx, map, &kind).map(EntrySpec::ProcessLua),
            "function.lua" => self.lua_spec(&ctx, map, &kind).map(EntrySpec::FunctionLua),
            "library.lua" => self.lua_spec(&ctx, map, &kind).map(EntrySpec::LibraryLua),
            "fs.directory" => self.fs_directory(&ctx, map),
            "env.variable" => self.env_variable(&ctx, map),
            "env.storage.os" => Some(EntrySpec::EnvStorage(EnvStorage::Os)),
            "env.storage.memory" => self
                .env_values(&ctx, map)
                .map(|v| EntrySpec::EnvStorage(EnvStorage::Memory(v))),
            "env.storage.static" => self
                .env_values(&ctx, map)
                .map(|v| EntrySpec::EnvStorage(EnvStorage::Static(v))),
            "env.storage.router" => self.env_router(&ctx, map),
            "env.storage.file" => self.env_file(&ctx, map),
            "terminal.host" => Some(EntrySpec::TerminalHost),
            "registry.entry" => Some(EntrySpec::Data),
            // en/system/security.md, "Declarative Policy"
            "security.policy" | "security.policy.expr" => {
                let parsed = if kind == "security.policy" {
                    crate::security::Policy::parse(&id.to_string(), &to_json(item))
                } else {
                    crate::security::Policy::parse_expr(&id.to_string(), &to_json(item))
                };
                match parsed {
                    Ok(p) => Some(EntrySpec::SecurityPolicy(Arc::new(p))),
                    Err(e) => {
                        let field = if e.starts_with("groups") {
                            "groups"
                        } else {
                            "policy"
                        };
                        self.entry_error(&ctx, field, e);
                        None
                    }
                }
            }
            k if WASM_KINDS.contains(&k) => {
                if let Some(fields) = self.wasm_entry(&ctx, map, k) {
                    self.pending_wasm.push(PendingWasm {
                        id: id.clone(),
                        kind: kind.clone(),
                        file: file.to_path_buf(),
                        dir: dir.to_path_buf(),
                        ns: ns.to_string(),
                        meta,
                        raw: to_json(item),
                        fields,
                    });
                }
                return;
            }
            _ => Some(EntrySpec::Deferred),
        };
        if let Some(spec) = spec {
            let entry = Entry {
                id: id.clone(),
                kind,
                file: file.to_path_buf(),
                meta,
                raw: to_json(item),
                spec,
            };
            self.entries.insert(id, Arc::new(entry));
        }
    }

    /// A required string field; records the error and returns None when missing or ill-typed.
    fn required_string(&mut self, ctx: &Ctx, map: &Mapping, field: &str) -> Option<String> {
        match map.get(field) {
            None | Some(Yaml::Null) => {
                self.entry_error(
                    ctx,
                    field,
                    "missing required field (expected a string)".to_string(),
                );
                None
            }
            Some(Yaml::String(s)) => Some(s.clone()),
            Some(other) => {
                self.entry_error(
                    ctx,
                    field,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// An optional string field; `Err(())` when present but ill-typed (error recorded).
    fn optional_string(
        &mut self,
        ctx: &Ctx,
        map: &Mapping,
        field: &str,
    ) -> Result<Option<String>, ()> {
        match map.get(field) {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                self.entry_error(
                    ctx,
                    field,
                    format!("expected a string, found {}", describe(other)),
                );
                Err(())
            }
        }
    }

    /// An optional scalar field (string, number or boolean) as a string.
    fn optional_scalar(
        &mut self,
        ctx: &Ctx,
        map: &Mapping,
        field: &str,
    ) -> Result<Option<String>, ()> {
        match map.get(field) {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s.clone())),
            Some(Yaml::Number(n)) => Ok(Some(n.to_string())),
            Some(Yaml::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => {
                self.entry_error(
                    ctx,
                    field,
                    format!(
                        "expected a string, number or boolean, found {}",
                        describe(other)
                    ),
                );
                Err(())
            }
        }
    }

    fn host_spec(&mut self, ctx: &Ctx, map: &Mapping) -> Option<HostSpec> {
        let mut spec = HostSpec::default();
        let host = match map.get("host") {
            None | Some(Yaml::Null) => return Some(spec),
            Some(Yaml::Mapping(h)) => h,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "host",
                    format!("expected a mapping, found {}", describe(other)),
                );
                return None;
            }
        };
        let mut ok = true;
        for (key, slot) in [
            ("workers", &mut spec.workers),
            ("queue_size", &mut spec.queue_size),
            ("local_queue_size", &mut spec.local_queue_size),
        ] {
            let field = format!("host.{key}");
            match host.get(key) {
                None | Some(Yaml::Null) => {}
                Some(Yaml::Number(n)) => {
                    if let Some(i) = n.as_i64() {
                        if i <= 0 {
                            self.entry_error(
                                ctx,
                                &field,
                                format!("must be a positive integer, found {i}"),
                            );
                            ok = false;
                        } else {
                            *slot = i as usize;
                        }
                    } else if let Some(u) = n.as_u64() {
                        *slot = usize::try_from(u).unwrap_or(usize::MAX);
                    } else {
                        self.entry_error(
                            ctx,
                            &field,
                            format!("expected a positive integer, found number {n}"),
                        );
                        ok = false;
                    }
                }
                Some(other) => {
                    self.entry_error(
                        ctx,
                        &field,
                        format!("expected a positive integer, found {}", describe(other)),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(spec)
    }
}

/// " (did you mean X?)" for the nearest candidate within three edits, else "".
fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    crate::registry::hint::did_you_mean(word, candidates, crate::registry::hint::NEAR)
}

fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() {
        return Err("must not be empty".to_string());
    }
    if ns.contains(':') || ns.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid namespace \"{ns}\": must not contain ':' or whitespace"
        ));
    }
    if ns.split('.').any(str::is_empty) {
        return Err(format!(
            "invalid namespace \"{ns}\": empty segment between dots"
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.contains(':') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid name \"{name}\": must not contain ':' or whitespace"
        ));
    }
    Ok(())
}

/// A short description of a YAML value's type (and value, for scalars), for messages.
fn describe(v: &Yaml) -> String {
    match v {
        Yaml::Null => "null".to_string(),
        Yaml::Bool(b) => format!("boolean {b}"),
        Yaml::Number(n) => format!("number {n}"),
        Yaml::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push_str("...");
            }
            format!("string {shown:?}")
        }
        Yaml::Sequence(_) => "a sequence".to_string(),
        Yaml::Mapping(_) => "a mapping".to_string(),
        Yaml::Tagged(t) => format!("tagged value {}", t.tag),
    }
}

/// Converts YAML to JSON: non-string keys are turned into their text, tags are dropped,
/// non-finite floats become null.
fn to_json(v: &Yaml) -> Json {
    match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number)
                    .unwrap_or(Json::Null)
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(s) => Json::Array(s.iter().map(to_json).collect()),
        Yaml::Mapping(m) => {
            Json::Object(m.iter().map(|(k, v)| (key_text(k), to_json(v))).collect())
        }
        Yaml::Tagged(t) => to_json(&t.value),
    }
}

fn key_text(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        Yaml::Null => "null".to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        other => serde_json::to_string(&to_json(other)).unwrap_or_default(),
    }
}

/// Lexically removes `.` and resolves `..` components of an absolute path.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}
