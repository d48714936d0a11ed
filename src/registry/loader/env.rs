//! The directory and environment kinds: `fs.directory`, `env.variable`,
//! `env.storage.os`, `env.storage.memory`, `env.storage.file`.

use super::*;

impl Loader {
    pub(super) fn fs_directory(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
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

    pub(super) fn env_memory(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
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
    pub(super) fn env_file(&mut self, ctx: &Ctx, map: &Mapping) -> Option<EntrySpec> {
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
    pub(super) fn check_env_storages(&mut self) {
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
}
