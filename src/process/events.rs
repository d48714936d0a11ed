//! The event bus of a node: publish / subscribe by system and kind.
//!
//! A subscription belongs to a process and names a `system` and optionally a `kind`, each
//! a pattern of dot-separated segments ([`pattern_matches`]: `*` one segment, `**` any
//! number, `(a|b)` either). Each event is a message to each matching subscriber on a runtime topic of
//! the subscription's own (`@events/N`), so events from one sender arrive in the order
//! sent and the subscriber's mailbox bounds what waits. A subscriber whose mailbox is full
//! does not get the event: [`publish`] delivers to every other subscriber, counts the miss
//! on the subscription and returns how many missed it. The subscriptions of a process
//! end when it exits (and, for any left over, at the next event).
//!
//! The registry publishes its changes here (system `registry`, see [`registry_changed`]);
//! the Lua `events` module lets code subscribe and send.

use crate::process::{Node, Pid, ProcessError};
use crate::registry::actor::Change;
use crate::registry::changes::Op;
use crate::value::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Sub {
    id: u64,
    pid: Pid,
    system: String,
    kind: Option<String>,
    dropped: Arc<AtomicU64>,
}

/// The subscriptions of a node (its `events`).
#[derive(Default)]
pub struct EventBus {
    subs: Mutex<Vec<Sub>>,
    next: AtomicU64,
}

fn bus(node: &Node) -> &EventBus {
    &node.events
}

/// Whether `name` matches `pattern`, read as Wippy's event bus reads system and kind
/// patterns: dot-separated segments, where `*` is exactly one segment, `**` any number of
/// segments (none too), `(a|b)` one of the listed segments, and anything else itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    // the common patterns without splitting (this runs per subscription per event)
    if !pattern.contains(['*', '(']) {
        return pattern == name;
    }
    if pattern == "*" {
        return !name.is_empty() && !name.contains('.');
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let n: Vec<&str> = name.split('.').collect();
    segments_match(&p, &n)
}

fn segments_match(p: &[&str], n: &[&str]) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some(&"**"), _) => (0..=n.len()).any(|skip| segments_match(&p[1..], &n[skip..])),
        (None, Some(_)) | (Some(_), None) => false,
        (Some(&seg), Some(&have)) => {
            let one = match seg {
                "*" => !have.is_empty(),
                _ if seg.len() > 2 && seg.starts_with('(') && seg.ends_with(')') => {
                    seg[1..seg.len() - 1].split('|').any(|alt| alt == have)
                }
                _ => seg == have,
            };
            one && segments_match(&p[1..], &n[1..])
        }
    }
}

/// The runtime topic the events of subscription `id` arrive on.
pub fn topic(id: u64) -> String {
    format!("@events/{id}")
}

/// A new subscription of process `pid`: its id (see [`topic`]) and its count of missed
/// events.
pub fn subscribe(
    node: &Node,
    pid: &Pid,
    system: &str,
    kind: Option<&str>,
) -> (u64, Arc<AtomicU64>) {
    let b = bus(node);
    let id = b.next.fetch_add(1, Ordering::Relaxed) + 1;
    let dropped = Arc::new(AtomicU64::new(0));
    b.subs.lock().unwrap_or_else(|e| e.into_inner()).push(Sub {
        id,
        pid: pid.clone(),
        system: system.to_string(),
        kind: kind.filter(|k| *k != "*").map(str::to_string),
        dropped: dropped.clone(),
    });
    (id, dropped)
}

/// How many subscriptions the node has now (what `/metrics` shows as
/// `warden_event_subscriptions`).
pub fn subscription_count(node: &Node) -> usize {
    bus(node)
        .subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
}

/// Ends every subscription of process `pid` (at its exit).
pub fn unsubscribe_all(node: &Node, pid: &Pid) {
    bus(node)
        .subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|x| x.pid != *pid);
}

/// Ends subscription `id`.
pub fn unsubscribe(node: &Node, id: u64) {
    bus(node)
        .subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|x| x.id != id);
}

/// Events not delivered by [`publish`]: `missed` of `of` subscribers had a full mailbox.
#[derive(Debug, PartialEq)]
pub struct Missed {
    /// Subscribers that did not get the event.
    pub missed: usize,
    /// Subscribers it was for.
    pub of: usize,
}

/// Publishes an event `{system, kind, path, data, from}` to every matching subscriber.
pub fn publish(
    node: &Node,
    from: Option<&Pid>,
    system: &str,
    kind: &str,
    path: Option<&str>,
    data: Value,
) -> Result<(), Missed> {
    let mut event = vec![
        (Value::str("system"), Value::str(system)),
        (Value::str("kind"), Value::str(kind)),
        (Value::str("data"), data),
    ];
    if let Some(p) = path {
        event.push((Value::str("path"), Value::str(p)));
    }
    if let Some(f) = from {
        event.push((Value::str("from"), Value::str(f.to_string())));
    }
    let event = Value::Map(event);
    let b = bus(node);
    let targets: Vec<(u64, Pid, Arc<AtomicU64>)> = b
        .subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|s| {
            pattern_matches(&s.system, system)
                && s.kind.as_deref().is_none_or(|k| pattern_matches(k, kind))
        })
        .map(|s| (s.id, s.pid.clone(), s.dropped.clone()))
        .collect();
    let (mut missed, mut gone) = (0usize, Vec::new());
    for (id, pid, dropped) in &targets {
        match node.send_runtime(from, pid, topic(*id), vec![event.clone()]) {
            Ok(()) => {}
            Err(ProcessError::NotFound(_)) => gone.push(*id),
            Err(_) => {
                dropped.fetch_add(1, Ordering::Relaxed);
                missed += 1;
            }
        }
    }
    if !gone.is_empty() {
        b.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !gone.contains(&s.id));
    }
    if missed > 0 {
        return Err(Missed {
            missed,
            of: targets.len() - gone.len(),
        });
    }
    Ok(())
}

/// Kinds whose changes are not published (en/internals/registry.md, "Non-propagating
/// Entries": application data and module metadata).
pub const SILENT_KINDS: &[&str] = &[
    "registry.entry",
    "ns.requirement",
    "ns.dependency",
    "ns.definition",
];

/// Publishes a registry change as Wippy's registry does (en/internals/registry.md,
/// "Transactions"; the event kinds of its runtime): system `registry`, a
/// `registry.begin`, one event per operation (kind `entry.create`, `entry.update` or
/// `entry.delete`, path the entry id, data `{id, kind, version}`, the kind the entry has
/// or had before its deletion; entries of [`SILENT_KINDS`] are left out), in the
/// changeset's order, then a `registry.commit`; path and data of those two are the new
/// version number.
pub fn registry_changed(node: &Node, change: &Change) {
    let v = &change.version;
    let tx = |kind: &str| {
        let _ = publish(
            node,
            None,
            "registry",
            kind,
            Some(&v.id.to_string()),
            Value::Int(v.id as i64),
        );
    };
    tx("registry.begin");
    for op in v.ops.iter() {
        let kind = match op {
            Op::Create(e) | Op::Update(e) => e.kind.clone(),
            Op::Delete(id) => change
                .previous
                .get(id)
                .map(|e| e.kind.clone())
                .unwrap_or_default(),
        };
        if SILENT_KINDS.contains(&kind.as_str()) {
            continue;
        }
        let data = Value::Map(vec![
            (Value::str("id"), Value::str(op.id().to_string())),
            (Value::str("kind"), Value::str(kind)),
            (Value::str("version"), Value::Int(v.id as i64)),
        ]);
        let _ = publish(
            node,
            None,
            "registry",
            op.name(),
            Some(&op.id().to_string()),
            data,
        );
    }
    tx("registry.commit");
}
#[cfg(test)]
mod tests {
    use super::pattern_matches;

    /// en/lua/core/events.md ("wildcards like test.*") and Wippy's bus: `*` is one
    /// segment, `**` any number, `(a|b)` an alternative.
    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("*", "two.segments"));
        assert!(!pattern_matches("*", ""));
        assert!(!pattern_matches("orders.*", "orders"));
        assert!(pattern_matches("orders.*", "orders.eu"));
        assert!(!pattern_matches("orders.*", "orders.eu.west"));
        assert!(!pattern_matches("orders.*", "ordersx"));
        assert!(pattern_matches("orders.**", "orders"));
        assert!(pattern_matches("orders.**", "orders.eu.west"));
        assert!(pattern_matches("**", "a.b.c"));
        assert!(pattern_matches("a.**.d", "a.b.c.d"));
        assert!(pattern_matches("a.**.d", "a.d"));
        assert!(!pattern_matches("a.**.d", "a.b.c"));
        assert!(pattern_matches("orders.(eu|us)", "orders.us"));
        assert!(!pattern_matches("orders.(eu|us)", "orders.asia"));
        assert!(pattern_matches("orders", "orders"));
        assert!(!pattern_matches("orders", "orders.eu"));
    }
}
