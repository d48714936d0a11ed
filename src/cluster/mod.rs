//! One app on several nodes, over NATS (`warden run --node NAME --cluster nats://...`).
//!
//! This first part gives location-transparent sends: a message to a pid of another node
//! (`{b|7}`) is published on that node's subject (`warden.msg.<node>`) and delivered to the
//! process there, in the order sent (one publisher per node, and NATS keeps a connection's
//! order). Membership: each node publishes a heartbeat every second on `warden.hb`; a node
//! not heard from for 3 s is not a member, and a send to it fails at the sender with
//! UNAVAILABLE. The server's version is checked at connect (2.11 or newer).
//!
//! Payloads travel as JSON (the `Value` <-> JSON mapping: strings that are not UTF-8 do
//! not survive the trip yet).

use crate::process::{Node, Pid, ProcessError, Remote};
use crate::value::{self, Value};
use dashmap::DashMap;
use futures::StreamExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The oldest nats-server warden works with (key-value TTLs, needed by later parts).
pub const MIN_SERVER: (u64, u64) = (2, 11);

/// A node is a member while heard from within this.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(3);

/// This node's membership of a cluster.
pub struct Cluster {
    /// This node's name.
    pub name: String,
    members: DashMap<String, Instant>,
    out: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>,
}

fn msg_subject(node: &str) -> String {
    format!("warden.msg.{node}")
}

/// Parses `2.15.1` into (2, 15).
fn major_minor(v: &str) -> Option<(u64, u64)> {
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Cluster {
    /// The members heard from within [`MEMBER_TIMEOUT`] (this node included), sorted.
    pub fn members(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .members
            .iter()
            .filter(|e| e.value().elapsed() < MEMBER_TIMEOUT)
            .map(|e| e.key().clone())
            .collect();
        m.push(self.name.clone());
        m.sort();
        m.dedup();
        m
    }

    fn is_member(&self, node: &str) -> bool {
        self.members
            .get(node)
            .is_some_and(|t| t.elapsed() < MEMBER_TIMEOUT)
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
        if !self.0.is_member(&dest.node) {
            return Err(ProcessError::Busy(format!(
                "node {} is not a member of the cluster (sending to {dest})",
                dest.node
            )));
        }
        let payload: Result<Vec<serde_json::Value>, _> =
            payload.iter().map(value::to_json).collect();
        let payload = payload.map_err(|e| {
            ProcessError::Invalid(format!("a message to {dest} cannot cross nodes: {e}"))
        })?;
        let body = serde_json::json!({
            "from": from.map(|p| p.to_string()),
            "to": dest.id,
            "topic": topic,
            "payload": payload,
        });
        self.0
            .out
            .send((msg_subject(&dest.node), body.to_string().into_bytes()))
            .map_err(|_| ProcessError::Busy("the cluster connection is closed".into()))
    }
}

/// Delivers a message that came from another node.
fn deliver(node: &Node, body: &[u8]) {
    let Ok(m) = serde_json::from_slice::<serde_json::Value>(body) else {
        tracing::warn!("cluster: an unreadable message was dropped");
        return;
    };
    let Some(id) = m["to"].as_u64() else { return };
    let dest = Pid {
        node: node.name.clone(),
        id,
    };
    let from = m["from"].as_str().and_then(|s| node.parse_pid(s));
    let topic = m["topic"].as_str().unwrap_or_default().to_string();
    let payload: Vec<Value> = m["payload"]
        .as_array()
        .map(|a| a.iter().map(value::from_json).collect())
        .unwrap_or_default();
    // as in Erlang, a message to a process that is gone is dropped
    let _ = node.send(from.as_ref(), &dest, topic, payload);
}

/// Joins the cluster at `url` as node `node.name`: connects, checks the server's version,
/// starts the heartbeat and the delivery of this node's messages, and routes sends to
/// other nodes' pids through it.
pub async fn join(node: &Arc<Node>, url: &str) -> anyhow::Result<Arc<Cluster>> {
    let name = node.name.to_string();
    if name.is_empty() || name.contains(['.', '*', '>', ' ', '|', '{', '}']) {
        anyhow::bail!("--node {name:?}: a node name is letters, digits, - and _");
    }
    let client = async_nats::connect(url)
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
    let (out, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let cluster = Arc::new(Cluster {
        name: name.clone(),
        members: DashMap::new(),
        out,
    });
    // publisher: one task, so messages leave in the order they were sent
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((subject, body)) = rx.recv().await {
            if let Err(e) = publisher.publish(subject, body.into()).await {
                tracing::warn!("cluster: publish failed: {e}");
            }
        }
    });
    // this node's messages
    let mut inbox = client
        .subscribe(msg_subject(&name))
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    let weak: Weak<Node> = Arc::downgrade(node);
    tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            match weak.upgrade() {
                Some(n) => deliver(&n, &m.payload),
                None => break,
            }
        }
    });
    // membership
    let mut beats = client
        .subscribe("warden.hb")
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: {e}"))?;
    let seen = Arc::downgrade(&cluster);
    tokio::spawn(async move {
        while let Some(m) = beats.next().await {
            let Some(c) = seen.upgrade() else { break };
            if let Ok(who) = std::str::from_utf8(&m.payload) {
                if who != c.name {
                    c.members.insert(who.to_string(), Instant::now());
                }
            }
        }
    });
    let beat = client.clone();
    let me = Arc::downgrade(&cluster);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(c) = me.upgrade() else { break };
            let _ = beat.publish("warden.hb", c.name.clone().into()).await;
            let _ = beat.flush().await;
        }
    });
    node.set_remote(Box::new(Sender(cluster.clone())));
    node.set_ext(cluster.clone());
    tracing::info!(node = %name, %url, server = %version, "joined the cluster");
    Ok(cluster)
}
