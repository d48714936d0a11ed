//! The `security` module (en/lua/security/security.md, en/system/security.md): who acts
//! (`security.actor()`, with its `meta`) and under which scope (`security.scope()`),
//! making both (`new_actor(id, meta)`, `new_scope(policies)`, `policy(id)`,
//! `named_scope("ns:group")`), evaluating (`scope:evaluate(actor, action, resource,
//! meta)`, `security.can(action, resource, meta)`), and [`check`], which the guarded
//! operations call before they run. The actor of a process's own calls is the process
//! (its pid); a call made with `with_actor` / `with_scope` carries them to the callee and
//! the calls it makes. With an actor and a scope, access is deny-by-default; without a
//! scope (a process's own context), it is allowed, as Wippy's permissive mode has it.

use crate::lua::errors::LuaError;
use crate::lua::{current_any, Current};
use crate::security::{evaluate, Actor, Decision, Policy};
use crate::value::{self, Value};
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods};
use std::sync::Arc;

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

/// A policy object (`security.policy(id)`): `p:id()`; a scope's `with` takes it.
#[derive(Clone, Debug)]
pub struct LuaPolicy {
    /// The `security.policy` entry's id.
    pub id: String,
}

impl UserData for LuaPolicy {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("id", |_, p, ()| Ok(p.id.clone()));
        m.add_meta_method(mlua::MetaMethod::ToString, |_, p, ()| {
            Ok(format!("policy({})", p.id))
        });
    }
}

/// A policy named by a Lua value: a policy object or its id.
fn policy_id(v: &mlua::Value) -> mlua::Result<String> {
    match v {
        mlua::Value::String(s) => Ok(s.to_string_lossy()),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaPolicy>() {
            Ok(p) => Ok(p.id.clone()),
            Err(_) => Err(mlua::Error::runtime("expected a policy or a policy id")),
        },
        other => Err(mlua::Error::runtime(format!(
            "expected a policy or a policy id, got {}",
            other.type_name()
        ))),
    }
}

/// The policies of a scope that exist in the registry now (ids naming none are skipped).
fn policies_of(node: &crate::process::Node, ids: &[String]) -> Vec<Arc<Policy>> {
    let reg = node.registry();
    ids.iter()
        .filter_map(|id| crate::registry::Id::parse(id).ok())
        .filter_map(|id| reg.policy(&id).cloned())
        .collect()
}

fn actor_of(id: &str, meta: Option<&Value>) -> Actor {
    Actor {
        id: id.to_string(),
        meta: meta
            .and_then(|m| value::to_json(m).ok())
            .unwrap_or(serde_json::Value::Null),
    }
}

/// What the policies of `scope` (as the registry has them now) say of a request.
fn decide(
    node: &crate::process::Node,
    scope: &[String],
    actor: &Actor,
    action: &str,
    resource: &str,
    meta: &serde_json::Value,
) -> Decision {
    let policies = policies_of(node, scope);
    evaluate(policies.iter().map(|p| &**p), actor, action, resource, meta)
}

/// Whether the context `ctx` may do `action` on `resource`: with an actor and a scope,
/// only if a policy of the scope allows it and none denies it (en/system/security.md,
/// "Policy Evaluation"); without both, yes, unless the node is in strict mode
/// (en/concepts/security-model.md: strict mode denies the incomplete case). A refusal is
/// PERMISSION_DENIED naming the action and the resource.
pub(crate) fn check(
    node: &crate::process::Node,
    ctx: &crate::functions::CallContext,
    action: &str,
    resource: &str,
) -> Result<(), LuaError> {
    let (Some(actor), Some(scope)) = (&ctx.actor, &ctx.scope) else {
        if strict(node) {
            return Err(LuaError::new(
                "PERMISSION_DENIED",
                format!(
                    "permission denied: {action} on {resource} (no actor and scope, and the runtime is in strict mode)"
                ),
            ));
        }
        return Ok(());
    };
    let actor = actor_of(actor, ctx.actor_meta.as_ref());
    match decide(
        node,
        scope,
        &actor,
        action,
        resource,
        &serde_json::Value::Null,
    ) {
        Decision::Allow => Ok(()),
        d => Err(LuaError::new(
            "PERMISSION_DENIED",
            format!(
                "permission denied: {action} on {resource} (actor {}, {})",
                actor.id,
                if d == Decision::Deny {
                    "denied by a policy"
                } else {
                    "no policy allows it"
                }
            ),
        )),
    }
}

/// Whether `node` is in strict mode (one relaxed load: the hot paths ask it).
pub(crate) fn strict(node: &crate::process::Node) -> bool {
    node.strict_security
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether code under `ctx` on `node` has its operations checked: it is under a scope,
/// or the node is in strict mode (the hot paths ask this before building an action's
/// resource text).
pub(crate) fn checked(
    node: &crate::process::Node,
    ctx: Option<&crate::functions::CallContext>,
) -> bool {
    ctx.is_some_and(|c| c.scope.is_some()) || strict(node)
}

/// [`checked`] for the code running now.
pub(crate) fn guarded() -> bool {
    match current_any() {
        Some(Current::Process(p)) => checked(&p.node, p.call_context.get().map(|c| &**c)),
        Some(Current::Call(c)) => checked(&c.node, Some(&c.context)),
        None => false,
    }
}

/// [`check`] under the context of the code running now (a process's, or a call's).
pub(crate) fn check_now(action: &str, resource: &str) -> Result<(), LuaError> {
    match current_any() {
        Some(Current::Process(p)) => match p.call_context.get() {
            Some(c) => check(&p.node, c, action, resource),
            None if strict(&p.node) => check(
                &p.node,
                &crate::functions::CallContext::default(),
                action,
                resource,
            ),
            None => Ok(()),
        },
        Some(Current::Call(c)) => check(&c.node, &c.context, action, resource),
        None => Ok(()),
    }
}

/// A scope: the policy ids it names. `s:policies()`, `s:contains(id)`, `s:with(policy)`,
/// `s:without(id)` (the last two give new scopes), `s:evaluate(actor, action, resource,
/// meta?)`.
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
        m.add_method("with", |_, s, p: mlua::Value| {
            let id = policy_id(&p)?;
            let mut next = s.clone();
            if !next.policies.contains(&id) {
                next.policies.push(id);
            }
            Ok(next)
        });
        m.add_method("without", |_, s, p: mlua::Value| {
            let id = policy_id(&p)?;
            let mut next = s.clone();
            next.policies.retain(|p| *p != id);
            Ok(next)
        });
        // "allow", "deny" or "undefined" (en/system/security.md, "Evaluation Results")
        m.add_method(
            "evaluate",
            |_,
             s,
             (actor, action, resource, meta): (
                mlua::UserDataRef<LuaActor>,
                String,
                String,
                mlua::Value,
            )| {
                let node = crate::lua::current_or("security")?.node().clone();
                let meta = meta_json(&meta)?;
                let actor = actor_of(&actor.id, Some(&actor.meta));
                Ok(decide(&node, &s.policies, &actor, &action, &resource, &meta).name())
            },
        );
    }
}

fn meta_json(v: &mlua::Value) -> mlua::Result<serde_json::Value> {
    if v.is_nil() {
        return Ok(serde_json::Value::Null);
    }
    let v = value::from_lua(v).map_err(|e| mlua::Error::runtime(format!("meta: {e}")))?;
    value::to_json(&v).map_err(|e| mlua::Error::runtime(format!("meta: {e}")))
}

/// An actor's id and metadata, as a context holds them.
type ActorNow = Option<(String, Option<Value>)>;

/// The actor (with its meta) and scope of the code running now.
fn now() -> (ActorNow, Option<Vec<String>>) {
    match current_any() {
        Some(Current::Process(p)) => match p.call_context.get() {
            Some(c) => (
                Some(match &c.actor {
                    Some(a) => (a.clone(), c.actor_meta.clone()),
                    None => (p.pid_str().to_string(), None),
                }),
                c.scope.clone(),
            ),
            None => (Some((p.pid_str().to_string(), None)), None),
        },
        Some(Current::Call(c)) => (
            c.context
                .actor
                .clone()
                .map(|a| (a, c.context.actor_meta.clone())),
            c.context.scope.clone(),
        ),
        None => (None, None),
    }
}

/// The `security` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "actor",
        lua.create_function(|_, ()| {
            Ok(now().0.map(|(id, meta)| LuaActor {
                id,
                meta: meta.unwrap_or(Value::Map(Vec::new())),
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
        lua.create_function(|_, policies: Option<Vec<mlua::Value>>| {
            let mut s = LuaScope::default();
            for p in policies.unwrap_or_default() {
                let p = policy_id(&p)?;
                if !s.policies.contains(&p) {
                    s.policies.push(p);
                }
            }
            Ok(s)
        })?,
    )?;
    t.set(
        "policy",
        lua.create_function(|lua, id: String| {
            let node = crate::lua::current_or("security")?.node().clone();
            let found = crate::registry::Id::parse(&id)
                .ok()
                .and_then(|i| node.registry().policy(&i).cloned());
            match found {
                Some(p) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                    lua.create_userdata(LuaPolicy { id: p.id.clone() })?,
                )])),
                None => LuaError::new("NOT_FOUND", format!("security.policy: no policy {id}"))
                    .into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "named_scope",
        // "ns:group": every policy of namespace ns in group `group`
        lua.create_function(|lua, group: String| {
            let node = crate::lua::current_or("security")?.node().clone();
            let Ok(id) = crate::registry::Id::parse(&group) else {
                return LuaError::new(
                    "INVALID",
                    format!("security.named_scope: {group:?} is not namespace:group"),
                )
                .into_nil_err(lua);
            };
            let policies = node.registry().policies_in_group(&id.namespace, &id.name);
            if policies.is_empty() {
                return LuaError::new(
                    "NOT_FOUND",
                    format!("security.named_scope: no policy in group {group}"),
                )
                .into_nil_err(lua);
            }
            let scope = LuaScope {
                policies: policies.iter().map(|p| p.id.clone()).collect(),
            };
            Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(scope)?,
            )]))
        })?,
    )?;
    t.set(
        "can",
        // the context's actor and scope (en/system/security.md, "Quick Permission Check")
        lua.create_function(
            |_, (action, resource, meta): (String, String, mlua::Value)| {
                let (actor, scope) = now();
                let (Some((id, actor_meta)), Some(scope)) = (actor, scope) else {
                    return Ok(true);
                };
                let node = crate::lua::current_or("security")?.node().clone();
                let meta = meta_json(&meta)?;
                let actor = actor_of(&id, actor_meta.as_ref());
                Ok(decide(&node, &scope, &actor, &action, &resource, &meta) == Decision::Allow)
            },
        )?,
    )?;
    Ok(t)
}
