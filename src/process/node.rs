//! The node: the process table, names, hosts and the current registry; sending, cancel
//! and terminate; monitors and links between its processes. Spawning and exits are in
//! `spawn.rs`, what crosses to other nodes in `remote.rs`.

use super::exit::{noconnection, Exit, ExitError};
use super::host::Host;
use super::mailbox::{Message, ProcessHandle, Signal, CANCEL_LIMIT};
use super::pid::{split_pid, Pid, CREATION_SHIFT};
use super::relations::ExitCallback;
use super::remote::{Remote, RemoteOp};
use super::spawn::ProcessKind;
use super::stats;
use crate::registry::{Entry, Id, Registry};
use crate::value::Value;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a spawn or a send failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    /// Malformed input (bad id, reserved topic, a value that cannot be copied).
    #[error("{0}")]
    Invalid(String),
    /// No such entry, host, process or name.
    #[error("{0}")]
    NotFound(String),
    /// A host queue is full.
    #[error("{0}")]
    Busy(String),
    /// A name another live process holds.
    #[error("{0}")]
    AlreadyExists(String),
}

impl ProcessError {
    /// The error kind name as the Lua API reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessError::Invalid(_) => "INVALID",
            ProcessError::NotFound(_) => "NOT_FOUND",
            ProcessError::Busy(_) => "UNAVAILABLE",
            ProcessError::AlreadyExists(_) => "ALREADY_EXISTS",
        }
    }
}

/// A node: the process table, the names, the hosts and the current registry.
pub struct Node {
    /// Node name (the first part of every pid).
    pub name: Arc<str>,
    pub(super) next_id: AtomicU64,
    /// Live processes by the local part of their pid (Fx hashing: a lookup per message,
    /// and pids are the runtime's own numbers, not input to defend against).
    pub(super) procs: DashMap<u64, Arc<ProcessHandle>, rustc_hash::FxBuildHasher>,
    pub(super) names: DashMap<String, Pid>,
    /// Hosts by id (Fx hashing: looked up at every spawn; the ids are the app's entries).
    pub(super) hosts: DashMap<Id, Arc<Host>, rustc_hash::FxBuildHasher>,
    pub(super) registry: ArcSwap<Registry>,
    /// The process kinds it runs, by entry kind (looked up at every spawn).
    pub(super) kinds: rustc_hash::FxHashMap<&'static str, ProcessKind>,
    /// Function pools, by id.
    pub functions: crate::functions::FunctionTable,
    /// Its event bus: subscriptions by system and kind, delivered as messages.
    pub events: super::events::EventBus,
    /// Its process groups (Erlang's `pg`), scope by scope.
    pub groups: super::pg::Groups,
    /// Spawns, exits and messages counted (the admin endpoint's metrics).
    pub stats: stats::Stats,
    /// Where messages to pids of other nodes go (set when the node joins a cluster).
    pub(super) remote: arc_swap::ArcSwapOption<Box<dyn Remote>>,
    /// Pid numbers handed to other nodes for their spawns here, and those used so far (so
    /// [`Node::spawned`] counts spawns, not numbers).
    pub(super) granted: AtomicU64,
    pub(super) granted_used: AtomicU64,
    /// Code with no actor or no scope is refused what a policy guards (Wippy's
    /// `security.strict_mode`); the language runtimes read it before their checks.
    pub strict_security: std::sync::atomic::AtomicBool,
}

impl Node {
    /// A node with a registry and the process kinds it can run (by entry kind).
    pub fn new(
        name: &str,
        registry: Arc<Registry>,
        kinds: HashMap<&'static str, ProcessKind>,
    ) -> Arc<Node> {
        Arc::new(Node {
            name: Arc::from(name),
            next_id: AtomicU64::new(1),
            procs: DashMap::with_hasher(rustc_hash::FxBuildHasher),
            names: DashMap::new(),
            hosts: DashMap::with_hasher(rustc_hash::FxBuildHasher),
            registry: ArcSwap::new(registry),
            kinds: kinds.into_iter().collect(),
            functions: Default::default(),
            events: Default::default(),
            groups: Default::default(),
            stats: stats::Stats::default(),
            remote: arc_swap::ArcSwapOption::empty(),
            granted: AtomicU64::new(0),
            granted_used: AtomicU64::new(0),
            strict_security: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The current registry snapshot.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// The current registry snapshot, borrowed for a moment (cheaper than
    /// [`Node::registry`]; do not hold it across an await).
    pub fn registry_now(&self) -> arc_swap::Guard<Arc<Registry>> {
        self.registry.load()
    }

    /// Replaces the registry snapshot (published by the registry actor).
    pub fn set_registry(&self, r: Arc<Registry>) {
        self.registry.store(r);
    }

    /// Adds a host.
    pub fn add_host(&self, host: Arc<Host>) {
        self.hosts.insert(host.id.clone(), host);
    }

    /// Looks up a host by id.
    pub fn host(&self, id: &Id) -> Option<Arc<Host>> {
        self.hosts.get(id).map(|h| h.clone())
    }

    /// All hosts.
    pub fn hosts(&self) -> Vec<Arc<Host>> {
        self.hosts.iter().map(|h| h.value().clone()).collect()
    }

    /// Processes spawned since the node started.
    pub fn spawned(&self) -> u64 {
        let numbers =
            (self.next_id.load(Ordering::Relaxed) & ((1 << CREATION_SHIFT) - 1)).saturating_sub(1);
        (numbers + self.granted_used.load(Ordering::Relaxed))
            .saturating_sub(self.granted.load(Ordering::Relaxed))
    }

    /// This node's incarnation in its cluster (0: not in one).
    pub fn creation(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) >> CREATION_SHIFT
    }

    /// Sets this node's incarnation (when it joins a cluster, before any spawn): its pids
    /// from now on carry it, so pids of an earlier run of the same node name stay dead.
    pub fn set_creation(&self, creation: u64) {
        let n = self.next_id.load(Ordering::Relaxed) & ((1 << CREATION_SHIFT) - 1);
        self.next_id
            .store(creation << CREATION_SHIFT | n.max(1), Ordering::Relaxed);
    }

    /// Number of live processes.
    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    /// Every live process, with the entry it runs.
    pub fn processes(&self) -> Vec<(Pid, Id)> {
        self.procs
            .iter()
            .map(|p| (p.pid.clone(), p.entry.id.clone()))
            .collect()
    }

    /// The handles of every live process.
    pub fn process_handles(&self) -> Vec<Arc<ProcessHandle>> {
        self.procs.iter().map(|p| p.value().clone()).collect()
    }

    /// The handle of a live process.
    pub fn process(&self, pid: &Pid) -> Option<Arc<ProcessHandle>> {
        if pid.node != self.name {
            return None;
        }
        self.procs.get(&pid.id).map(|p| p.clone())
    }

    /// Parses a pid string, sharing this node's name when it is the node's own pid.
    pub fn parse_pid(&self, s: &str) -> Option<Pid> {
        let (node, id) = split_pid(s)?;
        let node = if node == &*self.name {
            self.name.clone()
        } else {
            Arc::from(node)
        };
        Some(Pid { node, id })
    }

    /// Resolves a destination: a pid string or a registered name.
    pub fn resolve(&self, dest: &str) -> Result<Pid, ProcessError> {
        if dest.starts_with('{') {
            return self
                .parse_pid(dest)
                .ok_or_else(|| ProcessError::Invalid(format!("malformed pid {dest:?}")));
        }
        if dest.is_empty() {
            return Err(ProcessError::Invalid("empty destination".into()));
        }
        self.lookup(dest)
            .ok_or_else(|| ProcessError::NotFound(format!("no process is registered as {dest:?}")))
    }

    /// Sends a data message. Topics starting with `@` are reserved.
    pub fn send(
        &self,
        from: Option<&Pid>,
        dest: &Pid,
        topic: impl Into<String>,
        payload: Vec<Value>,
    ) -> Result<(), ProcessError> {
        let topic = topic.into();
        if topic.starts_with('@') {
            return Err(ProcessError::Invalid(format!(
                "topic {topic:?} is reserved (topics starting with @ belong to the runtime)"
            )));
        }
        if let Some(r) = self.route(dest) {
            return r.send(from, dest, topic, payload);
        }
        let p = self.process(dest).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({dest} is not running)"))
        })?;
        self.push(from, &p, topic, payload)
    }

    /// [`Node::send`] to a process of this node whose handle the sender holds (a process
    /// that ended refuses it, as `send` does).
    pub fn send_to(
        &self,
        from: Option<&Pid>,
        to: &ProcessHandle,
        topic: impl Into<String>,
        payload: Vec<Value>,
    ) -> Result<(), ProcessError> {
        let topic = topic.into();
        if topic.starts_with('@') {
            return Err(ProcessError::Invalid(format!(
                "topic {topic:?} is reserved (topics starting with @ belong to the runtime)"
            )));
        }
        self.push(from, to, topic, payload)
    }

    /// Queues a checked message in `to`'s mailbox and counts it.
    fn push(
        &self,
        from: Option<&Pid>,
        to: &ProcessHandle,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ProcessError> {
        to.message(Message {
            from: from.cloned(),
            topic,
            payload,
        })?;
        self.stats.messages.add(1);
        Ok(())
    }

    /// Sends a message on a runtime topic (one starting with `@`, which `send` refuses):
    /// how the runtime's own services, such as the event bus, reach a process's listener.
    pub fn send_runtime(
        &self,
        from: Option<&Pid>,
        dest: &Pid,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ProcessError> {
        let p = self.process(dest).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({dest} is not running)"))
        })?;
        p.message(Message {
            from: from.cloned(),
            topic,
            payload,
        })
    }

    /// Asks a process to stop: it receives a CANCEL event and ends on its own.
    pub fn cancel(
        &self,
        from: Option<&Pid>,
        dest: &Pid,
        reason: Option<String>,
    ) -> Result<(), ProcessError> {
        if let Some(r) = self.route(dest) {
            let op = RemoteOp::Cancel {
                from: from.cloned(),
                to: dest.clone(),
                reason,
            };
            return r.control(&dest.node, op);
        }
        let p = self.process(dest).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({dest} is not running)"))
        })?;
        if !p.cancel_has_room() {
            return Err(ProcessError::Busy(format!(
                "process {dest} has {CANCEL_LIMIT} cancel requests waiting"
            )));
        }
        p.cancel_requested.store(true, Ordering::Relaxed);
        p.signal(Signal::Cancel {
            from: from.cloned(),
            reason,
        });
        Ok(())
    }

    /// Stops a process now, also one busy in a loop (it is interrupted at its next
    /// preemption point).
    pub fn terminate(&self, dest: &Pid) -> Result<(), ProcessError> {
        self.terminate_with(dest, None)
    }

    /// [`Node::terminate`] with the reason its exit gives (Erlang's `exit(Pid, Reason)`
    /// for a process that does not trap exits); None: `terminated`.
    pub fn terminate_with(&self, dest: &Pid, reason: Option<String>) -> Result<(), ProcessError> {
        if let Some(r) = self.route(dest) {
            let op = RemoteOp::Terminate {
                to: dest.clone(),
                reason,
            };
            return r.control(&dest.node, op);
        }
        let p = self.process(dest).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({dest} is not running)"))
        })?;
        p.kill_requested.store(true, Ordering::Release);
        p.signal(Signal::Terminate(reason));
        Ok(())
    }

    /// `watcher` monitors `target`: it gets a Down signal when `target` ends (at once, with
    /// error "no such process", when it is not running).
    pub fn monitor(&self, watcher: &Pid, target: &Pid) {
        if let Some(r) = self.route(target) {
            let Some(w) = self.process(watcher) else {
                return;
            };
            let op = RemoteOp::Monitor {
                watcher: watcher.clone(),
                target: target.clone(),
            };
            let mut wr = w.relations.lock();
            if wr.is_watching(target) {
                return;
            }
            match r.control(&target.node, op) {
                Ok(()) => wr.watch(target),
                Err(_) => {
                    drop(wr);
                    w.signal(Signal::Down {
                        from: target.clone(),
                        exit: noconnection(),
                    });
                }
            }
            return;
        }
        if let Some(t) = self.process(target) {
            let added = t.relations.lock().add_monitor(watcher);
            if added {
                if let Some(w) = self.process(watcher) {
                    w.relations.lock().watch(target);
                }
                return;
            }
        }
        if let Some(w) = self.process(watcher) {
            w.signal(Signal::Down {
                from: target.clone(),
                exit: Arc::new(Exit::Error(ExitError::new("NOT_FOUND", "no such process"))),
            });
        }
    }

    /// Removes a monitor.
    pub fn demonitor(&self, watcher: &Pid, target: &Pid) {
        if let Some(r) = self.route(target) {
            let op = RemoteOp::Demonitor {
                watcher: watcher.clone(),
                target: target.clone(),
            };
            let _ = r.control(&target.node, op);
        }
        if let Some(t) = self.process(target) {
            t.relations.lock().remove_monitor(watcher);
        }
        if let Some(w) = self.process(watcher) {
            w.relations.lock().unwatch(target);
        }
    }

    /// Calls `cb` when `target` exits (at once with "no such process" if it is not running).
    pub fn watch(&self, target: &Pid, cb: ExitCallback) {
        let cb = match self.process(target) {
            Some(t) => match t.relations.lock().add_callback(cb) {
                Ok(()) => return,
                Err(cb) => cb,
            },
            None => cb,
        };
        cb(
            target,
            &Arc::new(Exit::Error(ExitError::new("NOT_FOUND", "no such process"))),
        );
    }

    /// Links two processes (both directions).
    pub fn link(&self, a: &Pid, b: &Pid) -> Result<(), ProcessError> {
        if a == b {
            return Err(ProcessError::Invalid(
                "a process cannot link to itself".into(),
            ));
        }
        if let Some(r) = self.route(b) {
            let pa = self.process(a).ok_or_else(|| {
                ProcessError::NotFound(format!("process not found ({a} is not running)"))
            })?;
            let mut rel = pa.relations.lock();
            if !rel.is_linked(b) {
                let op = RemoteOp::Link {
                    from: a.clone(),
                    to: b.clone(),
                };
                r.control(&b.node, op)?;
                rel.link(b);
            }
            return Ok(());
        }
        let pb = self.process(b).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({b} is not running)"))
        })?;
        {
            let mut rel = pb.relations.lock();
            if rel.exited() {
                return Err(ProcessError::NotFound(format!(
                    "process not found ({b} is not running)"
                )));
            }
            rel.link(a);
        }
        if let Some(pa) = self.process(a) {
            pa.relations.lock().link(b);
        }
        Ok(())
    }

    /// Removes a link (both directions).
    pub fn unlink(&self, a: &Pid, b: &Pid) {
        if let Some(r) = self.route(b) {
            let op = RemoteOp::Unlink {
                from: a.clone(),
                to: b.clone(),
            };
            let _ = r.control(&b.node, op);
        }
        for (x, y) in [(a, b), (b, a)] {
            if let Some(p) = self.process(x) {
                p.relations.lock().unlink(y);
            }
        }
    }

    /// Registers `name` for `pid`. Fails if the name is taken by a live process.
    pub fn register_name(&self, name: &str, pid: &Pid) -> Result<(), ProcessError> {
        if name.is_empty() || name.starts_with('{') {
            return Err(ProcessError::Invalid(format!(
                "invalid process name {name:?}"
            )));
        }
        let p = self.process(pid).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({pid} is not running)"))
        })?;
        let mut rel = p.relations.lock();
        if rel.exited() {
            return Err(ProcessError::NotFound(format!(
                "process not found ({pid} is not running)"
            )));
        }
        match self.names.entry(name.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(mut o) => {
                if o.get() == pid {
                    return Ok(());
                }
                if self.process(o.get()).is_some() {
                    return Err(ProcessError::AlreadyExists(format!(
                        "name {name:?} is already registered by {}",
                        o.get()
                    )));
                }
                o.insert(pid.clone());
            }
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(pid.clone());
            }
        }
        rel.add_name(name);
        Ok(())
    }

    /// The pid registered under `name`: a cluster name, else a name of this node.
    pub fn lookup(&self, name: &str) -> Option<Pid> {
        // cluster-wide first, then this node's, as Wippy's runtime looks names up
        if let Some(p) = self.remote.load().as_ref().and_then(|r| r.lookup(name)) {
            return Some(p);
        }
        self.names.get(name).map(|p| p.clone())
    }

    /// Frees a name. Returns whether it was registered.
    pub fn unregister_name(&self, name: &str) -> bool {
        match self.names.remove(name) {
            Some((_, pid)) => {
                if let Some(p) = self.process(&pid) {
                    p.relations.lock().remove_name(name);
                }
                true
            }
            None => false,
        }
    }

    /// Tells every process that opted in to OUTDATED events which of the ids its code
    /// depends on changed: `sources_of(entry)` gives them for a process running `entry`
    /// (empty: nothing it runs changed).
    pub fn outdate(&self, sources_of: impl Fn(&Entry) -> Vec<Id>) {
        for p in self.procs.iter() {
            if p.is_upgradable() {
                p.outdate(sources_of(&p.entry));
            }
        }
    }

    /// Stops every host: running processes are killed with "runtime shutting down".
    pub fn shutdown(&self) {
        for h in self.hosts() {
            h.shutdown();
        }
    }
}
