//! The `test` module (Wippy's test library; `test.lua` holds it): suites, cases, hooks,
//! assertions and mocks, and `run_cases`, which reports each case to `warden test`
//! through the node's [`Sink`] as it runs.
//!
//! Wippy apps import it as the library `wippy.test:test` (warden provides that id built
//! in) or list `test` in `modules`.

use crate::lua::errors::LuaError;
use crate::lua::{current_any, current_or};
use crate::process::Node;
use crate::registry::Id;
use crate::supervision::Supervision;
use crate::value::{self, Value};
use mlua::{Lua, MultiValue, Table};
use std::sync::Arc;

fn node() -> mlua::Result<Arc<Node>> {
    Ok(current_or("test")?.node().clone())
}

fn supervision() -> mlua::Result<Arc<Supervision>> {
    current_or("test")?
        .services()
        .supervision()
        .ok_or_else(|| mlua::Error::runtime("test: the runtime has no supervision"))
}

fn done(lua: &Lua, r: Result<(), String>) -> mlua::Result<MultiValue> {
    match r {
        Ok(()) => Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)])),
        Err(e) => LuaError::new("FAILED", e).into_nil_err(lua),
    }
}

/// The helpers `test.lua` builds its supervision functions on: start / stop a service or
/// a bare tree, terminate a process with a reason, the trees' log, a clock.
fn helpers(lua: &Lua) -> mlua::Result<Table> {
    let h = lua.create_table()?;
    h.set(
        "start",
        lua.create_async_function(|lua, id: String| async move {
            let sup = supervision()?;
            let r = async {
                let id = Id::parse(&id)?;
                let specs = sup.specs();
                if specs.services.contains_key(&id) {
                    sup.start_with_requires(&id).await.map_err(|(_, e)| e)
                } else if specs.trees.contains_key(&id) {
                    sup.start_tree(&id).await.map_err(|(_, e)| e)
                } else {
                    Err(format!("no service or supervisor {id}"))
                }
            }
            .await;
            done(&lua, r)
        })?,
    )?;
    h.set(
        "stop",
        lua.create_async_function(|lua, id: String| async move {
            let sup = supervision()?;
            let r = async {
                let id = Id::parse(&id)?;
                if sup.specs().services.contains_key(&id) {
                    sup.stop(&id).await.map_err(|(_, e)| e)
                } else {
                    sup.stop_tree(&id).await.map_err(|(_, e)| e)
                }
            }
            .await;
            done(&lua, r)
        })?,
    )?;
    h.set(
        "exit",
        lua.create_function(|lua, (pid, reason): (String, Option<String>)| {
            let node = node()?;
            let r = match node.parse_pid(&pid) {
                Some(p) => node.terminate_with(&p, reason).map_err(|e| e.to_string()),
                None => Err(format!("malformed pid {pid:?}")),
            };
            done(lua, r)
        })?,
    )?;
    h.set(
        "log",
        lua.create_function(|lua, ()| {
            let out = lua.create_table()?;
            for (i, e) in supervision()?.tree_log().iter().enumerate() {
                let t = lua.create_table()?;
                t.set("tree", e.tree.to_string())?;
                t.set("child", e.child.as_str())?;
                t.set("event", e.event)?;
                t.set("pid", e.pid.clone())?;
                t.set("reason", e.reason.clone())?;
                out.raw_set(i + 1, t)?;
            }
            Ok(out)
        })?,
    )?;
    let t0 = std::time::Instant::now();
    h.set(
        "now",
        lua.create_function(move |_, ()| Ok(t0.elapsed().as_secs_f64() * 1000.0))?,
    )?;
    Ok(h)
}

/// Where the `test` module reports to (one of the runtime's services, set by the test
/// runner).
pub struct Sink(tokio::sync::mpsc::UnboundedSender<Value>);

impl Sink {
    /// A sink passing events to `tx`.
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<Value>) -> Sink {
        Sink(tx)
    }

    /// Passes one event on.
    pub fn send(&self, event: Value) {
        let _ = self.0.send(event);
    }
}

/// The chunk name of the module: frames of it are skipped when a failed assertion looks
/// for the test line that made it.
const CHUNK: &str = "=warden test";

/// Builds the module; `runners` is the weak table marking the functions `run_cases` made
/// (the process bootstrap runs one returned by a test's method); `supervisor` and `time`
/// are those modules (the supervision helpers use them).
pub fn module(lua: &Lua, runners: Table, supervisor: Table, time: Table) -> mlua::Result<Table> {
    let report = lua.create_function(|_, event: mlua::Value| {
        let Some(cur) = current_any() else {
            return Ok(());
        };
        let Some(sink) = cur.services().sink() else {
            return Ok(());
        };
        if let Ok(v) = value::from_lua(&event) {
            sink.send(v);
        }
        Ok(())
    })?;
    let caller = lua.create_function(|lua, ()| {
        for level in 1..64 {
            let found = lua.inspect_stack(level, |d| {
                let src = d.source();
                let user = src.source.as_deref() != Some(CHUNK) && src.what != "C";
                (
                    user.then(|| (src.short_src.map(|s| s.to_string()), d.current_line())),
                    true,
                )
            });
            match found {
                None => break,
                Some((Some((file, line)), _)) => return Ok((file, line)),
                Some((None, _)) => continue,
            }
        }
        Ok((None, None))
    })?;
    let env_of = lua.create_function(|_, f: mlua::Function| Ok(f.environment()))?;
    lua.load(include_str!("test.lua")).set_name(CHUNK).call((
        report,
        runners,
        caller,
        env_of,
        helpers(lua)?,
        supervisor,
        time,
    ))
}
