//! The `logger` module: leveled log lines with fields, through `tracing`.

use crate::value;
use mlua::{Lua, Table, Variadic};

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
    let fields = match args.get(skip + 1) {
        Some(mlua::Value::Table(t)) => format_fields(t),
        _ => String::new(),
    };
    (msg, fields)
}

/// Formats `fields` (a table) as ` k=v` pairs.
fn format_fields(t: &Table) -> String {
    let mut fields = String::new();
    for (k, v) in t.pairs::<mlua::Value, mlua::Value>().flatten() {
        let k = value::from_lua(&k)
            .map(|k| value::display(&k))
            .unwrap_or_default();
        let v = value::from_lua(&v)
            .map(|v| value::display(&v))
            .unwrap_or_else(|_| v.type_name().to_string());
        fields.push_str(&format!(" {k}={v}"));
    }
    fields
}

fn emit(level: &str, logger: Option<&LuaLogger>, msg: &str, fields: &str) {
    // logging never makes a function call a process: its pid if it is one
    let (pid, entry) = match crate::lua::current_any() {
        Some(crate::lua::Current::Process(p)) => {
            (p.pid_str().to_string(), p.entry().id.to_string())
        }
        Some(crate::lua::Current::Call(c)) => (
            c.unit()
                .map(|p| p.pid_str().to_string())
                .unwrap_or_default(),
            c.entry().id.to_string(),
        ),
        None => (String::new(), String::new()),
    };
    let (name, base) = match logger {
        Some(l) => (l.name.as_str(), l.fields.as_str()),
        None => ("", ""),
    };
    let sep = if name.is_empty() { "" } else { ": " };
    match level {
        "debug" => tracing::debug!(target: "lua", %pid, %entry, "{name}{sep}{msg}{base}{fields}"),
        "info" => tracing::info!(target: "lua", %pid, %entry, "{name}{sep}{msg}{base}{fields}"),
        "warn" => tracing::warn!(target: "lua", %pid, %entry, "{name}{sep}{msg}{base}{fields}"),
        _ => tracing::error!(target: "lua", %pid, %entry, "{name}{sep}{msg}{base}{fields}"),
    }
}

/// `print(...)`: the values as `tostring` gives them, tab-separated, as an info line of
/// the log (en/lua/core/base.md: "uses structured logging in Wippy").
pub(in crate::lua) fn log_print(_: &Lua, line: String) -> mlua::Result<()> {
    emit("info", None, &line, "");
    Ok(())
}

/// A logger made by `logger:with(fields)` or `logger:named(name)`: its fields go with
/// every line it logs, its name (dotted when named again) before the message.
#[derive(Clone, Default)]
pub struct LuaLogger {
    name: String,
    fields: String,
}

impl LuaLogger {
    fn with(&self, t: &Table) -> LuaLogger {
        LuaLogger {
            name: self.name.clone(),
            fields: format!("{}{}", self.fields, format_fields(t)),
        }
    }

    fn named(&self, name: &str) -> LuaLogger {
        LuaLogger {
            name: if self.name.is_empty() {
                name.to_string()
            } else {
                format!("{}.{name}", self.name)
            },
            fields: self.fields.clone(),
        }
    }
}

impl mlua::UserData for LuaLogger {
    fn add_methods<M: mlua::UserDataMethods<Self>>(m: &mut M) {
        for level in ["debug", "info", "warn", "error"] {
            m.add_method(level, move |_, l, args: Variadic<mlua::Value>| {
                let (msg, fields) = log_args(&args);
                emit(level, Some(l), &msg, &fields);
                Ok(())
            });
        }
        m.add_method("with", |_, l, t: Table| Ok(l.with(&t)));
        m.add_method("named", |_, l, name: String| {
            if name.is_empty() {
                return Err(mlua::Error::runtime("logger:named: name cannot be empty"));
            }
            Ok(l.named(&name))
        });
    }
}

/// The `logger` module: `logger:info(msg, fields)`, likewise `debug`, `warn`, `error`,
/// emitted through `tracing` with the process pid and entry; `logger:with(fields)` and
/// `logger:named(name)` give loggers that add fields or a name to each line.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for level in ["debug", "info", "warn", "error"] {
        t.set(
            level,
            lua.create_function(move |_, args: Variadic<mlua::Value>| {
                let (msg, fields) = log_args(&args);
                emit(level, None, &msg, &fields);
                Ok(())
            })?,
        )?;
    }
    // logger:with(t) passes the module first; logger.with(t) does not
    t.set(
        "with",
        lua.create_function(|_, args: Variadic<mlua::Value>| {
            let skip = usize::from(args.len() > 1);
            match args.get(skip) {
                Some(mlua::Value::Table(f)) => Ok(LuaLogger::default().with(f)),
                _ => Err(mlua::Error::runtime(
                    "logger:with: expected a table of fields",
                )),
            }
        })?,
    )?;
    t.set(
        "named",
        lua.create_function(|_, args: Variadic<mlua::Value>| {
            match args.iter().rev().find_map(|a| match a {
                mlua::Value::String(s) => Some(s.to_string_lossy()),
                _ => None,
            }) {
                Some(n) if n.is_empty() => {
                    Err(mlua::Error::runtime("logger:named: name cannot be empty"))
                }
                Some(n) => Ok(LuaLogger::default().named(&n)),
                None => Err(mlua::Error::runtime("logger:named: expected a name")),
            }
        })?,
    )?;
    Ok(t)
}
