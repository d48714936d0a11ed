//! Process groups (`pg`) across the nodes: this node's joins and leaves go to every
//! member node in order with its other operations; a node seen for the first time gets
//! all of them at once (it replaces what it knew of this node); a lost node's members
//! leave (`Cluster::lost` calls [`scopes_down`]).

use super::wire::Op;
use super::Cluster;
use crate::process::pg::{Groups, PgSync};
use crate::process::{Node, Pid};
use crate::registry::Id;
use std::sync::{Arc, Weak};

/// The [`PgSync`] of a clustered node.
pub(super) struct Share(pub(super) Weak<Cluster>);

impl PgSync for Share {
    fn changed(&self, scope: &Id, join: bool, group: &str, pids: &[Pid]) {
        let Some(c) = self.0.upgrade() else { return };
        let p: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        for node in c.members() {
            if node == c.name {
                continue;
            }
            let op = Op::Pg {
                s: scope.to_string(),
                j: join,
                g: group.to_string(),
                p: p.clone(),
            };
            let _ = c.enqueue(&Arc::from(node.as_str()), op);
        }
    }
}

/// Sends node `to` every join of this node's processes, scope by scope.
pub(super) fn sync_to(c: &Cluster, node: &Node, to: &str) {
    let groups = &node.groups;
    let dest: Arc<str> = Arc::from(to);
    for scope in groups.scopes() {
        scope.with_local_groups(|local| {
            let g = local
                .into_iter()
                .map(|(g, m)| (g, m.iter().map(|p| p.to_string()).collect()))
                .collect();
            let _ = c.enqueue(
                &dest,
                Op::PgSync {
                    s: scope.id.to_string(),
                    g,
                },
            );
        });
    }
}

/// Node `lost` (its incarnations below `below`) is gone from every scope.
pub(super) fn scopes_down(node: &Node, lost: &str, below: u64) {
    for scope in node.groups.scopes() {
        scope.node_down(lost, below);
    }
}

/// Applies a `Pg` or `PgSync` operation from node `from`.
pub(super) fn apply(node: &Arc<Node>, from: &str, op: Op) {
    let (scope, change) = match op {
        Op::Pg { s, j, g, p } => (s, Ok((j, g, p))),
        Op::PgSync { s, g } => (s, Err(g)),
        _ => return,
    };
    let Ok(id) = Id::parse(&scope) else { return };
    let scope = match Groups::open(node, &id) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(node = %from, "cluster: a process group change was dropped: {e}");
            return;
        }
    };
    let pids = |p: Vec<String>| -> Vec<Pid> {
        p.iter()
            .filter_map(|s| node.parse_pid(s))
            .filter(|p| &*p.node == from)
            .collect()
    };
    match change {
        Ok((join, group, p)) => scope.remote_change(join, &group, &pids(p)),
        Err(groups) => scope.remote_sync(
            from,
            groups.into_iter().map(|(g, p)| (g, pids(p))).collect(),
        ),
    }
}
