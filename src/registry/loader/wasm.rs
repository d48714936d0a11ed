//! The WebAssembly kinds: `function.wat`, `function.wasm`, `process.wasm` (source,
//! hash, method, imports, WASI, limits), completed once every file is read.

use super::*;

/// Where a wasm entry's module comes from, before its `fs` reference is resolved.
pub(super) enum PendingSource {
    /// function.wat: the text, already read.
    Wat(Arc<str>),
    /// function.wasm / process.wasm: `path` inside the `fs` directory, with its `hash`
    /// (lowercase hex).
    Binary { fs: Id, path: String, hash: String },
}

/// The fields of a wasm entry parsed from its own mapping.
pub(super) struct WasmFields {
    source: PendingSource,
    method: String,
    wit: Option<String>,
    pool: Option<PoolSpec>,
    imports: Vec<String>,
    wasi: WasiSpec,
    limits: WasmLimits,
}

/// A wasm entry waiting for the end of the load to resolve its references.
pub(super) struct PendingWasm {
    pub(super) id: Id,
    pub(super) kind: String,
    pub(super) file: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) ns: String,
    pub(super) meta: Json,
    pub(super) raw: Json,
    pub(super) fields: WasmFields,
}

/// The `wasi:` keys warden knows.
pub(super) const WASI_KEYS: &[&str] = &["args", "cwd", "env", "mounts"];
/// The `limits:` keys warden knows.
pub(super) const LIMIT_KEYS: &[&str] = &["max_execution_ms", "max_memory"];

impl Loader {
    /// Parses the fields of a `function.wat`, `function.wasm` or `process.wasm` entry.
    /// References to other entries (`fs`, `wasi.env[i].id`, `wasi.mounts[i].fs`) are checked
    /// later, by [`Loader::resolve_wasm`].
    pub(super) fn wasm_entry(
        &mut self,
        ctx: &Ctx,
        map: &Mapping,
        kind: &str,
    ) -> Option<WasmFields> {
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
    pub(super) fn read_text_field(&mut self, ctx: &Ctx, field: &str, rel: &str) -> Option<String> {
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
    pub(super) fn wasm_imports(&mut self, ctx: &Ctx, map: &Mapping) -> Option<Vec<String>> {
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
    pub(super) fn wasi_spec(&mut self, ctx: &Ctx, map: &Mapping) -> Option<WasiSpec> {
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
    pub(super) fn nested_string(
        &mut self,
        ctx: &Ctx,
        m: &Mapping,
        prefix: &str,
        key: &str,
    ) -> Option<String> {
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
    pub(super) fn nested_bool(
        &mut self,
        ctx: &Ctx,
        m: &Mapping,
        prefix: &str,
        key: &str,
    ) -> Option<bool> {
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

    pub(super) fn env_mapping(&mut self, ctx: &Ctx, i: usize, item: &Yaml) -> Option<EnvMapping> {
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

    pub(super) fn mount(&mut self, ctx: &Ctx, i: usize, item: &Yaml) -> Option<Mount> {
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
    pub(super) fn wasm_limits(&mut self, ctx: &Ctx, map: &Mapping) -> Option<WasmLimits> {
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
    pub(super) fn reference_problem(&self, id: &Id, kind: &str) -> Option<String> {
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
    pub(super) fn resolve_wasm(&mut self) {
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
    pub(super) fn read_wasm_binary(
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
pub(super) fn check_wasm_method(m: &str) -> Result<(), String> {
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
pub(super) fn parse_sha256(s: &str) -> Result<String, String> {
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
