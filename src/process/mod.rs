//! Processes: pids, the process table, mailboxes, monitors, links, names and exits.
//!
//! A process is a lightweight actor: one task on a host worker thread (see [`host`]) plus
//! two mailbox channels (control signals and data messages) whose senders live in the
//! node's process table. This module is language-neutral: what a process runs is a
//! [`Body`] built by a [`Launcher`] for the entry's kind (the Lua host registers one for
//! `process.lua`). It must not know about Lua or WebAssembly.
//!
//! Exits are published exactly once, on every path (return, error, terminate, panic, worker
//! shutdown), by an exit guard owned by the process task: monitors receive an EXIT signal,
//! linked processes a LINK_DOWN signal (abnormal exits only), and registered names are
//! freed.

pub mod host;
pub mod stats;

use crate::registry::{Entry, EntrySpec, Id, Registry};
use crate::value::Value;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;

pub use host::Host;

/// A process id: the node that runs it and a local number. Its text form is `{node|N}`,
/// so processes on other nodes can be addressed later without changing the Lua API.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pid {
    /// Node name.
    pub node: Arc<str>,
    /// Local number, unique on the node.
    pub id: u64,
}

/// Bits of a pid's local number that count processes; the bits above hold the node's
/// incarnation (its creation) when the node is in a cluster, and are 0 otherwise.
pub const CREATION_SHIFT: u32 = 40;

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.creation() {
            0 => write!(f, "{{{}|{}}}", self.node, self.id),
            c => write!(f, "{{{}|{}.{}}}", self.node, c, self.seq()),
        }
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Pid {
    /// Parses the text form `{node|N}` (or `{node|C.N}`: process N of incarnation C of a
    /// clustered node).
    pub fn parse(s: &str) -> Option<Pid> {
        let (node, id) = split_pid(s)?;
        Some(Pid {
            node: Arc::from(node),
            id,
        })
    }

    /// The incarnation of the node that made this pid (0 outside a cluster).
    pub fn creation(&self) -> u64 {
        self.id >> CREATION_SHIFT
    }

    /// The process's number within its node's incarnation.
    pub fn seq(&self) -> u64 {
        self.id & ((1 << CREATION_SHIFT) - 1)
    }
}

/// `{node|N}` / `{node|C.N}` -> (node, local number).
fn split_pid(s: &str) -> Option<(&str, u64)> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    let (node, id) = inner.rsplit_once('|')?;
    if node.is_empty() {
        return None;
    }
    let id = match id.split_once('.') {
        None => id.parse().ok()?,
        Some((c, n)) => {
            let (c, n): (u64, u64) = (c.parse().ok()?, n.parse().ok()?);
            if c == 0 || c >= 1 << (64 - CREATION_SHIFT) || n >= 1 << CREATION_SHIFT {
                return None;
            }
            c << CREATION_SHIFT | n
        }
    };
    Some((node, id))
}

/// The kinds an error can have (`errors.NOT_FOUND == "NOT_FOUND"`...). `FAILED` is
/// warden's kind of a function's own returned error.
pub const ERROR_KINDS: &[&str] = &[
    "UNKNOWN",
    "INVALID",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAVAILABLE",
    "INTERNAL",
    "CANCELED",
    "CONFLICT",
    "TIMEOUT",
    "RATE_LIMITED",
    "FAILED",
];

/// The error kind named `name`, if it is one of [`ERROR_KINDS`].
pub fn error_kind(name: &str) -> Option<&'static str> {
    ERROR_KINDS.iter().copied().find(|k| *k == name)
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    /// Its body returned this value.
    Normal(Value),
    /// Its body raised an error or returned one (`nil, err`).
    Error(ExitError),
    /// It was stopped from outside: terminated, killed by a link, or its host shut down.
    Killed(String),
}

/// The error a process failed with: its message, and its kind (`NOT_FOUND`,
/// `INTERNAL`... as error objects have; `UNKNOWN` for an error that names none, such as a
/// Lua `error("text")`). Reads as its message (`Deref<Target = str>`, `Display`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExitError {
    /// The error's kind.
    pub kind: &'static str,
    /// One line.
    pub message: String,
}

impl ExitError {
    /// An error of `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> ExitError {
        ExitError {
            kind,
            message: message.into(),
        }
    }
}

impl From<String> for ExitError {
    fn from(message: String) -> Self {
        ExitError::new("UNKNOWN", message)
    }
}

impl From<&str> for ExitError {
    fn from(message: &str) -> Self {
        ExitError::new("UNKNOWN", message)
    }
}

impl std::ops::Deref for ExitError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl PartialEq<str> for ExitError {
    fn eq(&self, other: &str) -> bool {
        self.message == other
    }
}

impl PartialEq<&str> for ExitError {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}

impl Exit {
    /// True for every exit except a normal return.
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, Exit::Normal(_))
    }

    /// The error text of an abnormal exit.
    pub fn error(&self) -> Option<&str> {
        match self {
            Exit::Normal(_) => None,
            Exit::Error(e) => Some(e),
            Exit::Killed(e) => Some(e),
        }
    }

    /// The kind of an abnormal exit's error: the error's own, `CANCELED` for a process
    /// stopped from outside.
    pub fn error_kind(&self) -> Option<&'static str> {
        match self {
            Exit::Normal(_) => None,
            Exit::Error(e) => Some(e.kind),
            Exit::Killed(_) => Some("CANCELED"),
        }
    }
}

/// A control signal, delivered before data messages.
#[derive(Debug)]
pub enum Signal {
    /// A monitored process ended.
    Down {
        /// The process that ended.
        from: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// A linked process ended abnormally.
    LinkDown {
        /// The process that ended.
        from: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// A polite request to stop.
    Cancel {
        /// Who asked (None: the runtime).
        from: Option<Pid>,
        /// Why.
        reason: Option<String>,
    },
    /// Stop now (with this reason; None: `terminated`).
    Terminate(Option<String>),
    /// The process's code (its entry or a library it imports) changed in the registry;
    /// the changed ids wait in its handle ([`ProcessHandle::take_outdated`]). Sent only
    /// to a process that opted in ([`ProcessHandle::set_upgradable`]).
    Outdated,
}

/// A data message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Sender (None when sent by the runtime or a CLI).
    pub from: Option<Pid>,
    /// Topic.
    pub topic: String,
    /// Payload values (copied).
    pub payload: Vec<Value>,
}

/// Called once with the exit of a process watched from outside any process (e.g. by the
/// CLI or a supervisor actor).
pub type ExitCallback = Box<dyn FnOnce(&Pid, &Arc<Exit>) + Send>;

enum Watcher {
    Process(Pid),
    Callback(ExitCallback),
}

#[derive(Default)]
struct Relations {
    exited: bool,
    monitors: Vec<Watcher>,
    watching: Vec<Pid>,
    links: Vec<Pid>,
    names: Vec<String>,
}

/// Most data messages a mailbox holds; past it `send` fails with "mailbox is full"
/// (senders get an error, they never block).
pub const MAILBOX_LIMIT: usize = 65_536;

/// Most CANCEL requests that wait for one process; past it `cancel` fails (UNAVAILABLE).
/// The other control signals are bounded by what causes them: one terminate waits at a
/// time (the first one's reason is the exit's), and an EXIT or LINK_DOWN comes once per
/// monitor or link.
pub const CANCEL_LIMIT: usize = 1024;

#[derive(Default)]
struct Queues {
    ctrl: VecDeque<Signal>,
    data: VecDeque<Message>,
    closed: bool,
    /// A terminate waits in `ctrl`.
    terminating: bool,
    /// CANCELs waiting in `ctrl`.
    cancels: usize,
    /// Messages the process's task took from `data` but holds back because the channel
    /// they go to is full (see `lua::Parked`): they count against the mailbox's limit.
    parked: usize,
    /// It asked to hear of changes to its code (Wippy's `upgradable` option).
    upgradable: bool,
    /// The changed ids of a pending [`Signal::Outdated`] (later changes join the same one).
    /// Boxed: one pointer in every mailbox rather than a vector's three words.
    #[allow(clippy::box_collection)]
    outdated: Option<Box<Vec<Id>>>,
}

/// A live process as the rest of the node sees it: its mailbox and relations.
///
/// The mailbox is two queues (control signals, data messages) under one lock plus the
/// waker of the process task; empty queues allocate nothing.
pub struct ProcessHandle {
    /// Its pid.
    pub pid: Pid,
    /// The entry it runs.
    pub entry: Arc<Entry>,
    queues: Mutex<Queues>,
    waker: AtomicWaker,
    /// Set by terminate; a running body checks it at its preemption points.
    pub kill_requested: AtomicBool,
    /// Set once someone asked it to stop with `cancel` (a service that then ends is Exited,
    /// not Stopped).
    pub cancel_requested: AtomicBool,
    /// Set once the process can see a CANCEL (a Lua process that took its events channel;
    /// every WebAssembly process). A supervisor stops a process that cannot at once, as
    /// Erlang's `shutdown` kills a process that does not trap exits.
    pub sees_cancel: AtomicBool,
    /// The host it runs on.
    pub host: Arc<Host>,
    /// When it was spawned.
    pub started: std::time::Instant,
    relations: Mutex<Relations>,
}

impl ProcessHandle {
    /// The handle of a new process `pid` running `entry` on `host`, with the relations it
    /// starts with. Every WebAssembly process sees a CANCEL; a Lua process once it takes
    /// its events channel.
    fn new(pid: Pid, entry: Arc<Entry>, host: Arc<Host>, rel: Relations) -> Arc<ProcessHandle> {
        Arc::new(ProcessHandle {
            pid,
            sees_cancel: AtomicBool::new(matches!(entry.spec, EntrySpec::Wasm(_))),
            entry,
            queues: Mutex::new(Queues::default()),
            waker: AtomicWaker::new(),
            kill_requested: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            host,
            started: std::time::Instant::now(),
            relations: Mutex::new(rel),
        })
    }

    /// Opts in to (or out of) [`Signal::Outdated`].
    pub fn set_upgradable(&self, on: bool) {
        self.queues.lock().upgradable = on;
    }

    /// Whether it opted in to [`Signal::Outdated`].
    pub fn is_upgradable(&self) -> bool {
        self.queues.lock().upgradable
    }

    /// The changed ids of its pending [`Signal::Outdated`], taken (empty when none).
    pub fn take_outdated(&self) -> Vec<Id> {
        self.queues
            .lock()
            .outdated
            .take()
            .map(|b| *b)
            .unwrap_or_default()
    }

    /// Tells it (if it opted in) that `sources` changed: a new [`Signal::Outdated`], or
    /// the ids joined to the one still pending.
    fn outdate(&self, sources: Vec<Id>) {
        let mut q = self.queues.lock();
        if q.closed || !q.upgradable || sources.is_empty() {
            return;
        }
        match &mut q.outdated {
            Some(pending) => {
                for id in sources {
                    if !pending.contains(&id) {
                        pending.push(id);
                    }
                }
            }
            None => {
                q.outdated = Some(Box::new(sources));
                q.ctrl.push_back(Signal::Outdated);
                drop(q);
                self.waker.wake();
            }
        }
    }

    fn signal(&self, s: Signal) -> bool {
        let mut q = self.queues.lock();
        if q.closed {
            return false;
        }
        match &s {
            Signal::Terminate(_) if q.terminating => return true,
            Signal::Terminate(_) => q.terminating = true,
            Signal::Cancel { .. } => q.cancels += 1,
            _ => {}
        }
        q.ctrl.push_back(s);
        drop(q);
        self.waker.wake();
        true
    }

    fn message(&self, m: Message) -> Result<(), ProcessError> {
        let mut q = self.queues.lock();
        if q.closed {
            return Err(ProcessError::NotFound(format!(
                "process not found ({} is not running)",
                self.pid
            )));
        }
        if q.data.len() + q.parked >= MAILBOX_LIMIT {
            return Err(ProcessError::Busy(format!(
                "mailbox of {} is full ({MAILBOX_LIMIT} messages waiting)",
                self.pid
            )));
        }
        q.data.push_back(m);
        drop(q);
        self.waker.wake();
        Ok(())
    }

    /// Registers the waker of the task that owns this mailbox. Call it before popping, so
    /// that a push after the last pop wakes the task.
    pub fn register(&self, w: &Waker) {
        self.waker.register(w);
    }

    /// The next control signal, if any.
    pub fn pop_signal(&self) -> Option<Signal> {
        let mut q = self.queues.lock();
        let s = q.ctrl.pop_front();
        if matches!(s, Some(Signal::Cancel { .. })) {
            q.cancels -= 1;
        }
        s
    }

    /// Whether another CANCEL may wait for this process (fewer than [`CANCEL_LIMIT`] do).
    fn cancel_has_room(&self) -> bool {
        self.queues.lock().cancels < CANCEL_LIMIT
    }

    /// The next data message, if any.
    pub fn pop_message(&self) -> Option<Message> {
        self.queues.lock().data.pop_front()
    }

    /// The reason of a pending terminate (`terminated` when it gave none): the exit of a
    /// process stopped at a preemption point rather than at its signal.
    pub fn terminate_reason(&self) -> String {
        self.queues
            .lock()
            .ctrl
            .iter()
            .find_map(|s| match s {
                Signal::Terminate(r) => Some(r.clone()),
                _ => None,
            })
            .flatten()
            .unwrap_or_else(|| "terminated".into())
    }

    /// Its links, the number of its monitors (watchers of it), and its names.
    pub fn relations(&self) -> (Vec<Pid>, usize, Vec<String>) {
        let r = self.relations.lock();
        (r.links.clone(), r.monitors.len(), r.names.clone())
    }

    /// Messages waiting in the mailbox (with those its task holds back).
    pub fn queued_messages(&self) -> usize {
        let q = self.queues.lock();
        q.data.len() + q.parked
    }

    /// Counts `n` more (or, negative, fewer) messages held back by the process's task
    /// (taken from the mailbox, still waiting for room in their channel).
    pub fn add_parked(&self, n: isize) {
        let mut q = self.queues.lock();
        q.parked = q.parked.saturating_add_signed(n);
    }
}

/// What a process body needs to know about itself; its mailbox is `me`.
pub struct ProcessContext {
    /// The node the process runs on.
    pub node: Arc<Node>,
    /// Its own handle (pid, mailbox, kill flag).
    pub me: Arc<ProcessHandle>,
    /// The entry it runs.
    pub entry: Arc<Entry>,
    /// The host it runs on.
    pub host: Arc<Host>,
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
pub type Launcher = fn(&Arc<Node>, &Arc<Entry>, &[Value]) -> Result<Body, String>;

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

/// A node: the process table, the names, the hosts and the current registry.
pub struct Node {
    /// Node name (the first part of every pid).
    pub name: Arc<str>,
    next_id: AtomicU64,
    /// Live processes by the local part of their pid (Fx hashing: a lookup per message,
    /// and pids are the runtime's own numbers, not input to defend against).
    procs: DashMap<u64, Arc<ProcessHandle>, rustc_hash::FxBuildHasher>,
    names: DashMap<String, Pid>,
    hosts: DashMap<Id, Arc<Host>>,
    registry: ArcSwap<Registry>,
    launchers: HashMap<&'static str, Launcher>,
    /// Function pools, by id.
    pub functions: crate::functions::FunctionTable,
    exts: DashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
    /// Spawns, exits and messages counted (the admin endpoint's metrics).
    pub stats: stats::Stats,
    /// Where messages to pids of other nodes go (set when the node joins a cluster).
    remote: arc_swap::ArcSwapOption<Box<dyn Remote>>,
    /// Pid numbers handed to other nodes for their spawns here, and those used so far (so
    /// [`Node::spawned`] counts spawns, not numbers).
    granted: AtomicU64,
    granted_used: AtomicU64,
    /// Code with no actor or no scope is refused what a policy guards (Wippy's
    /// `security.strict_mode`); the language hosts read it before their checks.
    pub strict_security: std::sync::atomic::AtomicBool,
}

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

/// The exit a watcher of a process of a lost node sees (Erlang's `noconnection`).
pub fn noconnection() -> Arc<Exit> {
    Arc::new(Exit::Error(ExitError::new("UNAVAILABLE", "noconnection")))
}

fn noproc() -> Arc<Exit> {
    Arc::new(Exit::Error(ExitError::new("NOT_FOUND", "no such process")))
}

impl Node {
    /// A node with a registry and the launchers for the process kinds it can run.
    pub fn new(
        name: &str,
        registry: Arc<Registry>,
        launchers: HashMap<&'static str, Launcher>,
    ) -> Arc<Node> {
        Arc::new(Node {
            name: Arc::from(name),
            next_id: AtomicU64::new(1),
            procs: DashMap::with_hasher(rustc_hash::FxBuildHasher),
            names: DashMap::new(),
            hosts: DashMap::new(),
            registry: ArcSwap::new(registry),
            launchers,
            functions: Default::default(),
            exts: DashMap::new(),
            stats: stats::Stats::default(),
            remote: arc_swap::ArcSwapOption::empty(),
            granted: AtomicU64::new(0),
            granted_used: AtomicU64::new(0),
            strict_security: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Attaches a system of a higher layer (e.g. supervision) that language hosts reach
    /// through the node without this module knowing its type.
    pub fn set_ext<T: std::any::Any + Send + Sync>(&self, v: Arc<T>) {
        self.exts.insert(std::any::TypeId::of::<T>(), v);
    }

    /// The attached system of type `T`.
    pub fn ext<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.exts
            .get(&std::any::TypeId::of::<T>())
            .and_then(|a| a.value().clone().downcast::<T>().ok())
    }

    /// The attached system of type `T`, attached (as `T::default()`) on first use.
    pub fn ext_or_default<T: std::any::Any + Send + Sync + Default>(&self) -> Arc<T> {
        self.exts
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .value()
            .clone()
            .downcast::<T>()
            .unwrap_or_else(|_| Arc::new(T::default()))
    }

    /// Detaches every attached system (they may hold the node: this breaks the cycle).
    pub fn clear_exts(&self) {
        self.exts.clear();
    }

    /// The current registry snapshot.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
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

    /// The route to `pid`'s node, when `pid` belongs to another node and this node is in a
    /// cluster.
    fn route(&self, pid: &Pid) -> Option<Arc<Box<dyn Remote>>> {
        if self.is_remote(pid) {
            self.remote.load_full()
        } else {
            None
        }
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
        p.message(Message {
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
            if wr.watching.contains(target) {
                return;
            }
            match r.control(&target.node, op) {
                Ok(()) => wr.watching.push(target.clone()),
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
            let mut rel = t.relations.lock();
            if !rel.exited {
                let already = rel
                    .monitors
                    .iter()
                    .any(|m| matches!(m, Watcher::Process(p) if p == watcher));
                if !already {
                    rel.monitors.push(Watcher::Process(watcher.clone()));
                }
                drop(rel);
                if let Some(w) = self.process(watcher) {
                    let mut wr = w.relations.lock();
                    if !wr.watching.contains(target) {
                        wr.watching.push(target.clone());
                    }
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
            t.relations
                .lock()
                .monitors
                .retain(|m| !matches!(m, Watcher::Process(p) if p == watcher));
        }
        if let Some(w) = self.process(watcher) {
            w.relations.lock().watching.retain(|p| p != target);
        }
    }

    /// Calls `cb` when `target` exits (at once with "no such process" if it is not running).
    pub fn watch(&self, target: &Pid, cb: ExitCallback) {
        if let Some(t) = self.process(target) {
            let mut rel = t.relations.lock();
            if !rel.exited {
                rel.monitors.push(Watcher::Callback(cb));
                return;
            }
        }
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
            if !rel.links.contains(b) {
                let op = RemoteOp::Link {
                    from: a.clone(),
                    to: b.clone(),
                };
                r.control(&b.node, op)?;
                rel.links.push(b.clone());
            }
            return Ok(());
        }
        let pb = self.process(b).ok_or_else(|| {
            ProcessError::NotFound(format!("process not found ({b} is not running)"))
        })?;
        {
            let mut rel = pb.relations.lock();
            if rel.exited {
                return Err(ProcessError::NotFound(format!(
                    "process not found ({b} is not running)"
                )));
            }
            if !rel.links.contains(a) {
                rel.links.push(a.clone());
            }
        }
        if let Some(pa) = self.process(a) {
            let mut rel = pa.relations.lock();
            if !rel.links.contains(b) {
                rel.links.push(b.clone());
            }
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
                p.relations.lock().links.retain(|l| l != y);
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
        if rel.exited {
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
        rel.names.push(name.to_string());
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
                    p.relations.lock().names.retain(|n| n != name);
                }
                true
            }
            None => false,
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
                    parent.relations.lock().links.push(pid.clone());
                }
            }
            if let Some(m) = &opts.monitor_by {
                if let Some(w) = self.process(m) {
                    w.relations.lock().watching.push(pid.clone());
                }
            }
            recorded = Some(pid.clone());
        });
        if let (Err(_), Some(pid)) = (&spawned, &recorded) {
            // the request never left: undo
            if let Some(parent) = opts.link_to.as_ref().and_then(|l| self.process(l)) {
                parent.relations.lock().links.retain(|p| p != pid);
            }
            if let Some(w) = opts.monitor_by.as_ref().and_then(|m| self.process(m)) {
                w.relations.lock().watching.retain(|p| p != pid);
            }
        }
        spawned
    }

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
        let registry = self.registry();
        let entry = registry
            .get(entry_id)
            .ok_or_else(|| ProcessError::NotFound(format!("entry {entry_id} not found")))?
            .clone();
        let launcher = self.launchers.get(entry.kind.as_str()).ok_or_else(|| {
            ProcessError::Invalid(format!(
                "entry {entry_id} is a {}, not a process entry",
                entry.kind
            ))
        })?;
        let host = self
            .host(host_id)
            .ok_or_else(|| match registry.get(host_id) {
                Some(e)
                    if !matches!(e.spec, EntrySpec::ProcessHost(_) | EntrySpec::TerminalHost) =>
                {
                    ProcessError::Invalid(format!(
                        "entry {host_id} is a {}, not a process.host",
                        e.kind
                    ))
                }
                _ => ProcessError::NotFound(format!("host {host_id} not found")),
            })?;
        let body = launcher(self, &entry, &args).map_err(ProcessError::Invalid)?;
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
        let mut rel = Relations::default();
        if let Some(l) = &opts.link_to {
            rel.links.push(l.clone());
        }
        if let Some(m) = &opts.monitor_by {
            rel.monitors.push(Watcher::Process(m.clone()));
        }
        if let Some(cb) = opts.on_exit {
            rel.monitors.push(Watcher::Callback(cb));
        }
        let handle = ProcessHandle::new(pid.clone(), entry.clone(), host.clone(), rel);
        self.procs.insert(pid.id, handle.clone());
        if let Some(l) = &opts.link_to {
            if let Some(parent) = self.process(l) {
                parent.relations.lock().links.push(pid.clone());
            }
        }
        if let Some(m) = &opts.monitor_by {
            if let Some(w) = self.process(m) {
                w.relations.lock().watching.push(pid.clone());
            }
        }
        let ctx = ProcessContext {
            node: self.clone(),
            me: handle,
            entry,
            host: host.clone(),
            args,
            context: opts.context,
            start: opts.start,
        };
        host.start(ctx, body);
        Ok(pid)
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
        let handle = ProcessHandle::new(pid, entry, host, Relations::default());
        self.procs.insert(handle.pid.id, handle.clone());
        handle
    }

    /// Publishes the exit of `pid` exactly once: removes it from the table, frees its
    /// names, tells monitors and links.
    pub(crate) fn publish_exit(&self, pid: &Pid, exit: Exit) {
        let Some((_, handle)) = self.procs.remove(&pid.id) else {
            return;
        };
        {
            let mut q = handle.queues.lock();
            q.closed = true;
            q.ctrl.clear();
            q.data.clear();
        }
        let rel = {
            let mut r = handle.relations.lock();
            if r.exited {
                return;
            }
            r.exited = true;
            std::mem::take(&mut *r)
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
                t.relations
                    .lock()
                    .monitors
                    .retain(|m| !matches!(m, Watcher::Process(p) if p == pid));
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
                        w.relations.lock().watching.retain(|p| p != pid);
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
                other.relations.lock().links.retain(|p| p != pid);
                if exit.is_abnormal() {
                    other.signal(Signal::LinkDown {
                        from: pid.clone(),
                        exit: exit.clone(),
                    });
                }
            }
        }
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
                    let mut rel = t.relations.lock();
                    if !rel.exited {
                        if !rel
                            .monitors
                            .iter()
                            .any(|m| matches!(m, Watcher::Process(p) if *p == watcher))
                        {
                            rel.monitors.push(Watcher::Process(watcher));
                        }
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
                    t.relations
                        .lock()
                        .monitors
                        .retain(|m| !matches!(m, Watcher::Process(p) if *p == watcher));
                }
            }
            RemoteOp::Link { from, to } => {
                if let Some(t) = self.process(&to) {
                    let mut rel = t.relations.lock();
                    if !rel.exited {
                        if !rel.links.contains(&from) {
                            rel.links.push(from);
                        }
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
                    t.relations.lock().links.retain(|l| *l != from);
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
                    let mut rel = w.relations.lock();
                    let before = rel.watching.len();
                    rel.watching.retain(|p| *p != from);
                    if rel.watching.len() < before {
                        drop(rel);
                        w.signal(Signal::Down { from, exit });
                    }
                }
            }
            RemoteOp::LinkExit { to, from, exit } => {
                if let Some(p) = self.process(&to) {
                    let mut rel = p.relations.lock();
                    let before = rel.links.len();
                    rel.links.retain(|l| *l != from);
                    if rel.links.len() < before && exit.is_abnormal() {
                        drop(rel);
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
            let mut rel = p.relations.lock();
            if rel.exited {
                continue;
            }
            let mut signals = Vec::new();
            rel.watching.retain(|t| {
                if lost(t) {
                    signals.push(Signal::Down {
                        from: t.clone(),
                        exit: exit.clone(),
                    });
                    false
                } else {
                    true
                }
            });
            rel.links.retain(|l| {
                if lost(l) {
                    signals.push(Signal::LinkDown {
                        from: l.clone(),
                        exit: exit.clone(),
                    });
                    false
                } else {
                    true
                }
            });
            rel.monitors
                .retain(|m| !matches!(m, Watcher::Process(w) if lost(w)));
            drop(rel);
            for s in signals {
                p.signal(s);
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
