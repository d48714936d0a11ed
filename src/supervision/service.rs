//! `process.service`: one ractor actor per service keeps its process (or supervision
//! tree) alive.
//!
//! States: Unknown -> Starting -> Running -> Stopping -> Stopped; a failure goes to Failed
//! and, after the backoff delay, to Starting again; a normal return is Stopped (not a
//! failure, no restart); an explicit terminate is Exited (no restart). Each transition is
//! logged with the service id, the attempt number and the next delay. The attempt counter
//! resets once an instance has run `stable_threshold`; after `max_attempts` failures the
//! service stays Failed.

use super::spec::{ServiceSpec, Target};
use super::tree::{TreeActor, TreeArgs, TreeMsg};
use super::Supervision;
use crate::process::{Exit, Pid, SpawnOptions};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A service's state, as the spec names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Never started.
    Unknown,
    /// Its process is coming up.
    Starting,
    /// Its process runs.
    Running,
    /// Asked to stop; waiting for its process to end.
    Stopping,
    /// Stopped (by request, or its process returned normally).
    Stopped,
    /// Ended by an explicit terminate; not restarted.
    Exited,
    /// Failed; restarted after the backoff delay unless out of attempts.
    Failed,
}

impl ServiceState {
    /// The name Lua sees.
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Unknown => "Unknown",
            ServiceState::Starting => "Starting",
            ServiceState::Running => "Running",
            ServiceState::Stopping => "Stopping",
            ServiceState::Stopped => "Stopped",
            ServiceState::Exited => "Exited",
            ServiceState::Failed => "Failed",
        }
    }
}

/// What can be read about a service without asking its actor.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceStatus {
    /// Current state.
    pub state: ServiceState,
    /// Pid of the running process (a tree has none).
    pub pid: Option<String>,
    /// Failures since the last stable run.
    pub attempt: u32,
    /// Restarts so far.
    pub restarts: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// True once out of attempts.
    pub gave_up: bool,
    /// When the next restart is due (a failed service waiting out its backoff).
    pub retry_at: Option<std::time::SystemTime>,
}

impl Default for ServiceStatus {
    fn default() -> Self {
        ServiceStatus {
            state: ServiceState::Unknown,
            pid: None,
            attempt: 0,
            restarts: 0,
            last_error: None,
            gave_up: false,
            retry_at: None,
        }
    }
}

type StartReply = RpcReplyPort<Result<(), String>>;

/// Messages of a service actor.
pub enum ServiceMsg {
    /// Start (no-op when already starting or running); replies once Running or failed.
    Start(Option<StartReply>),
    /// Stop: CANCEL, then terminate after stop_timeout; replies once stopped.
    Stop(Option<RpcReplyPort<()>>),
    /// Stop, then start.
    Restart(StartReply),
    /// Its process ended.
    Exited {
        /// The process.
        pid: Pid,
        /// How.
        exit: Arc<Exit>,
    },
    /// The start window of instance `gen` passed.
    Settled(u64),
    /// Time to restart after the failure of instance `gen`.
    Retry(u64),
    /// Stop timeout of instance `gen`: terminate it.
    StopTimeout(u64),
}

enum Instance {
    Process(Pid),
    Tree(ActorRef<TreeMsg>),
}

/// The service actor.
pub struct ServiceActor;

/// Arguments of a service actor.
pub struct ServiceArgs {
    /// The service.
    pub spec: Arc<ServiceSpec>,
    /// The supervision system (weak: the system owns the actors).
    pub sup: Weak<Supervision>,
}

/// State of a service actor.
pub struct ServiceData {
    spec: Arc<ServiceSpec>,
    sup: Weak<Supervision>,
    status: ServiceStatus,
    gen: u64,
    instance: Option<Instance>,
    /// The handle of the running process, to tell a canceled exit from a plain return.
    handle: Option<Arc<crate::process::ProcessHandle>>,
    started_at: Option<Instant>,
    start_replies: Vec<StartReply>,
    stop_replies: Vec<RpcReplyPort<()>>,
    restart_after_stop: Option<StartReply>,
}

/// How long a new process must survive to count as started.
fn settle_window(spec: &ServiceSpec) -> Duration {
    spec.start_timeout.min(Duration::from_millis(50))
}

impl ServiceData {
    fn set(&mut self, state: ServiceState, next_delay: Option<Duration>) {
        let from = self.status.state;
        self.status.state = state;
        self.status.retry_at = next_delay.map(|d| std::time::SystemTime::now() + d);
        match next_delay {
            Some(d) => tracing::info!(
                service = %self.spec.id,
                from = from.name(),
                to = state.name(),
                attempt = self.status.attempt,
                next_delay_ms = d.as_millis() as u64,
                "service state"
            ),
            None => tracing::info!(
                service = %self.spec.id,
                from = from.name(),
                to = state.name(),
                attempt = self.status.attempt,
                "service state"
            ),
        }
        self.publish();
    }

    fn publish(&self) {
        if let Some(sup) = self.sup.upgrade() {
            sup.statuses
                .insert(self.spec.id.clone(), self.status.clone());
        }
    }

    fn reply_started(&mut self, r: Result<(), String>) {
        for p in self.start_replies.drain(..) {
            let _ = p.send(r.clone());
        }
    }

    async fn start(&mut self, myself: &ActorRef<ServiceMsg>) {
        let Some(sup) = self.sup.upgrade() else {
            return;
        };
        self.gen += 1;
        let gen = self.gen;
        self.set(ServiceState::Starting, None);
        let host = self
            .spec
            .host
            .clone()
            .unwrap_or_else(|| sup.default_host.clone());
        let started = match &self.spec.target {
            Target::Process(entry) => {
                let me = myself.clone();
                let opts = SpawnOptions {
                    on_exit: Some(Box::new(move |pid: &Pid, exit: &Arc<Exit>| {
                        let _ = me.send_message(ServiceMsg::Exited {
                            pid: pid.clone(),
                            exit: exit.clone(),
                        });
                    })),
                    // `lifecycle.security`: the actor and scope the process runs with
                    context: self.spec.security.clone(),
                    ..Default::default()
                };
                sup.node
                    .spawn(entry, &host, self.spec.args.clone(), opts)
                    .map(|pid| {
                        self.status.pid = Some(pid.to_string());
                        self.handle = sup.node.process(&pid);
                        Instance::Process(pid)
                    })
                    .map_err(|e| e.to_string())
            }
            Target::Tree(tree) => match sup.specs().trees.get(tree).cloned() {
                None => Err(format!("supervisor {tree} not found")),
                Some(spec) => {
                    let args = TreeArgs {
                        spec: spec.clone(),
                        sup: Arc::downgrade(&sup),
                        shutdown: self.spec.stop_timeout,
                    };
                    Actor::spawn_linked(None, TreeActor, args, myself.get_cell())
                        .await
                        .map(|(r, _)| {
                            self.status.pid = None;
                            Instance::Tree(r)
                        })
                        .map_err(|e| super::spawn_error(&e))
                }
            },
        };
        match started {
            Ok(inst) => {
                self.instance = Some(inst);
                self.started_at = Some(Instant::now());
                let me = myself.clone();
                let window = settle_window(&self.spec);
                tokio::spawn(async move {
                    tokio::time::sleep(window).await;
                    let _ = me.send_message(ServiceMsg::Settled(gen));
                });
            }
            Err(e) => self.failed(myself, e),
        }
    }

    /// The current instance failed (or could not start).
    fn failed(&mut self, myself: &ActorRef<ServiceMsg>, error: String) {
        let stable = self
            .started_at
            .is_some_and(|t| t.elapsed() >= self.spec.stable_threshold);
        if stable {
            self.status.attempt = 0;
        }
        self.status.attempt += 1;
        self.status.pid = None;
        self.instance = None;
        tracing::warn!(service = %self.spec.id, attempt = self.status.attempt, error = %error, "service failed");
        self.status.last_error = Some(error.clone());
        self.reply_started(Err(error));
        let max = self.spec.restart.max_attempts;
        if max > 0 && self.status.attempt >= max {
            self.status.gave_up = true;
            self.set(ServiceState::Failed, None);
            tracing::error!(service = %self.spec.id, attempts = self.status.attempt, "service failed too often; not restarting it");
            return;
        }
        let scale = self.sup.upgrade().map_or(1.0, |s| s.time_scale());
        let delay = self.spec.restart.delay(self.status.attempt).mul_f64(scale);
        self.set(ServiceState::Failed, Some(delay));
        let gen = self.gen;
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.send_message(ServiceMsg::Retry(gen));
        });
    }

    fn stopped(&mut self, state: ServiceState) {
        self.instance = None;
        self.status.pid = None;
        self.set(state, None);
        self.reply_started(Ok(()));
        for p in self.stop_replies.drain(..) {
            let _ = p.send(());
        }
    }

    async fn after_stop(&mut self, myself: &ActorRef<ServiceMsg>) {
        if let Some(r) = self.restart_after_stop.take() {
            self.start_replies.push(r);
            self.status.attempt = 0;
            self.status.gave_up = false;
            self.start(myself).await;
        }
    }

    async fn stop(&mut self, myself: &ActorRef<ServiceMsg>) {
        let Some(sup) = self.sup.upgrade() else {
            return;
        };
        match &self.instance {
            None => {
                // not running (maybe waiting to retry): cancel the retry
                self.gen += 1;
                if !matches!(self.status.state, ServiceState::Unknown) {
                    self.stopped(ServiceState::Stopped);
                } else {
                    for p in self.stop_replies.drain(..) {
                        let _ = p.send(());
                    }
                }
                self.after_stop(myself).await;
            }
            Some(Instance::Process(pid)) => {
                if self.status.state != ServiceState::Stopping {
                    let pid = pid.clone();
                    self.set(ServiceState::Stopping, None);
                    let _ = sup.node.cancel(None, &pid, Some("service stopping".into()));
                    let gen = self.gen;
                    let me = myself.clone();
                    let t = self.spec.stop_timeout;
                    tokio::spawn(async move {
                        tokio::time::sleep(t).await;
                        let _ = me.send_message(ServiceMsg::StopTimeout(gen));
                    });
                }
            }
            Some(Instance::Tree(tree)) => {
                if self.status.state != ServiceState::Stopping {
                    let tree = tree.clone();
                    self.set(ServiceState::Stopping, None);
                    tree.stop(Some("service stopping".into()));
                }
            }
        }
    }
}

impl Actor for ServiceActor {
    type Msg = ServiceMsg;
    type State = ServiceData;
    type Arguments = ServiceArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ServiceMsg>,
        args: ServiceArgs,
    ) -> Result<ServiceData, ActorProcessingErr> {
        let data = ServiceData {
            spec: args.spec,
            sup: args.sup,
            status: ServiceStatus::default(),
            gen: 0,
            instance: None,
            handle: None,
            started_at: None,
            start_replies: Vec::new(),
            stop_replies: Vec::new(),
            restart_after_stop: None,
        };
        data.publish();
        Ok(data)
    }

    async fn handle(
        &self,
        myself: ActorRef<ServiceMsg>,
        msg: ServiceMsg,
        st: &mut ServiceData,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceMsg::Start(reply) => match st.status.state {
                ServiceState::Running => {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(()));
                    }
                }
                ServiceState::Starting | ServiceState::Stopping => {
                    st.start_replies.extend(reply);
                }
                _ => {
                    st.start_replies.extend(reply);
                    st.status.gave_up = false;
                    st.start(&myself).await;
                }
            },
            ServiceMsg::Stop(reply) => {
                st.stop_replies.extend(reply);
                st.stop(&myself).await;
            }
            ServiceMsg::Restart(reply) => {
                st.restart_after_stop = Some(reply);
                st.stop(&myself).await;
            }
            ServiceMsg::Settled(gen) => {
                if gen == st.gen && st.status.state == ServiceState::Starting {
                    st.set(ServiceState::Running, None);
                    st.reply_started(Ok(()));
                }
            }
            ServiceMsg::Retry(gen) => {
                if gen == st.gen && st.status.state == ServiceState::Failed && !st.status.gave_up {
                    st.status.restarts += 1;
                    st.start(&myself).await;
                }
            }
            ServiceMsg::StopTimeout(gen) => {
                if gen == st.gen && st.status.state == ServiceState::Stopping {
                    if let (Some(Instance::Process(pid)), Some(sup)) =
                        (&st.instance, st.sup.upgrade())
                    {
                        tracing::warn!(service = %st.spec.id, pid = %pid, "service did not stop within stop_timeout; terminating it");
                        let _ = sup.node.terminate(pid);
                    }
                }
            }
            ServiceMsg::Exited { pid, exit } => {
                let current = matches!(&st.instance, Some(Instance::Process(p)) if *p == pid);
                if !current {
                    return Ok(());
                }
                if st.status.state == ServiceState::Stopping {
                    st.stopped(ServiceState::Stopped);
                    st.after_stop(&myself).await;
                    return Ok(());
                }
                let canceled = st.handle.take().is_some_and(|h| {
                    h.cancel_requested
                        .load(std::sync::atomic::Ordering::Relaxed)
                });
                match &*exit {
                    // an explicit cancel is a terminal stop, like terminate
                    Exit::Normal(_) if canceled => st.stopped(ServiceState::Exited),
                    Exit::Normal(_) => st.stopped(ServiceState::Stopped),
                    Exit::Killed(why) if why == "terminated" || why == "canceled" => {
                        st.stopped(ServiceState::Exited)
                    }
                    Exit::Error(e) => st.failed(&myself, e.message.clone()),
                    Exit::Killed(e) => st.failed(&myself, e.clone()),
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ServiceMsg>,
        evt: SupervisionEvent,
        st: &mut ServiceData,
    ) -> Result<(), ActorProcessingErr> {
        let current = |cell: &ractor::ActorCell, st: &ServiceData| matches!(&st.instance, Some(Instance::Tree(t)) if t.get_id() == cell.get_id());
        match evt {
            SupervisionEvent::ActorFailed(cell, err) if current(&cell, st) => {
                let msg = format!("supervision tree failed: {err}");
                tracing::error!(service = %st.spec.id, "{msg}");
                if st.status.state == ServiceState::Stopping {
                    st.stopped(ServiceState::Stopped);
                    st.after_stop(&myself).await;
                } else {
                    st.failed(&myself, msg.clone());
                    // fatal for `run --exec` only when the service does not restart the
                    // tree (as an OTP application ends only when its top supervisor is
                    // not restarted); reported after the state is recorded, so whoever
                    // wakes on it sees it
                    if st.status.gave_up {
                        if let Some(sup) = st.sup.upgrade() {
                            sup.report_fatal(format!("service {}: {msg}", st.spec.id));
                        }
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) if current(&cell, st) => {
                st.stopped(ServiceState::Stopped);
                st.after_stop(&myself).await;
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ServiceMsg>,
        st: &mut ServiceData,
    ) -> Result<(), ActorProcessingErr> {
        if let (Some(Instance::Process(pid)), Some(sup)) = (&st.instance, st.sup.upgrade()) {
            let _ = sup.node.terminate(pid);
        }
        Ok(())
    }
}
