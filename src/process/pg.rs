//! Process groups, with Erlang's `pg` semantics: named groups of processes inside scopes
//! (`pg.scope` entries).
//!
//! A process joins a group as many times as it likes and is a member that many times
//! (`get_members` lists it once per join, the latest joins first, as Erlang does); a
//! leave removes one join; when a process exits, all its joins go. Monitors (of one group
//! or of the whole scope) get an event per join and leave (`member.joined` /
//! `member.left`, path the group, data `{Group, PIDs}`, as en/lua/core/pg.md gives them),
//! in the order they happened: every change and its notifications are made under the
//! scope's lock, and mailboxes are FIFO. Each change is also published on the event bus
//! (system `pg`, the same kind, path and data).
//!
//! In a cluster, groups span the nodes, as Erlang's `pg` does: each node tells the others
//! its own processes' joins and leaves (through [`PgSync`], which the cluster sets), sends
//! a newly seen node all of them at once, and drops a lost node's members
//! (`Scope::node_down`); `get_local_members` / `which_local_groups` see this node's only.
//!
//! This module knows the process core and the event bus; it does not know Lua.

use crate::process::{Node, Pid, ProcessError};
use crate::registry::Id;
use crate::value::Value;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Weak};

/// The kind of the registry entries that declare a scope.
pub const SCOPE_KIND: &str = "pg.scope";

/// The runtime topic the events of monitor `id` arrive on (a `pg` subscription's channel
/// listens on it).
pub fn monitor_topic(id: u64) -> String {
    format!("@pg/{id}")
}

/// Where a node's own joins and leaves go so the other nodes of its cluster see them (the
/// cluster implements it). Called under the scope's lock, so the order of changes is kept.
pub trait PgSync: Send + Sync {
    /// Local processes `pids` joined (or left) `group` of scope `scope`.
    fn changed(&self, scope: &Id, join: bool, group: &str, pids: &[Pid]);
}

type SyncSlot = Arc<arc_swap::ArcSwapOption<Box<dyn PgSync>>>;

/// The scopes opened on a node (its `groups`).
#[derive(Default)]
pub struct Groups {
    scopes: DashMap<Id, Arc<Scope>>,
    sync: SyncSlot,
}

impl Groups {
    /// Sends this node's joins and leaves to `sync` (joining a cluster).
    pub fn set_sync(&self, sync: Box<dyn PgSync>) {
        self.sync.store(Some(Arc::new(sync)));
    }

    /// Every scope opened so far.
    pub fn scopes(&self) -> Vec<Arc<Scope>> {
        self.scopes.iter().map(|s| s.value().clone()).collect()
    }

    /// The scope declared by the `pg.scope` entry `id` (made on first use).
    pub fn open(node: &Arc<Node>, id: &Id) -> Result<Arc<Scope>, ProcessError> {
        match node.registry().get(id) {
            Some(e) if e.kind == SCOPE_KIND => {}
            Some(e) => {
                return Err(ProcessError::Invalid(format!(
                    "entry {id} is a {}, not a {SCOPE_KIND}",
                    e.kind
                )))
            }
            None => {
                return Err(ProcessError::NotFound(format!(
                    "no {SCOPE_KIND} entry {id}"
                )))
            }
        }
        let groups = &node.groups;
        let scope = groups
            .scopes
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Scope {
                    id: id.clone(),
                    node: Arc::downgrade(node),
                    state: Mutex::new(State::default()),
                    sync: groups.sync.clone(),
                })
            })
            .clone();
        Ok(scope)
    }
}

/// One scope: its groups and monitors.
pub struct Scope {
    /// The `pg.scope` entry.
    pub id: Id,
    node: Weak<Node>,
    state: Mutex<State>,
    sync: SyncSlot,
}

struct Monitor {
    id: u64,
    pid: Pid,
    /// None: every group of the scope.
    group: Option<String>,
}

#[derive(Default)]
struct State {
    /// Members by group, the latest join first, once per join.
    groups: BTreeMap<String, Vec<Pid>>,
    /// The processes with joins (their exit is watched), and their joins per group.
    joined: HashMap<Pid, HashMap<String, usize>>,
    monitors: Vec<Monitor>,
    /// Monitoring processes whose exit is watched.
    watchers: HashSet<Pid>,
    next_monitor: u64,
}

/// A join or a leave.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Join,
    Leave,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Join => "member.joined",
            Change::Leave => "member.left",
        }
    }
}

fn pid_list(pids: &[Pid]) -> Value {
    Value::Array(pids.iter().map(|p| Value::str(p.to_string())).collect())
}

impl Scope {
    fn node(&self) -> Result<Arc<Node>, ProcessError> {
        self.node
            .upgrade()
            .ok_or_else(|| ProcessError::NotFound("the runtime stopped".into()))
    }

    /// Tells the monitors of `group` (and of the scope) and the event bus; called under
    /// the state lock, so every monitor sees the changes in order.
    fn notify(&self, node: &Node, st: &State, change: Change, group: &str, pids: &[Pid]) {
        // the event as en/lua/core/pg.md gives it: system, kind, path (the group), data
        let data = Value::Map(vec![
            (Value::str("Group"), Value::str(group)),
            (Value::str("PIDs"), pid_list(pids)),
        ]);
        for m in &st.monitors {
            if m.group.as_deref().is_some_and(|g| g != group) {
                continue;
            }
            let event = Value::Map(vec![
                (Value::str("system"), Value::str("pg")),
                (Value::str("kind"), Value::str(change.name())),
                (Value::str("path"), Value::str(group)),
                (Value::str("data"), data.clone()),
            ]);
            let _ = node.send_runtime(None, &m.pid, monitor_topic(m.id), vec![event]);
        }
        let _ = crate::process::events::publish(node, None, "pg", change.name(), Some(group), data);
    }

    /// Tells the other nodes about a change of this node's processes (under the lock).
    fn share(&self, join: bool, group: &str, pids: &[Pid]) {
        if let Some(s) = &*self.sync.load() {
            s.changed(&self.id, join, group, pids);
        }
    }

    /// Joins `pids` (local, running processes) to `group`, once each.
    pub fn join(self: &Arc<Self>, group: &str, pids: &[Pid]) -> Result<(), ProcessError> {
        let node = self.node()?;
        for p in pids {
            if p.node != node.name {
                return Err(ProcessError::Invalid(format!(
                    "{p} is not a process of this node (only local processes join)"
                )));
            }
            if node.process(p).is_none() {
                return Err(ProcessError::NotFound(format!(
                    "process {p} is not running"
                )));
            }
        }
        let mut new = Vec::new();
        {
            let mut st = self.state.lock();
            let members = st.groups.entry(group.to_string()).or_default();
            // the new joins go first, in the order given (Erlang: `Pids ++ Members`)
            members.splice(0..0, pids.iter().cloned());
            for p in pids {
                let joins = st.joined.entry(p.clone()).or_insert_with(|| {
                    new.push(p.clone());
                    HashMap::new()
                });
                *joins.entry(group.to_string()).or_default() += 1;
            }
            self.notify(&node, &st, Change::Join, group, pids);
            self.share(true, group, pids);
        }
        // watched outside the lock: a process that already ended calls back at once
        for p in new {
            let me = Arc::downgrade(self);
            node.watch(
                &p,
                Box::new(move |pid, _| {
                    if let Some(scope) = me.upgrade() {
                        scope.exited(pid);
                    }
                }),
            );
        }
        Ok(())
    }

    /// Removes one join of each of `pids` from `group`; false when none of them was in it
    /// (Erlang's `not_joined`).
    pub fn leave(&self, group: &str, pids: &[Pid]) -> Result<bool, ProcessError> {
        let node = self.node()?;
        if let Some(p) = pids.iter().find(|p| node.is_remote(p)) {
            return Err(ProcessError::Invalid(format!(
                "{p} is not a process of this node (only local processes leave)"
            )));
        }
        let mut st = self.state.lock();
        let mut left = Vec::new();
        for p in pids {
            let Some(members) = st.groups.get_mut(group) else {
                break;
            };
            if let Some(i) = members.iter().position(|m| m == p) {
                members.remove(i);
                left.push(p.clone());
            }
        }
        if st.groups.get(group).is_some_and(|m| m.is_empty()) {
            st.groups.remove(group);
        }
        for p in &left {
            if let Some(joins) = st.joined.get_mut(p) {
                if let Some(n) = joins.get_mut(group) {
                    *n -= 1;
                    if *n == 0 {
                        joins.remove(group);
                    }
                }
            }
        }
        if left.is_empty() {
            return Ok(false);
        }
        self.notify(&node, &st, Change::Leave, group, &left);
        self.share(false, group, &left);
        Ok(true)
    }

    /// A member ended: all its joins go.
    fn exited(&self, pid: &Pid) {
        let Ok(node) = self.node() else { return };
        let mut st = self.state.lock();
        st.watchers.remove(pid);
        st.monitors.retain(|m| m.pid != *pid);
        let Some(joins) = st.joined.remove(pid) else {
            return;
        };
        let mut groups: Vec<(String, usize)> = joins.into_iter().collect();
        groups.sort();
        for (group, n) in groups {
            if n == 0 {
                continue;
            }
            if let Some(members) = st.groups.get_mut(&group) {
                members.retain(|m| m != pid);
                if members.is_empty() {
                    st.groups.remove(&group);
                }
            }
            let left = vec![pid.clone(); n];
            self.notify(&node, &st, Change::Leave, &group, &left);
            self.share(false, &group, &left);
        }
    }

    /// Another node's processes joined or left `group` (as it told this one).
    pub fn remote_change(&self, join: bool, group: &str, pids: &[Pid]) {
        let Ok(node) = self.node() else { return };
        let mut st = self.state.lock();
        if join {
            let members = st.groups.entry(group.to_string()).or_default();
            members.splice(0..0, pids.iter().cloned());
            self.notify(&node, &st, Change::Join, group, pids);
            return;
        }
        let mut left = Vec::new();
        if let Some(members) = st.groups.get_mut(group) {
            for p in pids {
                if let Some(i) = members.iter().position(|m| m == p) {
                    members.remove(i);
                    left.push(p.clone());
                }
            }
            if members.is_empty() {
                st.groups.remove(group);
            }
        }
        if !left.is_empty() {
            self.notify(&node, &st, Change::Leave, group, &left);
        }
    }

    /// Replaces what this node knows of node `from`'s members with `groups` (all of its
    /// joins, sent when the two nodes first see each other).
    pub fn remote_sync(&self, from: &str, groups: Vec<(String, Vec<Pid>)>) {
        let Ok(node) = self.node() else { return };
        let mut st = self.state.lock();
        let mut names: Vec<String> = st.groups.keys().cloned().collect();
        names.extend(groups.iter().map(|(g, _)| g.clone()));
        names.sort();
        names.dedup();
        for g in names {
            let new: Vec<Pid> = groups
                .iter()
                .find(|(n, _)| *n == g)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let old: Vec<Pid> = st
                .groups
                .get(&g)
                .map(|m| m.iter().filter(|p| &*p.node == from).cloned().collect())
                .unwrap_or_default();
            if old == new {
                continue;
            }
            let members = st.groups.entry(g.clone()).or_default();
            members.retain(|p| &*p.node != from);
            members.splice(0..0, new.iter().cloned());
            if members.is_empty() {
                st.groups.remove(&g);
            }
            if !old.is_empty() {
                self.notify(&node, &st, Change::Leave, &g, &old);
            }
            if !new.is_empty() {
                self.notify(&node, &st, Change::Join, &g, &new);
            }
        }
    }

    /// Node `lost` (its incarnations below `below`) is gone: its members leave.
    pub fn node_down(&self, lost: &str, below: u64) {
        let Ok(node) = self.node() else { return };
        let mut st = self.state.lock();
        let names: Vec<String> = st.groups.keys().cloned().collect();
        for g in names {
            let Some(members) = st.groups.get_mut(&g) else {
                continue;
            };
            let gone: Vec<Pid> = members
                .iter()
                .filter(|p| &*p.node == lost && p.creation() < below)
                .cloned()
                .collect();
            if gone.is_empty() {
                continue;
            }
            members.retain(|p| !(&*p.node == lost && p.creation() < below));
            if members.is_empty() {
                st.groups.remove(&g);
            }
            self.notify(&node, &st, Change::Leave, &g, &gone);
        }
    }

    /// Runs `f` with this node's own members of every group, under the scope's lock (so
    /// what `f` sends stays in order with the changes [`PgSync`] is told).
    pub fn with_local_groups(&self, f: impl FnOnce(Vec<(String, Vec<Pid>)>)) {
        let Ok(node) = self.node() else { return };
        let st = self.state.lock();
        let local = st
            .groups
            .iter()
            .map(|(g, m)| {
                let m: Vec<Pid> = m.iter().filter(|p| !node.is_remote(p)).cloned().collect();
                (g.clone(), m)
            })
            .filter(|(_, m)| !m.is_empty())
            .collect();
        f(local);
    }

    /// The members of `group` that run on this node, once per join, the latest first.
    pub fn local_members(&self, group: &str) -> Vec<Pid> {
        let Ok(node) = self.node() else {
            return Vec::new();
        };
        self.members(group)
            .into_iter()
            .filter(|p| !node.is_remote(p))
            .collect()
    }

    /// The groups with members on this node, sorted.
    pub fn which_local_groups(&self) -> Vec<String> {
        let Ok(node) = self.node() else {
            return Vec::new();
        };
        self.state
            .lock()
            .groups
            .iter()
            .filter(|(_, m)| m.iter().any(|p| !node.is_remote(p)))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The members of `group`, once per join, the latest first.
    pub fn members(&self, group: &str) -> Vec<Pid> {
        self.state
            .lock()
            .groups
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// The groups that have members, sorted.
    pub fn which_groups(&self) -> Vec<String> {
        self.state.lock().groups.keys().cloned().collect()
    }

    /// Sends a message to each distinct member of `group` (only this node's when
    /// `local_only`); the number of processes it reached.
    pub fn broadcast(
        &self,
        from: Option<&Pid>,
        group: &str,
        topic: &str,
        payload: Vec<Value>,
        local_only: bool,
    ) -> Result<usize, ProcessError> {
        let node = self.node()?;
        let mut seen = HashSet::new();
        let all = if local_only {
            self.local_members(group)
        } else {
            self.members(group)
        };
        let members: Vec<Pid> = all.into_iter().filter(|p| seen.insert(p.clone())).collect();
        let mut sent = 0;
        for p in members {
            if node.send(from, &p, topic, payload.clone()).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Monitors `group` (None: every group of the scope) for `watcher`: it gets a message
    /// on the monitor's runtime topic ([`monitor_topic`]) per join and leave from now on. Returns the monitor's
    /// reference and the members now (for a scope: every group's).
    pub fn monitor(
        self: &Arc<Self>,
        watcher: &Pid,
        group: Option<&str>,
    ) -> Result<(u64, BTreeMap<String, Vec<Pid>>), ProcessError> {
        let node = self.node()?;
        if node.process(watcher).is_none() {
            return Err(ProcessError::NotFound(format!(
                "process {watcher} is not running"
            )));
        }
        let (id, now, watch) = {
            let mut st = self.state.lock();
            st.next_monitor += 1;
            let id = st.next_monitor;
            st.monitors.push(Monitor {
                id,
                pid: watcher.clone(),
                group: group.map(str::to_string),
            });
            let now = match group {
                Some(g) => st
                    .groups
                    .get(g)
                    .map(|m| BTreeMap::from([(g.to_string(), m.clone())]))
                    .unwrap_or_default(),
                None => st.groups.clone(),
            };
            let watch = !st.joined.contains_key(watcher) && st.watchers.insert(watcher.clone());
            (id, now, watch)
        };
        if watch {
            let me = Arc::downgrade(self);
            node.watch(
                watcher,
                Box::new(move |pid, _| {
                    if let Some(scope) = me.upgrade() {
                        scope.exited(pid);
                    }
                }),
            );
        }
        Ok((id, now))
    }

    /// Stops a monitor; false when there is none with that reference.
    pub fn demonitor(&self, id: u64) -> bool {
        let mut st = self.state.lock();
        let before = st.monitors.len();
        st.monitors.retain(|m| m.id != id);
        st.monitors.len() != before
    }
}
