//! The `registry` module, read side: `registry.get(id)`, `registry.find(query)`,
//! `registry.parse_id(id)`. Code reads the snapshot the node runs on (changes through the
//! registry actor reach it as new snapshots).
//!
//! An entry reads as `{id = "ns:name", kind = ..., meta = {...}, data = {...}}`: `data`
//! holds the entry's own fields (everything but `name`, `kind` and `meta`; for an entry
//! whose only field is `data:`, that mapping). A query matches `.kind`, `.ns` and `.name`
//! against the entry's kind, namespace and name, and any other key against the entry's
//! `meta` field of that name (a `meta.` prefix is allowed); a string value may end in `*`
//! to match a prefix (`.kind = "function.*"`, `.ns = "app.*"`).

use super::errors::LuaError;
use super::running;
use crate::registry::{Entry, Id};
use crate::value::{self, Value};
use mlua::{Lua, MultiValue, Table};
use serde_json::Value as Json;

fn registry_now() -> Option<std::sync::Arc<crate::registry::Registry>> {
    running().map(|(node, _, _)| node.registry())
}

/// The entry as Lua sees it.
fn entry_table(lua: &Lua, e: &Entry) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("id", e.id.to_string())?;
    t.set("kind", e.kind.as_str())?;
    let meta = match &e.meta {
        Json::Null => Value::Map(Vec::new()),
        m => value::from_json(m),
    };
    t.set("meta", value::to_lua(lua, &meta)?)?;
    let mut fields: serde_json::Map<String, Json> = match &e.raw {
        Json::Object(m) => m
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "name" | "kind" | "meta"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => serde_json::Map::new(),
    };
    let data = if fields.len() == 1 && fields.contains_key("data") {
        fields.remove("data").unwrap_or(Json::Null)
    } else {
        Json::Object(fields)
    };
    t.set("data", value::to_lua(lua, &value::from_json(&data))?)?;
    Ok(t)
}

/// Whether `have` matches the query value `want` (a trailing `*` matches a prefix).
fn text_matches(have: &str, want: &str) -> bool {
    match want.strip_suffix('*') {
        Some(prefix) => have.starts_with(prefix),
        None => have == want,
    }
}

fn json_matches(have: Option<&Json>, want: &Json) -> bool {
    match (have, want) {
        (Some(Json::String(h)), Json::String(w)) => text_matches(h, w),
        (Some(h), w) => h == w,
        (None, _) => false,
    }
}

fn matches(e: &Entry, query: &[(String, Json)]) -> bool {
    query.iter().all(|(k, want)| {
        let text = |have: &str| match want {
            Json::String(w) => text_matches(have, w),
            _ => false,
        };
        match k.as_str() {
            ".kind" => text(&e.kind),
            ".ns" => text(&e.id.namespace),
            ".name" => text(&e.id.name),
            ".id" => text(&e.id.to_string()),
            other => {
                let field = other.strip_prefix("meta.").unwrap_or(other);
                json_matches(e.meta.get(field), want)
            }
        }
    })
}

fn nil_err(lua: &Lua, kind: &'static str, message: String) -> mlua::Result<MultiValue> {
    LuaError::new(kind, message).into_nil_err(lua)
}

/// The `registry` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, id: String| {
            let parsed = match Id::parse(&id) {
                Ok(i) => i,
                Err(e) => return nil_err(lua, "INVALID", format!("registry.get: {e}")),
            };
            let Some(reg) = registry_now() else {
                return nil_err(lua, "UNAVAILABLE", "registry.get: no registry here".into());
            };
            match reg.get(&parsed) {
                Some(e) => Ok(MultiValue::from_vec(vec![mlua::Value::Table(entry_table(
                    lua, e,
                )?)])),
                None => nil_err(lua, "NOT_FOUND", format!("registry.get: no entry {id}")),
            }
        })?,
    )?;
    t.set(
        "find",
        lua.create_function(|lua, query: Option<Table>| {
            let mut q: Vec<(String, Json)> = Vec::new();
            if let Some(query) = query {
                for pair in query.pairs::<String, mlua::Value>() {
                    let (k, v) = pair?;
                    let v = value::from_lua(&v)
                        .map_err(|e| mlua::Error::runtime(format!("registry.find: {k}: {e}")))?;
                    let j = value::to_json(&v)
                        .map_err(|e| mlua::Error::runtime(format!("registry.find: {k}: {e}")))?;
                    q.push((k, j));
                }
            }
            let out = lua.create_table()?;
            if let Some(reg) = registry_now() {
                let mut i = 0;
                for e in reg.entries.values().filter(|e| matches(e, &q)) {
                    i += 1;
                    out.raw_set(i, entry_table(lua, e)?)?;
                }
            }
            Ok(out)
        })?,
    )?;
    t.set(
        "parse_id",
        lua.create_function(|lua, id: String| match Id::parse(&id) {
            Ok(i) => {
                let t = lua.create_table()?;
                t.set("ns", i.namespace.as_str())?;
                t.set("name", i.name.as_str())?;
                Ok(MultiValue::from_vec(vec![mlua::Value::Table(t)]))
            }
            Err(e) => nil_err(lua, "INVALID", format!("registry.parse_id: {e}")),
        })?,
    )?;
    Ok(t)
}
