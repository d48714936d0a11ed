//! Cluster names: a name held by one process in the whole cluster
//! (`process.registry.register(name, pid, {scope = "cluster"})`).
//!
//! The one authority is the server's key-value bucket `warden_<cluster>_names` (key: the name,
//! value: the holder's pid): a registration is a create, or a compare-and-set over a
//! holder that is gone, so two nodes never both win. Every node keeps a mirror of the
//! bucket (a watch), so a lookup and a send by name cost no round trip. A name is released
//! when its holder exits (its node deletes the key, if it still holds that revision) and
//! counts as free as soon as the holder's node is lost or restarted (a lookup skips it,
//! a registration takes it over).

use super::Cluster;
use crate::process::{Pid, ProcessError};
use async_nats::jetstream::kv::{Operation, Store};
use dashmap::DashMap;
use futures::StreamExt;
use std::sync::Arc;

/// The mirror of the bucket, and where releases go.
pub(super) struct Names {
    pub(super) kv: Store,
    /// Name -> (holder, revision).
    pub(super) mirror: DashMap<String, (Pid, u64)>,
    pub(super) release: tokio::sync::mpsc::UnboundedSender<(String, u64)>,
}

/// A name as a key (or a subject token): letters, digits, `-` and `_` as they are, every other byte `=XX`.
pub(super) fn key(name: &str) -> String {
    let mut k = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            k.push(b as char);
        } else {
            k.push_str(&format!("={b:02X}"));
        }
    }
    k
}

fn name_of(key: &str) -> Option<String> {
    let mut out = Vec::with_capacity(key.len());
    let b = key.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            out.push(u8::from_str_radix(key.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Opens the bucket and starts the mirror and the releases.
pub(super) async fn open(
    client: &async_nats::Client,
    bucket: &str,
    url: &str,
    node: &std::sync::Weak<crate::process::Node>,
) -> anyhow::Result<(Arc<Names>, Vec<tokio::task::AbortHandle>)> {
    let kv = super::bucket(client, url, bucket).await?;
    let (release, mut releases) = tokio::sync::mpsc::unbounded_channel::<(String, u64)>();
    let names = Arc::new(Names {
        kv: kv.clone(),
        mirror: DashMap::new(),
        release,
    });
    let mut watch = kv
        .watch_with_history(">")
        .await
        .map_err(|e| anyhow::anyhow!("--cluster {url}: watching the names: {e}"))?;
    let mirror = Arc::downgrade(&names);
    let node = std::sync::Weak::clone(node);
    let mut tasks = vec![tokio::spawn(async move {
        while let Some(Ok(e)) = watch.next().await {
            let (Some(names), Some(node)) = (mirror.upgrade(), node.upgrade()) else {
                break;
            };
            let Some(name) = name_of(&e.key) else {
                continue;
            };
            match e.operation {
                Operation::Put => {
                    let Some(pid) = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| node.parse_pid(s))
                    else {
                        continue;
                    };
                    match names.mirror.get(&name).map(|v| v.1) {
                        Some(r) if r > e.revision => {}
                        _ => {
                            names.mirror.insert(name, (pid, e.revision));
                        }
                    }
                }
                Operation::Delete | Operation::Purge => {
                    names.mirror.remove_if(&name, |_, v| v.1 < e.revision);
                }
            }
        }
    })
    .abort_handle()];
    tasks.push(
        tokio::spawn(async move {
            while let Some((name, revision)) = releases.recv().await {
                let _ = kv.delete_expect_revision(key(&name), Some(revision)).await;
            }
        })
        .abort_handle(),
    );
    Ok((names, tasks))
}

impl Cluster {
    /// Whether `pid` is alive as far as this node can tell: a local process that runs, or
    /// a process of a member in the incarnation it runs now.
    fn holder_alive(&self, pid: &Pid) -> bool {
        match self.node.upgrade() {
            Some(n) if !n.is_remote(pid) => n.process(pid).is_some(),
            _ => self.member_creation(&pid.node) == Some(pid.creation()),
        }
    }

    /// The holder of cluster name `name`, if it is alive.
    pub fn lookup_name(&self, name: &str) -> Option<Pid> {
        let pid = self.names.mirror.get(name)?.0.clone();
        self.holder_alive(&pid).then_some(pid)
    }

    /// Registers `name` for `pid` (a process of this node) in the whole cluster; fails
    /// when a live process holds it.
    pub async fn register_name(&self, name: &str, pid: &Pid) -> Result<(), ProcessError> {
        let node = self
            .node
            .upgrade()
            .ok_or_else(|| ProcessError::Busy("the node is stopping".into()))?;
        if name.is_empty() || name.starts_with('{') {
            return Err(ProcessError::Invalid(format!(
                "invalid process name {name:?}"
            )));
        }
        if node.is_remote(pid) {
            return Err(ProcessError::Invalid(format!(
                "{pid} runs on node {}: a cluster name is registered on the holder's node",
                pid.node
            )));
        }
        if node.process(pid).is_none() {
            return Err(ProcessError::NotFound(format!(
                "process {pid} is not running"
            )));
        }
        let kv = &self.names.kv;
        let k = key(name);
        let value = pid.to_string();
        let unavailable = |e: &dyn std::fmt::Display| {
            ProcessError::Busy(format!("the cluster's name store: {e}"))
        };
        for _ in 0..5 {
            let revision = match kv.create(&k, value.clone().into()).await {
                Ok(r) => r,
                Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                    let Some(entry) = kv.entry(&k).await.map_err(|e| unavailable(&e))? else {
                        continue;
                    };
                    if entry.operation == Operation::Put {
                        let holder = std::str::from_utf8(&entry.value)
                            .ok()
                            .and_then(|s| node.parse_pid(s));
                        if let Some(h) = holder {
                            if h == *pid {
                                return Ok(());
                            }
                            if self.holder_alive(&h) {
                                return Err(ProcessError::AlreadyExists(format!(
                                    "name {name:?} is already registered by {h}"
                                )));
                            }
                        }
                    }
                    match kv.update(&k, value.clone().into(), entry.revision).await {
                        Ok(r) => r,
                        Err(_) => continue,
                    }
                }
                Err(e) => return Err(unavailable(&e)),
            };
            self.names
                .mirror
                .insert(name.to_string(), (pid.clone(), revision));
            let release = self.names.release.clone();
            let held = name.to_string();
            node.watch(
                pid,
                Box::new(move |_, _| {
                    let _ = release.send((held, revision));
                }),
            );
            return Ok(());
        }
        Err(ProcessError::Busy(format!(
            "name {name:?}: the cluster's name store kept changing; try again"
        )))
    }

    /// Frees cluster name `name` when a process of this node holds it; whether it did.
    pub fn unregister_name(&self, name: &str) -> bool {
        let Some(node) = self.node.upgrade() else {
            return false;
        };
        let held = self
            .names
            .mirror
            .remove_if(name, |_, (p, _)| !node.is_remote(p));
        match held {
            Some((_, (_, revision))) => {
                let _ = self.names.release.send((name.to_string(), revision));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_keep_names_apart() {
        for n in ["worker", "a.b", "a=2Eb", "x y:z", "émoi", "-_"] {
            let k = super::key(n);
            assert!(k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)));
            assert_eq!(super::name_of(&k).as_deref(), Some(n));
        }
        assert_ne!(super::key("a.b"), super::key("a=2Eb"));
    }
}
