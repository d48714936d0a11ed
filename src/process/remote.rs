//! What crosses to other nodes: the [`Remote`] a cluster implements, the relation and
//! control operations it carries ([`RemoteOp`]), applying those that arrive, spawning on
//! another node, and a node's loss.

use super::exit::{noconnection, noproc, Exit};
use super::mailbox::Signal;
use super::node::{Node, ProcessError};
use super::pid::Pid;
use super::spawn::SpawnOptions;
use crate::registry::Id;
use crate::value::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Delivery of messages and control operations to processes of other nodes (the cluster
/// implements it).
pub trait Remote: Send + Sync {
    /// Sends a data message to `dest`, a pid of another node; an error when that node is
    /// not a member of the cluster. Never blocks.
    fn send(
        &self,
        from: Option<&Pid>,
        dest: &Pid,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ProcessError>;

    /// Sends a control operation to node `node`, in order with the data messages to it;
    /// an error when that node is not a member. Never blocks.
    fn control(&self, node: &str, op: RemoteOp) -> Result<(), ProcessError>;

    /// The live holder of cluster name `name`, if any.
    fn lookup(&self, name: &str) -> Option<Pid>;

    /// Registers cluster name `name` for `pid` (a process of this node): taken in the
    /// cluster's store, so no two nodes hold it.
    fn register<'a>(
        &'a self,
        name: &'a str,
        pid: &'a Pid,
    ) -> futures::future::BoxFuture<'a, Result<(), ProcessError>>;

    /// Frees cluster name `name` held by a process of this node; whether it was held.
    fn unregister(&self, name: &str) -> bool;

    /// The names of the cluster's members now, this node's among them, sorted.
    fn members(&self) -> Vec<String>;

    /// Asks node `node` to spawn `entry` on its host `host`; the pid it will have (see
    /// [`Node::spawn_remote`]). `opts`' link and monitor are set up there, atomically with
    /// the spawn; `record` is called with the pid before the request leaves, so this
    /// side's half of the link or monitor is in place before an exit of it can come back.
    fn spawn(
        &self,
        node: &str,
        entry: &Id,
        host: &Id,
        args: Vec<Value>,
        opts: &SpawnOptions,
        record: &mut dyn FnMut(&Pid),
    ) -> Result<Pid, ProcessError>;
}

/// A relation or control operation between a process of this node and one of another
/// node: what the cluster carries besides data messages. The receiving node applies it
/// with [`Node::apply_remote`].
#[derive(Debug, Clone)]
pub enum RemoteOp {
    /// `watcher` (of the sending node) monitors `target` (of the receiving node).
    Monitor {
        /// The watching process.
        watcher: Pid,
        /// The watched process.
        target: Pid,
    },
    /// Removes that monitor.
    Demonitor {
        /// The watching process.
        watcher: Pid,
        /// The watched process.
        target: Pid,
    },
    /// `from` (of the sending node) links with `to` (of the receiving node).
    Link {
        /// The linking process.
        from: Pid,
        /// The process linked to.
        to: Pid,
    },
    /// Removes that link.
    Unlink {
        /// The unlinking process.
        from: Pid,
        /// The other end.
        to: Pid,
    },
    /// `process.cancel` of a process of the receiving node.
    Cancel {
        /// Who asks.
        from: Option<Pid>,
        /// The process asked to stop.
        to: Pid,
        /// Why.
        reason: Option<String>,
    },
    /// `process.terminate` of a process of the receiving node.
    Terminate {
        /// The process to stop.
        to: Pid,
        /// The exit reason (None: `terminated`).
        reason: Option<String>,
    },
    /// `from` ended and `to` monitored it.
    Down {
        /// The watcher.
        to: Pid,
        /// The process that ended.
        from: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// `from` ended and `to` was linked with it (sent for every exit, so the link goes
    /// away; only an abnormal one is a LINK_DOWN).
    LinkExit {
        /// The linked process.
        to: Pid,
        /// The process that ended.
        from: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
}

impl Node {
    /// Routes messages to pids of other nodes through `remote` (joining a cluster).
    pub fn set_remote(&self, remote: Box<dyn Remote>) {
        self.remote.store(Some(Arc::new(remote)));
    }

    /// Stops routing to other nodes (leaving the cluster).
    pub fn clear_remote(&self) {
        self.remote.store(None);
    }

    /// Whether `pid` belongs to another node.
    pub fn is_remote(&self, pid: &Pid) -> bool {
        !Arc::ptr_eq(&pid.node, &self.name) && pid.node != self.name
    }

    /// Registers cluster name `name` for `pid`: an error when this node is not in a
    /// cluster, or the name is held elsewhere.
    pub async fn register_cluster_name(&self, name: &str, pid: &Pid) -> Result<(), ProcessError> {
        let Some(r) = self.remote.load_full() else {
            return Err(ProcessError::Invalid(
                "a cluster name needs a cluster (this node is not in one)".into(),
            ));
        };
        r.register(name, pid).await
    }

    /// Frees cluster name `name` held by a process of this node; whether it was held
    /// (false when this node is not in a cluster).
    pub fn unregister_cluster_name(&self, name: &str) -> bool {
        self.remote
            .load()
            .as_ref()
            .is_some_and(|r| r.unregister(name))
    }

    /// Whether this node is in a cluster.
    pub fn in_cluster(&self) -> bool {
        self.remote.load().is_some()
    }

    /// The names of the cluster's members (this node's alone when it is not in one).
    pub fn members(&self) -> Vec<String> {
        match &*self.remote.load() {
            Some(r) => r.members(),
            None => vec![self.name.to_string()],
        }
    }

    /// The route to `pid`'s node, when `pid` belongs to another node and this node is in a
    /// cluster.
    pub(super) fn route(&self, pid: &Pid) -> Option<Arc<Box<dyn Remote>>> {
        if self.is_remote(pid) {
            self.remote.load_full()
        } else {
            None
        }
    }

    /// Takes `n` pids of this node for another node to spawn with (`Node::spawn_as`): the
    /// first local number of the run.
    pub fn reserve_ids(&self, n: u64) -> u64 {
        self.granted.fetch_add(n, Ordering::Relaxed);
        self.next_id.fetch_add(n, Ordering::Relaxed)
    }

    /// Spawns process entry `entry_id` on host `host_id` of node `node` (another node of
    /// the cluster): the pid comes at once (from numbers that node granted this one), the
    /// spawn happens there, and a spawn that fails there is an exit of that pid (seen by a
    /// link or monitor asked for here), as Erlang's spawn on another node.
    pub fn spawn_remote(
        &self,
        node: &str,
        entry_id: &Id,
        host_id: &Id,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Pid, ProcessError> {
        let remote = self.remote.load_full().ok_or_else(|| {
            ProcessError::Invalid(format!(
                "host {node}:{host_id} is on another node, and this node is not in a cluster"
            ))
        })?;
        // this side's half of the link / monitor first: a spawn that fails there at once
        // answers with an exit that must find it
        let mut recorded: Option<Pid> = None;
        let spawned = remote.spawn(node, entry_id, host_id, args, &opts, &mut |pid| {
            if let Some(l) = &opts.link_to {
                if let Some(parent) = self.process(l) {
                    parent.relations.lock().link(pid);
                }
            }
            if let Some(m) = &opts.monitor_by {
                if let Some(w) = self.process(m) {
                    w.relations.lock().watch(pid);
                }
            }
            recorded = Some(pid.clone());
        });
        if let (Err(_), Some(pid)) = (&spawned, &recorded) {
            // the request never left: undo
            if let Some(parent) = opts.link_to.as_ref().and_then(|l| self.process(l)) {
                parent.relations.lock().unlink(pid);
            }
            if let Some(w) = opts.monitor_by.as_ref().and_then(|m| self.process(m)) {
                w.relations.lock().unwatch(pid);
            }
        }
        spawned
    }

    /// Applies an operation that came from process `RemoteOp`'s sender on another node.
    pub fn apply_remote(&self, op: RemoteOp) {
        let reply = |node: &str, op: RemoteOp| {
            if let Some(r) = &*self.remote.load() {
                let _ = r.control(node, op);
            }
        };
        match op {
            RemoteOp::Monitor { watcher, target } => {
                if let Some(t) = self.process(&target) {
                    if t.relations.lock().add_monitor(&watcher) {
                        return;
                    }
                }
                let node = watcher.node.clone();
                let down = RemoteOp::Down {
                    to: watcher,
                    from: target,
                    exit: noproc(),
                };
                reply(&node, down);
            }
            RemoteOp::Demonitor { watcher, target } => {
                if let Some(t) = self.process(&target) {
                    t.relations.lock().remove_monitor(&watcher);
                }
            }
            RemoteOp::Link { from, to } => {
                if let Some(t) = self.process(&to) {
                    let mut rel = t.relations.lock();
                    if !rel.exited() {
                        rel.link(&from);
                        return;
                    }
                }
                let node = from.node.clone();
                let exit = RemoteOp::LinkExit {
                    to: from,
                    from: to,
                    exit: noproc(),
                };
                reply(&node, exit);
            }
            RemoteOp::Unlink { from, to } => {
                if let Some(t) = self.process(&to) {
                    t.relations.lock().unlink(&from);
                }
            }
            RemoteOp::Cancel { from, to, reason } => {
                let _ = self.cancel(from.as_ref(), &to, reason);
            }
            RemoteOp::Terminate { to, reason } => {
                let _ = self.terminate_with(&to, reason);
            }
            RemoteOp::Down { to, from, exit } => {
                if let Some(w) = self.process(&to) {
                    let watched = w.relations.lock().unwatch(&from);
                    if watched {
                        w.signal(Signal::Down { from, exit });
                    }
                }
            }
            RemoteOp::LinkExit { to, from, exit } => {
                if let Some(p) = self.process(&to) {
                    let linked = p.relations.lock().unlink(&from);
                    if linked && exit.is_abnormal() {
                        p.signal(Signal::LinkDown { from, exit });
                    }
                }
            }
        }
    }

    /// Node `node` is lost (or its incarnations below `below` are: a restarted node):
    /// every monitor of its processes fires with `noconnection`, every link with one is a
    /// LINK_DOWN with it, and its processes' monitors of ours are forgotten. Scans the
    /// process table: a node loss is rare, and relations stay free of cluster bookkeeping.
    pub fn node_down(&self, node: &str, below: u64) {
        let lost = |p: &Pid| &*p.node == node && p.creation() < below;
        let exit = noconnection();
        for p in self.procs.iter() {
            let p = p.value().clone();
            let signals = p.relations.lock().forget(lost, &exit);
            for s in signals {
                p.signal(s);
            }
        }
    }
}
