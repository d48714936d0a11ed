//! The `pg` module: process groups with Erlang's `pg` semantics (see [`crate::pg`]).
//!
//! `pg.open(scope_id)` -> a scope (the `pg.scope` entry), or `nil, err`. On a scope:
//! `join(group [, pid | {pids}])` -> true (the calling process by default; once per
//! join), `leave(group [, pid | {pids}])` -> true, or false when none was joined
//! (Erlang's `not_joined`), `get_members(group)` / `get_local_members(group)` -> pids,
//! once per join, the latest first, `which_groups()` / `which_local_groups()` -> sorted
//! group names, `broadcast(group, topic, payload...)` -> how many distinct members it
//! reached, `monitor([group])` -> `ref, members` (members: a list of pids for a group,
//! group -> pids for the whole scope), after which the calling process receives a
//! message on topic `pg` per join and leave, `{ref, scope, event = "join" | "leave",
//! group, pids}`, in order; `demonitor(ref)` -> true if it was monitoring.
//! In a cluster the groups span the nodes: `get_members` / `which_groups` see every
//! node's processes, `get_local_members` / `which_local_groups` this node's only, and
//! `join` / `leave` take this node's processes.

use super::errors::LuaError;
use super::{current_or, Current};
use crate::pg::{Groups, Scope};
use crate::process::{Node, Pid};
use crate::registry::Id;
use crate::value;
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods};
use std::sync::Arc;

/// A scope handle in Lua.
struct LuaScope(Arc<Scope>);

fn node_and_self() -> mlua::Result<(Arc<Node>, Option<Pid>)> {
    let cur = current_or("pg")?;
    let me = match &cur {
        Current::Process(p) => Some(p.me.pid.clone()),
        // a function call is a process as soon as it asks for its pid
        Current::Call(c) => Some(c.as_process()?.me.pid.clone()),
    };
    Ok((cur.node().clone(), me))
}

fn one(lua: &Lua, v: impl mlua::IntoLua) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v.into_lua(lua)?]))
}

/// The pids a call names: the given pid or list of pids, or the calling process.
fn pids_arg(func: &str, v: mlua::Value) -> Result<Vec<Pid>, LuaError> {
    let parse = |s: &str| {
        Pid::parse(s)
            .ok_or_else(|| LuaError::new("INVALID", format!("pg.{func}: malformed pid {s:?}")))
    };
    match v {
        mlua::Value::Nil => {
            let (_, me) = node_and_self().map_err(|e| LuaError::new("INVALID", e.to_string()))?;
            me.map(|p| vec![p]).ok_or_else(|| {
                LuaError::new(
                    "INVALID",
                    format!("pg.{func}: a function call has no pid of its own; name the pids"),
                )
            })
        }
        mlua::Value::String(s) => Ok(vec![parse(&s.to_string_lossy())?]),
        mlua::Value::Table(t) => {
            let mut out = Vec::new();
            for v in t.sequence_values::<mlua::Value>() {
                match v {
                    Ok(mlua::Value::String(s)) => out.push(parse(&s.to_string_lossy())?),
                    _ => {
                        return Err(LuaError::new(
                            "INVALID",
                            format!("pg.{func}: expected a list of pids"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        other => Err(LuaError::new(
            "INVALID",
            format!(
                "pg.{func}: expected a pid or a list of pids, found {}",
                other.type_name()
            ),
        )),
    }
}

fn pid_table(lua: &Lua, pids: &[Pid]) -> mlua::Result<Table> {
    lua.create_sequence_from(pids.iter().map(|p| p.to_string()))
}

impl UserData for LuaScope {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("id", |_, this, ()| Ok(this.0.id.to_string()));
        m.add_method("join", |lua, this, (group, pids): (String, mlua::Value)| {
            let r = pids_arg("join", pids).and_then(|pids| {
                this.0
                    .join(&group, &pids)
                    .map_err(|e| LuaError::new(e.kind(), format!("pg.join: {e}")))
            });
            match r {
                Ok(()) => one(lua, true),
                Err(e) => e.into_nil_err(lua),
            }
        });
        m.add_method(
            "leave",
            |lua, this, (group, pids): (String, mlua::Value)| {
                let r = pids_arg("leave", pids).and_then(|pids| {
                    this.0
                        .leave(&group, &pids)
                        .map_err(|e| LuaError::new(e.kind(), format!("pg.leave: {e}")))
                });
                match r {
                    Ok(b) => one(lua, b),
                    Err(e) => e.into_nil_err(lua),
                }
            },
        );
        m.add_method("get_members", |lua, this, group: String| {
            pid_table(lua, &this.0.members(&group))
        });
        m.add_method("get_local_members", |lua, this, group: String| {
            pid_table(lua, &this.0.local_members(&group))
        });
        m.add_method("which_groups", |lua, this, ()| {
            lua.create_sequence_from(this.0.which_groups())
        });
        m.add_method("which_local_groups", |lua, this, ()| {
            lua.create_sequence_from(this.0.which_local_groups())
        });
        m.add_method(
            "broadcast",
            |lua, this, (group, topic, payload): (String, String, mlua::Variadic<mlua::Value>)| {
                let (_, me) = node_and_self()?;
                let payload = match value::from_lua_multi(payload.iter()) {
                    Ok(p) => p,
                    Err(e) => {
                        return LuaError::new("INVALID", format!("pg.broadcast: {e}"))
                            .into_nil_err(lua)
                    }
                };
                match this.0.broadcast(me.as_ref(), &group, &topic, payload) {
                    Ok(n) => one(lua, n),
                    Err(e) => {
                        LuaError::new(e.kind(), format!("pg.broadcast: {e}")).into_nil_err(lua)
                    }
                }
            },
        );
        m.add_method("monitor", |lua, this, group: Option<String>| {
            let Some(me) = node_and_self()?.1 else {
                return LuaError::new("INVALID", "pg.monitor: only a process can monitor")
                    .into_nil_err(lua);
            };
            match this.0.monitor(&me, group.as_deref()) {
                Ok((id, now)) => {
                    let members = match &group {
                        Some(g) => pid_table(lua, now.get(g).map(|v| &v[..]).unwrap_or(&[]))?,
                        None => {
                            let t = lua.create_table()?;
                            for (g, pids) in &now {
                                t.set(g.as_str(), pid_table(lua, pids)?)?;
                            }
                            t
                        }
                    };
                    Ok(MultiValue::from_vec(vec![
                        mlua::Value::Integer(id as i64),
                        mlua::Value::Table(members),
                    ]))
                }
                Err(e) => LuaError::new(e.kind(), format!("pg.monitor: {e}")).into_nil_err(lua),
            }
        });
        m.add_method("demonitor", |_, this, id: i64| {
            Ok(this.0.demonitor(id as u64))
        });
    }
}

/// Builds the module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "open",
        lua.create_function(|lua, id: String| {
            let cur = current_or("pg")?;
            // a bare name is in the namespace of the code that asks
            let id = match Id::resolve(&id, &cur.entry().id.namespace) {
                Ok(id) => id,
                Err(e) => {
                    return LuaError::new("INVALID", format!("pg.open: {e}")).into_nil_err(lua)
                }
            };
            match Groups::open(cur.node(), &id) {
                Ok(scope) => one(lua, lua.create_userdata(LuaScope(scope))?),
                Err(e) => LuaError::new(e.kind(), format!("pg.open: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    Ok(t)
}
