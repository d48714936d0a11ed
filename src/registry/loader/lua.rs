//! The Lua kinds: `process.lua`, `function.lua`, `library.lua` (source, typed Lua,
//! method, modules, imports, pool), and the checks of imports across entries.

use super::*;

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
    "security",
    "registry",
    "events",
    "os",
    "process",
    "channel",
    "errors",
    "payload",
    "pg",
    "system",
    "test",
];

/// Library ids warden provides built in (an `imports` target), with the built-in module
/// each one is: Wippy's test library.
pub const BUILTIN_LIBRARIES: &[(&str, &str)] = &[("wippy.test:test", "test")];

/// The built-in module a library id names, if it is one of [`BUILTIN_LIBRARIES`].
pub fn builtin_library(id: &Id) -> Option<&'static str> {
    let id = id.to_string();
    BUILTIN_LIBRARIES
        .iter()
        .find(|(lib, _)| *lib == id)
        .map(|(_, module)| *module)
}

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
    "yaml",
    "text",
    "excel",
    "templates",
    "contract",
    "exec",
    "system",
    "websocket",
    "stream",
    "upload",
    "cloudstorage",
    "queue",
    "llm",
];

impl Loader {
    pub(super) fn lua_spec(&mut self, ctx: &Ctx, map: &Mapping, kind: &str) -> Option<LuaSpec> {
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
            match super::typed_lua::prepare(&self.lua, src, chunk) {
                Ok(std::borrow::Cow::Borrowed(_)) => {}
                Ok(std::borrow::Cow::Owned(plain)) => {
                    // typed code: plain type errors are warnings, ahead of Wippy
                    for (line, message) in super::typed_lua::type_warnings(src) {
                        self.warnings.push(format!(
                            "{}: entry {}: {chunk}:{line}: {message}",
                            self.rel(ctx.file).display(),
                            ctx.id
                        ));
                    }
                    *src = plain;
                }
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
                Some(p) => match PoolSpec::from_json(&to_json(p)) {
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
        Some(LuaSpec {
            source: Arc::from(src),
            chunk_name,
            method,
            modules,
            imports,
            pool,
        })
    }

    /// Reads the target of a `file://` reference of the `source` field.
    pub(super) fn read_file_ref(&mut self, ctx: &Ctx, rel: &str) -> Option<(String, PathBuf)> {
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

    pub(super) fn modules(&mut self, ctx: &Ctx, map: &Mapping) -> Option<Vec<String>> {
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

    pub(super) fn imports(&mut self, ctx: &Ctx, map: &Mapping) -> Option<Vec<(String, Id)>> {
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

    /// Every import must name an existing library.lua entry.
    pub(super) fn check_imports(&mut self) {
        let mut found = Vec::new();
        for entry in self.entries.values() {
            let Some(lua) = lua_spec(&entry.spec) else {
                continue;
            };
            for (alias, target) in &lua.imports {
                if builtin_library(target).is_some() {
                    continue;
                }
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
    pub(super) fn check_cycles(&mut self) {
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

/// Depth-first search for cycles; `state`: 1 = on the stack, 2 = done.
pub(super) fn dfs<'a>(
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

pub(super) fn lua_spec(spec: &EntrySpec) -> Option<&LuaSpec> {
    match spec {
        EntrySpec::ProcessLua(l) | EntrySpec::LibraryLua(l) | EntrySpec::FunctionLua(l) => Some(l),
        _ => None,
    }
}

/// " (did you mean X?)" for a word one typo (an edit or a swap) away from a candidate
/// (module names are short: a wider reach would suggest `os` for `fs`).
pub(super) fn near_miss(word: &str, candidates: &[&str]) -> String {
    if word.len() <= 2 {
        return String::new();
    }
    crate::registry::hint::did_you_mean(word, candidates, 1)
}
