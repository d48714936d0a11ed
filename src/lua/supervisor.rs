//! The `supervisor` module: observe and steer services and trees from Lua, modelled on
//! OTP's `supervisor:which_children` / `restart_child`.
//!
//! `state(id)` -> state name; `list()` -> every service with its state, pid, attempt,
//! restarts and last error; `start(id)` (after what it requires), `stop(id)`, `restart(id)`
//! -> true (once done) or
//! `nil, err`; `children(tree_id)` -> the children of a running supervisor;
//! `kill(tree_id)` -> true once a running supervisor was killed (its children terminated;
//! its parent restarts it), like `exit(Sup, kill)` in OTP.

use super::errors::LuaError;
use super::{current_any, Current};
use crate::registry::Id;
use crate::supervision::{ControlResult, Supervision};
use mlua::{Lua, MultiValue, Table};
use std::sync::Arc;

fn system() -> mlua::Result<Arc<Supervision>> {
    let node = match current_any() {
        Some(Current::Process(p)) => p.node.clone(),
        Some(Current::Call(c)) => c.node.clone(),
        None => return Err(mlua::Error::runtime("supervisor: not inside a process")),
    };
    node.ext::<Supervision>()
        .ok_or_else(|| mlua::Error::runtime("supervisor: the runtime has no supervision"))
}

fn id_arg(s: &str) -> Result<Id, LuaError> {
    Id::parse(s).map_err(|e| LuaError::new("INVALID", format!("supervisor: {e}")))
}

fn done(lua: &Lua, r: ControlResult<()>) -> mlua::Result<MultiValue> {
    match r {
        Ok(()) => Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)])),
        Err((kind, msg)) => LuaError::new(kind, msg).into_nil_err(lua),
    }
}

fn status_table(lua: &Lua, id: &Id, s: &crate::supervision::ServiceStatus) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("id", id.to_string())?;
    t.set("state", s.state.name())?;
    t.set("pid", s.pid.clone())?;
    t.set("attempt", s.attempt)?;
    t.set("restarts", s.restarts)?;
    t.set("error", s.last_error.clone())?;
    Ok(t)
}

/// `f` of a service's status, or `nil, err` for a bad or unknown id.
fn with_status(
    lua: &Lua,
    id: &str,
    f: impl FnOnce(&Lua, &Id, &crate::supervision::ServiceStatus) -> mlua::Result<mlua::Value>,
) -> mlua::Result<MultiValue> {
    let sup = system()?;
    let id = match id_arg(id) {
        Ok(id) => id,
        Err(e) => return e.into_nil_err(lua),
    };
    match sup.status(&id) {
        Some(s) => Ok(MultiValue::from_vec(vec![f(lua, &id, &s)?])),
        None => LuaError::new("NOT_FOUND", format!("service {id} not found")).into_nil_err(lua),
    }
}

/// Builds the module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "state",
        lua.create_function(|lua, id: String| {
            with_status(lua, &id, |lua, _, s| {
                Ok(mlua::Value::String(lua.create_string(s.state.name())?))
            })
        })?,
    )?;
    t.set(
        "info",
        lua.create_function(|lua, id: String| {
            with_status(lua, &id, |lua, id, s| {
                Ok(mlua::Value::Table(status_table(lua, id, s)?))
            })
        })?,
    )?;
    t.set(
        "list",
        lua.create_function(|lua, ()| {
            let sup = system()?;
            let out = lua.create_table()?;
            let mut all: Vec<_> = sup
                .statuses
                .iter()
                .map(|e| (e.key().clone(), e.value().clone()))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            for (i, (id, s)) in all.iter().enumerate() {
                out.raw_set(i + 1, status_table(lua, id, s)?)?;
            }
            Ok(out)
        })?,
    )?;
    for name in ["start", "stop", "restart", "kill"] {
        t.set(
            name,
            lua.create_async_function(move |lua, id: String| async move {
                let sup = system()?;
                let id = match id_arg(&id) {
                    Ok(id) => id,
                    Err(e) => return e.into_nil_err(&lua),
                };
                let r = match name {
                    "start" => sup.start_with_requires(&id).await,
                    "stop" => sup.stop(&id).await,
                    "restart" => sup.restart(&id).await,
                    _ => sup.kill_tree(&id).await,
                };
                done(&lua, r)
            })?,
        )?;
    }
    t.set(
        "children",
        lua.create_async_function(|lua, id: String| async move {
            let sup = system()?;
            let id = match id_arg(&id) {
                Ok(id) => id,
                Err(e) => return e.into_nil_err(&lua),
            };
            match sup.children(&id).await {
                Ok(children) => {
                    let out = lua.create_table()?;
                    for (i, c) in children.iter().enumerate() {
                        let t = lua.create_table()?;
                        t.set("id", c.id.as_str())?;
                        t.set("kind", c.kind)?;
                        t.set("pid", c.pid.clone())?;
                        t.set("running", c.running)?;
                        t.set("restarts", c.restarts)?;
                        out.raw_set(i + 1, t)?;
                    }
                    Ok(MultiValue::from_vec(vec![mlua::Value::Table(out)]))
                }
                Err((kind, msg)) => LuaError::new(kind, msg).into_nil_err(&lua),
            }
        })?,
    )?;
    Ok(t)
}
