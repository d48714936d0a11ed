//! The `security` module, as far as the call context goes: who acts (`security.actor()`)
//! and under which scope (`security.scope()`), and making both for calls
//! (`security.new_actor(id, meta)`, `security.new_scope(policies)`, used with
//! `funcs.new():with_actor(a)` / `:with_scope(s)`). The actor of a process's own calls is
//! the process (its pid); a call made with `with_actor` carries that actor to the callee
//! and the calls it makes. warden has no security policies to evaluate, so the module has
//! no `can`: a scope is the list of policy ids it names, nothing is decided by it.

use super::{current_any, Current};
use crate::value::{self, Value};
use mlua::{Lua, Table, UserData, UserDataMethods};

/// An actor: `a:id()`, `a:meta()`.
#[derive(Clone, Debug)]
pub struct LuaActor {
    /// Who it is (a pid for a process's own calls).
    pub id: String,
    /// What its maker attached.
    pub meta: Value,
}

impl UserData for LuaActor {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("id", |_, a, ()| Ok(a.id.clone()));
        m.add_method("meta", |lua, a, ()| value::to_lua(lua, &a.meta));
        m.add_meta_method(mlua::MetaMethod::ToString, |_, a, ()| {
            Ok(format!("actor({})", a.id))
        });
    }
}

/// A scope: the policy ids it names. `s:policies()`, `s:contains(id)`, `s:with(id)`,
/// `s:without(id)` (the last two give new scopes).
#[derive(Clone, Debug, Default)]
pub struct LuaScope {
    /// Policy ids, in the order added, without repeats.
    pub policies: Vec<String>,
}

impl UserData for LuaScope {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("policies", |lua, s, ()| {
            lua.create_sequence_from(s.policies.clone())
        });
        m.add_method("contains", |_, s, id: String| Ok(s.policies.contains(&id)));
        m.add_method("with", |_, s, id: String| {
            let mut next = s.clone();
            if !next.policies.contains(&id) {
                next.policies.push(id);
            }
            Ok(next)
        });
        m.add_method("without", |_, s, id: String| {
            let mut next = s.clone();
            next.policies.retain(|p| *p != id);
            Ok(next)
        });
    }
}

/// The actor and scope of the code running now.
fn now() -> (Option<String>, Option<Vec<String>>) {
    match current_any() {
        Some(Current::Process(p)) => match p.call_context.get() {
            Some(c) => (
                c.actor.clone().or_else(|| Some(p.pid_str.clone())),
                c.scope.clone(),
            ),
            None => (Some(p.pid_str.clone()), None),
        },
        Some(Current::Call(c)) => (c.context.actor.clone(), c.context.scope.clone()),
        None => (None, None),
    }
}

/// The `security` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "actor",
        lua.create_function(|_, ()| {
            Ok(now().0.map(|id| LuaActor {
                id,
                meta: Value::Map(Vec::new()),
            }))
        })?,
    )?;
    t.set(
        "scope",
        lua.create_function(|_, ()| Ok(now().1.map(|policies| LuaScope { policies })))?,
    )?;
    t.set(
        "new_actor",
        lua.create_function(|_, (id, meta): (String, mlua::Value)| {
            let meta = match meta {
                mlua::Value::Nil => Value::Map(Vec::new()),
                m => value::from_lua(&m)
                    .map_err(|e| mlua::Error::runtime(format!("security.new_actor: meta: {e}")))?,
            };
            Ok(LuaActor { id, meta })
        })?,
    )?;
    t.set(
        "new_scope",
        lua.create_function(|_, policies: Option<Vec<String>>| {
            let mut s = LuaScope::default();
            for p in policies.unwrap_or_default() {
                if !s.policies.contains(&p) {
                    s.policies.push(p);
                }
            }
            Ok(s)
        })?,
    )?;
    Ok(t)
}
