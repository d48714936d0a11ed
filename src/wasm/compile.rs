//! Turning wasm entries into compiled components, once, at load time.
//!
//! * `function.wat` text is assembled with `wat`; a binary comes from the registry
//!   (already hash-checked by the loader).
//! * A core module gets its component type from the entry's `wit:` (a bare function
//!   declaration like `answer: func() -> s32;` is wrapped into
//!   `package warden:generated; world root { export answer: func() -> s32; }`) and is
//!   turned into a component with `wit-component`; a module whose exports do not match the
//!   WIT fails with the encoder's message, which names the export.
//! * Components are compiled with cranelift, in parallel across entries, and kept in an
//!   on-disk cache of wasmtime's own serialized artifacts, keyed by the sha256 of the
//!   component bytes and the engine's compatibility hash ([`CompileCache`]), so a second
//!   boot does not compile again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::registry::{Entry, WasmSource, WasmSpec};

/// The on-disk cache of compiled components.
///
/// Artifacts are loaded with `Component::deserialize_file`, which trusts its input: the
/// cache directory must be writable only by the user running warden. It is created with
/// mode 0700, and a directory owned by someone else or writable by group or others is not
/// used (a warning is logged and every module is compiled).
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_hash: String,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of a [`CompileCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: u64,
    /// Components compiled (not found in the cache, or no cache).
    pub misses: u64,
}

/// The cache directory warden uses: `$WARDEN_CACHE_DIR`, else `<temp dir>/warden-cache`.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("WARDEN_CACHE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::temp_dir().join("warden-cache"),
    }
}

impl CompileCache {
    /// A cache in `dir` (None: no cache, always compile) for artifacts of `engine`.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> CompileCache {
        let dir = dir.and_then(|d| match prepare_dir(&d) {
            Ok(()) => Some(d),
            Err(why) => {
                tracing::warn!(
                    "wasm compile cache {} not used: {why}; modules are compiled at every load",
                    d.display()
                );
                None
            }
        });
        CompileCache {
            dir,
            engine_hash: super::engine::compatibility_hash(engine),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The directory in use (None: caching is off).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn path_for(&self, key: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{key}-{}.cwasm", self.engine_hash)))
    }

    /// The component for `bytes` (whose sha256 is `key`): from the cache when there, else
    /// compiled and stored. Returns whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        key: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(key);
        if let Some(p) = path.as_ref().filter(|p| p.is_file()) {
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash, in a directory only this user can write
            // (`prepare_dir`); wasmtime also checks the header and engine settings.
            match unsafe { Component::deserialize_file(engine, p) } {
                Ok(c) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((c, true));
                }
                Err(e) => tracing::warn!(
                    "wasm compile cache: {} unusable ({e}); compiling again",
                    p.display()
                ),
            }
        }
        let component = Component::from_binary(engine, bytes)?;
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = path {
            if let Err(e) = store(&component, &p) {
                tracing::warn!("wasm compile cache: cannot write {}: {e}", p.display());
            }
        }
        Ok((component, false))
    }
}

/// Writes the serialized `component` to `path` atomically (temp file + rename).
fn store(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    let tmp = path.with_extension(format!("tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

/// Creates the cache directory (mode 0700) and checks that only this user can write it.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create it: {e}"))?;
        }
        let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
        if !meta.is_dir() {
            return Err("not a directory".into());
        }
        // Who are we? The owner of a file we create.
        let probe = dir.join(format!(
            ".probe-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&probe, b"").map_err(|e| format!("not writable: {e}"))?;
        let me = std::fs::metadata(&probe).map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        let me = me.map_err(|e| e.to_string())?;
        if meta.uid() != me {
            return Err(format!(
                "owned by uid {}, not by this user ({me})",
                meta.uid()
            ));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "writable by group or others (mode {:o})",
                meta.permissions().mode() & 0o777
            ));
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `bytes` is a component (as opposed to a core module).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Whether `bytes` is a core module.
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x01, 0x00, 0x00, 0x00]
}

/// A failure of one entry: the field at fault and the message.
pub type FieldError = (&'static str, String);

/// The component bytes of a wasm entry: WAT assembled, core modules wrapped with their WIT.
pub fn component_bytes(spec: &WasmSpec) -> Result<Vec<u8>, FieldError> {
    let (bytes, field) = match &spec.source {
        WasmSource::Wat { text } => (
            wat::parse_str(&**text)
                .map_err(|e| ("source", format!("WAT does not compile: {e}")))?,
            "source",
        ),
        WasmSource::Binary { bytes, .. } => (bytes.to_vec(), "path"),
    };
    if is_component(&bytes) {
        return Ok(bytes);
    }
    if !is_core_module(&bytes) {
        return Err((field, "not a WebAssembly module or component".into()));
    }
    let Some(wit) = &spec.wit else {
        return Err((
            "wit",
            "a core module needs a `wit:` declaration of its exports (e.g. `answer: func() -> s32;`)"
                .into(),
        ));
    };
    componentize(&bytes, wit)
}

/// Wraps a bare function declaration (`name: func(...) -> ...;`, several allowed) into a
/// WIT world; full WIT text (with `package`/`world`) is returned as is.
pub fn wit_world_text(wit: &str) -> String {
    let is_full = wit
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .any(|w| w == "world" || w == "package");
    if is_full {
        return wit.to_string();
    }
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in wit.chars() {
        current.push(c);
        match c {
            '{' | '(' | '<' => depth += 1,
            '}' | ')' | '>' if !current.ends_with("->") => depth -= 1,
            _ => {}
        }
        let line_end = c == '\n' && !current.trim_end().ends_with("->");
        if (c == ';' || c == '}' || line_end) && depth == 0 && !current.trim().is_empty() {
            items.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        items.push(current);
    }
    let mut body = String::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let is_func = item.split_once(':').is_some_and(|(name, rest)| {
            !name.contains(char::is_whitespace) && rest.trim_start().starts_with("func")
        });
        if is_func {
            body.push_str("  export ");
        } else {
            body.push_str("  ");
        }
        body.push_str(item);
        if is_func && !item.ends_with(';') {
            body.push(';');
        }
        body.push('\n');
    }
    format!("package warden:generated;\n\nworld root {{\n{body}}}\n")
}

/// The WASI 0.2 WIT packages, in dependency order (`wit/deps`, from wasmtime-wasi).
const WASI_WIT: &[(&str, &str)] = &[
    ("io.wit", include_str!("../../wit/deps/io.wit")),
    ("clocks.wit", include_str!("../../wit/deps/clocks.wit")),
    ("random.wit", include_str!("../../wit/deps/random.wit")),
    (
        "filesystem.wit",
        include_str!("../../wit/deps/filesystem.wit"),
    ),
    ("sockets.wit", include_str!("../../wit/deps/sockets.wit")),
    ("cli.wit", include_str!("../../wit/deps/cli.wit")),
];

/// Embeds the WIT world in `core` and encodes a component.
fn componentize(core: &[u8], wit: &str) -> Result<Vec<u8>, FieldError> {
    let text = wit_world_text(wit);
    let mut resolve = wit_parser::Resolve::default();
    // worlds may import WASI (wit/deps) and warden's own host interfaces (wit/warden.wit)
    let warden = ("warden.wit", super::guest_api::WARDEN_WIT);
    for (name, text) in WASI_WIT.iter().chain(std::iter::once(&warden)) {
        resolve.push_str(name, text).map_err(|e| {
            (
                "wit",
                format!("the bundled {name} does not parse: {}", chain(&e)),
            )
        })?;
    }
    let pkg = resolve
        .push_source("wit", &text)
        .map_err(|e| ("wit", format!("WIT does not parse: {}", chain(&e))))?;
    let world = resolve
        .select_world(&[pkg], None)
        .map_err(|e| ("wit", format!("WIT has no usable world: {}", chain(&e))))?;
    let mut module = core.to_vec();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .map_err(|e| ("wit", format!("cannot embed the WIT: {}", chain(&e))))?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut enc| enc.encode())
        .map_err(|e| {
            (
                "wit",
                format!("the core module does not match its WIT: {}", chain(&e)),
            )
        })
}

/// "a: b: c" from an error chain.
fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// One compiled entry.
pub struct Compiled {
    /// The component.
    pub component: Component,
    /// sha256 of the component bytes (the cache key).
    pub sha256: String,
    /// Whether it was loaded from the on-disk cache.
    pub from_cache: bool,
}

/// A compiled module and whether it came from the cache, or why it does not compile.
type ModuleResult = Result<(Component, bool), String>;

/// Compiles `entries` in parallel (at most `threads` at once), logging progress. Entries
/// with the same module bytes share one compilation. Returns one result per entry, in
/// order.
pub fn compile_all(
    engine: &Engine,
    cache: &CompileCache,
    entries: &[(Arc<Entry>, &WasmSpec)],
    threads: usize,
) -> Vec<Result<Compiled, FieldError>> {
    // Component bytes of every entry, and the distinct modules among them.
    let prepared: Vec<Result<(String, Vec<u8>), FieldError>> = entries
        .iter()
        .map(|(_, spec)| component_bytes(spec).map(|b| (sha256_hex(&b), b)))
        .collect();
    let mut unique: Vec<(usize, &str, &[u8])> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        if let Ok((sha, bytes)) = p {
            if !unique.iter().any(|(_, s, _)| s == sha) {
                unique.push((i, sha.as_str(), bytes.as_slice()));
            }
        }
    }
    let n = unique.len();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<ModuleResult>>> = Mutex::new((0..n).map(|_| None).collect());
    let threads = threads.clamp(1, n.max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                let (first, sha, bytes) = unique[k];
                let id = &entries[first].0.id;
                tracing::info!("compiling {}/{n} {id}", k + 1);
                let r = cache
                    .load_or_compile(engine, sha, bytes)
                    .map_err(|e| super::error_text(&e));
                match &r {
                    Ok((_, true)) => tracing::debug!("{id}: loaded from the compile cache"),
                    Ok((_, false)) => tracing::debug!("{id}: compiled"),
                    Err(m) => tracing::debug!("{id}: does not compile: {m}"),
                }
                done.lock()[k] = Some(r);
            });
        }
    });
    let done: Vec<ModuleResult> = done
        .into_inner()
        .into_iter()
        .map(|r| r.expect("every module was compiled"))
        .collect();
    let keys: Vec<String> = unique.iter().map(|(_, s, _)| s.to_string()).collect();
    drop(unique);
    prepared
        .into_iter()
        .zip(entries)
        .map(|(p, (_, spec))| {
            let (sha256, _) = p?;
            let k = keys
                .iter()
                .position(|s| *s == sha256)
                .expect("every module is in the unique list");
            match &done[k] {
                Ok((component, from_cache)) => Ok(Compiled {
                    component: component.clone(),
                    sha256,
                    from_cache: *from_cache,
                }),
                Err(m) => {
                    let field = match spec.source {
                        WasmSource::Wat { .. } => "source",
                        WasmSource::Binary { .. } => "path",
                    };
                    Err((field, format!("does not compile: {m}")))
                }
            }
        })
        .collect()
}
