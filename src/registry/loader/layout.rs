//! The app as Wippy lays it out on disk (en/guides/dependency-management.md,
//! en/start/structure.md): a project directory with a `wippy.lock` names where the app's
//! source is (`directories.src`, `./src` by default) and where vendored modules are kept
//! (`directories.modules`, `.wippy` by default, modules under its `vendor/org/module`).
//! Local replacements of modules come from `.wippy.yaml`'s `workspace.replacements`, and
//! still from the lock's deprecated `replacements:` (with a warning).
//!
//! Without a `wippy.lock`, the directory given is the app: every YAML file under it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file's name.
pub const LOCK_FILE: &str = "wippy.lock";

/// One directory to load entries from.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPath {
    /// The directory whose YAML files are loaded.
    pub path: PathBuf,
    /// The module that owns its entries (`org/module`), with its version when locked;
    /// None for the app's own source.
    pub module: Option<(String, Option<String>)>,
    /// Where the module's relative paths resolve (`fs.directory` with `base: module`).
    pub source_root: PathBuf,
}

/// What to load for one app.
#[derive(Debug, Default)]
pub struct Layout {
    /// The directories, in Wippy's load order: the source, replacements, vendored modules.
    pub paths: Vec<LoadPath>,
    /// Warnings of reading the layout (a deprecated field, a packed module).
    pub warnings: Vec<String>,
}

#[derive(Deserialize, Default)]
struct LockFile {
    #[serde(default)]
    directories: Directories,
    #[serde(default)]
    modules: Vec<LockedModule>,
    #[serde(default)]
    replacements: Vec<Replacement>,
}

#[derive(Deserialize, Default)]
struct Directories {
    modules: Option<String>,
    src: Option<String>,
}

#[derive(Deserialize)]
struct LockedModule {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct Replacement {
    from: String,
    to: String,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    workspace: Option<Workspace>,
}

#[derive(Deserialize, Default)]
struct Workspace {
    #[serde(default)]
    replacements: BTreeMap<String, Option<String>>,
}

/// `value` (a path from the lock or a config file) against `dir` (an absolute value
/// stays as it is: joining keeps it).
fn resolve(dir: &Path, value: &str) -> PathBuf {
    super::normalize(&dir.join(value))
}

/// A replacement's root, and where its entries load from (its `src` when it has one).
fn replacement(module: &str, root: PathBuf) -> LoadPath {
    let src = root.join("src");
    LoadPath {
        path: if src.is_dir() { src } else { root.clone() },
        module: Some((module.to_string(), None)),
        source_root: root,
    }
}

/// Reads the layout of the project at `root`: None when `root` has no `wippy.lock`.
/// Errors are one line naming the file.
pub fn read(root: &Path) -> Result<Option<Layout>, String> {
    let lock_path = root.join(LOCK_FILE);
    if !lock_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("{LOCK_FILE}: cannot read: {e}"))?;
    let lock: LockFile = if text.trim().is_empty() {
        LockFile::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{LOCK_FILE}: {e}"))?
    };
    let mut layout = Layout::default();
    let src = lock.directories.src.as_deref().unwrap_or("./src");
    let src = resolve(root, src);
    layout.paths.push(LoadPath {
        path: src.clone(),
        module: None,
        source_root: src,
    });
    // replacements: the workspace's (in .wippy.yaml) over the lock's deprecated ones
    let mut replaced: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    if !lock.replacements.is_empty() {
        layout.warnings.push(format!(
            "{LOCK_FILE}: `replacements` is deprecated; move them to `workspace.replacements` in .wippy.yaml"
        ));
    }
    for r in &lock.replacements {
        replaced.insert(r.from.clone(), Some(resolve(root, &r.to)));
    }
    let config_path = root.join(".wippy.yaml");
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| format!(".wippy.yaml: cannot read: {e}"))?;
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| format!(".wippy.yaml: {e}"))?
        };
        for (module, to) in config.workspace.unwrap_or_default().replacements {
            // null turns off one inherited from the lock
            replaced.insert(module, to.map(|to| resolve(root, &to)));
        }
    }
    for (module, to) in &replaced {
        let Some(to) = to else { continue };
        if !to.is_dir() {
            return Err(format!(
                "replacement of {module}: {} is not a directory",
                to.display()
            ));
        }
        layout.paths.push(replacement(module, to.clone()));
    }
    let modules_dir = lock.directories.modules.as_deref().unwrap_or(".wippy");
    let modules_dir = resolve(root, modules_dir);
    let vendor = if modules_dir.file_name().is_some_and(|n| n == "vendor") {
        modules_dir
    } else {
        modules_dir.join("vendor")
    };
    for m in &lock.modules {
        if replaced.get(&m.name).is_some_and(Option::is_some) {
            continue;
        }
        let Some((org, name)) = m.name.split_once('/') else {
            layout.warnings.push(format!(
                "{LOCK_FILE}: module {:?} is not org/module; skipped",
                m.name
            ));
            continue;
        };
        let version = m.version.clone();
        let unpacked = vendor.join(org).join(name);
        let legacy = version
            .as_ref()
            .map(|v| vendor.join(org).join(format!("{name}-{v}")));
        let dir = std::iter::once(unpacked.clone())
            .chain(legacy)
            .find(|d| d.is_dir());
        match dir {
            Some(dir) => layout.paths.push(LoadPath {
                path: dir.clone(),
                module: Some((m.name.clone(), version)),
                source_root: dir,
            }),
            None => {
                let packed = version
                    .as_ref()
                    .map(|v| vendor.join(org).join(format!("{name}-{v}.wapp")))
                    .filter(|p| p.is_file());
                layout.warnings.push(match packed {
                    Some(p) => format!(
                        "module {}: {} is a packed module, which warden does not read; unpack it (wippy.lock `options.unpack_modules: true`, then `wippy install`); skipped",
                        m.name,
                        p.display()
                    ),
                    None => format!(
                        "module {}: not installed (looked for {}); skipped",
                        m.name,
                        unpacked.display()
                    ),
                });
            }
        }
    }
    Ok(Some(layout))
}
