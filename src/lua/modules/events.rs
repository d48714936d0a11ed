//! The `events` module: the node's event bus (`crate::process::events`) for Lua code.
//!
//! `events.subscribe(system, kind?)` (in a process) gives a subscription whose
//! `:channel()` receives the events that match, as tables `{system, kind, path, data,
//! from}`, `:close()` ends it and `:dropped()` counts the events it missed because its
//! mailbox was full. `events.send(system, kind, path, data)` publishes one; when some
//! subscriber missed it, the sender gets `nil, err` (UNAVAILABLE, naming how many) after
//! every other subscriber got it. Subscriptions of a process end with it (when it exits,
//! not at the next event).

use crate::lua::channel::LuaChannel;
use crate::lua::errors::LuaError;
use crate::lua::{current, running};
use crate::process::events;
use crate::process::Node;
use crate::value;
use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
            events::unsubscribe(&s.node, s.id);
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
            // en/lua/core/events.md, "Permissions": `events.subscribe` on the system
            if let Err(e) = crate::lua::security::check_now("events.subscribe", &system) {
                return crate::lua::errors::LuaError::new(
                    e.kind,
                    format!("events.subscribe: {}", e.message),
                )
                .into_nil_err(lua);
            }
            let ctx = current()?;
            let (id, dropped) = events::subscribe(&ctx.node, &ctx.me.pid, &system, kind.as_deref());
            let chan = match ctx.listen(&events::topic(id), false) {
                Ok(c) => c,
                Err(e) => {
                    events::unsubscribe(&ctx.node, id);
                    return LuaError::new("INTERNAL", format!("events.subscribe: {e}"))
                        .into_nil_err(lua);
                }
            };
            ctx.subscribed.set(true);
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
                if let Err(e) = crate::lua::security::check_now("events.send", &system) {
                    return crate::lua::errors::LuaError::new(e.kind, format!("events.send: {}", e.message))
                        .into_nil_err(lua);
                }
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
                match events::publish(&node, from.as_ref(), &system, &kind, path.as_deref(), data)
                {
                    Ok(()) => Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)])),
                    Err(m) => LuaError::new(
                        "UNAVAILABLE",
                        format!(
                            "events.send: {} of {} subscribers had a full mailbox and did not get the event",
                            m.missed, m.of
                        ),
                    )
                    .into_nil_err(lua),
                }
            },
        )?,
    )?;
    Ok(t)
}
