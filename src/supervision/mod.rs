//! Supervision: `process.service` lifecycles and OTP supervision trees.
//!
//! [`Supervision`] owns one ractor actor per service (`service.rs`) and the running trees
//! (`tree.rs`); `spec.rs` parses and checks their YAML. Services start in the order of
//! their `requires` (each level concurrently) and stop in reverse, dependents first.
//! Supervisors are ractor actors; they watch process children through the runtime's exit
//! callbacks and nested supervisors through ractor's supervision links.
//!
//! This module knows the process core and the registry; it does not know Lua.

pub mod service;
pub mod spec;
pub mod tree;
pub mod upgrade;

use crate::process::Node;
use crate::registry::Id;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use ractor::{Actor, ActorRef};
pub use service::{ServiceMsg, ServiceState, ServiceStatus};
use spec::Specs;
use std::sync::Arc;
use std::time::Duration;
pub use tree::{ChildError, ChildInfo, Counts, Intensity, NewChild, StartResult, TreeMsg};

/// The supervision system of a runtime.
pub struct Supervision {
    /// The node that runs the processes.
    pub node: Arc<Node>,
    /// Every service and tree of the app (swapped when the registry changes).
    specs: ArcSwap<Specs>,
    /// Host used when a service or child names none.
    pub default_host: Id,
    /// Latest status of every service.
    pub statuses: DashMap<Id, ServiceStatus>,
    /// Running trees by supervisor id (the latest instance).
    pub trees: DashMap<Id, ActorRef<TreeMsg>>,
    services: DashMap<Id, ActorRef<ServiceMsg>>,
    restarts: std::sync::atomic::AtomicU64,
    fatal: tokio::sync::watch::Sender<Option<String>>,
    /// Services' retry delays are multiplied by this (f64 bits; 1.0 but under a test's
    /// `meta.time_scale`).
    time_scale: std::sync::atomic::AtomicU64,
    /// What the trees did, in order, when a test asked for it ([`Supervision::keep_log`]).
    log: parking_lot::Mutex<Option<Vec<TreeEvent>>>,
    /// Trees started on their own (not by a service): `start_tree`.
    bare: DashMap<Id, ActorRef<TreeMsg>>,
    /// The runtime the supervision actors run on (a request from a process's worker
    /// thread spawns its actors there, not on the worker).
    main: tokio::runtime::Handle,
}

/// One thing a tree did to a child (see [`Supervision::keep_log`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TreeEvent {
    /// The tree.
    pub tree: Id,
    /// The child id.
    pub child: String,
    /// `start` (the tree's own start, `start_child`, `restart_child`), `exit` (it ended by
    /// itself), `stop` (the tree stopped it), `restart` (started again by the strategy).
    pub event: &'static str,
    /// Its pid (a process child).
    pub pid: Option<String>,
    /// Why it exited (`normal` or the error).
    pub reason: Option<String>,
}

/// The text of a tree that failed to start: the tree's own error (which names it), not
/// ractor's wrapping of it.
pub(crate) fn spawn_error(e: &ractor::SpawnErr) -> String {
    match e {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Why a control request failed.
pub type ControlResult<T> = Result<T, (&'static str, String)>;

impl Supervision {
    /// Creates the service actors (nothing starts yet).
    pub async fn new(node: Arc<Node>, specs: Specs, default_host: Id) -> anyhow::Result<Arc<Self>> {
        let (fatal, _) = tokio::sync::watch::channel(None);
        let sup = Arc::new(Supervision {
            node,
            specs: ArcSwap::from_pointee(specs),
            default_host,
            statuses: DashMap::new(),
            trees: DashMap::new(),
            services: DashMap::new(),
            restarts: Default::default(),
            fatal,
            time_scale: std::sync::atomic::AtomicU64::new(1.0f64.to_bits()),
            log: parking_lot::Mutex::new(None),
            bare: DashMap::new(),
            main: tokio::runtime::Handle::current(),
        });
        for spec in sup.specs().services.values() {
            let args = service::ServiceArgs {
                spec: spec.clone(),
                sup: Arc::downgrade(&sup),
            };
            let (r, _) = Actor::spawn(None, service::ServiceActor, args).await?;
            sup.services.insert(spec.id.clone(), r);
        }
        Ok(sup)
    }

    /// Multiplies every service's retry delays by `scale` (tests run backoffs faster).
    pub fn set_time_scale(&self, scale: f64) {
        self.time_scale
            .store(scale.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The factor of services' retry delays.
    pub fn time_scale(&self) -> f64 {
        f64::from_bits(self.time_scale.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Starts keeping the trees' log: every start, exit, stop and restart of a child, in
    /// order (for tests; off by default).
    pub fn keep_log(&self) {
        self.log.lock().get_or_insert_with(Vec::new);
    }

    /// The trees' log so far (empty unless [`Supervision::keep_log`] was called).
    pub fn tree_log(&self) -> Vec<TreeEvent> {
        self.log.lock().clone().unwrap_or_default()
    }

    pub(crate) fn record(&self, event: impl FnOnce() -> TreeEvent) {
        if let Some(log) = self.log.lock().as_mut() {
            log.push(event());
        }
    }

    /// Starts supervisor `id` on its own (no service around it); resolves once its
    /// children are started. Stopped by [`Supervision::stop_tree`] or `stop_all`.
    pub async fn start_tree(self: &Arc<Self>, id: &Id) -> ControlResult<()> {
        let spec = self
            .specs()
            .trees
            .get(id)
            .cloned()
            .ok_or_else(|| ("NOT_FOUND", format!("supervisor {id} not found")))?;
        if self.trees.contains_key(id) {
            return Err((
                "ALREADY_EXISTS",
                format!("supervisor {id} is already running"),
            ));
        }
        let args = tree::TreeArgs {
            spec,
            sup: Arc::downgrade(self),
            shutdown: spec::INFINITY,
        };
        let spawned = self
            .main
            .spawn(async move { Actor::spawn(None, tree::TreeActor, args).await })
            .await
            .map_err(|e| ("INTERNAL", format!("supervisor {id}: {e}")))?;
        match spawned {
            Ok((r, _)) => {
                self.bare.insert(id.clone(), r);
                Ok(())
            }
            Err(e) => Err(("FAILED", spawn_error(&e))),
        }
    }

    /// Stops a tree [`Supervision::start_tree`] started; resolves once its children ended.
    pub async fn stop_tree(&self, id: &Id) -> ControlResult<()> {
        let (_, r) = self.bare.remove(id).ok_or_else(|| {
            (
                "NOT_FOUND",
                format!("supervisor {id} was not started on its own"),
            )
        })?;
        let _ = r.stop_and_wait(Some("stopped".into()), None).await;
        Ok(())
    }

    /// Every service and tree of the running registry version.
    pub fn specs(&self) -> Arc<Specs> {
        self.specs.load_full()
    }

    /// Reports a failure that ends `warden run --exec` (a top-level tree gave up and its
    /// service does not restart it).
    pub fn report_fatal(&self, why: String) {
        self.fatal.send_replace(Some(why));
    }

    /// Resolves once a fatal failure was reported, with its text.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn service(&self, id: &Id) -> ControlResult<ActorRef<ServiceMsg>> {
        self.services
            .get(id)
            .map(|r| r.clone())
            .ok_or_else(|| ("NOT_FOUND", format!("service {id} not found")))
    }

    /// Starts a service; resolves once it runs (or failed to start).
    pub async fn start(&self, id: &Id) -> ControlResult<()> {
        if let Some(spec) = self.specs().services.get(id) {
            if !self.placed_here(spec) {
                return Err((
                    "INVALID",
                    format!(
                        "service {id} is placed on node {} (this is node {})",
                        spec.placement.as_deref().unwrap_or_default(),
                        self.node.name
                    ),
                ));
            }
        }
        let s = self.service(id)?;
        match ractor::call!(s, |r| ServiceMsg::Start(Some(r))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(("FAILED", format!("service {id} failed to start: {e}"))),
            Err(e) => Err(("UNAVAILABLE", format!("service {id}: {e}"))),
        }
    }

    /// Whether this node runs service `spec`: its `placement` names this node or none,
    /// or this node is not in a cluster (one node runs everything).
    pub fn placed_here(&self, spec: &spec::ServiceSpec) -> bool {
        spec.placement
            .as_deref()
            .is_none_or(|n| n == &*self.node.name || !self.node.in_cluster())
    }

    /// Starts a service after the services it requires (those not running yet, level by
    /// level); if one of them fails to start, this one is not started and the error names
    /// it. The `supervisor.start` of Lua.
    pub async fn start_with_requires(&self, id: &Id) -> ControlResult<()> {
        self.service(id)?;
        for level in self.specs().levels(std::slice::from_ref(id)) {
            let starts = level
                .iter()
                .filter(|s| *s != id)
                .filter(|s| {
                    !matches!(
                        self.status(s).map(|st| st.state),
                        Some(ServiceState::Running)
                    )
                })
                .map(|s| async move { (s, self.start(s).await) });
            for (dep, r) in futures::future::join_all(starts).await {
                if let Err((_, e)) = r {
                    let why = format!("dependency {dep} failed to start ({e})");
                    tracing::error!(service = %id, "service not started: {why}");
                    return Err(("FAILED", format!("service {id} not started: {why}")));
                }
            }
        }
        self.start(id).await
    }

    /// Stops a service; resolves once its process ended.
    pub async fn stop(&self, id: &Id) -> ControlResult<()> {
        let s = self.service(id)?;
        ractor::call!(s, |r| ServiceMsg::Stop(Some(r)))
            .map_err(|e| ("UNAVAILABLE", format!("service {id}: {e}")))
    }

    /// Stops then starts a service.
    pub async fn restart(&self, id: &Id) -> ControlResult<()> {
        let s = self.service(id)?;
        match ractor::call!(s, ServiceMsg::Restart) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(("FAILED", format!("service {id} failed to start: {e}"))),
            Err(e) => Err(("UNAVAILABLE", format!("service {id}: {e}"))),
        }
    }

    /// The status of a service.
    pub fn status(&self, id: &Id) -> Option<ServiceStatus> {
        self.statuses.get(id).map(|s| s.clone())
    }

    /// Asks a running tree; `ask` builds the request around its reply port.
    async fn ask_tree<T: Send + 'static>(
        &self,
        id: &Id,
        ask: impl FnOnce(ractor::RpcReplyPort<T>) -> TreeMsg,
    ) -> ControlResult<T> {
        let t = self
            .trees
            .get(id)
            .map(|r| r.clone())
            .ok_or_else(|| ("NOT_FOUND", format!("supervisor {id} is not running")))?;
        ractor::call!(t, ask).map_err(|e| ("UNAVAILABLE", format!("supervisor {id}: {e}")))
    }

    /// The children of a running tree.
    pub async fn children(&self, id: &Id) -> ControlResult<Vec<ChildInfo>> {
        self.ask_tree(id, TreeMsg::Children).await
    }

    /// OTP's `count_children` of a running tree.
    pub async fn count_children(&self, id: &Id) -> ControlResult<Counts> {
        self.ask_tree(id, TreeMsg::Count).await
    }

    /// How much of a running tree's intensity is used (restarts within its period).
    pub async fn intensity(&self, id: &Id) -> ControlResult<Intensity> {
        self.ask_tree(id, TreeMsg::Intensity).await
    }

    /// OTP's `start_child`: a new child from a spec, or on a simple_one_for_one tree from
    /// extra arguments; resolves once it is started (the pid; None if it answered
    /// `ignore`).
    pub async fn start_child(&self, id: &Id, new: NewChild) -> ControlResult<StartResult> {
        self.ask_tree(id, |r| TreeMsg::StartChild(new, r)).await
    }

    /// OTP's `terminate_child` (by child id; by pid on a simple_one_for_one tree): stops it
    /// through its `shutdown`; its spec stays unless it is temporary.
    pub async fn terminate_child(
        &self,
        id: &Id,
        child: &str,
    ) -> ControlResult<Result<(), ChildError>> {
        let child = child.to_string();
        self.ask_tree(id, |r| TreeMsg::TerminateChild(child, r))
            .await
    }

    /// OTP's `restart_child`: starts a child that is not running again.
    pub async fn restart_child(&self, id: &Id, child: &str) -> ControlResult<StartResult> {
        let child = child.to_string();
        self.ask_tree(id, |r| TreeMsg::RestartChild(child, r)).await
    }

    /// OTP's `delete_child`: forgets the spec of a child that is not running.
    pub async fn delete_child(
        &self,
        id: &Id,
        child: &str,
    ) -> ControlResult<Result<(), ChildError>> {
        let child = child.to_string();
        self.ask_tree(id, |r| TreeMsg::DeleteChild(child, r)).await
    }

    /// OTP's `get_childspec` (by child id, or by pid).
    pub async fn get_childspec(
        &self,
        id: &Id,
        child: &str,
    ) -> ControlResult<Result<Arc<spec::ChildSpec>, ChildError>> {
        let child = child.to_string();
        self.ask_tree(id, |r| TreeMsg::GetChildspec(child, r)).await
    }

    /// Kills a running tree, like `exit(Sup, kill)` in OTP: its children are terminated at
    /// once and the tree fails into its parent, which restarts it under its strategy.
    /// Resolves once the children have ended.
    pub async fn kill_tree(&self, id: &Id) -> ControlResult<()> {
        self.ask_tree(id, TreeMsg::Kill).await
    }

    /// Children restarted by supervision trees since the runtime started (every tree, every
    /// instance: a tree that was itself restarted keeps counting here).
    pub fn restarts_total(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_restart(&self) {
        self.restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts every `auto_start` service (and what they require), level by level. A
    /// service whose dependency failed to start is not started; the log says why.
    pub async fn start_auto(&self) {
        let specs = self.specs();
        let auto: Vec<Id> = specs
            .services
            .values()
            .filter(|s| s.auto_start && self.placed_here(s))
            .map(|s| s.id.clone())
            .collect();
        let mut failed: Vec<(Id, String)> = Vec::new();
        for level in specs.levels(&auto) {
            let mut starts = Vec::new();
            for id in level {
                let spec = &specs.services[&id];
                if let Some((dep, why)) = spec
                    .requires
                    .iter()
                    .find_map(|r| failed.iter().find(|(f, _)| f == r))
                {
                    let why = format!("dependency {dep} failed to start ({why})");
                    tracing::error!(service = %id, "service not started: {why}");
                    failed.push((id.clone(), why));
                    continue;
                }
                starts.push(async move {
                    let r = self.start(&id).await;
                    (id, r)
                });
            }
            for (id, r) in futures::future::join_all(starts).await {
                if let Err((_, e)) = r {
                    failed.push((id, e));
                }
            }
        }
    }

    /// Stops every service that runs, dependents first, each within its stop_timeout (and
    /// the trees started on their own).
    pub async fn stop_all(&self) {
        let bare: Vec<Id> = self.bare.iter().map(|e| e.key().clone()).collect();
        for id in bare {
            let _ = self.stop_tree(&id).await;
        }
        let active: Vec<Id> = self
            .statuses
            .iter()
            .filter(|s| {
                matches!(
                    s.state,
                    ServiceState::Starting
                        | ServiceState::Running
                        | ServiceState::Failed
                        | ServiceState::Stopping
                )
            })
            .map(|s| s.key().clone())
            .collect();
        let specs = self.specs();
        let levels = specs.levels(&active);
        for level in levels.into_iter().rev() {
            let stops = level
                .iter()
                .filter(|id| active.contains(id))
                .filter_map(|id| Some((id, specs.services.get(id)?.stop_timeout)))
                .map(|(id, stop_timeout)| async move {
                    tracing::info!(service = %id, "stopping service");
                    let timeout = stop_timeout + Duration::from_secs(5);
                    let _ = tokio::time::timeout(timeout, self.stop(id)).await;
                });
            futures::future::join_all(stops).await;
        }
    }

    /// Stops the service actors (after `stop_all`).
    pub fn close(&self) {
        for s in self.services.iter() {
            s.value().stop(None);
        }
    }
}
