//! The registry actor: the one writer of a running app's entries, keeping every version.
//!
//! Each change (a changeset's operations, a rollback to an earlier version, a whole new
//! registry from a reload) is validated as a load is (the loader for each entry's fields
//! and references, then the runtime's [`Validator`] for what later modules check:
//! services, trees, WebAssembly), and either becomes the next version or is refused whole
//! with every error, nothing applied. A new version is published to the subscribers as a
//! [`Change`]: hot paths (a spawn, a call) read the snapshot they hold instead of asking
//! the actor. Versions are numbered from 1 (the load) and the last [`KEPT_VERSIONS`] are
//! kept for `snapshot_at`, `history` and rollbacks.

use super::changes::{self, Op};
use super::{load_changes, Entry, Id, Item, Registry};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The file an entry created by a changeset names (it has no YAML file of its own).
pub const CHANGESET_FILE: &str = "changeset";

/// How many versions the actor keeps (older ones are forgotten, oldest first).
pub const KEPT_VERSIONS: usize = 1000;

/// One version of the registry.
#[derive(Clone, Debug)]
pub struct Version {
    /// Its number (1: the load).
    pub id: u64,
    /// The version it was made from (None for the first).
    pub previous: Option<u64>,
    /// When it was made.
    pub time: SystemTime,
    /// The operations that made it from `previous`.
    pub ops: Arc<Vec<Op>>,
    /// The entries of this version.
    pub registry: Arc<Registry>,
}

/// A new version, as subscribers get it.
#[derive(Clone, Debug)]
pub struct Change {
    /// The new version.
    pub version: Arc<Version>,
    /// The registry it replaces.
    pub previous: Arc<Registry>,
}

/// Called with each new version.
pub type Subscriber = Box<dyn Fn(&Change) + Send + Sync>;

/// What the runtime checks beyond the loader (services, trees, WebAssembly): the errors of
/// a candidate registry, one line each (empty: valid). Runs on a blocking thread.
pub type Validator = Arc<dyn Fn(&Registry, &[Op]) -> Vec<String> + Send + Sync>;

/// Messages of the registry actor.
pub enum RegistryMsg {
    /// The entry with this id.
    Get(Id, RpcReplyPort<Option<Arc<Entry>>>),
    /// The current snapshot.
    Snapshot(RpcReplyPort<Arc<Registry>>),
    /// Ids of all entries of a kind.
    OfKind(String, RpcReplyPort<Vec<Id>>),
    /// Replaces the registry (a reload); replies with the new version number.
    Replace(Box<Registry>, RpcReplyPort<u64>),
    /// A fresh load of the whole app (`run --watch`): validated by the runtime's checks,
    /// then applied as the delta from the current version (unchanged entries keep their
    /// `Arc`). Replies with the new version, None when no entry changed, or every error
    /// (nothing applied).
    Reload(
        Box<Registry>,
        RpcReplyPort<Result<Option<Arc<Version>>, Vec<String>>>,
    ),
    /// Applies a changeset; replies with the new version, or every error (nothing applied).
    Apply(Vec<Op>, RpcReplyPort<Result<Arc<Version>, Vec<String>>>),
    /// Makes a new version with the entries of an earlier one (a rollback).
    ApplyVersion(u64, RpcReplyPort<Result<Arc<Version>, Vec<String>>>),
    /// The kept versions, oldest first.
    Versions(RpcReplyPort<Vec<Arc<Version>>>),
    /// Adds a subscriber to the versions made from now on.
    Subscribe(Subscriber),
}

/// The registry actor.
pub struct RegistryActor;

/// Its state: the kept versions (the last is current), the validator, the subscribers.
pub struct RegistryState {
    versions: VecDeque<Arc<Version>>,
    validator: Option<Validator>,
    subscribers: Vec<Subscriber>,
}

impl RegistryState {
    /// The initial state: `registry` is version 1.
    pub fn new(registry: Arc<Registry>) -> Self {
        let first = Version {
            id: registry.version.max(1),
            previous: None,
            time: SystemTime::now(),
            ops: Arc::new(Vec::new()),
            registry,
        };
        RegistryState {
            versions: VecDeque::from([Arc::new(first)]),
            validator: None,
            subscribers: Vec::new(),
        }
    }

    /// With the runtime's checks of each change.
    pub fn with_validator(mut self, v: Validator) -> Self {
        self.validator = Some(v);
        self
    }

    fn current(&self) -> &Arc<Version> {
        self.versions
            .back()
            .expect("the registry keeps at least one version")
    }

    /// Makes `registry` the next version (made by `ops`) and tells the subscribers.
    fn publish(&mut self, mut registry: Registry, ops: Vec<Op>) -> Arc<Version> {
        let cur = self.current().clone();
        registry.version = cur.id + 1;
        let version = Arc::new(Version {
            id: cur.id + 1,
            previous: Some(cur.id),
            time: SystemTime::now(),
            ops: Arc::new(ops),
            registry: Arc::new(registry),
        });
        self.versions.push_back(version.clone());
        while self.versions.len() > KEPT_VERSIONS {
            self.versions.pop_front();
        }
        let change = Change {
            version: version.clone(),
            previous: cur.registry.clone(),
        };
        for s in &self.subscribers {
            s(&change);
        }
        version
    }
}

/// Runs a check on a blocking thread (it reads files and compiles code).
async fn blocking<T: Send + 'static>(
    check: impl FnOnce() -> Result<T, Vec<String>> + Send + 'static,
) -> Result<T, Vec<String>> {
    tokio::task::spawn_blocking(check)
        .await
        .unwrap_or_else(|e| Err(vec![format!("registry: checking the change failed: {e}")]))
}

/// Checks `ops` against `base` and loads the result: the new registry or every error.
fn validate(
    base: &Registry,
    ops: &[Op],
    validator: Option<&Validator>,
) -> Result<Registry, Vec<String>> {
    let label = PathBuf::from(CHANGESET_FILE);
    let mut errors = Vec::new();
    let mut items = Vec::new();
    let mut removed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for op in ops {
        let id = op.id();
        if !seen.insert(id.clone()) {
            errors.push(format!(
                "changeset: entry {id}: {} of an entry this changeset already changes",
                op.name()
            ));
            continue;
        }
        let existing = base.get(id);
        match (op, existing) {
            (Op::Create(_), Some(_)) => errors.push(format!(
                "changeset: entry {id}: cannot create: the entry exists (update it)"
            )),
            (Op::Update(_) | Op::Delete(_), None) => errors.push(format!(
                "changeset: entry {id}: cannot {}: no such entry",
                if matches!(op, Op::Delete(_)) {
                    "delete"
                } else {
                    "update"
                }
            )),
            (Op::Create(e) | Op::Update(e), existing) => {
                // an updated entry keeps its file (its relative paths and error location)
                let (file, dir) = match existing {
                    Some(x) => (
                        x.file.clone(),
                        x.file.parent().unwrap_or(&base.root).to_path_buf(),
                    ),
                    None => (label.clone(), base.root.clone()),
                };
                items.push(Item {
                    file,
                    dir,
                    namespace: e.id.namespace.clone(),
                    mapping: e.mapping(),
                });
            }
            (Op::Delete(id), Some(_)) => removed.push(id.clone()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (registry, load_errors) = load_changes(base, &items, &removed);
    // the services, trees and code are checked on what loaded even when some entries did
    // not, so the change is refused with every error at once; an error about an entry
    // that failed to load, or that names one, is the load error's consequence and left out
    let mut errors: Vec<String> = load_errors.iter().map(|e| e.to_string()).collect();
    if let Some(v) = validator {
        let failed: Vec<String> = load_errors.iter().filter_map(|e| e.entry.clone()).collect();
        errors.extend(
            v(&registry, ops)
                .into_iter()
                .filter(|e| !failed.iter().any(|id| mentions(e, id))),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(registry)
}

/// Whether error text `e` names entry `id` (as a whole word: `app:a` is not `app:ab`).
fn mentions(e: &str, id: &str) -> bool {
    e.match_indices(id).any(|(at, _)| {
        let end = at + id.len();
        !e[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    })
}

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RegistryState,
    ) -> Result<RegistryState, ActorProcessingErr> {
        tracing::debug!(
            entries = args.current().registry.entries.len(),
            "registry actor started"
        );
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Get(id, reply) => {
                let _ = reply.send(state.current().registry.get(&id).cloned());
            }
            RegistryMsg::Snapshot(reply) => {
                let _ = reply.send(state.current().registry.clone());
            }
            RegistryMsg::OfKind(kind, reply) => {
                let ids = state
                    .current()
                    .registry
                    .of_kind(&kind)
                    .map(|e| e.id.clone())
                    .collect();
                let _ = reply.send(ids);
            }
            RegistryMsg::Replace(r, reply) => {
                let ops = changes::delta(&state.current().registry, &r);
                let v = state.publish(*r, ops);
                let _ = reply.send(v.id);
            }
            RegistryMsg::Apply(ops, reply) => {
                let base = state.current().registry.clone();
                let validator = state.validator.clone();
                let checked =
                    blocking(move || validate(&base, &ops, validator.as_ref()).map(|r| (r, ops)))
                        .await;
                let result = checked.map(|(r, ops)| {
                    let v = state.publish(r, ops);
                    tracing::info!(version = v.id, changes = v.ops.len(), "registry changed");
                    v
                });
                let _ = reply.send(result);
            }
            RegistryMsg::Reload(fresh, reply) => {
                let mut fresh = *fresh;
                let current = state.current().registry.clone();
                // entries a changeset created at run time are in no file: the files
                // loaded again do not remove them
                for (id, e) in current.entries.iter() {
                    if e.file == Path::new(CHANGESET_FILE) && !fresh.entries.contains_key(id) {
                        fresh.entries.insert(id.clone(), e.clone());
                    }
                }
                for (id, e) in fresh.entries.iter_mut() {
                    if let Some(old) = current.get(id) {
                        if changes::same(old, e) {
                            *e = old.clone();
                        }
                    }
                }
                let ops = changes::delta(&current, &fresh);
                if ops.is_empty() {
                    let _ = reply.send(Ok(None));
                    return Ok(());
                }
                let validator = state.validator.clone();
                let checked = blocking(move || {
                    let errors = validator.map(|v| v(&fresh, &ops)).unwrap_or_default();
                    if errors.is_empty() {
                        Ok((fresh, ops))
                    } else {
                        Err(errors)
                    }
                })
                .await;
                let result = checked.map(|(r, ops)| Some(state.publish(r, ops)));
                let _ = reply.send(result);
            }
            RegistryMsg::ApplyVersion(id, reply) => {
                let target = state.versions.iter().find(|v| v.id == id).cloned();
                let result = match target {
                    None => Err(vec![format!(
                        "registry: no version {id} (kept: {} to {})",
                        state.versions.front().map_or(0, |v| v.id),
                        state.current().id
                    )]),
                    Some(t) => {
                        let ops = changes::delta(&state.current().registry, &t.registry);
                        let v = state.publish((*t.registry).clone(), ops);
                        tracing::info!(version = v.id, from = id, "registry rolled back");
                        Ok(v)
                    }
                };
                let _ = reply.send(result);
            }
            RegistryMsg::Versions(reply) => {
                let _ = reply.send(state.versions.iter().cloned().collect());
            }
            RegistryMsg::Subscribe(s) => state.subscribers.push(s),
        }
        Ok(())
    }
}

/// The registry actor of a running node, as code reaches it (attached to the node).
#[derive(Clone)]
pub struct Handle(pub ActorRef<RegistryMsg>);

impl Handle {
    /// Applies `ops`: the new version, or every error.
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Arc<Version>, Vec<String>> {
        ractor::call!(self.0, RegistryMsg::Apply, ops)
            .unwrap_or_else(|e| Err(vec![format!("registry: {e}")]))
    }

    /// Applies a fresh load of the whole app (see [`RegistryMsg::Reload`]).
    pub async fn reload(&self, fresh: Registry) -> Result<Option<Arc<Version>>, Vec<String>> {
        ractor::call!(self.0, RegistryMsg::Reload, Box::new(fresh))
            .unwrap_or_else(|e| Err(vec![format!("registry: {e}")]))
    }

    /// Makes a new version with the entries of version `id`.
    pub async fn apply_version(&self, id: u64) -> Result<Arc<Version>, Vec<String>> {
        ractor::call!(self.0, RegistryMsg::ApplyVersion, id)
            .unwrap_or_else(|e| Err(vec![format!("registry: {e}")]))
    }

    /// The kept versions, oldest first (empty if the actor is gone).
    pub async fn versions(&self) -> Vec<Arc<Version>> {
        ractor::call!(self.0, RegistryMsg::Versions).unwrap_or_default()
    }
}
