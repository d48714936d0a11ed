//! The `supervisor` module: observe and steer services and trees from Lua, modelled on
//! OTP's `supervisor:which_children` / `restart_child`.
//!
//! `state(id)` -> state name; `list()` -> every service with its state, pid, attempt,
//! restarts and last error; `start(id)` (after what it requires), `stop(id)`, `restart(id)`
//! -> true (once done) or
//! `nil, err`; `children(tree_id)` -> the children of a running supervisor;
//! `kill(tree_id)` -> true once a running supervisor was killed (its children terminated;
//! its parent restarts it), like `exit(Sup, kill)` in OTP.
//!
//! OTP's runtime API on a running tree, with its results and errors (`err:details()
//! .reason` is OTP's reason: `already_started`, `already_present`, `running`,
//! `restarting`, `not_found`, `simple_one_for_one`, `start_failed`, `invalid`):
//! `start_child(tree, spec)` (on a simple_one_for_one tree: `start_child(tree, {extra
//! args})`) -> pid, or false when the child answered ignore; `terminate_child(tree, id)`
//! (by pid on simple_one_for_one) -> true; `restart_child(tree, id)` -> pid or false;
//! `delete_child(tree, id)` -> true; `which_children(tree)` -> `{id, pid, state, type,
//! restarts}` per child (state `running`, `restarting` or `undefined`);
//! `count_children(tree)` -> `{specs, active, supervisors, workers}`;
//! `get_childspec(tree, id_or_pid)` -> the spec as a table; `check_childspecs(specs [,
//! auto_shutdown])` -> true or `nil, err` naming the spec and field.
//!
//! Inside a supervised process: `started()` ends its start (for a child declared
//! `start: ack`; any other child is started when it first waits for a message) and `ignore()` answers
//! OTP's `ignore`: the process ends at once and the tree does not restart it.

use crate::lua::errors::LuaError;
use crate::lua::{current_any, current_or, Current};
use crate::registry::Id;
use crate::supervision::spec::{self, AutoShutdown, ChildKind, ChildSpec, INFINITY};
use crate::supervision::{ChildError, ControlResult, NewChild, Supervision};
use crate::value::{self, Value};
use mlua::{Lua, MultiValue, Table};
use std::sync::Arc;

fn child_err(lua: &Lua, tree: &Id, e: ChildError) -> mlua::Result<MultiValue> {
    let mut details = vec![(Value::str("reason"), Value::str(e.reason()))];
    if let ChildError::AlreadyStarted(_, Some(pid)) = &e {
        details.push((Value::str("pid"), Value::str(pid.clone())));
    }
    let mut err = LuaError::new(e.kind(), format!("supervisor {tree}: {e}"));
    err.details = Some(Value::Map(details));
    err.into_nil_err(lua)
}

fn one(v: mlua::Value) -> MultiValue {
    MultiValue::from_vec(vec![v])
}

/// `pid`, or false for a child that answered ignore.
fn started_value(lua: &Lua, pid: Option<String>) -> mlua::Result<mlua::Value> {
    Ok(match pid {
        Some(p) => mlua::Value::String(lua.create_string(p)?),
        None => mlua::Value::Boolean(false),
    })
}

fn duration_value(lua: &Lua, d: std::time::Duration) -> mlua::Result<mlua::Value> {
    Ok(if d == INFINITY {
        mlua::Value::String(lua.create_string("infinity")?)
    } else if d.is_zero() {
        mlua::Value::String(lua.create_string("brutal_kill")?)
    } else {
        mlua::Value::Integer(d.as_millis() as i64)
    })
}

fn spec_table(lua: &Lua, c: &ChildSpec) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("id", c.id.as_str())?;
    match &c.kind {
        ChildKind::Process(id) => t.set("process", id.to_string())?,
        ChildKind::Tree(id) => t.set("supervisor", id.to_string())?,
    }
    t.set("type", c.kind_name())?;
    t.set(
        "restart",
        match c.restart {
            spec::RestartType::Permanent => "permanent",
            spec::RestartType::Transient => "transient",
            spec::RestartType::Temporary => "temporary",
        },
    )?;
    t.set("shutdown", duration_value(lua, c.shutdown)?)?;
    t.set("significant", c.significant)?;
    t.set(
        "start",
        match c.start {
            spec::StartMode::FirstWait => "first_wait",
            spec::StartMode::Ack => "ack",
        },
    )?;
    t.set("start_timeout", c.start_timeout.as_millis() as i64)?;
    t.set("args", value::to_lua(lua, &Value::Array(c.args.clone()))?)?;
    t.set("host", c.host.as_ref().map(|h| h.to_string()))?;
    Ok(t)
}

/// A Lua child spec table as the JSON the spec checker reads.
fn spec_json(v: mlua::Value) -> Result<serde_json::Value, LuaError> {
    let v = value::from_lua(&v)
        .map_err(|e| LuaError::new("INVALID", format!("supervisor: child spec: {e}")))?;
    value::to_json(&v).map_err(|e| LuaError::new("INVALID", format!("supervisor: child spec: {e}")))
}

fn auto_shutdown_arg(s: Option<String>) -> Result<AutoShutdown, LuaError> {
    match s.as_deref() {
        None | Some("never") => Ok(AutoShutdown::Never),
        Some("any_significant") => Ok(AutoShutdown::AnySignificant),
        Some("all_significant") => Ok(AutoShutdown::AllSignificant),
        Some(other) => Err(LuaError::new(
            "INVALID",
            format!("supervisor.check_childspecs: unknown auto_shutdown {other}; expected never, any_significant or all_significant"),
        )),
    }
}

/// The process whose code calls, for `started` / `ignore`.
fn supervised(name: &str) -> mlua::Result<std::rc::Rc<crate::lua::ProcCtx>> {
    match current_any() {
        Some(Current::Process(p)) => Ok(p),
        _ => Err(mlua::Error::runtime(format!(
            "supervisor.{name}: only a process can report its start"
        ))),
    }
}

fn system() -> mlua::Result<Arc<Supervision>> {
    current_or("supervisor")?
        .services()
        .supervision()
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
        "started",
        lua.create_function(|_, ()| {
            Ok(supervised("started")?.ack_start(crate::process::Started::Running))
        })?,
    )?;
    t.set(
        "ignore",
        lua.create_async_function(|_, ()| async move {
            supervised("ignore")?.ack_start(crate::process::Started::Ignore);
            // the process ends at its next suspension, which is now
            std::future::pending::<()>().await;
            Ok(())
        })?,
    )?;
    t.set(
        "which_children",
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
                        t.set("pid", c.pid.clone())?;
                        t.set(
                            "state",
                            if c.running {
                                "running"
                            } else if c.restarting {
                                "restarting"
                            } else {
                                "undefined"
                            },
                        )?;
                        t.set(
                            "type",
                            if c.kind == "process" {
                                "worker"
                            } else {
                                "supervisor"
                            },
                        )?;
                        t.set("restarts", c.restarts)?;
                        out.raw_set(i + 1, t)?;
                    }
                    Ok(one(mlua::Value::Table(out)))
                }
                Err((kind, msg)) => LuaError::new(kind, msg).into_nil_err(&lua),
            }
        })?,
    )?;
    t.set(
        "count_children",
        lua.create_async_function(|lua, id: String| async move {
            let sup = system()?;
            let id = match id_arg(&id) {
                Ok(id) => id,
                Err(e) => return e.into_nil_err(&lua),
            };
            match sup.count_children(&id).await {
                Ok(n) => {
                    let t = lua.create_table()?;
                    t.set("specs", n.specs)?;
                    t.set("active", n.active)?;
                    t.set("supervisors", n.supervisors)?;
                    t.set("workers", n.workers)?;
                    Ok(one(mlua::Value::Table(t)))
                }
                Err((kind, msg)) => LuaError::new(kind, msg).into_nil_err(&lua),
            }
        })?,
    )?;
    t.set(
        "start_child",
        lua.create_async_function(|lua, (id, spec): (String, mlua::Value)| async move {
            let sup = system()?;
            let id = match id_arg(&id) {
                Ok(id) => id,
                Err(e) => return e.into_nil_err(&lua),
            };
            let Some(tree) = sup.specs().trees.get(&id).cloned() else {
                return LuaError::new("NOT_FOUND", format!("supervisor {id} not found"))
                    .into_nil_err(&lua);
            };
            let new = if tree.strategy == spec::Strategy::SimpleOneForOne {
                let extra = match &spec {
                    mlua::Value::Nil => Vec::new(),
                    v => match value::from_lua(v) {
                        Ok(Value::Array(items)) => items,
                        Ok(_) | Err(_) => {
                            return LuaError::new(
                                "INVALID",
                                format!("supervisor.start_child: {id} is simple_one_for_one: expected the list of extra arguments"),
                            )
                            .into_nil_err(&lua)
                        }
                    },
                };
                NewChild::Args(extra)
            } else {
                let json = match spec_json(spec) {
                    Ok(j) => j,
                    Err(e) => return e.into_nil_err(&lua),
                };
                let registry = sup.node.registry();
                let Some(entry) = registry.get(&id) else {
                    return LuaError::new("NOT_FOUND", format!("supervisor {id} not found"))
                        .into_nil_err(&lua);
                };
                match spec::child_spec(&registry, entry, &json, tree.auto_shutdown) {
                    Ok(c) => NewChild::Spec(c),
                    Err(e) => {
                        return child_err(
                            &lua,
                            &id,
                            ChildError::Invalid(format!("start_child: {e}")),
                        )
                    }
                }
            };
            match sup.start_child(&id, new).await {
                Ok(Ok(pid)) => Ok(one(started_value(&lua, pid)?)),
                Ok(Err(e)) => child_err(&lua, &id, e),
                Err((kind, msg)) => LuaError::new(kind, msg).into_nil_err(&lua),
            }
        })?,
    )?;
    for name in [
        "terminate_child",
        "restart_child",
        "delete_child",
        "get_childspec",
    ] {
        t.set(
            name,
            lua.create_async_function(move |lua, (id, child): (String, String)| async move {
                let sup = system()?;
                let id = match id_arg(&id) {
                    Ok(id) => id,
                    Err(e) => return e.into_nil_err(&lua),
                };
                let r = match name {
                    "terminate_child" => sup
                        .terminate_child(&id, &child)
                        .await
                        .map(|r| r.map(|()| mlua::Value::Boolean(true))),
                    "delete_child" => sup
                        .delete_child(&id, &child)
                        .await
                        .map(|r| r.map(|()| mlua::Value::Boolean(true))),
                    "restart_child" => match sup.restart_child(&id, &child).await {
                        Ok(Ok(pid)) => Ok(Ok(started_value(&lua, pid)?)),
                        Ok(Err(e)) => Ok(Err(e)),
                        Err(e) => Err(e),
                    },
                    _ => match sup.get_childspec(&id, &child).await {
                        Ok(Ok(c)) => Ok(Ok(mlua::Value::Table(spec_table(&lua, &c)?))),
                        Ok(Err(e)) => Ok(Err(e)),
                        Err(e) => Err(e),
                    },
                };
                match r {
                    Ok(Ok(v)) => Ok(one(v)),
                    Ok(Err(e)) => child_err(&lua, &id, e),
                    Err((kind, msg)) => LuaError::new(kind, msg).into_nil_err(&lua),
                }
            })?,
        )?;
    }
    t.set(
        "check_childspecs",
        lua.create_function(|lua, (specs, auto): (Table, Option<String>)| {
            let auto = match auto_shutdown_arg(auto) {
                Ok(a) => a,
                Err(e) => return e.into_nil_err(lua),
            };
            let cur = current_or("supervisor")?;
            let registry = cur.node().registry();
            // ids resolve in the namespace of the code that asks
            let me = cur.entry();
            let mut seen = std::collections::HashMap::new();
            for (i, v) in specs.sequence_values::<mlua::Value>().enumerate() {
                let json = match spec_json(v?) {
                    Ok(j) => j,
                    Err(e) => return e.into_nil_err(lua),
                };
                let c = match spec::child_spec(&registry, &me, &json, auto) {
                    Ok(c) => c,
                    Err(e) => {
                        return LuaError::new(
                            "INVALID",
                            format!("supervisor.check_childspecs: spec {}: {e}", i + 1),
                        )
                        .into_nil_err(lua)
                    }
                };
                if let Some(prev) = seen.insert(c.id.clone(), i) {
                    return LuaError::new(
                        "INVALID",
                        format!(
                            "supervisor.check_childspecs: spec {}: duplicate child id {} (also spec {})",
                            i + 1,
                            c.id,
                            prev + 1
                        ),
                    )
                    .into_nil_err(lua);
                }
            }
            Ok(one(mlua::Value::Boolean(true)))
        })?,
    )?;
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
                        t.set("restarting", c.restarting)?;
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
