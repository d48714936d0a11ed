//! `warden run --watch`: file changes under the app directory become registry changes.
//!
//! The directory is watched recursively through the `notify` crate; a burst of changes
//! (files created, written, renamed or removed; not hidden ones, and not reads, which the
//! load itself makes) settles for [`DEBOUNCE`] before it is handled. After each burst the app is loaded again from its
//! files, exactly as at start; the registry actor applies the difference to the running
//! version (`RegistryMsg::Reload`: unchanged entries keep their `Arc`, changed ones go
//! through the same checks as a changeset). Each burst gives one log line: the follower
//! in `runtime.rs` says what changed and what was restarted, stopped or started; when the
//! files do not load or check, this module says every error and "nothing applied".

use crate::registry::actor::Handle;
use crate::registry::Registry;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Loads the app again: the registry, or every error (one line each).
pub type Loader = Arc<dyn Fn() -> Result<Registry, Vec<String>> + Send + Sync>;

/// How long file events settle before the app is loaded again.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

fn hidden(root: &Path, p: &Path) -> bool {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

/// Watches `dir` and applies each change to the running registry until the registry
/// actor stops. Errors setting up the watch are returned; later ones are logged.
pub fn start(dir: PathBuf, registry: Handle, load: Loader) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |r| {
        let _ = tx.send(r);
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    tracing::info!(dir = %dir.display(), "watching the app's files");
    let relevant = {
        let dir = dir.clone();
        move |r: notify::Result<notify::Event>| match r {
            Ok(ev) => {
                matches!(
                    ev.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) && ev.paths.iter().any(|p| !hidden(&dir, p))
            }
            Err(e) => {
                tracing::warn!("watching the app's files: {e}");
                false
            }
        }
    };
    tokio::spawn(async move {
        // the watch lasts as long as this task
        let _watcher = watcher;
        while let Some(first) = rx.recv().await {
            if !relevant(first) {
                continue;
            }
            // let the burst settle (an editor writes, renames, touches)
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let load = load.clone();
            let loaded = tokio::task::spawn_blocking(move || load())
                .await
                .unwrap_or_else(|e| Err(vec![format!("loading the app failed: {e}")]));
            let result = match loaded {
                Ok(fresh) => registry.reload(fresh).await,
                Err(errors) => Err(errors),
            };
            match result {
                Ok(Some(_)) => {} // the follower logs what changed and moved
                Ok(None) => tracing::info!("app files changed; no entry changed"),
                Err(_)
                    if matches!(
                        registry.0.get_status(),
                        ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
                    ) =>
                {
                    break; // the runtime stopped
                }
                Err(errors) => tracing::error!(
                    "app files changed: {} error{}, nothing applied: {}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    errors.join("; ")
                ),
            }
        }
    });
    Ok(())
}
