//! The `json` module: `encode(v)` -> string, `decode(s)` -> value, and
//! `validate(schema, data)` -> `true`, or `false, err` (JSON Schema, through the
//! `jsonschema` crate; drafts 4 to 2020-12, the schema's `$schema` picks one).
//!
//! `schema` and `data` are Lua values or JSON texts. A `data` string that is not JSON is
//! validated as the string it is. Lua has one empty table for `{}` and `[]`: where the
//! schema wants an object, an empty table is one. The error of an invalid value is of kind
//! `INVALID`, its message names each violation with its place (`/items/0: ...`), and its
//! `details()` hold them as `{errors = {{path = ..., message = ...}, ...}}`.

use super::errors::LuaError;
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

/// A Lua argument as JSON: a JSON text parsed (or, when `text_is_json` is false or it is
/// not JSON, the string itself), any other value converted.
fn json_arg(v: &mlua::Value, text_is_json: bool) -> Result<Json, String> {
    if let mlua::Value::String(s) = v {
        let bytes = s.as_bytes();
        match serde_json::from_slice::<Json>(&bytes) {
            Ok(j) => return Ok(j),
            Err(_) if !text_is_json => return Ok(Json::String(s.to_string_lossy())),
            Err(e) => return Err(format!("not a JSON text: {e}")),
        }
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

fn validate(lua: &Lua, schema: mlua::Value, data: mlua::Value) -> mlua::Result<MultiValue> {
    let fail = |message: String| false_err(lua, LuaError::new("INVALID", message));
    let schema = match json_arg(&schema, true) {
        Ok(s) => s,
        Err(e) => return fail(format!("json.validate: schema: {e}")),
    };
    let mut data = match json_arg(&data, false) {
        Ok(d) => d,
        Err(e) => return fail(format!("json.validate: data: {e}")),
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
    let mut err = LuaError::new("INVALID", format!("json.validate: {message}"));
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
        lua.create_function(|lua, v: mlua::Value| {
            let r = value::from_lua(&v)
                .map_err(|e| e.to_string())
                .and_then(|v| value::to_json(&v))
                .map(|j| j.to_string());
            match r {
                Ok(s) => ok(mlua::Value::String(lua.create_string(&s)?)),
                Err(e) => LuaError::new("INVALID", format!("json.encode: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            match serde_json::from_slice::<Json>(&s.as_bytes()) {
                Ok(j) => ok(value::to_lua(lua, &value::from_json(&j))?),
                Err(e) => LuaError::new("INVALID", format!("json.decode: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    t.set(
        "validate",
        lua.create_function(|lua, (schema, data): (mlua::Value, mlua::Value)| {
            validate(lua, schema, data)
        })?,
    )?;
    Ok(t)
}
