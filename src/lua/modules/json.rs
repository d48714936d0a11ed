//! The `json` module, as en/lua/data/json.md describes it: `encode(v)` -> string,
//! `decode(s)` -> value, `validate(schema, data)` and `validate_string(schema, text)` ->
//! `true`, or `false, err` (JSON Schema, through the `jsonschema` crate; drafts 4 to
//! 2020-12, the schema's `$schema` picks one).
//!
//! Encoding: a table with keys 1..n is an array, one with other keys an object; a sparse
//! array or a table mixing both kinds of keys is an error, as is a cycle; Inf and NaN
//! become `null`. Encoding and decoding errors are INTERNAL, a bad argument INVALID.
//! `schema` is a Lua value or a JSON text; `validate`'s `data` is the Lua value as it is
//! (a string is a string), `validate_string`'s a JSON text. Lua has one empty table for
//! `{}` and `[]`: where the schema wants an object, an empty table is one. The error of an
//! invalid value is of kind `INVALID`, its message names each violation with its place
//! (`/items/0: ...`), and its `details()` hold them as `{errors = {{path = ..., message =
//! ...}, ...}}`.

use crate::lua::errors::LuaError;
use crate::value::{self, Value};
use mlua::{Lua, MultiValue, Table};
use serde_json::Value as Json;

fn ok(v: mlua::Value) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v]))
}

/// `false, err`.
fn false_err(lua: &Lua, err: LuaError) -> mlua::Result<MultiValue> {
    let mut out = err.into_nil_err(lua)?;
    out.pop_front();
    out.push_front(mlua::Value::Boolean(false));
    Ok(out)
}

/// A schema argument as JSON: a JSON text parsed, any other value converted.
fn schema_arg(v: &mlua::Value) -> Result<Json, String> {
    if let mlua::Value::String(s) = v {
        return serde_json::from_slice::<Json>(&s.as_bytes())
            .map_err(|e| format!("not a JSON text: {e}"));
    }
    let v = value::from_lua(v).map_err(|e| e.to_string())?;
    value::to_json(&v)
}

/// Where the schema wants an object, an empty array (Lua's empty table) becomes `{}`.
fn fit_empty_tables(data: &mut Json, schema: &Json) {
    let Json::Object(s) = schema else { return };
    let wants_object = match s.get("type") {
        Some(Json::String(t)) => t == "object",
        Some(Json::Array(ts)) => {
            ts.iter().any(|t| t == "object") && !ts.iter().any(|t| t == "array")
        }
        _ => s.contains_key("properties") && !s.contains_key("items"),
    };
    match data {
        Json::Array(a) if a.is_empty() && wants_object => *data = Json::Object(Default::default()),
        Json::Object(m) => {
            if let Some(Json::Object(props)) = s.get("properties") {
                for (k, sub) in props {
                    if let Some(d) = m.get_mut(k) {
                        fit_empty_tables(d, sub);
                    }
                }
            }
        }
        Json::Array(a) => {
            if let Some(items) = s.get("items") {
                for d in a.iter_mut() {
                    fit_empty_tables(d, items);
                }
            }
        }
        _ => {}
    }
}

/// A copied value as JSON, by en/lua/data/json.md's rules: Inf and NaN are `null`; a
/// table whose keys are all positive integers but not 1..n is a sparse array, one with
/// both integer and other keys a mixed-key table, and both are errors.
fn to_doc(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::Num(n) if !n.is_finite() => Json::Null,
        Value::Array(items) => Json::Array(items.iter().map(to_doc).collect::<Result<_, _>>()?),
        Value::Map(pairs) => {
            let int_key = |k: &Value| matches!(k, Value::Int(i) if *i > 0);
            let ints = pairs.iter().filter(|(k, _)| int_key(k)).count();
            if ints > 0 && ints < pairs.len() {
                return Err(
                    "cannot encode mixed-key table: table has both numeric and non-numeric keys"
                        .into(),
                );
            }
            if ints > 0 {
                return Err("cannot encode sparse array: non-contiguous numeric keys found".into());
            }
            let mut m = serde_json::Map::with_capacity(pairs.len());
            for (k, val) in pairs {
                let key = match value::to_json(k)? {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(key, to_doc(val)?);
            }
            Json::Object(m)
        }
        other => value::to_json(other)?,
    })
}

/// A Lua value as a JSON document (see [`to_doc`]).
fn lua_to_doc(v: &mlua::Value) -> Result<Json, String> {
    let v = value::from_lua(v).map_err(|e| e.to_string())?;
    to_doc(&v)
}

/// `validate` (`data` a Lua value) and `validate_string` (`data` a JSON text).
fn validate(
    lua: &Lua,
    schema: mlua::Value,
    data: mlua::Value,
    text: bool,
) -> mlua::Result<MultiValue> {
    let func = if text { "validate_string" } else { "validate" };
    let fail = |message: String| false_err(lua, LuaError::new("INVALID", message));
    if schema.is_nil() {
        return fail(format!("json.{func}: schema is required"));
    }
    let schema = match schema_arg(&schema) {
        Ok(s) => s,
        Err(e) => return fail(format!("json.{func}: schema: {e}")),
    };
    let data = match (&data, text) {
        (mlua::Value::Nil, false) => return fail(format!("json.{func}: data is required")),
        (mlua::Value::String(s), true) => serde_json::from_slice::<Json>(&s.as_bytes())
            .map_err(|e| format!("data is not a JSON text: {e}")),
        (_, true) => Err("data must be a JSON string".to_string()),
        (d, false) => lua_to_doc(d),
    };
    let mut data = match data {
        Ok(d) => d,
        Err(e) => return fail(format!("json.{func}: {e}")),
    };
    fit_empty_tables(&mut data, &schema);
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => return fail(format!("json.validate: schema: {e}")),
    };
    let errors: Vec<(String, String)> = validator
        .iter_errors(&data)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            (path, e.to_string())
        })
        .collect();
    if errors.is_empty() {
        return ok(mlua::Value::Boolean(true));
    }
    let message = errors
        .iter()
        .map(|(p, m)| format!("{p}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut err = LuaError::new("INVALID", format!("json.{func}: {message}"));
    err.details = Some(Value::Map(vec![(
        Value::str("errors"),
        Value::Array(
            errors
                .into_iter()
                .map(|(p, m)| {
                    Value::Map(vec![
                        (Value::str("path"), Value::str(p)),
                        (Value::str("message"), Value::str(m)),
                    ])
                })
                .collect(),
        ),
    )]));
    false_err(lua, err)
}

/// The `json` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: mlua::Value| match lua_to_doc(&v) {
            Ok(j) => ok(mlua::Value::String(lua.create_string(j.to_string())?)),
            Err(e) => LuaError::new("INTERNAL", format!("json.encode: {e}")).into_nil_err(lua),
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, s: mlua::Value| {
            let s = match s {
                mlua::Value::String(s) if !s.as_bytes().is_empty() => s,
                mlua::Value::String(_) => {
                    return LuaError::new("INVALID", "json.decode: empty string is not valid JSON")
                        .into_nil_err(lua)
                }
                other => {
                    return LuaError::new(
                        "INVALID",
                        format!("json.decode: string expected, got {}", other.type_name()),
                    )
                    .into_nil_err(lua)
                }
            };
            match serde_json::from_slice::<Json>(&s.as_bytes()) {
                Ok(j) => ok(value::to_lua(lua, &value::from_json(&j))?),
                Err(e) => LuaError::new("INTERNAL", format!("json.decode: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "validate",
        lua.create_function(|lua, (schema, data): (mlua::Value, mlua::Value)| {
            validate(lua, schema, data, false)
        })?,
    )?;
    t.set(
        "validate_string",
        lua.create_function(|lua, (schema, data): (mlua::Value, mlua::Value)| {
            validate(lua, schema, data, true)
        })?,
    )?;
    Ok(t)
}
