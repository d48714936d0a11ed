//! The `events` module: a publish / subscribe bus inside a node.
//!
//! `events.subscribe(system, kind?)` (in a process) gives a subscription whose
//! `:channel()` receives the events that match, as tables `{system, kind, path, data,
//! from}`, and `:close()` ends it. `events.send(system, kind, path, data)` publishes one.
//! `system` and `kind` patterns are names, `*` (anything), or a prefix ending in `.*`
//! (`orders.*` matches `orders` and `orders.eu`).
//!
//! Each event is a message to each subscriber on a runtime topic of its own, so events
//! from one sender arrive in the order sent, and the subscriber's mailbox bounds what
//! waits. A subscriber whose mailbox is full does not get the event: the sender's
//! `events.send` then returns `nil, err` (UNAVAILABLE, naming how many missed it) after
//! delivering to every other subscriber, and the subscription's `:dropped()` counts it.
//! Subscriptions of a process end with it.

use super::channel::LuaChannel;
use super::errors::LuaError;
use super::{current, running};
use crate::process::{Node, Pid, ProcessError};
use crate::value::{self, Value};
use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Sub {
    id: u64,
    pid: Pid,
    system: String,
    kind: Option<String>,
    dropped: Arc<AtomicU64>,
}

/// The subscriptions of a node (attached to it on first use).
#[derive(Default)]
pub struct EventBus {
    subs: Mutex<Vec<Sub>>,
    next: AtomicU64,
}

fn bus(node: &Node) -> Arc<EventBus> {
    node.ext_or_default::<EventBus>()
}

/// Whether `name` matches `pattern` (`*`, `prefix.*`, or the name itself).
fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => {
            name == prefix || (name.starts_with(prefix) && name[prefix.len()..].starts_with('.'))
        }
        None => pattern == name,
    }
}

fn topic(id: u64) -> String {
    format!("@events/{id}")
}

/// A subscription: `:channel()`, `:close()`, `:dropped()`.
pub struct Subscription {
    id: u64,
    node: Arc<Node>,
    chan: AnyUserData,
    dropped: Arc<AtomicU64>,
}

impl UserData for Subscription {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("channel", |_, s, ()| Ok(s.chan.clone()));
        m.add_method("dropped", |_, s, ()| Ok(s.dropped.load(Ordering::Relaxed)));
        m.add_method("close", |_, s, ()| {
            bus(&s.node)
                .subs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|x| x.id != s.id);
            if let (Ok(ctx), Ok(ch)) = (current(), s.chan.borrow::<LuaChannel>()) {
                ctx.unlisten(&ch.0);
            }
            Ok(true)
        });
    }
}

/// The `events` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "subscribe",
        lua.create_function(|lua, (system, kind): (String, Option<String>)| {
            let ctx = current()?;
            let b = bus(&ctx.node);
            let id = b.next.fetch_add(1, Ordering::Relaxed) + 1;
            let chan = match ctx.listen(&topic(id), false) {
                Ok(c) => c,
                Err(e) => {
                    return LuaError::new("INTERNAL", format!("events.subscribe: {e}"))
                        .into_nil_err(lua)
                }
            };
            let dropped = Arc::new(AtomicU64::new(0));
            b.subs.lock().unwrap_or_else(|e| e.into_inner()).push(Sub {
                id,
                pid: ctx.me.pid.clone(),
                system,
                kind: kind.filter(|k| k != "*"),
                dropped: dropped.clone(),
            });
            let sub = Subscription {
                id,
                node: ctx.node.clone(),
                chan,
                dropped,
            };
            Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(sub)?,
            )]))
        })?,
    )?;
    t.set(
        "send",
        lua.create_function(
            |lua, (system, kind, path, data): (String, String, Option<String>, mlua::Value)| {
                let Some((node, _, from)) = running() else {
                    return Err(mlua::Error::runtime("events.send: no node here"));
                };
                let data = match value::from_lua(&data) {
                    Ok(v) => v,
                    Err(e) => {
                        return LuaError::new("INVALID", format!("events.send: data {e}"))
                            .into_nil_err(lua)
                    }
                };
                let mut event = vec![
                    (Value::str("system"), Value::str(&system)),
                    (Value::str("kind"), Value::str(&kind)),
                    (Value::str("data"), data),
                ];
                if let Some(p) = &path {
                    event.push((Value::str("path"), Value::str(p)));
                }
                if let Some(f) = &from {
                    event.push((Value::str("from"), Value::str(f.to_string())));
                }
                let event = Value::Map(event);
                let b = bus(&node);
                let targets: Vec<(u64, Pid, Arc<AtomicU64>)> = b
                    .subs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|s| {
                        pattern_matches(&s.system, &system)
                            && s.kind.as_deref().is_none_or(|k| pattern_matches(k, &kind))
                    })
                    .map(|s| (s.id, s.pid.clone(), s.dropped.clone()))
                    .collect();
                let (mut missed, mut gone) = (0usize, Vec::new());
                for (id, pid, dropped) in &targets {
                    match node.send_runtime(from.as_ref(), pid, topic(*id), vec![event.clone()]) {
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
                    return LuaError::new(
                        "UNAVAILABLE",
                        format!(
                            "events.send: {missed} of {} subscribers had a full mailbox and did not get the event",
                            targets.len() - gone.len()
                        ),
                    )
                    .into_nil_err(lua);
                }
                Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)]))
            },
        )?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("orders.*", "orders"));
        assert!(pattern_matches("orders.*", "orders.eu"));
        assert!(!pattern_matches("orders.*", "ordersx"));
        assert!(pattern_matches("orders", "orders"));
        assert!(!pattern_matches("orders", "orders.eu"));
    }
}
