//! Spawning a process and publishing its exit: the two ends of every process's life.
//! What a process runs is a [`Body`] built by its kind's [`Launcher`]; this layer knows
//! no entry kind.

use super::exit::{Exit, ExitError};
use super::host::Host;
use super::mailbox::{ProcessHandle, Signal};
use super::node::{Node, ProcessError};
use super::pid::Pid;
use super::relations::{ExitCallback, Relations, Watcher};
use super::remote::RemoteOp;
use crate::registry::{Entry, Id};
use crate::value::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a process body needs to know about itself; its mailbox is `me`.
pub struct ProcessContext {
    /// The node the process runs on.
    pub node: Arc<Node>,
    /// Its own handle (pid, mailbox, kill flag; the entry it runs and its host).
    pub me: Arc<ProcessHandle>,
    /// Spawn arguments.
    pub args: Vec<Value>,
    /// The call context it starts with (see [`SpawnOptions::context`]).
    pub context: Option<Arc<crate::functions::CallContext>>,
    /// Where to report the end of its start, when a supervisor waits for it.
    pub start: Option<StartNotice>,
}

/// How a supervised process ended its start (OTP: what its `init` returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// It runs: the supervisor may start the next child.
    Running,
    /// It asks not to be supervised (OTP's `ignore`); it ends at once.
    Ignore,
}

/// Where a supervised process reports that its start is over: when it first waits for a
/// message (its inbox, its events, a topic listener; not a sleep or a call), or, for a
/// child declared `start: ack`, only when its code says so (`supervisor.started()`).
/// Dropped unsent when the process ends first.
pub struct StartNotice {
    tx: tokio::sync::oneshot::Sender<Started>,
    /// Only an explicit acknowledgement ends the start, not the first wait for a message.
    pub explicit: bool,
}

impl StartNotice {
    /// A notice and the receiver the supervisor waits on.
    pub fn new(explicit: bool) -> (StartNotice, tokio::sync::oneshot::Receiver<Started>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (StartNotice { tx, explicit }, rx)
    }

    /// Reports how the start ended.
    pub fn send(self, how: Started) {
        let _ = self.tx.send(how);
    }
}

/// The running part of a process; it lives on one worker thread and is not `Send`.
pub type BodyFuture = Pin<Box<dyn Future<Output = Exit>>>;

/// Builds a body on the worker thread that will run it.
pub type Body = Box<dyn FnOnce(ProcessContext) -> BodyFuture + Send>;

/// Checks a process entry and its spawn arguments before spawn (so a bad spawn fails
/// before any code runs) and returns the body builder.
pub type Launcher =
    Arc<dyn Fn(&Arc<Node>, &Arc<Entry>, &[Value]) -> Result<Body, String> + Send + Sync>;

/// A kind of process entry the node runs: how to launch one, and whether it sees a
/// CANCEL from the start (a supervisor cancels such a process and waits; one that cannot
/// see it yet is stopped at once, as Erlang kills a process that does not trap exits).
#[derive(Clone)]
pub struct ProcessKind {
    /// Builds the body of a process of this kind.
    pub launch: Launcher,
    /// Every process of this kind sees a CANCEL from its start (a Lua process sees one
    /// only once it takes its events channel).
    pub sees_cancel: bool,
}

/// What to attach to a new process atomically, before it can run.
#[derive(Default)]
pub struct SpawnOptions {
    /// Link the new process with this one.
    pub link_to: Option<Pid>,
    /// Monitor the new process from this one.
    pub monitor_by: Option<Pid>,
    /// Call this when the new process exits.
    pub on_exit: Option<ExitCallback>,
    /// The call context the new process starts with (`ctx.get`, and what its own
    /// `funcs.call`s carry): set by `process.with_context` and for functions run as
    /// processes. None: an empty one.
    pub context: Option<Arc<crate::functions::CallContext>>,
    /// Report the end of the new process's start here (a supervisor waits on it).
    pub start: Option<StartNotice>,
}

impl Node {
    /// Spawns process entry `entry_id` on host `host_id` with `args`.
    pub fn spawn(
        self: &Arc<Self>,
        entry_id: &Id,
        host_id: &Id,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Pid, ProcessError> {
        self.spawn_as(None, entry_id, host_id, args, opts)
    }

    /// [`Node::spawn`] with a pid number given (one this node reserved for another node
    /// that asked for the spawn), or a fresh one.
    pub fn spawn_as(
        self: &Arc<Self>,
        id: Option<u64>,
        entry_id: &Id,
        host_id: &Id,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Pid, ProcessError> {
        self.spawn_handle(id, entry_id, host_id, args, opts)
            .map(|h| h.pid.clone())
    }

    /// [`Node::spawn_as`], returning the new process's handle (its pid text with it).
    pub(crate) fn spawn_handle(
        self: &Arc<Self>,
        id: Option<u64>,
        entry_id: &Id,
        host_id: &Id,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Arc<ProcessHandle>, ProcessError> {
        let entry = self
            .registry_now()
            .get(entry_id)
            .ok_or_else(|| ProcessError::NotFound(format!("entry {entry_id} not found")))?
            .clone();
        self.spawn_entry(id, entry, host_id, args, opts)
    }

    /// [`Node::spawn_handle`] of an entry already looked up (in the current registry).
    pub(crate) fn spawn_entry(
        self: &Arc<Self>,
        id: Option<u64>,
        entry: Arc<Entry>,
        host_id: &Id,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Arc<ProcessHandle>, ProcessError> {
        let entry_id = &entry.id;
        let kind = self.kinds.get(entry.kind.as_str()).ok_or_else(|| {
            ProcessError::Invalid(format!(
                "entry {entry_id} is a {}, not a process entry",
                entry.kind
            ))
        })?;
        let host = self
            .host(host_id)
            .ok_or_else(|| match self.registry_now().get(host_id) {
                Some(e) if !e.spec.is_host() => ProcessError::Invalid(format!(
                    "entry {host_id} is a {}, not a process.host",
                    e.kind
                )),
                _ => ProcessError::NotFound(format!("host {host_id} not found")),
            })?;
        let body = (kind.launch)(self, &entry, &args).map_err(ProcessError::Invalid)?;
        host.reserve()?;

        let pid = Pid {
            node: self.name.clone(),
            id: match id {
                Some(id) => {
                    self.granted_used.fetch_add(1, Ordering::Relaxed);
                    id
                }
                None => self.next_id.fetch_add(1, Ordering::Relaxed),
            },
        };
        let rel = Relations::starting(
            opts.link_to.as_ref(),
            opts.monitor_by.as_ref(),
            opts.on_exit,
        );
        let handle = ProcessHandle::new(pid.clone(), entry, host.clone(), rel, kind.sees_cancel);
        self.procs.insert(pid.id, handle.clone());
        if let Some(l) = &opts.link_to {
            if let Some(parent) = self.process(l) {
                parent.relations.lock().link(&pid);
            }
        }
        if let Some(m) = &opts.monitor_by {
            if let Some(w) = self.process(m) {
                w.relations.lock().watch(&pid);
            }
        }
        let ctx = ProcessContext {
            node: self.clone(),
            me: handle.clone(),
            args,
            context: opts.context,
            start: opts.start,
        };
        host.start(ctx, body);
        Ok(handle)
    }

    /// Gives a running function call of `entry` a pid and a mailbox of its own, as a
    /// process that its caller's task drives (no task of its own, no spawn queue): a
    /// `function.lua` whose code first asks for what only a process has (its pid, its
    /// inbox, `coroutine.spawn`, an event subscription). Its exit is published with
    /// [`Node::publish_exit`] when the call ends.
    pub(crate) fn register_unit(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        host: Arc<Host>,
    ) -> Arc<ProcessHandle> {
        let pid = Pid {
            node: self.name.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let handle = ProcessHandle::new(pid, entry, host, Relations::default(), false);
        self.procs.insert(handle.pid.id, handle.clone());
        handle
    }

    /// Publishes the exit of `pid` exactly once: removes it from the table, frees its
    /// names, tells monitors and links.
    pub(crate) fn publish_exit(&self, pid: &Pid, exit: Exit) {
        let Some((_, handle)) = self.procs.remove(&pid.id) else {
            return;
        };
        handle.close();
        let Some(rel) = handle.relations.lock().end() else {
            return;
        };
        match &exit {
            Exit::Normal(_) => &self.stats.exits_normal,
            Exit::Error(_) => &self.stats.exits_error,
            Exit::Killed(_) => &self.stats.exits_killed,
        }
        .fetch_add(1, Ordering::Relaxed);
        match &exit {
            Exit::Normal(_) => {
                tracing::debug!(pid = %pid, entry = %handle.entry.id, "process exited")
            }
            Exit::Error(ExitError { message: e, .. }) | Exit::Killed(e) => {
                tracing::debug!(pid = %pid, entry = %handle.entry.id, error = %e, "process failed")
            }
        }
        let exit = Arc::new(exit);
        for name in rel.names {
            self.names.remove_if(&name, |_, p| p == pid);
        }
        // relations with processes of other nodes are told through the cluster
        let tell = |node: &str, op: RemoteOp| {
            if let Some(r) = &*self.remote.load() {
                let _ = r.control(node, op);
            }
        };
        for target in rel.watching {
            if self.is_remote(&target) {
                let op = RemoteOp::Demonitor {
                    watcher: pid.clone(),
                    target: target.clone(),
                };
                tell(&target.node, op);
            } else if let Some(t) = self.process(&target) {
                t.relations.lock().remove_monitor(pid);
            }
        }
        // processes that monitor it hear of the exit before any callback (a supervisor)
        // does, so a process told by its supervisor that a child stopped has that
        // child's EXIT already
        let mut callbacks = Vec::new();
        for m in rel.monitors {
            match m {
                Watcher::Process(w) if self.is_remote(&w) => {
                    let node = w.node.clone();
                    let op = RemoteOp::Down {
                        to: w,
                        from: pid.clone(),
                        exit: exit.clone(),
                    };
                    tell(&node, op);
                }
                Watcher::Process(w) => {
                    if let Some(w) = self.process(&w) {
                        w.relations.lock().unwatch(pid);
                        w.signal(Signal::Down {
                            from: pid.clone(),
                            exit: exit.clone(),
                        });
                    }
                }
                Watcher::Callback(cb) => callbacks.push(cb),
            }
        }
        for cb in callbacks {
            cb(pid, &exit);
        }
        for l in rel.links {
            if self.is_remote(&l) {
                let node = l.node.clone();
                let op = RemoteOp::LinkExit {
                    to: l,
                    from: pid.clone(),
                    exit: exit.clone(),
                };
                tell(&node, op);
            } else if let Some(other) = self.process(&l) {
                other.relations.lock().unlink(pid);
                if exit.is_abnormal() {
                    other.signal(Signal::LinkDown {
                        from: pid.clone(),
                        exit: exit.clone(),
                    });
                }
            }
        }
    }
}
