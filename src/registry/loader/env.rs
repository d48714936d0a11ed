//! The directory and environment kinds: `fs.directory`, `env.variable`,
//! `env.storage.os`, `env.storage.memory`, `env.storage.file`, `env.storage.static`,
//! `env.storage.router`.

use super::*;

impl Loader {
    /// `fs.directory` (en/system/filesystem.md): `directory`, `auto_init`, `mode`, `base`.
    /// A relative path of a module's entry resolves against the module's root (unless
    /// `base: project`); any other relative path beside the YAML file, then from the
    /// project (the loaded directory), then from the directory warden runs in.
    pub(super) fn fs_directory(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let written = self.required_string(ctx, map, "directory")?;
        let auto_init = self.optional_bool(ctx, map, "auto_init").ok()?;
        let mode = self.file_mode(ctx, map, "mode").ok()?;
        let base = self.optional_string(ctx, map, "base").ok()?;
        let module_base = match base.as_deref() {
            None | Some("module") => true,
            Some("project") => false,
            Some(other) => {
                self.entry_error(
                    ctx,
                    "base",
                    format!("unknown base {other:?} (expected project or module)"),
                );
                return None;
            }
        };
        let rel = written.strip_prefix("file://").unwrap_or(&written);
        if rel.is_empty() {
            self.entry_error(ctx, "directory", "must not be empty".to_string());
            return None;
        }
        let module_root = map
            .get("meta")
            .and_then(|m| m.get("module"))
            .and_then(Yaml::as_str)
            .and_then(|m| self.module_roots.get(m))
            .filter(|_| module_base)
            .cloned();
        // auto_init makes a missing one where a module's path resolves, else in the project
        let create_in = module_root.clone().unwrap_or_else(|| self.root.clone());
        let mut looked: Vec<PathBuf> = Vec::new();
        let bases = match module_root {
            Some(root) => vec![root],
            None => [
                Some(ctx.dir.to_path_buf()),
                Some(self.root.clone()),
                std::env::current_dir().ok(),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        for base in bases {
            let p = normalize(&base.join(rel));
            if !looked.contains(&p) {
                looked.push(p);
            }
        }
        let found = looked.iter().find(|p| p.exists()).cloned();
        let path = match found {
            Some(p) => p,
            None if auto_init && self.may_create => {
                let target = normalize(&create_in.join(rel));
                if let Err(e) = create_dir(&target, mode.unwrap_or(0o755)) {
                    self.entry_error(
                        ctx,
                        "auto_init",
                        format!("cannot create {}: {e}", target.display()),
                    );
                    return None;
                }
                target
            }
            None => {
                let list: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                let hint = if auto_init {
                    " (auto_init creates directories declared in the app's files only)"
                } else {
                    ""
                };
                self.entry_error(
                    ctx,
                    "directory",
                    format!("{written} not found (looked at {}){hint}", list.join(", ")),
                );
                return None;
            }
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

    /// An optional boolean field (false when absent); `Err(())` when ill-typed.
    pub(super) fn optional_bool(
        &mut self,
        ctx: &Ctx,
        map: &Mapping,
        field: &str,
    ) -> Result<bool, ()> {
        match map.get(field) {
            None | Some(Yaml::Null) => Ok(false),
            Some(Yaml::Bool(b)) => Ok(*b),
            Some(other) => {
                self.entry_error(
                    ctx,
                    field,
                    format!("expected true or false, found {}", describe(other)),
                );
                Err(())
            }
        }
    }

    /// An optional Unix permission mode: an octal string (`"0755"`, `"644"`) or a number
    /// written in octal digits (`0755` reads as YAML's 755); `Err(())` when invalid.
    pub(super) fn file_mode(
        &mut self,
        ctx: &Ctx,
        map: &Mapping,
        field: &str,
    ) -> Result<Option<u32>, ()> {
        let text = match map.get(field) {
            None | Some(Yaml::Null) => return Ok(None),
            Some(Yaml::String(s)) => s.trim().to_string(),
            Some(Yaml::Number(n)) => n.to_string(),
            Some(other) => {
                self.entry_error(
                    ctx,
                    field,
                    format!(
                        "expected an octal mode such as \"0755\", found {}",
                        describe(other)
                    ),
                );
                return Err(());
            }
        };
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o7777 => Ok(Some(m)),
            _ => {
                self.entry_error(
                    ctx,
                    field,
                    format!("{text:?} is not an octal mode such as \"0755\""),
                );
                Err(())
            }
        }
    }

    /// The `values:` of `env.storage.memory` and `env.storage.static`.
    pub(super) fn env_values(
        &mut self,
        ctx: &Ctx,
        map: &Mapping,
    ) -> Option<BTreeMap<String, String>> {
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
        Some(values)
    }

    /// `env.storage.router`: `storages`, a list of storage ids (checked once every file is
    /// read, by `check_env_storages`).
    pub(super) fn env_router(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let list = match map.get("storages") {
            Some(Yaml::Sequence(seq)) if !seq.is_empty() => seq,
            Some(Yaml::Sequence(_)) => {
                self.entry_error(ctx, "storages", "must name at least one storage".into());
                return None;
            }
            None | Some(Yaml::Null) => {
                self.entry_error(
                    ctx,
                    "storages",
                    "missing required field (expected a list of storage ids)".into(),
                );
                return None;
            }
            Some(other) => {
                self.entry_error(
                    ctx,
                    "storages",
                    format!("expected a list of storage ids, found {}", describe(other)),
                );
                return None;
            }
        };
        let mut ids = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let field = format!("storages[{i}]");
            match item {
                Yaml::String(s) => match Id::resolve(s, ctx.ns) {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        self.entry_error(ctx, &field, e);
                        return None;
                    }
                },
                other => {
                    self.entry_error(
                        ctx,
                        &field,
                        format!("expected a storage id, found {}", describe(other)),
                    );
                    return None;
                }
            }
        }
        Some(EntrySpec::EnvStorage(EnvStorage::Router(ids)))
    }

    /// `env.storage.file` (en/system/env.md): `file_path` (warden's older `file` is still
    /// read), relative to the YAML file or the project; `auto_create` makes the file (and
    /// its directory) at load with `file_mode` / `dir_mode`; a file that does not exist
    /// yet is otherwise created by the first `env.set`.
    pub(super) fn env_file(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let field = if map.contains_key("file_path") || !map.contains_key("file") {
            "file_path"
        } else {
            "file"
        };
        let written = self.required_string(ctx, map, field)?;
        let auto_create = self.optional_bool(ctx, map, "auto_create").ok()?;
        let file_mode = self.file_mode(ctx, map, "file_mode").ok()?;
        let dir_mode = self.file_mode(ctx, map, "dir_mode").ok()?;
        let rel = written.strip_prefix("file://").unwrap_or(&written);
        if rel.is_empty() {
            self.entry_error(ctx, field, "must not be empty".to_string());
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
                field,
                format!("{written} is a directory ({})", path.display()),
            );
            return None;
        }
        if auto_create && self.may_create && !path.exists() {
            if let Err(e) =
                create_file(&path, file_mode.unwrap_or(0o644), dir_mode.unwrap_or(0o755))
            {
                self.entry_error(
                    ctx,
                    "auto_create",
                    format!("cannot create {}: {e}", path.display()),
                );
                return None;
            }
        }
        Some(EntrySpec::EnvStorage(EnvStorage::File(path)))
    }

    pub(super) fn env_variable(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
        let value = self.optional_scalar(ctx, map, "value");
        let variable = self.optional_string(ctx, map, "variable");
        let default = self.optional_scalar(ctx, map, "default");
        let storage = self.optional_string(ctx, map, "storage");
        let (Ok(value), Ok(mut variable), Ok(default), Ok(storage)) =
            (value, variable, default, storage)
        else {
            return None;
        };
        // `readonly` as Wippy writes it; warden's older `read_only` is still read
        let read_only = self.optional_bool(ctx, map, "readonly").ok()?
            | self.optional_bool(ctx, map, "read_only").ok()?;
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

    /// Every `env.variable` with a `storage:`, and every storage of a router, names an
    /// `env.storage.*` entry.
    pub(super) fn check_env_storages(&mut self) {
        let mut found = Vec::new();
        for entry in self.entries.values() {
            let targets: Vec<(String, &Id)> = match &entry.spec {
                EntrySpec::EnvVariable {
                    storage: Some(target),
                    ..
                } => vec![("storage".to_string(), target)],
                EntrySpec::EnvStorage(EnvStorage::Router(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("storages[{i}]"), t))
                    .collect(),
                _ => continue,
            };
            for (field, target) in targets {
                let problem = match self.declared.get(target) {
                    None => format!("dangling reference: {target} does not exist"),
                    Some(d) if !d.kind.starts_with("env.storage.") => format!(
                        "dangling reference: {target} is a {}, not an env.storage.* entry",
                        d.kind
                    ),
                    Some(_) => continue,
                };
                found.push((entry.file.clone(), entry.id.to_string(), field, problem));
            }
        }
        for (file, id, field, message) in found {
            self.error(&file, Some(id), Some(&field), message);
        }
    }
}

/// Creates an empty file at `path` with permission `mode`, and its missing directories
/// with `dir_mode`.
fn create_file(path: &Path, mode: u32, dir_mode: u32) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.exists()) {
        create_dir(parent, dir_mode)?;
    }
    std::fs::write(path, "")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) with permission `mode` on the directory itself (with
/// the search bit beside each read bit).
fn create_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // as Wippy does: execute (search) bits wherever read bits are set
        let mode = mode | ((mode & 0o444) >> 2);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
