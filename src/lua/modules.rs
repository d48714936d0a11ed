//! Built-in modules loaded with `require`: `json`, `logger` (`time` is in `time.rs`).

use super::current;
use super::errors::LuaError;
use crate::value;
use mlua::{Lua, MultiValue, Table, Variadic};

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
