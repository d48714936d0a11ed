//! OTP supervision trees (`supervisor` entries) as ractor actors.
//!
//! A tree starts its children one at a time, in order, each only after the previous one
//! is started (OTP: its `init` returned): a process child when it first waits (receive,
//! sleep, a call...) or, declared `start: ack`, when it calls `supervisor.started()`; a
//! nested tree when all its own children are started. A child may answer `ignore`
//! (`supervisor.ignore()`): it is not running and not restarted. A child that fails or
//! does not start within its `start_timeout` fails the tree's start: the children already
//! started are stopped, last first, through their `shutdown`, and the start returns the
//! error.
//!
//! Process children are watched through the runtime's exit callbacks (the equivalent of
//! monitors); nested supervisors are ractor actors linked to their parent, so a nested
//! tree that gives up fails into its parent as a supervision event. On a child's exit the
//! tree applies the child's restart type (permanent: always; transient: after an abnormal
//! exit; temporary: never, and the child is forgotten) and its strategy (one_for_one,
//! one_for_all, rest_for_one, simple_one_for_one), counting restarts against `intensity`:
//! more than `max_restarts` within `period` makes the tree stop all its children and fail
//! to its own parent. A significant child ending by itself stops the tree with reason
//! `shutdown` under `auto_shutdown: any_significant`, or when it was the last significant
//! one under `all_significant`.
//!
//! Children stopped by a strategy (the siblings in one_for_all / rest_for_one) and by the
//! tree's own stop get CANCEL and their `shutdown` time before they are terminated, as
//! OTP's `exit(Child, shutdown)`; a process that never took its events channel cannot see
//! a CANCEL and is terminated at once, as Erlang's shutdown kills a process that does not
//! trap exits. The children of a simple_one_for_one tree are stopped all at once.
//!
//! The runtime API of OTP's `supervisor` module (`start_child`, `terminate_child`,
//! `restart_child`, `delete_child`, `which_children`, `count_children`, `get_childspec`)
//! is a set of messages answered with OTP's results and errors ([`ChildError`]).

use super::spec::{
    AutoShutdown, ChildKind, ChildSpec, RestartType, StartMode, Strategy, TreeSpec, INFINITY,
};
use super::Supervision;
use crate::process::{Exit, Pid, SpawnOptions, StartNotice, Started};
use crate::registry::Id;
use crate::value::Value;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What a tree tells about one child (OTP's `which_children`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChildInfo {
    /// The child id in the tree (the template's id for simple_one_for_one children).
    pub id: String,
    /// `process` or `supervisor`.
    pub kind: &'static str,
    /// The process or supervisor entry it runs.
    pub entry: String,
    /// Pid of a running process child.
    pub pid: Option<String>,
    /// Whether it runs now.
    pub running: bool,
    /// Whether a restart of it failed and is tried again (OTP's `restarting`).
    pub restarting: bool,
    /// `permanent`, `transient` or `temporary`.
    pub restart: &'static str,
    /// Times it was restarted.
    pub restarts: u64,
}

/// OTP's `count_children`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Child specs (for simple_one_for_one: children).
    pub specs: usize,
    /// Children running now.
    pub active: usize,
    /// Children that are supervisors, running or not.
    pub supervisors: usize,
    /// Children that are workers (processes), running or not.
    pub workers: usize,
}

/// How much of a tree's intensity is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts within the last `period`.
    pub used: u32,
    /// `max_restarts`.
    pub max: u32,
    /// `period`.
    pub period: Duration,
}

/// What `start_child` starts.
pub enum NewChild {
    /// A new child spec (every strategy but simple_one_for_one).
    Spec(ChildSpec),
    /// Arguments appended to the template's (simple_one_for_one).
    Args(Vec<Value>),
}

/// Why a runtime request on a tree's children failed, with OTP's reasons.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ChildError {
    /// `already_started`: a child with this id runs (its pid, if a process).
    #[error("child {0} is already started{as_pid}", as_pid = .1.as_deref().map(|p| format!(" as {p}")).unwrap_or_default())]
    AlreadyStarted(String, Option<String>),
    /// `already_present`: a child spec with this id exists, not running.
    #[error("child {0} is already present (not running; restart_child or delete_child it)")]
    AlreadyPresent(String),
    /// `running`: the child runs (delete or restart needs it stopped).
    #[error("child {0} is running (terminate_child it first)")]
    Running(String),
    /// `restarting`: a restart of the child is being tried again.
    #[error("child {0} is restarting")]
    Restarting(String),
    /// `not_found`: no such child.
    #[error("no child {0}")]
    NotFound(String),
    /// `simple_one_for_one`: not possible on a simple_one_for_one tree.
    #[error("not possible on a simple_one_for_one supervisor")]
    SimpleOneForOne,
    /// The child failed to start (OTP's `{error, Reason}`).
    #[error("{0}")]
    Start(String),
    /// A bad request.
    #[error("{0}")]
    Invalid(String),
}

impl ChildError {
    /// OTP's reason atom.
    pub fn reason(&self) -> &'static str {
        match self {
            ChildError::AlreadyStarted(..) => "already_started",
            ChildError::AlreadyPresent(_) => "already_present",
            ChildError::Running(_) => "running",
            ChildError::Restarting(_) => "restarting",
            ChildError::NotFound(_) => "not_found",
            ChildError::SimpleOneForOne => "simple_one_for_one",
            ChildError::Start(_) => "start_failed",
            ChildError::Invalid(_) => "invalid",
        }
    }

    /// The error kind as the Lua API reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            ChildError::AlreadyStarted(..) | ChildError::AlreadyPresent(_) => "ALREADY_EXISTS",
            ChildError::Running(_) | ChildError::Restarting(_) => "CONFLICT",
            ChildError::NotFound(_) => "NOT_FOUND",
            ChildError::SimpleOneForOne | ChildError::Invalid(_) => "INVALID",
            ChildError::Start(_) => "FAILED",
        }
    }
}

/// The answer to `start_child` / `restart_child`: the pid of the child started (None
/// when it answered `ignore`, or for a nested supervisor).
pub type StartResult = Result<Option<String>, ChildError>;

/// Messages of a tree actor.
pub enum TreeMsg {
    /// A process child ended.
    ChildExited {
        /// Its key.
        key: u64,
        /// Its pid.
        pid: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// A child could not be restarted: try again (against the intensity).
    StartFailed {
        /// Its key.
        key: u64,
        /// Why.
        error: String,
    },
    /// The children, like OTP's which_children.
    Children(RpcReplyPort<Vec<ChildInfo>>),
    /// OTP's count_children.
    Count(RpcReplyPort<Counts>),
    /// How much of its intensity is used: restarts within the last period.
    Intensity(RpcReplyPort<Intensity>),
    /// OTP's start_child.
    StartChild(NewChild, RpcReplyPort<StartResult>),
    /// OTP's terminate_child, by child id (by pid on a simple_one_for_one tree).
    TerminateChild(String, RpcReplyPort<Result<(), ChildError>>),
    /// OTP's restart_child.
    RestartChild(String, RpcReplyPort<StartResult>),
    /// OTP's delete_child.
    DeleteChild(String, RpcReplyPort<Result<(), ChildError>>),
    /// OTP's get_childspec, by id or pid.
    GetChildspec(String, RpcReplyPort<Result<Arc<ChildSpec>, ChildError>>),
    /// The registry changed the code of these entries (process or supervisor ids): each
    /// running child that runs one of them, unless it opts out (`restart_on_change:
    /// false`), is stopped through its `shutdown` and started again on the new code, one
    /// at a time, in start order; this is not a restart against the intensity. Replies
    /// with the ids of the children restarted.
    Upgrade(Arc<BTreeSet<Id>>, RpcReplyPort<Vec<String>>),
    /// Kill the tree, like `exit(Sup, kill)` in OTP: its children are terminated at once,
    /// then the tree fails, so its parent restarts it (answered once the children ended).
    Kill(RpcReplyPort<()>),
}

/// Arguments of a tree actor.
pub struct TreeArgs {
    /// The tree.
    pub spec: Arc<TreeSpec>,
    /// The supervision system.
    pub sup: Weak<Supervision>,
    /// How long its own stop may take (its `shutdown` as a child, a service's
    /// `stop_timeout`; [`INFINITY`]: as long as its children's shutdowns take): past it,
    /// the children still running are terminated, as killing an OTP supervisor takes its
    /// linked children down.
    pub shutdown: Duration,
}

enum Running {
    Process(Pid),
    Tree(ActorRef<TreeMsg>),
}

struct Child {
    /// Unique in this tree instance (exit callbacks name children by it).
    key: u64,
    spec: Arc<ChildSpec>,
    /// Spawn arguments (a simple_one_for_one child's: the template's and its own).
    args: Vec<Value>,
    running: Option<Running>,
    restarts: u64,
    restarting: bool,
    /// The start notice of a child restarted without waiting for it (the last of a
    /// restart group: nothing after it depends on its start); read when it exits, so an
    /// `ignore` is still honoured.
    unconfirmed: Option<tokio::sync::oneshot::Receiver<Started>>,
}

impl Child {
    fn pid(&self) -> Option<String> {
        match &self.running {
            Some(Running::Process(p)) => Some(p.to_string()),
            _ => None,
        }
    }
}

/// How a start ended.
enum Outcome {
    Running(Running),
    Ignored,
    /// Spawned; not waited for (see `Child::unconfirmed`).
    Unconfirmed(Running, tokio::sync::oneshot::Receiver<Started>),
}

/// State of a tree actor.
pub struct TreeState {
    spec: Arc<TreeSpec>,
    sup: Weak<Supervision>,
    /// See [`TreeArgs::shutdown`].
    shutdown: Duration,
    children: Vec<Child>,
    next_key: u64,
    restarts: VecDeque<Instant>,
}

/// The tree actor.
pub struct TreeActor;

/// Waits until `pid` ended, at most `within` ([`INFINITY`]: as long as it takes); the
/// exit, or None at the deadline.
async fn wait_exit(sup: &Supervision, pid: &Pid, within: Duration) -> Option<Arc<Exit>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    sup.node.watch(
        pid,
        Box::new(move |_, exit| {
            let _ = tx.send(exit.clone());
        }),
    );
    if within == INFINITY {
        return rx.await.ok();
    }
    tokio::time::timeout(within, rx).await.ok()?.ok()
}

/// Stops a running child and waits for it to end. `graceful`: CANCEL first and wait its
/// `shutdown` time; otherwise terminate at once.
async fn stop_running(sup: &Supervision, running: Running, shutdown: Duration, graceful: bool) {
    match running {
        Running::Process(pid) => {
            // OTP: exit(shutdown), wait `shutdown`, then kill; a process that cannot see a
            // CANCEL is like one not trapping exits, which shutdown kills at once
            let sees_cancel = sup
                .node
                .process(&pid)
                .is_some_and(|h| h.sees_cancel.load(std::sync::atomic::Ordering::Relaxed));
            if graceful && !shutdown.is_zero() && sees_cancel {
                let _ = sup
                    .node
                    .cancel(None, &pid, Some("supervisor shutdown".into()));
                if wait_exit(sup, &pid, shutdown).await.is_some() {
                    return;
                }
            }
            if sup.node.terminate(&pid).is_ok() {
                wait_exit(sup, &pid, Duration::from_secs(5)).await;
            }
        }
        Running::Tree(t) => {
            // a nested tree stops its own children through their shutdowns, within its
            // own `shutdown` (given at its start), terminating what is left after it
            if graceful && !shutdown.is_zero() {
                let _ = t
                    .stop_and_wait(Some("supervisor shutdown".into()), None)
                    .await;
            } else {
                // brutal_kill: its children are terminated at once, then it ends
                let _ = ractor::call!(t, TreeMsg::Kill);
                let _ = t.wait(Some(Duration::from_secs(5))).await;
            }
        }
    }
}

impl TreeState {
    /// Notes what happened to child `i` in the trees' log (when a test keeps one).
    fn note(&self, i: usize, event: &'static str, reason: Option<&str>) {
        if let (Some(sup), Some(c)) = (self.sup.upgrade(), self.children.get(i)) {
            sup.record(|| super::TreeEvent {
                tree: self.spec.id.clone(),
                child: c.spec.id.clone(),
                event,
                pid: c.pid(),
                reason: reason.map(str::to_string),
            });
        }
    }

    fn position(&self, key: u64) -> Option<usize> {
        self.children.iter().position(|c| c.key == key)
    }

    fn sofo(&self) -> bool {
        self.spec.strategy == Strategy::SimpleOneForOne
    }

    /// The child a request names: by id, or on a simple_one_for_one tree by pid.
    fn find(&self, name: &str) -> Option<usize> {
        if self.sofo() {
            return self
                .children
                .iter()
                .position(|c| c.pid().as_deref() == Some(name));
        }
        self.children.iter().position(|c| c.spec.id == name)
    }

    fn new_child(&mut self, spec: Arc<ChildSpec>, args: Vec<Value>) -> Child {
        self.next_key += 1;
        Child {
            key: self.next_key,
            spec,
            args,
            running: None,
            restarts: 0,
            restarting: false,
            unconfirmed: None,
        }
    }

    /// Starts a child and waits until it is started (or ignored, or failed); with `wait`
    /// false a process child is only spawned.
    async fn start(
        &self,
        myself: &ActorRef<TreeMsg>,
        key: u64,
        spec: &ChildSpec,
        args: &[Value],
        wait: bool,
    ) -> Result<Outcome, String> {
        let sup = self.sup.upgrade().ok_or("runtime stopped")?;
        match &spec.kind {
            ChildKind::Process(entry) => {
                let host = spec
                    .host
                    .clone()
                    .unwrap_or_else(|| sup.default_host.clone());
                let me = myself.clone();
                let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
                let (notice, started) = StartNotice::new(spec.start == StartMode::Ack);
                let opts = SpawnOptions {
                    on_exit: Some(Box::new(move |pid: &Pid, exit: &Arc<Exit>| {
                        let _ = exit_tx.send(exit.clone());
                        let _ = me.send_message(TreeMsg::ChildExited {
                            key,
                            pid: pid.clone(),
                            exit: exit.clone(),
                        });
                    })),
                    start: Some(notice),
                    ..Default::default()
                };
                let pid = sup
                    .node
                    .spawn(entry, &host, args.to_vec(), opts)
                    .map_err(|e| format!("child {}: {e}", spec.id))?;
                if !wait {
                    return Ok(Outcome::Unconfirmed(Running::Process(pid), started));
                }
                match tokio::time::timeout(spec.start_timeout, started).await {
                    Ok(Ok(Started::Running)) => Ok(Outcome::Running(Running::Process(pid))),
                    Ok(Ok(Started::Ignore)) => Ok(Outcome::Ignored),
                    // it ended before it was started: a failure is a failed start; a
                    // normal end is a start that was over, and its exit is handled next
                    Ok(Err(_)) => match exit_rx.await {
                        Ok(exit) if exit.is_abnormal() => Err(format!(
                            "child {} failed to start: {}",
                            spec.id,
                            exit.error().unwrap_or("unknown error")
                        )),
                        _ => Ok(Outcome::Running(Running::Process(pid))),
                    },
                    Err(_) => {
                        let _ = sup.node.terminate(&pid);
                        wait_exit(&sup, &pid, Duration::from_secs(5)).await;
                        Err(format!(
                            "child {} did not start within {} (start_timeout)",
                            spec.id,
                            humantime::format_duration(spec.start_timeout)
                        ))
                    }
                }
            }
            ChildKind::Tree(id) => {
                let tree = sup
                    .specs()
                    .trees
                    .get(id)
                    .cloned()
                    .ok_or_else(|| format!("child {}: supervisor {id} not found", spec.id))?;
                let args = TreeArgs {
                    spec: tree,
                    sup: self.sup.clone(),
                    shutdown: spec.shutdown,
                };
                let (r, _) = Actor::spawn_linked(None, TreeActor, args, myself.get_cell())
                    .await
                    .map_err(|e| {
                        format!(
                            "child {} failed to start: {}",
                            spec.id,
                            super::spawn_error(&e)
                        )
                    })?;
                Ok(Outcome::Running(Running::Tree(r)))
            }
        }
    }

    /// Starts child `i` (declared or known): Ok(true) when it runs, Ok(false) when it
    /// answered `ignore` (a temporary child is then forgotten: the position is gone).
    /// `wait`: until it is started (false: see `Child::unconfirmed`).
    async fn start_at(
        &mut self,
        myself: &ActorRef<TreeMsg>,
        i: usize,
        wait: bool,
        event: &'static str,
    ) -> Result<bool, String> {
        let c = &self.children[i];
        let (key, spec, args) = (c.key, c.spec.clone(), c.args.clone());
        let (running, unconfirmed) = match self.start(myself, key, &spec, &args, wait).await? {
            Outcome::Running(r) => (r, None),
            Outcome::Unconfirmed(r, rx) => (r, Some(rx)),
            Outcome::Ignored => {
                self.ignored(i);
                return Ok(false);
            }
        };
        let c = &mut self.children[i];
        c.running = Some(running);
        c.unconfirmed = unconfirmed;
        c.restarting = false;
        self.note(i, event, None);
        Ok(true)
    }

    /// Child `i` answered `ignore`: not running, not restarted; a temporary child (or one
    /// of a simple_one_for_one tree) is forgotten.
    fn ignored(&mut self, i: usize) {
        tracing::debug!(tree = %self.spec.id, child = %self.children[i].spec.id, "child answered ignore");
        if self.children[i].spec.restart == RestartType::Temporary || self.sofo() {
            self.children.remove(i);
        } else {
            self.children[i].running = None;
            self.children[i].restarting = false;
        }
    }

    /// Stops child `i` and waits for it to end.
    async fn stop_at(&mut self, i: usize, graceful: bool) {
        let Some(sup) = self.sup.upgrade() else {
            return;
        };
        if self.children[i].running.is_some() {
            self.note(i, "stop", None);
        }
        if let Some(r) = self.children[i].running.take() {
            stop_running(&sup, r, self.children[i].spec.shutdown, graceful).await;
        }
    }

    /// Stops every child: last started first, or all at once on a simple_one_for_one tree.
    /// A graceful stop gives each child its `shutdown`, but no more than what is left of
    /// the tree's own (`TreeArgs::shutdown`).
    async fn stop_all(&mut self, graceful: bool) {
        let Some(sup) = self.sup.upgrade() else {
            return;
        };
        let deadline = (self.shutdown != INFINITY).then(|| Instant::now() + self.shutdown);
        let within = |own: Duration| match deadline {
            Some(d) => own.min(d.saturating_duration_since(Instant::now())),
            None => own,
        };
        for i in 0..self.children.len() {
            if self.children[i].running.is_some() {
                self.note(i, "stop", None);
            }
        }
        if self.sofo() {
            let stops: Vec<_> = self
                .children
                .iter_mut()
                .filter_map(|c| Some((c.running.take()?, within(c.spec.shutdown))))
                .map(|(r, shutdown)| stop_running(&sup, r, shutdown, graceful))
                .collect();
            futures::future::join_all(stops).await;
            return;
        }
        for i in (0..self.children.len()).rev() {
            if let Some(r) = self.children[i].running.take() {
                let shutdown = within(self.children[i].spec.shutdown);
                stop_running(&sup, r, shutdown, graceful).await;
            }
        }
    }

    /// Counts a restart against the intensity; the error when it is over.
    fn count_restart(&mut self, child: &str, reason: &str) -> Result<(), String> {
        let now = Instant::now();
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.spec.period)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() as u32 > self.spec.max_restarts {
            return Err(format!(
                "supervisor {}: more than {} restarts within {}; last: child {child} ({reason})",
                self.spec.id,
                self.spec.max_restarts,
                humantime::format_duration(self.spec.period),
            ));
        }
        Ok(())
    }

    /// Child `i` ended by itself; `abnormal` tells how.
    async fn child_down(
        &mut self,
        myself: &ActorRef<TreeMsg>,
        i: usize,
        abnormal: bool,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let spec = self.children[i].spec.clone();
        let restart = match spec.restart {
            RestartType::Permanent => true,
            RestartType::Transient => abnormal,
            RestartType::Temporary => false,
        };
        tracing::debug!(tree = %self.spec.id, child = %spec.id, abnormal, restart, reason, "child ended");
        if !restart {
            self.children[i].restarting = false;
            // OTP forgets a temporary child, and any child of a simple_one_for_one tree
            if spec.restart == RestartType::Temporary || self.sofo() {
                self.children.remove(i);
            }
            if spec.significant && self.auto_shutdown_due() {
                tracing::info!(tree = %self.spec.id, child = %spec.id, "significant child ended: shutting down the supervisor (auto_shutdown)");
                self.stop_all(true).await;
                myself.stop(Some("shutdown".into()));
            }
            return Ok(());
        }
        if let Err(msg) = self.count_restart(&spec.id, reason) {
            tracing::error!("{msg}; shutting down its children");
            self.stop_all(true).await;
            return Err(msg.into());
        }
        let n = self.children.len();
        let group: Vec<u64> = match self.spec.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => vec![self.children[i].key],
            Strategy::OneForAll => self.children.iter().map(|c| c.key).collect(),
            Strategy::RestForOne => self.children[i..n].iter().map(|c| c.key).collect(),
        };
        // the siblings stop through their shutdown, last started first (OTP); temporary
        // ones are forgotten, the others (running or not) start again in order, as OTP
        // restarts every child of the group
        for &k in group.iter().rev() {
            let Some(j) = self.position(k) else { continue };
            if j != i {
                self.stop_at(j, true).await;
                if self.children[j].spec.restart == RestartType::Temporary {
                    self.children.remove(j);
                }
            }
        }
        let sup = self.sup.upgrade();
        let mut failed: Option<(u64, String)> = None;
        let last = group.last().copied();
        for k in group {
            let Some(j) = self.position(k) else { continue };
            if failed.is_some() {
                // a start failed: the rest of the group waits for the retry
                self.children[j].restarting = true;
                continue;
            }
            self.children[j].restarts += 1;
            if let Some(sup) = &sup {
                sup.count_restart();
            }
            // each child of the group is started before the next; nothing waits on the
            // last one (a failure as it starts comes back as its exit, counted the same)
            if let Err(e) = self.start_at(myself, j, Some(k) != last, "restart").await {
                tracing::warn!(tree = %self.spec.id, "{e}; trying again");
                self.children[j].restarting = true;
                failed = Some((k, e));
            }
        }
        if let Some((key, error)) = failed {
            let _ = myself.send_message(TreeMsg::StartFailed { key, error });
        }
        Ok(())
    }

    /// Whether the significant children that ended call for the tree's shutdown.
    fn auto_shutdown_due(&self) -> bool {
        match self.spec.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self
                .children
                .iter()
                .any(|c| c.spec.significant && (c.running.is_some() || c.restarting)),
        }
    }

    fn index_of_tree(&self, cell: &ractor::ActorCell) -> Option<usize> {
        self.children.iter().position(
            |c| matches!(&c.running, Some(Running::Tree(t)) if t.get_id() == cell.get_id()),
        )
    }

    fn info(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                kind: match c.spec.kind {
                    ChildKind::Process(_) => "process",
                    ChildKind::Tree(_) => "supervisor",
                },
                entry: match &c.spec.kind {
                    ChildKind::Process(id) | ChildKind::Tree(id) => id.to_string(),
                },
                pid: c.pid(),
                running: c.running.is_some(),
                restarting: c.restarting,
                restart: match c.spec.restart {
                    RestartType::Permanent => "permanent",
                    RestartType::Transient => "transient",
                    RestartType::Temporary => "temporary",
                },
                restarts: c.restarts,
            })
            .collect()
    }

    fn counts(&self) -> Counts {
        let mut n = Counts {
            specs: self.children.len(),
            ..Default::default()
        };
        for c in &self.children {
            n.active += c.running.is_some() as usize;
            match c.spec.kind {
                ChildKind::Process(_) => n.workers += 1,
                ChildKind::Tree(_) => n.supervisors += 1,
            }
        }
        n
    }

    /// OTP's start_child.
    async fn start_child(&mut self, myself: &ActorRef<TreeMsg>, new: NewChild) -> StartResult {
        let child = match (new, self.sofo()) {
            (NewChild::Args(extra), true) => {
                let template = Arc::new(self.spec.children[0].clone());
                let mut args = template.args.clone();
                args.extend(extra);
                self.new_child(template, args)
            }
            (NewChild::Spec(spec), false) => {
                if let Some(c) = self.children.iter().find(|c| c.spec.id == spec.id) {
                    return Err(if c.running.is_some() {
                        ChildError::AlreadyStarted(spec.id.clone(), c.pid())
                    } else {
                        ChildError::AlreadyPresent(spec.id.clone())
                    });
                }
                if spec.significant && self.spec.auto_shutdown == AutoShutdown::Never {
                    return Err(ChildError::Invalid(format!(
                        "child {}: significant children need auto_shutdown any_significant or all_significant",
                        spec.id
                    )));
                }
                let args = spec.args.clone();
                self.new_child(Arc::new(spec), args)
            }
            (NewChild::Spec(_), true) => {
                return Err(ChildError::Invalid(format!(
                    "supervisor {} is simple_one_for_one: start_child takes the list of extra arguments, not a child spec",
                    self.spec.id
                )))
            }
            (NewChild::Args(_), false) => {
                return Err(ChildError::Invalid(format!(
                    "supervisor {} is not simple_one_for_one: start_child takes a child spec",
                    self.spec.id
                )))
            }
        };
        self.children.push(child);
        let i = self.children.len() - 1;
        match self.start_at(myself, i, true, "start").await {
            Ok(true) => Ok(self.children[i].pid()),
            Ok(false) => Ok(None),
            Err(e) => {
                self.children.remove(i);
                Err(ChildError::Start(e))
            }
        }
    }

    /// OTP's terminate_child.
    async fn terminate_child(&mut self, name: &str) -> Result<(), ChildError> {
        let i = self
            .find(name)
            .ok_or_else(|| ChildError::NotFound(name.to_string()))?;
        self.stop_at(i, true).await;
        self.children[i].restarting = false;
        if self.sofo() || self.children[i].spec.restart == RestartType::Temporary {
            self.children.remove(i);
        }
        Ok(())
    }

    /// OTP's restart_child.
    async fn restart_child(&mut self, myself: &ActorRef<TreeMsg>, id: &str) -> StartResult {
        if self.sofo() {
            return Err(ChildError::SimpleOneForOne);
        }
        let i = self
            .find(id)
            .ok_or_else(|| ChildError::NotFound(id.to_string()))?;
        let c = &self.children[i];
        if c.running.is_some() {
            return Err(ChildError::Running(id.to_string()));
        }
        if c.restarting {
            return Err(ChildError::Restarting(id.to_string()));
        }
        match self.start_at(myself, i, true, "start").await {
            Ok(true) => Ok(self.children[i].pid()),
            Ok(false) => Ok(None),
            Err(e) => Err(ChildError::Start(e)),
        }
    }

    /// OTP's delete_child.
    fn delete_child(&mut self, id: &str) -> Result<(), ChildError> {
        if self.sofo() {
            return Err(ChildError::SimpleOneForOne);
        }
        let i = self
            .find(id)
            .ok_or_else(|| ChildError::NotFound(id.to_string()))?;
        let c = &self.children[i];
        if c.running.is_some() {
            return Err(ChildError::Running(id.to_string()));
        }
        if c.restarting {
            return Err(ChildError::Restarting(id.to_string()));
        }
        self.children.remove(i);
        Ok(())
    }
}

impl Actor for TreeActor {
    type Msg = TreeMsg;
    type State = TreeState;
    type Arguments = TreeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TreeMsg>,
        args: TreeArgs,
    ) -> Result<TreeState, ActorProcessingErr> {
        let mut st = TreeState {
            children: Vec::new(),
            spec: args.spec,
            sup: args.sup,
            shutdown: args.shutdown,
            next_key: 0,
            restarts: VecDeque::new(),
        };
        if !st.sofo() {
            for spec in st.spec.children.clone() {
                let args = spec.args.clone();
                let child = st.new_child(Arc::new(spec), args);
                st.children.push(child);
            }
        }
        // one at a time, in order, each once the previous one is started
        let mut i = 0;
        while i < st.children.len() {
            let before = st.children.len();
            if let Err(e) = st.start_at(&myself, i, true, "start").await {
                let why = format!("supervisor {}: {e}", st.spec.id);
                tracing::error!("{why}; stopping the children started so far");
                st.stop_all(true).await;
                return Err(why.into());
            }
            if st.children.len() == before {
                i += 1;
            }
        }
        if let Some(sup) = st.sup.upgrade() {
            sup.trees.insert(st.spec.id.clone(), myself.clone());
        }
        tracing::debug!(tree = %st.spec.id, children = st.children.len(), "supervisor started");
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<TreeMsg>,
        msg: TreeMsg,
        st: &mut TreeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TreeMsg::ChildExited { key, pid, exit } => {
                let Some(i) = st.position(key) else {
                    return Ok(());
                };
                if matches!(&st.children[i].running, Some(Running::Process(p)) if *p == pid) {
                    st.note(i, "exit", Some(exit.error().unwrap_or("normal")));
                    st.children[i].running = None;
                    let answer = st.children[i]
                        .unconfirmed
                        .take()
                        .map(|mut rx| rx.try_recv());
                    if let Some(Ok(Started::Ignore)) = answer {
                        st.ignored(i);
                        return Ok(());
                    }
                    let reason = exit.error().unwrap_or("normal").to_string();
                    st.child_down(&myself, i, exit.is_abnormal(), &reason)
                        .await?;
                }
            }
            TreeMsg::StartFailed { key, error } => {
                if let Some(i) = st.position(key) {
                    if st.children[i].running.is_none() && st.children[i].restarting {
                        st.child_down(&myself, i, true, &error).await?;
                    }
                }
            }
            TreeMsg::Children(reply) => {
                let _ = reply.send(st.info());
            }
            TreeMsg::Count(reply) => {
                let _ = reply.send(st.counts());
            }
            TreeMsg::Intensity(reply) => {
                let now = Instant::now();
                let used = st
                    .restarts
                    .iter()
                    .filter(|t| now.duration_since(**t) <= st.spec.period)
                    .count() as u32;
                let _ = reply.send(Intensity {
                    used,
                    max: st.spec.max_restarts,
                    period: st.spec.period,
                });
            }
            TreeMsg::StartChild(new, reply) => {
                let r = st.start_child(&myself, new).await;
                let _ = reply.send(r);
            }
            TreeMsg::TerminateChild(name, reply) => {
                let r = st.terminate_child(&name).await;
                let _ = reply.send(r);
            }
            TreeMsg::RestartChild(id, reply) => {
                let r = st.restart_child(&myself, &id).await;
                let _ = reply.send(r);
            }
            TreeMsg::DeleteChild(id, reply) => {
                let _ = reply.send(st.delete_child(&id));
            }
            TreeMsg::GetChildspec(name, reply) => {
                let r = st
                    .find(&name)
                    .map(|i| st.children[i].spec.clone())
                    .ok_or(ChildError::NotFound(name));
                let _ = reply.send(r);
            }
            TreeMsg::Upgrade(changed, reply) => {
                let mut done = Vec::new();
                let keys: Vec<u64> = st.children.iter().map(|c| c.key).collect();
                for k in keys {
                    let Some(i) = st.position(k) else { continue };
                    let spec = st.children[i].spec.clone();
                    let (ChildKind::Process(entry) | ChildKind::Tree(entry)) = &spec.kind;
                    if !spec.restart_on_change
                        || !changed.contains(entry)
                        || st.children[i].running.is_none()
                    {
                        continue;
                    }
                    st.stop_at(i, true).await;
                    match st.start_at(&myself, i, true, "restart").await {
                        Ok(_) => done.push(spec.id.clone()),
                        Err(e) => {
                            if let Err(gave_up) = st.child_down(&myself, i, true, &e).await {
                                let _ = reply.send(done);
                                return Err(gave_up);
                            }
                        }
                    }
                }
                let _ = reply.send(done);
            }
            TreeMsg::Kill(reply) => {
                let why = format!("supervisor {} was killed", st.spec.id);
                tracing::warn!(tree = %st.spec.id, "{why}; terminating its children");
                st.stop_all(false).await;
                if let Some(sup) = st.sup.upgrade() {
                    sup.trees
                        .remove_if(&st.spec.id, |_, r| r.get_id() == myself.get_id());
                }
                let _ = reply.send(());
                return Err(why.into());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TreeMsg>,
        evt: SupervisionEvent,
        st: &mut TreeState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(i) = st.index_of_tree(&cell) {
                    st.note(i, "exit", Some(&err.to_string()));
                    st.children[i].running = None;
                    st.child_down(&myself, i, true, &err.to_string()).await?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(i) = st.index_of_tree(&cell) {
                    let reason = reason.unwrap_or_else(|| "normal".into());
                    st.note(i, "exit", Some(&reason));
                    st.children[i].running = None;
                    st.child_down(&myself, i, false, &reason).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<TreeMsg>,
        st: &mut TreeState,
    ) -> Result<(), ActorProcessingErr> {
        st.stop_all(true).await;
        if let Some(sup) = st.sup.upgrade() {
            sup.trees
                .remove_if(&st.spec.id, |_, r| r.get_id() == myself.get_id());
        }
        Ok(())
    }
}
