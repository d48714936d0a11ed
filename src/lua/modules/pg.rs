//! The `pg` module, as en/lua/core/pg.md describes it, over Erlang's `pg` semantics (see
//! [`crate::process::pg`]).
//!
//! `pg.open(scope_id)` -> an instance of the scope (the `pg.scope` entry), or `nil, err`.
//! Its methods: `join(group | {groups})` and `leave(group | {groups})` for the calling
//! process (a process is a member once per join; `leave` is `nil, err` INVALID when it was
//! in none of them); `get_members(group)` / `get_local_members(group)` -> pids, once per
//! join, the latest first; `which_groups()` / `which_local_groups()`; `broadcast(group,
//! topic, ...)` / `broadcast_local(...)` -> true; `monitor(group)` -> a subscription and
//! the members now, `events()` -> a subscription and every group's members now; a
//! subscription's `channel()` delivers `{system = "pg", kind = "member.joined" |
//! "member.left", path = group, data = {Group, PIDs}}` in order, `close()` ends it;
//! `release()` ends the instance (its methods then fail with INVALID). A function call
//! that uses `pg` becomes a process (it needs a pid to join).
//!
//! Beyond Wippy: `join` / `leave` take a pid or a list of pids as a second argument (any
//! local process, as Erlang's `pg:join/3`).
//!
//! In a cluster the groups span the nodes: `get_members` / `which_groups` see every
//! node's processes, `get_local_members` / `which_local_groups` this node's only, and
//! `join` / `leave` take this node's processes.

use crate::lua::channel::{Chan, LuaChannel};
use crate::lua::errors::LuaError;
use crate::lua::{current, current_or, Current};
use crate::process::pg::{Groups, Scope};
use crate::process::{Node, Pid};
use crate::registry::Id;
use crate::value;
use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods};
use std::cell::Cell;
use std::sync::Arc;

/// An instance of a scope in Lua (`pg.open`); released by `release()`.
struct LuaScope {
    scope: Arc<Scope>,
    released: Cell<bool>,
}

impl LuaScope {
    /// The scope, or INVALID once released.
    fn ready(&self, func: &str) -> Result<&Arc<Scope>, LuaError> {
        if self.released.get() {
            return Err(LuaError::new(
                "INVALID",
                format!("pg.{func}: the pg instance is released"),
            ));
        }
        // en/lua/core/pg.md, "Permissions": the scope-wide calls on the scope
        if matches!(func, "which_groups" | "which_local_groups" | "events") {
            allowed(func, &self.scope.id.to_string())?;
        }
        Ok(&self.scope)
    }

    /// The scope for a call on `group`, if `pg.<func>` is allowed on the group.
    fn ready_for(&self, func: &str, group: &str) -> Result<&Arc<Scope>, LuaError> {
        let s = self.ready(func)?;
        allowed(func, group)?;
        Ok(s)
    }
}

/// `pg.<func>` on `resource` under the context of the code running now.
fn allowed(func: &str, resource: &str) -> Result<(), LuaError> {
    if !crate::lua::security::guarded() {
        return Ok(());
    }
    crate::lua::security::check_now(&format!("pg.{func}"), resource)
        .map_err(|e| LuaError::new(e.kind, format!("pg.{func}: {}", e.message)))
}

impl LuaScope {}

/// A subscription to a group's (or the scope's) joins and leaves.
struct Subscription {
    scope: Arc<Scope>,
    id: u64,
    chan: Chan,
    ud: AnyUserData,
}

impl UserData for Subscription {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("channel", |_, s, ()| Ok(s.ud.clone()));
        // close({flush = true}) too: events already in the channel stay readable either way
        m.add_method("close", |_, s, _opts: Option<Table>| {
            let was = s.scope.demonitor(s.id);
            if let Ok(ctx) = current() {
                ctx.unlisten(&s.chan);
            }
            s.chan.close();
            Ok(was)
        });
    }
}

/// Group names: one, or a non-empty list.
fn groups_arg(func: &str, v: &mlua::Value) -> Result<Vec<String>, LuaError> {
    let bad = || {
        LuaError::new(
            "INVALID",
            format!("pg.{func}: group name (string) or groups table required"),
        )
    };
    match v {
        mlua::Value::String(s) if !s.as_bytes().is_empty() => Ok(vec![s.to_string_lossy()]),
        mlua::Value::String(_) => Err(LuaError::new(
            "INVALID",
            format!("pg.{func}: group name is required"),
        )),
        mlua::Value::Table(t) => {
            let mut out = Vec::new();
            for g in t.sequence_values::<mlua::Value>() {
                match g {
                    Ok(mlua::Value::String(s)) if !s.as_bytes().is_empty() => {
                        out.push(s.to_string_lossy())
                    }
                    _ => return Err(bad()),
                }
            }
            if out.is_empty() {
                return Err(LuaError::new(
                    "INVALID",
                    format!("pg.{func}: groups table must not be empty"),
                ));
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// Starts a subscription of the calling process to `group` (None: every group): the
/// subscription and the members now.
fn subscribe(
    scope: &Arc<Scope>,
    group: Option<&str>,
    func: &str,
) -> Result<(Subscription, std::collections::BTreeMap<String, Vec<Pid>>), LuaError> {
    let ctx = current().map_err(|e| LuaError::new("INVALID", format!("pg.{func}: {e}")))?;
    let (id, now) = scope
        .monitor(&ctx.me.pid, group)
        .map_err(|e| LuaError::new(e.kind(), format!("pg.{func}: {e}")))?;
    let ud = ctx
        .listen(&crate::process::pg::monitor_topic(id), false)
        .map_err(|e| LuaError::new("INTERNAL", format!("pg.{func}: {e}")))?;
    let chan = ud
        .borrow::<LuaChannel>()
        .map(|c| c.0.clone())
        .map_err(|e| LuaError::new("INTERNAL", format!("pg.{func}: {e}")))?;
    Ok((
        Subscription {
            scope: scope.clone(),
            id,
            chan,
            ud,
        },
        now,
    ))
}

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

fn fail(lua: &Lua, e: LuaError) -> mlua::Result<MultiValue> {
    e.into_nil_err(lua)
}

impl UserData for LuaScope {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("id", |_, this, ()| Ok(this.scope.id.to_string()));
        m.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            Ok(if this.released.get() {
                format!("pg.Instance{{{}, released}}", this.scope.id)
            } else {
                format!("pg.Instance{{{}}}", this.scope.id)
            })
        });
        m.add_method(
            "join",
            |lua, this, (groups, pids): (mlua::Value, mlua::Value)| {
                let r = (|| {
                    let scope = this.ready("join")?;
                    let groups = groups_arg("join", &groups)?;
                    for g in &groups {
                        allowed("join", g)?;
                    }
                    let pids = pids_arg("join", pids)?;
                    for g in &groups {
                        scope
                            .join(g, &pids)
                            .map_err(|e| LuaError::new(e.kind(), format!("pg.join: {e}")))?;
                    }
                    Ok(())
                })();
                match r {
                    Ok(()) => one(lua, true),
                    Err(e) => fail(lua, e),
                }
            },
        );
        m.add_method(
            "leave",
            |lua, this, (groups, pids): (mlua::Value, mlua::Value)| {
                let r = (|| {
                    let scope = this.ready("leave")?;
                    let groups = groups_arg("leave", &groups)?;
                    for g in &groups {
                        allowed("leave", g)?;
                    }
                    let pids = pids_arg("leave", pids)?;
                    let mut any = false;
                    for g in &groups {
                        any |= scope
                            .leave(g, &pids)
                            .map_err(|e| LuaError::new(e.kind(), format!("pg.leave: {e}")))?;
                    }
                    if !any {
                        return Err(LuaError::new(
                            "INVALID",
                            format!("pg.leave: not a member of {}", groups.join(", ")),
                        ));
                    }
                    Ok(())
                })();
                match r {
                    Ok(()) => one(lua, true),
                    Err(e) => fail(lua, e),
                }
            },
        );
        m.add_method("get_members", |lua, this, group: String| {
            match this.ready_for("get_members", &group) {
                Ok(s) => one(lua, pid_table(lua, &s.members(&group))?),
                Err(e) => fail(lua, e),
            }
        });
        m.add_method("get_local_members", |lua, this, group: String| {
            match this.ready_for("get_local_members", &group) {
                Ok(s) => one(lua, pid_table(lua, &s.local_members(&group))?),
                Err(e) => fail(lua, e),
            }
        });
        m.add_method("which_groups", |lua, this, ()| {
            match this.ready("which_groups") {
                Ok(s) => one(lua, lua.create_sequence_from(s.which_groups())?),
                Err(e) => fail(lua, e),
            }
        });
        m.add_method("which_local_groups", |lua, this, ()| {
            match this.ready("which_local_groups") {
                Ok(s) => one(lua, lua.create_sequence_from(s.which_local_groups())?),
                Err(e) => fail(lua, e),
            }
        });
        for (name, local_only) in [("broadcast", false), ("broadcast_local", true)] {
            m.add_method(
                name,
                move |lua, this, (group, topic, payload): (String, String, mlua::Variadic<mlua::Value>)| {
                    let r = (|| {
                        let scope = this.ready_for(name, &group)?;
                        if group.is_empty() {
                            return Err(LuaError::new("INVALID", format!("pg.{name}: group name is required")));
                        }
                        if topic.is_empty() {
                            return Err(LuaError::new("INVALID", format!("pg.{name}: topic is required")));
                        }
                        let (_, me) = node_and_self()
                            .map_err(|e| LuaError::new("INVALID", format!("pg.{name}: {e}")))?;
                        let payload = value::from_lua_multi(payload.iter())
                            .map_err(|e| LuaError::new("INVALID", format!("pg.{name}: {e}")))?;
                        scope
                            .broadcast(me.as_ref(), &group, &topic, payload, local_only)
                            .map_err(|e| LuaError::new(e.kind(), format!("pg.{name}: {e}")))
                    })();
                    match r {
                        Ok(_) => one(lua, true),
                        Err(e) => fail(lua, e),
                    }
                },
            );
        }
        m.add_method("monitor", |lua, this, group: String| {
            let r = this.ready_for("monitor", &group).and_then(|s| {
                if group.is_empty() {
                    return Err(LuaError::new(
                        "INVALID",
                        "pg.monitor: group name is required",
                    ));
                }
                subscribe(s, Some(&group), "monitor")
            });
            match r {
                Ok((sub, now)) => Ok(MultiValue::from_vec(vec![
                    mlua::Value::UserData(lua.create_userdata(sub)?),
                    mlua::Value::Table(pid_table(
                        lua,
                        now.get(&group).map(|v| &v[..]).unwrap_or(&[]),
                    )?),
                ])),
                Err(e) => fail(lua, e),
            }
        });
        m.add_method("events", |lua, this, ()| {
            let r = this
                .ready("events")
                .and_then(|s| subscribe(s, None, "events"));
            match r {
                Ok((sub, now)) => {
                    let snapshot = lua.create_table()?;
                    for (g, pids) in &now {
                        snapshot.set(g.as_str(), pid_table(lua, pids)?)?;
                    }
                    Ok(MultiValue::from_vec(vec![
                        mlua::Value::UserData(lua.create_userdata(sub)?),
                        mlua::Value::Table(snapshot),
                    ]))
                }
                Err(e) => fail(lua, e),
            }
        });
        m.add_method("release", |_, this, ()| {
            this.released.set(true);
            Ok(true)
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
            if let Err(e) = allowed("open", &id.to_string()) {
                return e.into_nil_err(lua);
            }
            match Groups::open(cur.node(), &id) {
                Ok(scope) => one(
                    lua,
                    lua.create_userdata(LuaScope {
                        scope,
                        released: Cell::new(false),
                    })?,
                ),
                Err(e) => LuaError::new(e.kind(), format!("pg.open: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    Ok(t)
}
