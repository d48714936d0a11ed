//! Built-in modules loaded with `require`: `time`, `json`, `logger`.

use super::channel::{self, Chan};
use super::current;
use super::errors::LuaError;
use crate::duration;
use crate::value;
use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Variadic};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn duration_arg(v: &mlua::Value, func: &str) -> mlua::Result<Duration> {
    duration::from_lua(v).map_err(|e| mlua::Error::runtime(format!("{func}: {e}")))
}

/// A point in time: `t:unix()`, `t:unix_milli()`, `t:unix_nano()`, `t:sub(u)` (ms),
/// `t:format()` (RFC 3339).
#[derive(Clone, Copy)]
pub struct LuaTime(SystemTime);

impl LuaTime {
    fn nanos(&self) -> i128 {
        match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }
}

impl UserData for LuaTime {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("unix", |_, t, ()| Ok((t.nanos() / 1_000_000_000) as i64));
        m.add_method("unix_milli", |_, t, ()| Ok((t.nanos() / 1_000_000) as i64));
        m.add_method("unix_nano", |_, t, ()| Ok(t.nanos() as i64));
        m.add_method("sub", |_, t, other: mlua::UserDataRef<LuaTime>| {
            Ok((t.nanos() - other.nanos()) as f64 / 1e6)
        });
        m.add_method("format", |_, t, ()| {
            Ok(humantime::format_rfc3339_nanos(t.0).to_string())
        });
        m.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(humantime::format_rfc3339_nanos(t.0).to_string())
        });
        m.add_meta_function(
            MetaMethod::Eq,
            |_, (a, b): (mlua::UserDataRef<LuaTime>, mlua::UserDataRef<LuaTime>)| Ok(a.0 == b.0),
        );
        m.add_meta_function(
            MetaMethod::Lt,
            |_, (a, b): (mlua::UserDataRef<LuaTime>, mlua::UserDataRef<LuaTime>)| Ok(a.0 < b.0),
        );
        m.add_meta_function(
            MetaMethod::Le,
            |_, (a, b): (mlua::UserDataRef<LuaTime>, mlua::UserDataRef<LuaTime>)| Ok(a.0 <= b.0),
        );
    }
}

/// A ticker: `t:channel()` receives a time every period; `t:stop()` ends it.
pub struct LuaTicker {
    chan: Chan,
    stopped: Rc<Cell<bool>>,
}

impl UserData for LuaTicker {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("channel", |lua, t, ()| {
            channel::to_userdata(lua, t.chan.clone())
        });
        m.add_method("stop", |_, t, ()| {
            t.stopped.set(true);
            Ok(true)
        });
    }
}

impl Drop for LuaTicker {
    fn drop(&mut self) {
        self.stopped.set(true);
    }
}

/// The `time` module.
pub fn time(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "sleep",
        lua.create_async_function(|_, d: mlua::Value| {
            let d = duration_arg(&d, "time.sleep");
            async move {
                tokio::time::sleep(d?).await;
                Ok(true)
            }
        })?,
    )?;
    t.set(
        "now",
        lua.create_function(|_, ()| Ok(LuaTime(SystemTime::now())))?,
    )?;
    t.set(
        "after",
        lua.create_function(|lua, d: mlua::Value| {
            let d = duration_arg(&d, "time.after")?;
            let chan = Chan::new(1);
            let weak = chan.downgrade();
            let lua2 = lua.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(d).await;
                if let Ok(ud) = lua2.create_userdata(LuaTime(SystemTime::now())) {
                    if let Some(chan) = weak.upgrade() {
                        chan.push(mlua::Value::UserData(ud));
                    }
                }
            });
            channel::to_userdata(lua, chan)
        })?,
    )?;
    t.set(
        "ticker",
        lua.create_function(|lua, d: mlua::Value| {
            let d = duration_arg(&d, "time.ticker")?;
            if d.is_zero() {
                return Err(mlua::Error::runtime(
                    "time.ticker: the period must be positive",
                ));
            }
            let chan = Chan::new(1);
            let weak = chan.downgrade();
            let stopped = Rc::new(Cell::new(false));
            let stop2 = stopped.clone();
            let lua2 = lua.clone();
            tokio::task::spawn_local(async move {
                let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    iv.tick().await;
                    if stop2.get() {
                        break;
                    }
                    let Some(chan) = weak.upgrade() else { break };
                    if chan.is_closed() {
                        break;
                    }
                    if chan.is_empty() {
                        if let Ok(ud) = lua2.create_userdata(LuaTime(SystemTime::now())) {
                            chan.push(mlua::Value::UserData(ud));
                        }
                    }
                }
            });
            Ok(LuaTicker { chan, stopped })
        })?,
    )?;
    Ok(t)
}

/// The `json` module: `encode(v)` -> string, `decode(s)` -> value (or `nil, err`).
pub fn json(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: mlua::Value| {
            let r = value::from_lua(&v)
                .map_err(|e| e.to_string())
                .and_then(|v| value::to_json(&v))
                .map(|j| j.to_string());
            match r {
                Ok(s) => Ok(MultiValue::from_vec(vec![mlua::Value::String(
                    lua.create_string(&s)?,
                )])),
                Err(e) => LuaError::new("INVALID", format!("json.encode: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
                Ok(j) => Ok(MultiValue::from_vec(vec![value::to_lua(
                    lua,
                    &value::from_json(&j),
                )?])),
                Err(e) => LuaError::new("INVALID", format!("json.decode: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    Ok(t)
}

fn log_args(args: &[mlua::Value]) -> (String, String) {
    // logger:info(msg, fields) passes the logger table first; logger.info(msg) does not.
    let skip = usize::from(matches!(args.first(), Some(mlua::Value::Table(_))));
    let msg = match args.get(skip) {
        Some(mlua::Value::String(s)) => s.to_string_lossy(),
        Some(other) => value::from_lua(other)
            .map(|v| value::display(&v))
            .unwrap_or_else(|_| other.type_name().to_string()),
        None => String::new(),
    };
    let mut fields = String::new();
    if let Some(mlua::Value::Table(t)) = args.get(skip + 1) {
        for (k, v) in t.pairs::<mlua::Value, mlua::Value>().flatten() {
            let k = value::from_lua(&k)
                .map(|k| value::display(&k))
                .unwrap_or_default();
            let v = value::from_lua(&v)
                .map(|v| value::display(&v))
                .unwrap_or_else(|_| v.type_name().to_string());
            fields.push_str(&format!(" {k}={v}"));
        }
    }
    (msg, fields)
}

/// The `logger` module: `logger:info(msg, fields)`, likewise `debug`, `warn`, `error`,
/// emitted through `tracing` with the process pid and entry.
pub fn logger(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for level in ["debug", "info", "warn", "error"] {
        t.set(
            level,
            lua.create_function(move |_, args: Variadic<mlua::Value>| {
                let (msg, fields) = log_args(&args);
                let (pid, entry) = match current() {
                    Ok(ctx) => (ctx.pid_str.clone(), ctx.entry.id.to_string()),
                    Err(_) => (String::new(), String::new()),
                };
                match level {
                    "debug" => tracing::debug!(target: "lua", %pid, %entry, "{msg}{fields}"),
                    "info" => tracing::info!(target: "lua", %pid, %entry, "{msg}{fields}"),
                    "warn" => tracing::warn!(target: "lua", %pid, %entry, "{msg}{fields}"),
                    _ => tracing::error!(target: "lua", %pid, %entry, "{msg}{fields}"),
                }
                Ok(())
            })?,
        )?;
    }
    Ok(t)
}
