//! OTP supervision trees (`supervisor` entries) as ractor actors.
//!
//! A tree starts its children in order and stops them in reverse. Process children are
//! watched through the runtime's exit callbacks (the equivalent of monitors); nested
//! supervisors are ractor actors linked to their parent, so a nested tree that gives up
//! fails into its parent as a supervision event. On a child's exit the tree applies the
//! child's restart type (permanent: always; transient: after an abnormal exit; temporary:
//! never) and its strategy (one_for_one, one_for_all, rest_for_one), counting restarts
//! against `intensity`: more than `max_restarts` within `period` makes the tree stop all
//! its children and fail to its own parent.
//!
//! Children stopped by a strategy (the siblings in one_for_all / rest_for_one) and by the
//! tree's own stop get CANCEL and their `shutdown` time before they are terminated, as
//! OTP's `exit(Child, shutdown)`; a process that never took its events channel cannot see
//! a CANCEL and is terminated at once, as Erlang's shutdown kills a process that does not
//! trap exits.

use super::spec::{ChildKind, RestartType, Strategy, TreeSpec, INFINITY};
use super::Supervision;
use crate::process::{Exit, Pid, SpawnOptions};
use crate::registry::Id;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What a tree tells about one child.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildInfo {
    /// The child id in the tree.
    pub id: String,
    /// `process` or `supervisor`.
    pub kind: &'static str,
    /// Pid of a running process child.
    pub pid: Option<String>,
    /// Whether it runs now.
    pub running: bool,
    /// Times it was restarted.
    pub restarts: u64,
}

/// Messages of a tree actor.
pub enum TreeMsg {
    /// A process child ended.
    ChildExited {
        /// Its index.
        index: usize,
        /// Its pid.
        pid: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// A child could not be (re)started.
    StartFailed {
        /// Its index.
        index: usize,
        /// Why.
        error: String,
    },
    /// The children, like OTP's which_children.
    Children(RpcReplyPort<Vec<ChildInfo>>),
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
}

enum Running {
    Process(Pid),
    Tree(ActorRef<TreeMsg>),
}

struct Child {
    running: Option<Running>,
    restarts: u64,
    done: bool,
}

/// State of a tree actor.
pub struct TreeState {
    spec: Arc<TreeSpec>,
    sup: Weak<Supervision>,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
}

/// The tree actor.
pub struct TreeActor;

/// Waits until `pid` ended, at most `within` ([`INFINITY`]: as long as it takes).
async fn wait_exit(sup: &Supervision, pid: &Pid, within: Duration) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    sup.node.watch(
        pid,
        Box::new(move |_, _| {
            let _ = tx.send(());
        }),
    );
    if within == INFINITY {
        return rx.await.is_ok();
    }
    tokio::time::timeout(within, rx).await.is_ok()
}

impl TreeState {
    async fn start_child(
        &mut self,
        myself: &ActorRef<TreeMsg>,
        index: usize,
    ) -> Result<(), String> {
        let sup = self.sup.upgrade().ok_or("runtime stopped")?;
        let spec = &self.spec.children[index];
        let running =
            match &spec.kind {
                ChildKind::Process(entry) => {
                    let host = spec
                        .host
                        .clone()
                        .unwrap_or_else(|| sup.default_host.clone());
                    let me = myself.clone();
                    let opts = SpawnOptions {
                        on_exit: Some(Box::new(move |pid: &Pid, exit: &Arc<Exit>| {
                            let _ = me.send_message(TreeMsg::ChildExited {
                                index,
                                pid: pid.clone(),
                                exit: exit.clone(),
                            });
                        })),
                        ..Default::default()
                    };
                    let pid = sup
                        .node
                        .spawn(entry, &host, spec.args.clone(), opts)
                        .map_err(|e| format!("child {}: {e}", spec.id))?;
                    Running::Process(pid)
                }
                ChildKind::Tree(id) => {
                    let tree =
                        sup.specs().trees.get(id).cloned().ok_or_else(|| {
                            format!("child {}: supervisor {id} not found", spec.id)
                        })?;
                    let args = TreeArgs {
                        spec: tree.clone(),
                        sup: self.sup.clone(),
                    };
                    let (r, _) = Actor::spawn_linked(None, TreeActor, args, myself.get_cell())
                        .await
                        .map_err(|e| format!("child {}: {e}", spec.id))?;
                    Running::Tree(r)
                }
            };
        self.children[index].running = Some(running);
        Ok(())
    }

    /// Stops child `index` and waits for it to end. `graceful`: CANCEL first and wait its
    /// `shutdown` time; otherwise terminate at once.
    async fn stop_child(&mut self, index: usize, graceful: bool) {
        let Some(sup) = self.sup.upgrade() else {
            return;
        };
        let shutdown = self.spec.children[index].shutdown;
        match self.children[index].running.take() {
            None => {}
            Some(Running::Process(pid)) => {
                // OTP: exit(shutdown), wait `shutdown`, then kill; a process that cannot
                // see a CANCEL is like one not trapping exits, which shutdown kills at once
                let sees_cancel = sup
                    .node
                    .process(&pid)
                    .is_some_and(|h| h.sees_cancel.load(std::sync::atomic::Ordering::Relaxed));
                if graceful && !shutdown.is_zero() && sees_cancel {
                    let _ = sup
                        .node
                        .cancel(None, &pid, Some("supervisor shutdown".into()));
                    if wait_exit(&sup, &pid, shutdown).await {
                        return;
                    }
                }
                if sup.node.terminate(&pid).is_ok() {
                    wait_exit(&sup, &pid, Duration::from_secs(5)).await;
                }
            }
            Some(Running::Tree(t)) => {
                // a nested tree stops its own children through their shutdowns first
                let within = (shutdown != INFINITY).then(|| shutdown.max(Duration::from_secs(5)));
                let _ = t
                    .stop_and_wait(Some("supervisor shutdown".into()), within)
                    .await;
            }
        }
    }

    async fn stop_all(&mut self, graceful: bool) {
        for i in (0..self.children.len()).rev() {
            self.stop_child(i, graceful).await;
        }
    }

    /// Child `index` ended; `abnormal` tells how.
    async fn child_down(
        &mut self,
        myself: &ActorRef<TreeMsg>,
        index: usize,
        abnormal: bool,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let spec = &self.spec.children[index];
        let restart = match spec.restart {
            RestartType::Permanent => true,
            RestartType::Transient => abnormal,
            RestartType::Temporary => false,
        };
        tracing::debug!(tree = %self.spec.id, child = %spec.id, abnormal, restart, reason, "child ended");
        if !restart {
            self.children[index].done = true;
            return Ok(());
        }
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
            let msg = format!(
                "supervisor {}: more than {} restarts within {}; last: child {} ({reason})",
                self.spec.id,
                self.spec.max_restarts,
                humantime::format_duration(self.spec.period),
                spec.id
            );
            tracing::error!("{msg}; shutting down its children");
            self.stop_all(true).await;
            return Err(msg.into());
        }
        let n = self.children.len();
        let sup = self.sup.upgrade();
        let group: Vec<usize> = match self.spec.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..n).collect(),
            Strategy::RestForOne => (index..n).collect(),
        };
        // the siblings stop through their shutdown, last started first (OTP)
        for &j in group.iter().rev() {
            if j != index {
                self.stop_child(j, true).await;
            }
        }
        for j in group {
            // a sibling that had ended for good stays down; a temporary sibling stopped by
            // the strategy is not restarted either (OTP: temporary children never are)
            if j != index
                && (self.children[j].done
                    || self.spec.children[j].restart == RestartType::Temporary)
            {
                self.children[j].done = true;
                continue;
            }
            self.children[j].done = false;
            self.children[j].restarts += 1;
            if let Some(sup) = &sup {
                sup.count_restart();
            }
            if let Err(e) = self.start_child(myself, j).await {
                let _ = myself.send_message(TreeMsg::StartFailed { index: j, error: e });
            }
        }
        Ok(())
    }

    fn index_of_tree(&self, cell: &ractor::ActorCell) -> Option<usize> {
        self.children.iter().position(
            |c| matches!(&c.running, Some(Running::Tree(t)) if t.get_id() == cell.get_id()),
        )
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
            children: args
                .spec
                .children
                .iter()
                .map(|_| Child {
                    running: None,
                    restarts: 0,
                    done: false,
                })
                .collect(),
            spec: args.spec,
            sup: args.sup,
            restarts: VecDeque::new(),
        };
        for i in 0..st.children.len() {
            if let Err(e) = st.start_child(&myself, i).await {
                tracing::error!(tree = %st.spec.id, "{e}; stopping the children started so far");
                st.stop_all(false).await;
                return Err(e.into());
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
            TreeMsg::ChildExited { index, pid, exit } => {
                let current =
                    matches!(&st.children[index].running, Some(Running::Process(p)) if *p == pid);
                if current {
                    st.children[index].running = None;
                    let reason = exit.error().unwrap_or("normal").to_string();
                    st.child_down(&myself, index, exit.is_abnormal(), &reason)
                        .await?;
                }
            }
            TreeMsg::StartFailed { index, error } => {
                if st.children[index].running.is_none() {
                    st.child_down(&myself, index, true, &error).await?;
                }
            }
            TreeMsg::Children(reply) => {
                // a temporary child that ended is gone from the tree, as in OTP
                let info = st
                    .spec
                    .children
                    .iter()
                    .zip(&st.children)
                    .filter(|(spec, c)| !(c.done && spec.restart == RestartType::Temporary))
                    .map(|(spec, c)| ChildInfo {
                        id: spec.id.clone(),
                        kind: match spec.kind {
                            ChildKind::Process(_) => "process",
                            ChildKind::Tree(_) => "supervisor",
                        },
                        pid: match &c.running {
                            Some(Running::Process(p)) => Some(p.to_string()),
                            _ => None,
                        },
                        running: c.running.is_some(),
                        restarts: c.restarts,
                    })
                    .collect();
                let _ = reply.send(info);
            }
            TreeMsg::Upgrade(changed, reply) => {
                let mut done = Vec::new();
                for i in 0..st.children.len() {
                    let spec = &st.spec.children[i];
                    let (ChildKind::Process(entry) | ChildKind::Tree(entry)) = &spec.kind;
                    if !spec.restart_on_change
                        || !changed.contains(entry)
                        || st.children[i].running.is_none()
                    {
                        continue;
                    }
                    let child = spec.id.clone();
                    st.stop_child(i, true).await;
                    match st.start_child(&myself, i).await {
                        Ok(()) => done.push(child),
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
                    st.children[i].running = None;
                    st.child_down(&myself, i, true, &err.to_string()).await?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(i) = st.index_of_tree(&cell) {
                    st.children[i].running = None;
                    let reason = reason.unwrap_or_else(|| "normal".into());
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
