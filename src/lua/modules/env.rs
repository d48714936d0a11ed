//! The `env` module: the app's declared variables (`env.variable` entries) and where they
//! live (`env.storage.os`, `env.storage.memory`, `env.storage.file`, `env.storage.static`,
//! `env.storage.router`), as en/system/env.md and en/lua/system/env.md describe them.
//!
//! `env.get(name)` gives a variable's value or `nil, err`; `env.set(name, value)` changes
//! a variable kept in a memory or file storage; `env.get_all()` gives every variable that
//! has a value. `name` is an entry id (`app:port`), an entry name in the caller's
//! namespace (`port`) or a variable's `variable:` (`PORT`). Only declared variables are
//! visible: a process cannot read the host environment beyond what the app declares.

use crate::lua::errors::LuaError;
use crate::lua::{current_any, Services};
use crate::process::Node;
use crate::registry::{Entry, EntrySpec, EnvStorage, Id, Registry};
use mlua::{Lua, MultiValue, Table};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The values memory storages hold now (per node), seeded from their `values:`.
#[derive(Default)]
pub struct EnvState {
    memory: Mutex<HashMap<Id, BTreeMap<String, String>>>,
}

/// The node, the runtime's services and the namespace of the code calling now.
fn caller() -> Option<(Arc<Node>, Arc<Services>, String)> {
    let cur = current_any()?;
    let ns = cur.entry().id.namespace.clone();
    Some((cur.node().clone(), cur.services().clone(), ns))
}

/// The `env.variable` entry `name` stands for.
fn find<'a>(reg: &'a Registry, ns: &str, name: &str) -> Option<&'a Arc<Entry>> {
    let is_var = |e: &&Arc<Entry>| matches!(e.spec, EntrySpec::EnvVariable { .. });
    if name.contains(':') {
        return Id::parse(name)
            .ok()
            .and_then(|id| reg.get(&id))
            .filter(is_var);
    }
    if let Some(e) = reg.get(&Id::new(ns, name)).filter(is_var) {
        return Some(e);
    }
    reg.entries
        .values()
        .find(|e| matches!(&e.spec, EntrySpec::EnvVariable { variable: Some(v), .. } if v == name))
}

/// The value of variable entry `e` now (memory storages: the node's current values,
/// seeded from the declared ones).
fn value_of(state: &EnvState, reg: &Registry, e: &Entry) -> Option<String> {
    reg.env_value_of(e, &|id, declared, key| {
        let mut mem = state.memory.lock().unwrap_or_else(|e| e.into_inner());
        mem.entry(id.clone())
            .or_insert_with(|| declared.clone())
            .get(key)
            .cloned()
    })
}

/// Writes `key=value` into the `.env` file at `path`, keeping its other lines (a later
/// line for the same key is dropped, so the value written is the one read back). The
/// new text goes to a temporary file beside it that is then renamed over it, so the
/// file is never seen half-written.
fn write_file(path: &std::path::Path, key: &str, value: &str) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("export ").unwrap_or(t);
        if t.split_once('=').map(|(k, _)| k.trim()) == Some(key) {
            if !done {
                lines.push(format!("{key}={value}"));
                done = true;
            }
        } else {
            lines.push(line.to_string());
        }
    }
    if !done {
        lines.push(format!("{key}={value}"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = std::fs::write(&tmp, lines.join("\n") + "\n").and_then(|()| {
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Why `value` cannot be one line of a `.env` file, if it cannot: a line break would end
/// the line and let the rest declare (or override) another variable.
fn unsafe_for_file(value: &str) -> Option<&'static str> {
    if value.contains('\n') {
        Some("a line feed")
    } else if value.contains('\r') {
        Some("a carriage return")
    } else if value.contains('\0') {
        Some("a NUL byte")
    } else {
        None
    }
}

/// The read-only variable entry (other than `e`) that keeps `key` in storage `storage`:
/// a variable that is read-only stays so whichever entry names it.
fn read_only_holder<'a>(reg: &'a Registry, storage: &Id, key: &str) -> Option<&'a Arc<Entry>> {
    let path_of = |id: &Id| match reg.get(id).map(|s| &s.spec) {
        Some(EntrySpec::EnvStorage(EnvStorage::File(p))) => Some(p.clone()),
        _ => None,
    };
    let target_path = path_of(storage);
    reg.entries.values().find(|v| match &v.spec {
        EntrySpec::EnvVariable {
            variable: Some(var),
            storage: Some(st),
            read_only: true,
            ..
        } => var == key && (st == storage || (target_path.is_some() && path_of(st) == target_path)),
        _ => false,
    })
}

fn not_found(lua: &Lua, func: &str, name: &str) -> mlua::Result<MultiValue> {
    LuaError::new(
        "NOT_FOUND",
        format!("env.{func}: no env.variable entry named {name:?}"),
    )
    .into_nil_err(lua)
}

/// The `env` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, name: String| {
            let Some((node, services, ns)) = caller() else {
                return not_found(lua, "get", &name);
            };
            let reg = node.registry();
            let Some(e) = find(&reg, &ns, &name) else {
                return not_found(lua, "get", &name);
            };
            // en/lua/system/env.md, "Permissions": `env.get` on the variable's name
            if let Err(e) = crate::lua::security::check_now("env.get", &name) {
                return LuaError::new(e.kind, format!("env.get: {}", e.message)).into_nil_err(lua);
            }
            match value_of(&services.env, &reg, e) {
                Some(v) => Ok(MultiValue::from_vec(vec![mlua::Value::String(
                    lua.create_string(v)?,
                )])),
                None => LuaError::new(
                    "NOT_FOUND",
                    format!("env.get: {} has no value (unset, and no default)", e.id),
                )
                .into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "set",
        lua.create_function(|lua, (name, value): (String, mlua::Value)| {
            let Some((node, services, ns)) = caller() else {
                return not_found(lua, "set", &name);
            };
            let value = match &value {
                mlua::Value::String(s) => s.to_string_lossy(),
                mlua::Value::Integer(i) => i.to_string(),
                mlua::Value::Number(n) => n.to_string(),
                mlua::Value::Boolean(b) => b.to_string(),
                other => {
                    return LuaError::new(
                        "INVALID",
                        format!(
                            "env.set: value: expected a string, number or boolean, got {}",
                            other.type_name()
                        ),
                    )
                    .into_nil_err(lua)
                }
            };
            let reg = node.registry();
            let Some(e) = find(&reg, &ns, &name) else {
                return not_found(lua, "set", &name);
            };
            if let Err(e) = crate::lua::security::check_now("env.set", &name) {
                return LuaError::new(e.kind, format!("env.set: {}", e.message)).into_nil_err(lua);
            }
            let denied = |why: String| {
                LuaError::new("PERMISSION_DENIED", format!("env.set: {}: {why}", e.id))
                    .into_nil_err(lua)
            };
            let EntrySpec::EnvVariable {
                value: literal,
                variable,
                storage,
                read_only,
                ..
            } = &e.spec
            else {
                return not_found(lua, "set", &name);
            };
            if *read_only {
                return denied("the variable is read_only".into());
            }
            if literal.is_some() {
                return denied("the variable has a literal value".into());
            }
            let Some(key) = variable else {
                return denied("the variable names no variable".into());
            };
            if let Some(st) = storage {
                if let Some(holder) = read_only_holder(&reg, st, key) {
                    return denied(format!(
                        "{key} in {st} is read_only (declared so by {})",
                        holder.id
                    ));
                }
            }
            // a router writes to its first storage
            let mut target = storage.as_ref().and_then(|s| reg.get(s));
            for _ in 0..crate::registry::ENV_ROUTER_DEPTH {
                match target.map(|t| &t.spec) {
                    Some(EntrySpec::EnvStorage(EnvStorage::Router(list))) => {
                        target = list.first().and_then(|s| reg.get(s))
                    }
                    _ => break,
                }
            }
            match target.map(|s| (s, &s.spec)) {
                Some((s, EntrySpec::EnvStorage(EnvStorage::Static(_)))) => {
                    return denied(format!("{} is a static storage (read only)", s.id))
                }
                Some((s, EntrySpec::EnvStorage(EnvStorage::Router(_)))) => {
                    return denied(format!("{} routes to no storage that can be written", s.id))
                }
                Some((s, EntrySpec::EnvStorage(EnvStorage::Memory(initial)))) => {
                    let st = &services.env;
                    let mut mem = st.memory.lock().unwrap_or_else(|e| e.into_inner());
                    mem.entry(s.id.clone())
                        .or_insert_with(|| initial.clone())
                        .insert(key.clone(), value);
                }
                Some((s, EntrySpec::EnvStorage(EnvStorage::File(path)))) => {
                    if let Some(what) = unsafe_for_file(&value) {
                        return LuaError::new(
                            "INVALID",
                            format!(
                                "env.set: {}: value: contains {what}, which a line of {} ({}) cannot hold",
                                e.id,
                                s.id,
                                path.display()
                            ),
                        )
                        .into_nil_err(lua);
                    }
                    if key.is_empty()
                        || key.contains(['=', '#', '\n', '\r', '\0'])
                        || key.trim() != key
                    {
                        return denied(format!(
                            "{key:?} cannot be a variable name in {} ({})",
                            s.id,
                            path.display()
                        ));
                    }
                    if let Err(err) = write_file(path, key, &value) {
                        return LuaError::new(
                            "INTERNAL",
                            format!("env.set: {}: cannot write {}: {err}", s.id, path.display()),
                        )
                        .into_nil_err(lua);
                    }
                }
                _ => return denied("the host environment is read only".into()),
            }
            Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)]))
        })?,
    )?;
    t.set(
        "get_all",
        lua.create_function(|lua, ()| {
            let out = lua.create_table()?;
            if let Some((node, services, _)) = caller() {
                let reg = node.registry();
                for e in reg.entries.values() {
                    if let EntrySpec::EnvVariable { variable, .. } = &e.spec {
                        let key = variable.clone().unwrap_or_else(|| e.id.name.clone());
                        // only the variables `env.get` is allowed on ("Security Actions")
                        if crate::lua::security::check_now("env.get", &key).is_err() {
                            continue;
                        }
                        if let Some(v) = value_of(&services.env, &reg, e) {
                            out.set(key, v)?;
                        }
                    }
                }
            }
            Ok(out)
        })?,
    )?;
    Ok(t)
}
