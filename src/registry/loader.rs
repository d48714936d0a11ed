//! Loading and validating the YAML files of an app.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value as Yaml};

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
    "terminal.host",
    "function.wat",
    "function.wasm",
    "process.wasm",
];

/// The WebAssembly kinds (parsed by `Loader::wasm_entry`, completed by
/// `Loader::resolve_wasm` once every file is read).
const WASM_KINDS: &[&str] = &["function.wat", "function.wasm", "process.wasm"];

/// Kinds of the spec that a later module validates; stored as [`EntrySpec::Deferred`].
const DEFERRED_KINDS: &[&str] = &["process.service", "supervisor"];

/// First dotted segments of Wippy kinds that warden does not support (warning, skipped).
const UNSUPPORTED_KIND_PREFIXES: &[&str] = &[
    "http",
    "db",
    "sql",
    "store",
    "security",
    "template",
    "templates",
    "contract",
    "queue",
    "cloudstorage",
    "config",
    "registry",
    "ns",
    "exec",
    "view",
    "agent",
    "llm",
    "event",
    "events",
    "websocket",
    "stream",
    "keeper",
    "cloud",
    "storage",
    "migration",
];

/// The Lua modules warden provides to `require`.
pub const BUILTIN_MODULES: &[&str] = &[
    "time",
    "json",
    "logger",
    "funcs",
    "ctx",
    "supervisor",
    "io",
    "uuid",
    "env",
    "os",
    "process",
    "channel",
    "errors",
    "payload",
];

/// Wippy modules warden does not provide (warning: `require` will fail).
const WIPPY_ONLY_MODULES: &[&str] = &[
    "http",
    "http_client",
    "sql",
    "store",
    "fs",
    "crypto",
    "base64",
    "hash",
    "uuid",
    "yaml",
    "text",
    "excel",
    "templates",
    "security",
    "events",
    "contract",
    "exec",
    "system",
    "registry",
    "websocket",
    "stream",
    "upload",
    "cloudstorage",
    "queue",
    "llm",
];

/// Maximum edit distance for a "did you mean" hint.
const HINT_DISTANCE: usize = 3;

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
        entries: Default::default(),
        warnings: Vec::new(),
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
    if !root.is_dir() {
        let message = if root.exists() {
            "not a directory".to_string()
        } else {
            "directory not found".to_string()
        };
        loader.error(&root, None, None, message);
        return (empty(root), loader.errors);
    }
    let mut files = Vec::new();
    loader.collect_yaml(&root, &mut files);
    files.sort();
    if files.is_empty() && loader.errors.is_empty() {
        loader.error(
            &root,
            None,
            None,
            "no *.yaml or *.yml files found".to_string(),
        );
    }
    for file in &files {
        loader.load_file(file);
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
    };
    (registry, errors)
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
            let first = kind.split('.').next().unwrap_or("");
            if UNSUPPORTED_KIND_PREFIXES.contains(&first) {
                self.warnings.push(format!(
                    "{}: kind {kind} is not supported; entry {id} skipped",
                    self.rel(file).display()
                ));
            } else {
                let all: Vec<&str> = SUPPORTED_KINDS
                    .iter()
                    .chain(DEFERRED_KINDS)
                    .copied()
                    .collect();
                let message = format!("unknown kind {kind}{}", did_you_mean(&kind, &all));
                self.entry_error(&ctx, "kind", message);
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
            "env.storage.memory" => self.env_memory(&ctx, map),
            "env.storage.file" => self.env_file(&ctx, map),
            "terminal.host" => Some(EntrySpec::TerminalHost),
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

    fn lua_spec(&mut self, ctx: &Ctx, map: &Mapping, kind: &str) -> Option<LuaSpec> {
        let mut ok = true;

        // source
        let mut source = None;
        if let Some(text) = self.required_string(ctx, map, "source") {
            if let Some(rel) = text.strip_prefix("file://") {
                match self.read_file_ref(ctx, rel) {
                    Some((src, path)) => {
                        let chunk = self.rel(&path).display().to_string();
                        source = Some((src, chunk));
                    }
                    None => ok = false,
                }
            } else {
                let chunk = format!("{}#{}", self.rel(ctx.file).display(), ctx.id);
                source = Some((text, chunk));
            }
        } else {
            ok = false;
        }
        // Typed Lua is erased here, once: workers compile the plain text.
        if let Some((src, chunk)) = &mut source {
            match crate::typed_lua::prepare(&self.lua, src, chunk) {
                Ok(std::borrow::Cow::Borrowed(_)) => {}
                Ok(std::borrow::Cow::Owned(plain)) => *src = plain,
                Err(message) => {
                    self.entry_error(ctx, "source", format!("Lua syntax error: {message}"));
                    ok = false;
                }
            }
        }

        // method
        let method = if kind == "library.lua" {
            match self.optional_string(ctx, map, "method") {
                Ok(m) => m,
                Err(()) => {
                    ok = false;
                    None
                }
            }
        } else {
            match self.required_string(ctx, map, "method") {
                Some(m) if m.is_empty() => {
                    self.entry_error(ctx, "method", "must not be empty".to_string());
                    ok = false;
                    None
                }
                Some(m) => Some(m),
                None => {
                    ok = false;
                    None
                }
            }
        };

        let modules = match self.modules(ctx, map) {
            Some(m) => m,
            None => {
                ok = false;
                Vec::new()
            }
        };
        let imports = match self.imports(ctx, map) {
            Some(i) => i,
            None => {
                ok = false;
                Vec::new()
            }
        };
        let pool = if kind == "function.lua" {
            match map.get("pool") {
                None | Some(Yaml::Null) => None,
                Some(p) => match super::pool::PoolSpec::from_json(&to_json(p)) {
                    Ok(spec) => Some(spec),
                    Err((field, message)) => {
                        self.entry_error(ctx, &field, message);
                        ok = false;
                        None
                    }
                },
            }
        } else {
            None
        };

        if !ok {
            return None;
        }
        let (src, chunk_name) = source?;
        let uses_process = match &method {
            Some(m) if kind == "function.lua" => {
                crate::typed_lua::method_uses_name(&src, m, "process")
            }
            _ => crate::typed_lua::indexes_name(&src, "process"),
        };
        Some(LuaSpec {
            uses_process,
            source: Arc::from(src),
            chunk_name,
            method,
            modules,
            imports,
            pool,
        })
    }

    /// Reads the target of a `file://` reference of the `source` field.
    fn read_file_ref(&mut self, ctx: &Ctx, rel: &str) -> Option<(String, PathBuf)> {
        if rel.is_empty() {
            self.entry_error(ctx, "source", "file:// with an empty path".to_string());
            return None;
        }
        let path = normalize(&ctx.dir.join(rel));
        if !path.exists() {
            self.entry_error(
                ctx,
                "source",
                format!("file://{rel} not found (looked at {})", path.display()),
            );
            return None;
        }
        if !path.is_file() {
            self.entry_error(
                ctx,
                "source",
                format!("file://{rel} is not a file ({})", path.display()),
            );
            return None;
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Some((s, path)),
                Err(_) => {
                    self.entry_error(
                        ctx,
                        "source",
                        format!("file://{rel} is not valid UTF-8 ({})", path.display()),
                    );
                    None
                }
            },
            Err(e) => {
                self.entry_error(
                    ctx,
                    "source",
                    format!("cannot read file://{rel} ({}): {e}", path.display()),
                );
                None
            }
        }
    }

    fn modules(&mut self, ctx: &Ctx, map: &Mapping) -> Option<Vec<String>> {
        let seq = match map.get("modules") {
            None | Some(Yaml::Null) => return Some(Vec::new()),
            Some(Yaml::Sequence(s)) => s,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "modules",
                    format!("expected a sequence of strings, found {}", describe(other)),
                );
                return None;
            }
        };
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for (i, item) in seq.iter().enumerate() {
            let Yaml::String(m) = item else {
                self.entry_error(
                    ctx,
                    "modules",
                    format!("expected a string at index {i}, found {}", describe(item)),
                );
                ok = false;
                continue;
            };
            if BUILTIN_MODULES.contains(&m.as_str()) {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            } else {
                // a module warden does not have is a warning: the entry still loads, and
                // only its `require` of that module fails. A hint only for a near miss
                // that is not itself a Wippy module.
                let hint = if WIPPY_ONLY_MODULES.contains(&m.as_str()) {
                    String::new()
                } else {
                    near_miss(m, BUILTIN_MODULES)
                };
                self.warnings.push(format!(
                    "{}: entry {}: module {m} is not provided by warden{hint}; require(\"{m}\") will fail",
                    self.rel(ctx.file).display(),
                    ctx.id
                ));
            }
        }
        ok.then_some(out)
    }

    fn imports(&mut self, ctx: &Ctx, map: &Mapping) -> Option<Vec<(String, Id)>> {
        let imports = match map.get("imports") {
            None | Some(Yaml::Null) => return Some(Vec::new()),
            Some(Yaml::Mapping(m)) => m,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "imports",
                    format!(
                        "expected a mapping of alias -> library id, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let mut ok = true;
        let mut out = Vec::new();
        for (key, value) in imports {
            let Yaml::String(alias) = key else {
                self.entry_error(
                    ctx,
                    "imports",
                    format!("expected a string alias, found {}", describe(key)),
                );
                ok = false;
                continue;
            };
            let field = format!("imports.{alias}");
            if alias.is_empty() {
                self.entry_error(ctx, "imports", "empty alias".to_string());
                ok = false;
                continue;
            }
            let Yaml::String(reference) = value else {
                self.entry_error(
                    ctx,
                    &field,
                    format!("expected a library id string, found {}", describe(value)),
                );
                ok = false;
                continue;
            };
            match Id::resolve(reference, ctx.ns) {
                Ok(id) => out.push((alias.clone(), id)),
                Err(m) => {
                    self.entry_error(ctx, &field, m);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn fs_directory(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let written = self.required_string(ctx, map, "directory")?;
        let rel = written.strip_prefix("file://").unwrap_or(&written);
        if rel.is_empty() {
            self.entry_error(ctx, "directory", "must not be empty".to_string());
            return None;
        }
        // Beside the YAML file first; then, as Wippy resolves it, from the app root (the
        // loaded directory) and from the directory warden runs in.
        let mut looked: Vec<PathBuf> = Vec::new();
        for base in [
            Some(ctx.dir.to_path_buf()),
            Some(self.root.clone()),
            std::env::current_dir().ok(),
        ]
        .into_iter()
        .flatten()
        {
            let p = normalize(&base.join(rel));
            if !looked.contains(&p) {
                looked.push(p);
            }
        }
        let Some(path) = looked.iter().find(|p| p.exists()).cloned() else {
            let list: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
            self.entry_error(
                ctx,
                "directory",
                format!("{written} not found (looked at {})", list.join(", ")),
            );
            return None;
        };
        if !path.is_dir() {
            self.entry_error(
                ctx,
                "directory",
                format!("{written} is not a directory ({})", path.display()),
            );
            return None;
        }
        Some(EntrySpec::FsDirectory { directory: path })
    }

    fn env_memory(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let mut values = BTreeMap::new();
        match map.get("values") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Mapping(m)) => {
                let mut ok = true;
                for (k, v) in m {
                    let key = match k {
                        Yaml::String(k) => k.clone(),
                        other => {
                            self.entry_error(
                                ctx,
                                "values",
                                format!("expected string keys, found {}", describe(other)),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    let value = match v {
                        Yaml::String(s) => s.clone(),
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        other => {
                            self.entry_error(
                                ctx,
                                &format!("values.{key}"),
                                format!(
                                    "expected a string, number or boolean, found {}",
                                    describe(other)
                                ),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    values.insert(key, value);
                }
                if !ok {
                    return None;
                }
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "values",
                    format!(
                        "expected a mapping of names to values, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        }
        Some(EntrySpec::EnvStorage(EnvStorage::Memory(values)))
    }

    /// `env.storage.file`: `file:` relative to the YAML file (or the app root, as for
    /// `fs.directory`); a file that does not exist yet is created by the first `env.set`.
    fn env_file(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let written = self.required_string(ctx, map, "file")?;
        let rel = written.strip_prefix("file://").unwrap_or(&written);
        if rel.is_empty() {
            self.entry_error(ctx, "file", "must not be empty".to_string());
            return None;
        }
        let beside = normalize(&ctx.dir.join(rel));
        let from_root = normalize(&self.root.join(rel));
        let path = if !beside.exists() && from_root.exists() {
            from_root
        } else {
            beside
        };
        if path.is_dir() {
            self.entry_error(
                ctx,
                "file",
                format!("{written} is a directory ({})", path.display()),
            );
            return None;
        }
        Some(EntrySpec::EnvStorage(EnvStorage::File(path)))
    }

    fn env_variable(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let value = self.optional_scalar(ctx, map, "value");
        let variable = self.optional_string(ctx, map, "variable");
        let default = self.optional_scalar(ctx, map, "default");
        let storage = self.optional_string(ctx, map, "storage");
        let (Ok(value), Ok(mut variable), Ok(default), Ok(storage)) =
            (value, variable, default, storage)
        else {
            return None;
        };
        let read_only = match map.get("read_only") {
            None | Some(Yaml::Null) => false,
            Some(Yaml::Bool(b)) => *b,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "read_only",
                    format!("expected true or false, found {}", describe(other)),
                );
                return None;
            }
        };
        let storage = match storage {
            None => None,
            Some(s) => match Id::resolve(&s, ctx.ns) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.entry_error(ctx, "storage", e);
                    return None;
                }
            },
        };
        if storage.is_some() && variable.is_none() && value.is_none() {
            variable = Some(ctx.id.name.clone());
        }
        if value.is_none() && variable.is_none() {
            self.entry_error(
                ctx,
                "value",
                "missing required field: either `value` or `variable` must be set".to_string(),
            );
            return None;
        }
        if variable.as_deref() == Some("") {
            self.entry_error(ctx, "variable", "must not be empty".to_string());
            return None;
        }
        Some(EntrySpec::EnvVariable {
            value,
            variable,
            default,
            storage,
            read_only,
        })
    }

    /// Every `env.variable` with a `storage:` names an `env.storage.*` entry.
    fn check_env_storages(&mut self) {
        let mut found = Vec::new();
        for entry in self.entries.values() {
            let EntrySpec::EnvVariable {
                storage: Some(target),
                ..
            } = &entry.spec
            else {
                continue;
            };
            let problem = match self.declared.get(target) {
                None => format!("dangling reference: {target} does not exist"),
                Some(d) if !d.kind.starts_with("env.storage.") => format!(
                    "dangling reference: {target} is a {}, not an env.storage.* entry",
                    d.kind
                ),
                Some(_) => continue,
            };
            found.push((entry.file.clone(), entry.id.to_string(), problem));
        }
        for (file, id, message) in found {
            self.error(&file, Some(id), Some("storage"), message);
        }
    }

    /// Every import must name an existing library.lua entry.
    fn check_imports(&mut self) {
        let mut found = Vec::new();
        for entry in self.entries.values() {
            let Some(lua) = lua_spec(&entry.spec) else {
                continue;
            };
            for (alias, target) in &lua.imports {
                let problem = match self.declared.get(target) {
                    None => format!("dangling reference: {target} does not exist"),
                    Some(d) if d.kind != "library.lua" => format!(
                        "dangling reference: {target} is a {}, not a library.lua",
                        d.kind
                    ),
                    Some(_) => continue,
                };
                found.push((
                    entry.file.clone(),
                    entry.id.to_string(),
                    format!("imports.{alias}"),
                    problem,
                ));
            }
        }
        for (file, id, field, message) in found {
            self.error(&file, Some(id), Some(&field), message);
        }
    }

    /// No import cycles among library.lua entries; each cycle is reported once.
    fn check_cycles(&mut self) {
        let graph: BTreeMap<&Id, Vec<&Id>> = self
            .entries
            .values()
            .filter_map(|e| match &e.spec {
                EntrySpec::LibraryLua(l) => Some((
                    &e.id,
                    l.imports
                        .iter()
                        .map(|(_, t)| t)
                        .filter(|t| {
                            self.entries
                                .get(*t)
                                .is_some_and(|x| matches!(x.spec, EntrySpec::LibraryLua(_)))
                        })
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        let mut state: HashMap<&Id, u8> = HashMap::new();
        let mut cycles: BTreeSet<Vec<Id>> = BTreeSet::new();
        for start in graph.keys() {
            let mut stack = Vec::new();
            dfs(start, &graph, &mut state, &mut stack, &mut cycles);
        }
        let mut found = Vec::new();
        for cycle in cycles {
            let first = &cycle[0];
            let path: Vec<String> = cycle
                .iter()
                .chain(std::iter::once(first))
                .map(Id::to_string)
                .collect();
            let file = self.entries[first].file.clone();
            found.push((
                file,
                first.to_string(),
                format!("import cycle: {}", path.join(" -> ")),
            ));
        }
        for (file, id, message) in found {
            self.error(&file, Some(id), Some("imports"), message);
        }
    }
}

/// Where a wasm entry's module comes from, before its `fs` reference is resolved.
enum PendingSource {
    /// function.wat: the text, already read.
    Wat(Arc<str>),
    /// function.wasm / process.wasm: `path` inside the `fs` directory, with its `hash`
    /// (lowercase hex).
    Binary { fs: Id, path: String, hash: String },
}

/// The fields of a wasm entry parsed from its own mapping.
struct WasmFields {
    source: PendingSource,
    method: String,
    wit: Option<String>,
    pool: Option<PoolSpec>,
    imports: Vec<String>,
    wasi: WasiSpec,
    limits: WasmLimits,
}

/// A wasm entry waiting for the end of the load to resolve its references.
struct PendingWasm {
    id: Id,
    kind: String,
    file: PathBuf,
    dir: PathBuf,
    ns: String,
    meta: Json,
    raw: Json,
    fields: WasmFields,
}

/// The `wasi:` keys warden knows.
const WASI_KEYS: &[&str] = &["args", "cwd", "env", "mounts"];
/// The `limits:` keys warden knows.
const LIMIT_KEYS: &[&str] = &["max_execution_ms", "max_memory"];

impl Loader {
    /// Parses the fields of a `function.wat`, `function.wasm` or `process.wasm` entry.
    /// References to other entries (`fs`, `wasi.env[i].id`, `wasi.mounts[i].fs`) are checked
    /// later, by [`Loader::resolve_wasm`].
    fn wasm_entry(&mut self, ctx: &Ctx, map: &Mapping, kind: &str) -> Option<WasmFields> {
        let mut ok = true;

        // process.wasm takes either WAT `source` (like function.wat) or fs/path/hash
        let wat = kind == "function.wat" || (kind == "process.wasm" && map.contains_key("source"));
        let source = if wat {
            match self.required_string(ctx, map, "source") {
                Some(text) => match text.strip_prefix("file://") {
                    Some(rel) => self
                        .read_file_ref(ctx, rel)
                        .map(|(t, _)| PendingSource::Wat(Arc::from(t))),
                    None if text.trim().is_empty() => {
                        self.entry_error(ctx, "source", "must not be empty".to_string());
                        None
                    }
                    None => Some(PendingSource::Wat(Arc::from(text))),
                },
                None => None,
            }
        } else {
            let fs =
                self.required_string(ctx, map, "fs")
                    .and_then(|r| match Id::resolve(&r, ctx.ns) {
                        Ok(id) => Some(id),
                        Err(m) => {
                            self.entry_error(ctx, "fs", m);
                            None
                        }
                    });
            let path = match self.required_string(ctx, map, "path") {
                Some(p) if p.trim_start_matches('/').is_empty() => {
                    self.entry_error(
                        ctx,
                        "path",
                        "must name a file inside the directory".to_string(),
                    );
                    None
                }
                other => other,
            };
            let hash =
                self.required_string(ctx, map, "hash")
                    .and_then(|h| match parse_sha256(&h) {
                        Ok(hex) => Some(hex),
                        Err(m) => {
                            self.entry_error(ctx, "hash", m);
                            None
                        }
                    });
            match (fs, path, hash) {
                (Some(fs), Some(path), Some(hash)) => {
                    Some(PendingSource::Binary { fs, path, hash })
                }
                _ => None,
            }
        };
        ok &= source.is_some();

        let method = match self.required_string(ctx, map, "method") {
            Some(m) => match check_wasm_method(&m) {
                Ok(()) => Some(m),
                Err(msg) => {
                    self.entry_error(ctx, "method", msg);
                    None
                }
            },
            None => None,
        };
        ok &= method.is_some();

        let wit = match self.optional_string(ctx, map, "wit") {
            Ok(Some(w)) => match w.strip_prefix("file://") {
                Some(rel) => match self.read_text_field(ctx, "wit", rel) {
                    Some(t) => Some(t),
                    None => {
                        ok = false;
                        None
                    }
                },
                None if w.trim().is_empty() => {
                    self.entry_error(ctx, "wit", "must not be empty".to_string());
                    ok = false;
                    None
                }
                None => Some(w),
            },
            Ok(None) => None,
            Err(()) => {
                ok = false;
                None
            }
        };

        // a process.wasm accepts a pool (checked like a function's) and ignores it
        let pool = {
            match map.get("pool") {
                None | Some(Yaml::Null) => None,
                Some(p) => match PoolSpec::from_json(&to_json(p)) {
                    Ok(spec) => Some(spec),
                    Err((field, message)) => {
                        self.entry_error(ctx, &field, message);
                        ok = false;
                        None
                    }
                },
            }
        };

        let imports = self.wasm_imports(ctx, map);
        ok &= imports.is_some();
        let wasi = self.wasi_spec(ctx, map);
        ok &= wasi.is_some();
        let limits = self.wasm_limits(ctx, map);
        ok &= limits.is_some();

        match map.get("transport") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::String(t)) if t == "payload" => {}
            Some(Yaml::String(t)) if t == "wasi-http" => {
                self.entry_error(
                    ctx,
                    "transport",
                    "transport wasi-http is not supported yet".to_string(),
                );
                ok = false;
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "transport",
                    format!("unknown transport {} (expected payload)", describe(other)),
                );
                ok = false;
            }
        }

        if !ok {
            return None;
        }
        Some(WasmFields {
            source: source?,
            method: method?,
            wit,
            pool,
            imports: imports?,
            wasi: wasi?,
            limits: limits?,
        })
    }

    /// Reads `file://rel` of a text field other than `source`.
    fn read_text_field(&mut self, ctx: &Ctx, field: &str, rel: &str) -> Option<String> {
        let path = normalize(&ctx.dir.join(rel));
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.entry_error(
                        ctx,
                        field,
                        format!("file://{rel} is not valid UTF-8 ({})", path.display()),
                    );
                    None
                }
            },
            Err(e) => {
                let message = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("file://{rel} not found (looked at {})", path.display())
                } else {
                    format!("cannot read file://{rel} ({}): {e}", path.display())
                };
                self.entry_error(ctx, field, message);
                None
            }
        }
    }

    /// The `imports` capability groups of a wasm entry.
    fn wasm_imports(&mut self, ctx: &Ctx, map: &Mapping) -> Option<Vec<String>> {
        let ctx_kind_is_process =
            |m: &Mapping| m.get("kind").and_then(|k| k.as_str()) == Some("process.wasm");
        let seq = match map.get("imports") {
            None | Some(Yaml::Null) => return Some(Vec::new()),
            Some(Yaml::Sequence(s)) => s,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "imports",
                    format!(
                        "expected a sequence of capability groups like [wasi:io, wasi:clocks], found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for (i, item) in seq.iter().enumerate() {
            let Yaml::String(group) = item else {
                self.entry_error(
                    ctx,
                    "imports",
                    format!("expected a string at index {i}, found {}", describe(item)),
                );
                ok = false;
                continue;
            };
            if group == "warden:process" && !ctx_kind_is_process(map) {
                self.entry_error(
                    ctx,
                    "imports",
                    "warden:process is only granted to process.wasm entries (a function has no mailbox)"
                        .to_string(),
                );
                ok = false;
                continue;
            }
            let known = WASM_CAPABILITY_GROUPS.contains(&group.as_str())
                || WARDEN_GROUPS.contains(&group.as_str());
            if known {
                if !out.contains(group) {
                    out.push(group.clone());
                }
                continue;
            }
            let package = group.split(['/', '@']).next().unwrap_or(group);
            let all: Vec<&str> = WASM_CAPABILITY_GROUPS
                .iter()
                .chain(WARDEN_GROUPS)
                .copied()
                .collect();
            let hint = if package != group && WASM_CAPABILITY_GROUPS.contains(&package) {
                format!(" (did you mean {package}? groups name whole WASI packages)")
            } else {
                did_you_mean(group, &all)
            };
            self.entry_error(
                ctx,
                "imports",
                format!(
                    "unknown capability group {group}{hint}; known groups: {}",
                    all.join(", ")
                ),
            );
            ok = false;
        }
        ok.then_some(out)
    }

    /// The `wasi:` mapping of a wasm entry.
    fn wasi_spec(&mut self, ctx: &Ctx, map: &Mapping) -> Option<WasiSpec> {
        let mut spec = WasiSpec::default();
        let wasi = match map.get("wasi") {
            None | Some(Yaml::Null) => return Some(spec),
            Some(Yaml::Mapping(m)) => m,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "wasi",
                    format!("expected a mapping, found {}", describe(other)),
                );
                return None;
            }
        };
        let mut ok = true;
        for key in wasi.keys() {
            let name = key_text(key);
            if !WASI_KEYS.contains(&name.as_str()) {
                self.entry_error(
                    ctx,
                    &format!("wasi.{name}"),
                    format!(
                        "unknown field{}; known fields: {}",
                        did_you_mean(&name, WASI_KEYS),
                        WASI_KEYS.join(", ")
                    ),
                );
                ok = false;
            }
        }

        match wasi.get("args") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Yaml::String(s) => spec.args.push(s.clone()),
                        Yaml::Number(n) => spec.args.push(n.to_string()),
                        Yaml::Bool(b) => spec.args.push(b.to_string()),
                        other => {
                            self.entry_error(
                                ctx,
                                &format!("wasi.args[{i}]"),
                                format!("expected a string, found {}", describe(other)),
                            );
                            ok = false;
                        }
                    }
                }
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "wasi.args",
                    format!("expected a sequence of strings, found {}", describe(other)),
                );
                ok = false;
            }
        }

        match wasi.get("cwd") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::String(s)) if s.starts_with('/') => spec.cwd = Some(s.clone()),
            Some(Yaml::String(s)) => {
                self.entry_error(
                    ctx,
                    "wasi.cwd",
                    format!("must be an absolute guest path (starting with /), found {s:?}"),
                );
                ok = false;
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "wasi.cwd",
                    format!("expected a string, found {}", describe(other)),
                );
                ok = false;
            }
        }

        match wasi.get("env") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match self.env_mapping(ctx, i, item) {
                        Some(e) => spec.env.push(e),
                        None => ok = false,
                    }
                }
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "wasi.env",
                    format!(
                        "expected a sequence of {{id, name, required}} mappings, found {}",
                        describe(other)
                    ),
                );
                ok = false;
            }
        }

        match wasi.get("mounts") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match self.mount(ctx, i, item) {
                        Some(m) => spec.mounts.push(m),
                        None => ok = false,
                    }
                }
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "wasi.mounts",
                    format!(
                        "expected a sequence of {{fs, guest, read_only}} mappings, found {}",
                        describe(other)
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(spec)
    }

    /// A string field of a nested mapping (`wasi.env[0].name`), required.
    fn nested_string(&mut self, ctx: &Ctx, m: &Mapping, prefix: &str, key: &str) -> Option<String> {
        let field = format!("{prefix}.{key}");
        match m.get(key) {
            None | Some(Yaml::Null) => {
                self.entry_error(
                    ctx,
                    &field,
                    "missing required field (expected a string)".to_string(),
                );
                None
            }
            Some(Yaml::String(s)) if s.is_empty() => {
                self.entry_error(ctx, &field, "must not be empty".to_string());
                None
            }
            Some(Yaml::String(s)) => Some(s.clone()),
            Some(other) => {
                self.entry_error(
                    ctx,
                    &field,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A boolean field of a nested mapping, `false` when absent.
    fn nested_bool(&mut self, ctx: &Ctx, m: &Mapping, prefix: &str, key: &str) -> Option<bool> {
        match m.get(key) {
            None | Some(Yaml::Null) => Some(false),
            Some(Yaml::Bool(b)) => Some(*b),
            Some(other) => {
                self.entry_error(
                    ctx,
                    &format!("{prefix}.{key}"),
                    format!("expected a boolean, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn env_mapping(&mut self, ctx: &Ctx, i: usize, item: &Yaml) -> Option<EnvMapping> {
        let prefix = format!("wasi.env[{i}]");
        let Yaml::Mapping(m) = item else {
            self.entry_error(
                ctx,
                &prefix,
                format!(
                    "expected a mapping {{id, name, required}}, found {}",
                    describe(item)
                ),
            );
            return None;
        };
        let id =
            self.nested_string(ctx, m, &prefix, "id")
                .and_then(|r| match Id::resolve(&r, ctx.ns) {
                    Ok(id) => Some(id),
                    Err(msg) => {
                        self.entry_error(ctx, &format!("{prefix}.id"), msg);
                        None
                    }
                });
        let name = match self.nested_string(ctx, m, &prefix, "name") {
            Some(n) if n.contains('=') || n.contains('\0') => {
                self.entry_error(
                    ctx,
                    &format!("{prefix}.name"),
                    format!("invalid variable name {n:?}: must not contain '=' or NUL"),
                );
                None
            }
            other => other,
        };
        let required = self.nested_bool(ctx, m, &prefix, "required");
        Some(EnvMapping {
            id: id?,
            name: name?,
            required: required?,
        })
    }

    fn mount(&mut self, ctx: &Ctx, i: usize, item: &Yaml) -> Option<Mount> {
        let prefix = format!("wasi.mounts[{i}]");
        let Yaml::Mapping(m) = item else {
            self.entry_error(
                ctx,
                &prefix,
                format!(
                    "expected a mapping {{fs, guest, read_only}}, found {}",
                    describe(item)
                ),
            );
            return None;
        };
        let fs =
            self.nested_string(ctx, m, &prefix, "fs")
                .and_then(|r| match Id::resolve(&r, ctx.ns) {
                    Ok(id) => Some(id),
                    Err(msg) => {
                        self.entry_error(ctx, &format!("{prefix}.fs"), msg);
                        None
                    }
                });
        let guest = match self.nested_string(ctx, m, &prefix, "guest") {
            Some(g) if !g.starts_with('/') => {
                self.entry_error(
                    ctx,
                    &format!("{prefix}.guest"),
                    format!("must be an absolute guest path (starting with /), found {g:?}"),
                );
                None
            }
            other => other,
        };
        let read_only = self.nested_bool(ctx, m, &prefix, "read_only");
        Some(Mount {
            fs: fs?,
            guest: guest?,
            read_only: read_only?,
        })
    }

    /// The `limits:` mapping of a wasm entry.
    fn wasm_limits(&mut self, ctx: &Ctx, map: &Mapping) -> Option<WasmLimits> {
        let mut limits = WasmLimits::default();
        let m = match map.get("limits") {
            None | Some(Yaml::Null) => return Some(limits),
            Some(Yaml::Mapping(m)) => m,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "limits",
                    format!("expected a mapping, found {}", describe(other)),
                );
                return None;
            }
        };
        let mut ok = true;
        for key in m.keys() {
            let name = key_text(key);
            if !LIMIT_KEYS.contains(&name.as_str()) {
                self.entry_error(
                    ctx,
                    &format!("limits.{name}"),
                    format!(
                        "unknown field{}; known fields: {}",
                        did_you_mean(&name, LIMIT_KEYS),
                        LIMIT_KEYS.join(", ")
                    ),
                );
                ok = false;
            }
        }
        match m.get("max_execution_ms") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Number(n)) if n.as_u64().is_some_and(|v| v > 0) => {
                limits.max_execution_ms = n.as_u64();
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "limits.max_execution_ms",
                    format!(
                        "expected a positive integer (milliseconds), found {}",
                        describe(other)
                    ),
                );
                ok = false;
            }
        }
        match m.get("max_memory") {
            None | Some(Yaml::Null) => {}
            Some(v) => {
                let parsed = match v {
                    Yaml::Number(n) => n
                        .as_u64()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| format!("must be a positive number of bytes, found {n}")),
                    Yaml::String(s) => parse_byte_size(s),
                    other => Err(format!(
                        "expected a size like 64MiB or a number of bytes, found {}",
                        describe(other)
                    )),
                };
                match parsed {
                    Ok(b) => limits.max_memory = Some(b),
                    Err(msg) => {
                        self.entry_error(ctx, "limits.max_memory", msg);
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(limits)
    }

    /// Why `id` is not a usable reference to an entry of `kind` (None: it is).
    fn reference_problem(&self, id: &Id, kind: &str) -> Option<String> {
        match self.declared.get(id) {
            None => Some(format!("dangling reference: {id} does not exist")),
            Some(d) if d.kind != kind => Some(format!(
                "dangling reference: {id} is a {}, not a {kind}",
                d.kind
            )),
            Some(_) => None,
        }
    }

    /// Completes the wasm entries once every file is read: checks their references to
    /// `env.variable` and `fs.directory` entries, reads binaries and checks their hash.
    fn resolve_wasm(&mut self) {
        for p in std::mem::take(&mut self.pending_wasm) {
            let ctx = Ctx {
                file: &p.file,
                dir: &p.dir,
                ns: &p.ns,
                id: &p.id,
            };
            let mut ok = true;
            for (i, e) in p.fields.wasi.env.iter().enumerate() {
                if let Some(m) = self.reference_problem(&e.id, "env.variable") {
                    self.entry_error(&ctx, &format!("wasi.env[{i}].id"), m);
                    ok = false;
                }
            }
            for (i, mount) in p.fields.wasi.mounts.iter().enumerate() {
                if let Some(m) = self.reference_problem(&mount.fs, "fs.directory") {
                    self.entry_error(&ctx, &format!("wasi.mounts[{i}].fs"), m);
                    ok = false;
                }
            }
            let source = match &p.fields.source {
                PendingSource::Wat(text) => Some(WasmSource::Wat { text: text.clone() }),
                PendingSource::Binary { fs, path, hash } => {
                    self.read_wasm_binary(&ctx, fs, path, hash)
                }
            };
            let (true, Some(source)) = (ok, source) else {
                continue;
            };
            let f = p.fields;
            let entry = Entry {
                id: p.id.clone(),
                kind: p.kind,
                file: p.file.clone(),
                meta: p.meta,
                raw: p.raw,
                spec: EntrySpec::Wasm(WasmSpec {
                    source,
                    method: f.method,
                    wit: f.wit,
                    pool: f.pool,
                    imports: f.imports,
                    wasi: f.wasi,
                    limits: f.limits,
                }),
            };
            self.entries.insert(p.id, Arc::new(entry));
        }
    }

    /// Reads `path` inside the directory of `fs` and checks its sha256 against `hash`.
    fn read_wasm_binary(
        &mut self,
        ctx: &Ctx,
        fs: &Id,
        path: &str,
        hash: &str,
    ) -> Option<WasmSource> {
        if let Some(m) = self.reference_problem(fs, "fs.directory") {
            self.entry_error(ctx, "fs", m);
            return None;
        }
        // A declared directory that failed to load has its own error already.
        let directory = match self.entries.get(fs).map(|e| &e.spec) {
            Some(EntrySpec::FsDirectory { directory }) => directory.clone(),
            _ => return None,
        };
        let full = normalize(&directory.join(path.trim_start_matches('/')));
        if !full.starts_with(&directory) {
            self.entry_error(ctx, "path", format!("{path} leaves the directory of {fs}"));
            return None;
        }
        if !full.is_file() {
            self.entry_error(
                ctx,
                "path",
                format!("{path} not found in {fs} (looked at {})", full.display()),
            );
            return None;
        }
        let bytes = match std::fs::read(&full) {
            Ok(b) => b,
            Err(e) => {
                self.entry_error(
                    ctx,
                    "path",
                    format!("cannot read {path} ({}): {e}", full.display()),
                );
                return None;
            }
        };
        let actual = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        if actual != hash {
            self.entry_error(
                ctx,
                "hash",
                format!(
                    "hash mismatch: the entry declares sha256:{hash}, but {path} has sha256:{actual}"
                ),
            );
            return None;
        }
        Some(WasmSource::Binary {
            path: full,
            bytes: Arc::from(bytes),
            sha256: actual,
        })
    }
}

/// Checks a `method` of a wasm entry: `name` or `iface#name`.
fn check_wasm_method(m: &str) -> Result<(), String> {
    let bad = || format!("invalid method {m:?}: expected an export name or iface#name");
    if m.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    match m.split_once('#') {
        None => Ok(()),
        Some((iface, name)) if !iface.is_empty() && !name.is_empty() && !name.contains('#') => {
            Ok(())
        }
        Some(_) => Err(bad()),
    }
}

/// `sha256:<64 hex digits>` -> the lowercase hex digits.
fn parse_sha256(s: &str) -> Result<String, String> {
    let bad = || format!("expected sha256:<64 hex digits>, found {s:?}");
    let hex = s.trim().strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(hex.to_ascii_lowercase())
}

/// Parses a byte size: `1048576`, `64MiB`, `512 KiB`, `1GB` (KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB powers of 1024, case-insensitive).
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a size like 64MiB, 1GB or a number of bytes, found {s:?}");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(0) => Err(format!("must be positive, found {s:?}")),
        Some(b) => Ok(b),
        None => Err(format!("{s:?} is too large")),
    }
}

/// Depth-first search for cycles; `state`: 1 = on the stack, 2 = done.
fn dfs<'a>(
    node: &'a Id,
    graph: &BTreeMap<&'a Id, Vec<&'a Id>>,
    state: &mut HashMap<&'a Id, u8>,
    stack: &mut Vec<&'a Id>,
    cycles: &mut BTreeSet<Vec<Id>>,
) {
    match state.get(node) {
        Some(2) => return,
        Some(1) => {
            if let Some(pos) = stack.iter().position(|n| *n == node) {
                let mut cycle: Vec<Id> = stack[pos..].iter().map(|i| (*i).clone()).collect();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.cmp(b.1))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                cycle.rotate_left(min);
                cycles.insert(cycle);
            }
            return;
        }
        _ => {}
    }
    state.insert(node, 1);
    stack.push(node);
    if let Some(next) = graph.get(node) {
        for n in next {
            dfs(n, graph, state, stack, cycles);
        }
    }
    stack.pop();
    state.insert(node, 2);
}

fn lua_spec(spec: &EntrySpec) -> Option<&LuaSpec> {
    match spec {
        EntrySpec::ProcessLua(l) | EntrySpec::LibraryLua(l) | EntrySpec::FunctionLua(l) => Some(l),
        _ => None,
    }
}

/// " (did you mean X?)" for the nearest candidate within [`HINT_DISTANCE`], else "".
fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= HINT_DISTANCE)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

/// " (did you mean X?)" for a word one typo (an edit or a swap) away from a candidate.
fn near_miss(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|c| word.len() > 2 && strsim::damerau_levenshtein(word, c) == 1)
        .map(|c| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
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
