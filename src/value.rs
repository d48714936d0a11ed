//! Values that cross process boundaries.
//!
//! A [`Value`] is a self-contained copy of a Lua value (nil, boolean, number, string, nested
//! table). Messages, spawn arguments, exit results and JSON all travel as `Value`s, so that
//! nothing a process holds is ever shared with another. This module owns the conversions
//! Lua <-> Value and JSON <-> Value; it knows nothing about processes.

use mlua::{Lua, Table};
use std::collections::HashSet;

/// Maximum nesting of tables in one value; deeper values are refused, not crashed on.
pub const MAX_DEPTH: usize = 256;

/// A copied value, sendable between threads.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Lua nil / JSON null.
    Nil,
    /// A boolean.
    Bool(bool),
    /// A Lua integer.
    Int(i64),
    /// A Lua float.
    Num(f64),
    /// A Lua string (arbitrary bytes).
    Str(Vec<u8>),
    /// A table whose keys are exactly 1..n (also the empty table).
    Array(Vec<Value>),
    /// Any other table: key/value pairs (keys are never nil or NaN).
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into().into_bytes())
    }

    /// The string content, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The Lua type name of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Num(_) => "number",
            Value::Str(_) => "string",
            Value::Array(_) | Value::Map(_) => "table",
        }
    }

    /// Approximate heap size in bytes (used for accounting and benchmarks).
    pub fn size_hint(&self) -> usize {
        match self {
            Value::Str(b) => b.len() + 24,
            Value::Array(v) => 24 + v.iter().map(Value::size_hint).sum::<usize>(),
            Value::Map(v) => {
                24 + v
                    .iter()
                    .map(|(k, v)| k.size_hint() + v.size_hint())
                    .sum::<usize>()
            }
            _ => 16,
        }
    }
}

/// Why a Lua value could not be copied: the path inside the value and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyError {
    /// The path's segments, innermost first (`[1]`, `.tags`, `[2]` for `[2].tags[1]`).
    segments: Vec<String>,
    /// What was wrong, e.g. `a function cannot be copied`.
    pub reason: String,
}

/// A path longer than this many segments is shown with its middle cut out.
const PATH_SHOWN: usize = 16;
/// Segments shown on each side of a cut path.
const PATH_KEPT: usize = 6;
/// A key longer than this many characters is shown with its middle cut out.
const KEY_SHOWN: usize = 32;

impl CopyError {
    fn new(reason: impl Into<String>) -> CopyError {
        CopyError {
            segments: Vec::new(),
            reason: reason.into(),
        }
    }

    /// Puts `segment` in front of the path (the caller is one level further out).
    fn within(mut self, segment: String) -> CopyError {
        self.segments.push(segment);
        self
    }

    /// The path from the root, e.g. `[2].tags[1]`; a path deeper than 16 levels keeps its
    /// first and last 6 segments and says how many levels are left out between them.
    pub fn path(&self) -> String {
        let n = self.segments.len();
        let outer_first = self.segments.iter().rev();
        if n <= PATH_SHOWN {
            return outer_first.map(String::as_str).collect();
        }
        let head: String = outer_first.take(PATH_KEPT).map(String::as_str).collect();
        let tail: String = self.segments[..PATH_KEPT]
            .iter()
            .rev()
            .map(String::as_str)
            .collect();
        format!("{head}...({} levels)...{tail}", n - 2 * PATH_KEPT)
    }
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.segments.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path(), self.reason)
        }
    }
}

fn key_segment(key: &Value) -> String {
    match key {
        Value::Str(s) => {
            let s = String::from_utf8_lossy(s);
            let chars = s.chars().count();
            let s = if chars > KEY_SHOWN {
                // the middle goes: keys often differ at the start or the end
                let head: String = s.chars().take(KEY_SHOWN / 2).collect();
                let tail: String = s.chars().skip(chars - KEY_SHOWN / 2).collect();
                format!("{head}...{tail}")
            } else {
                s.into_owned()
            };
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                format!(".{s}")
            } else {
                format!("[{s:?}]")
            }
        }
        Value::Int(i) => format!("[{i}]"),
        Value::Num(n) => format!("[{n}]"),
        Value::Bool(b) => format!("[{b}]"),
        _ => "[?]".to_string(),
    }
}

struct Copier {
    path_tables: HashSet<*const std::ffi::c_void>,
}

impl Copier {
    fn copy(&mut self, v: &mlua::Value, depth: usize) -> Result<Value, CopyError> {
        let fail = CopyError::new;
        Ok(match v {
            mlua::Value::Nil => Value::Nil,
            mlua::Value::Boolean(b) => Value::Bool(*b),
            mlua::Value::Integer(i) => Value::Int(*i),
            mlua::Value::Number(n) => Value::Num(*n),
            mlua::Value::String(s) => Value::Str(s.as_bytes().to_vec()),
            mlua::Value::Table(t) => self.copy_table(t, depth)?,
            mlua::Value::Function(_) => return Err(fail("a function cannot be copied".into())),
            mlua::Value::Thread(_) => return Err(fail("a coroutine cannot be copied".into())),
            mlua::Value::LightUserData(_) => {
                return Err(fail("a light userdata cannot be copied".into()))
            }
            mlua::Value::UserData(ud) => {
                // a userdata that says how it crosses (`__copy`: error objects as their
                // message, payloads as their data) is copied as what that gives
                let copy = ud
                    .metatable()
                    .ok()
                    .and_then(|mt| mt.get::<mlua::Function>("__copy").ok());
                match copy {
                    Some(f) => {
                        let v: mlua::Value = f.call(ud.clone()).map_err(|e| fail(e.to_string()))?;
                        return self.copy(&v, depth + 1);
                    }
                    None => {
                        return Err(fail(format!(
                            "a userdata ({}) cannot be copied",
                            userdata_type_name(ud)
                        )))
                    }
                }
            }
            mlua::Value::Error(e) => Value::str(e.to_string()),
            other => return Err(fail(format!("a {} cannot be copied", other.type_name()))),
        })
    }

    fn copy_table(&mut self, t: &Table, depth: usize) -> Result<Value, CopyError> {
        if depth >= MAX_DEPTH {
            return Err(CopyError::new(format!(
                "tables nested deeper than {MAX_DEPTH} levels cannot be copied"
            )));
        }
        let ptr = t.to_pointer();
        if !self.path_tables.insert(ptr) {
            return Err(CopyError::new("a cyclic table cannot be copied"));
        }
        let result = self.copy_table_inner(t, depth);
        self.path_tables.remove(&ptr);
        result
    }

    fn copy_table_inner(&mut self, t: &Table, depth: usize) -> Result<Value, CopyError> {
        let len = t.raw_len();
        let mut pairs: Vec<(Value, Value)> = Vec::with_capacity(len);
        let mut is_array = true;
        for pair in t.pairs::<mlua::Value, mlua::Value>() {
            let (k, v) = pair.map_err(|e| CopyError::new(e.to_string()))?;
            let key = match &k {
                mlua::Value::Integer(i) => Value::Int(*i),
                mlua::Value::Number(n) => Value::Num(*n),
                mlua::Value::String(s) => Value::Str(s.as_bytes().to_vec()),
                mlua::Value::Boolean(b) => Value::Bool(*b),
                other => {
                    return Err(CopyError::new(format!(
                        "a table key of type {} cannot be copied",
                        other.type_name()
                    )))
                }
            };
            if !matches!(key, Value::Int(i) if i >= 1 && (i as usize) <= len) {
                is_array = false;
            }
            let val = self
                .copy(&v, depth + 1)
                .map_err(|e| e.within(key_segment(&key)))?;
            pairs.push((key, val));
        }
        Ok(table_value(pairs, len, is_array))
    }
}

/// The value of a copied Lua table: an array when its keys are exactly 1..`len`
/// (`is_array`: no other key was seen), otherwise a map of its pairs.
pub(crate) fn table_value(pairs: Vec<(Value, Value)>, len: usize, is_array: bool) -> Value {
    if is_array && pairs.len() == len {
        let mut arr = vec![Value::Nil; len];
        for (k, v) in pairs {
            if let Value::Int(i) = k {
                arr[i as usize - 1] = v;
            }
        }
        Value::Array(arr)
    } else {
        Value::Map(pairs)
    }
}

fn userdata_type_name(ud: &mlua::AnyUserData) -> String {
    ud.metatable()
        .ok()
        .and_then(|mt| mt.get::<String>("__name").ok())
        .unwrap_or_else(|| "userdata".to_string())
}

/// Copies a Lua value into a [`Value`]. Functions, coroutines, foreign userdata and cyclic
/// tables are refused with the path where they were found.
pub fn from_lua(v: &mlua::Value) -> Result<Value, CopyError> {
    Copier {
        path_tables: HashSet::new(),
    }
    .copy(v, 0)
}

/// Copies several Lua values (e.g. the payload arguments of `process.send`).
pub fn from_lua_multi<'a>(
    values: impl IntoIterator<Item = &'a mlua::Value>,
) -> Result<Vec<Value>, CopyError> {
    let mut copier = Copier {
        path_tables: HashSet::new(),
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            copier
                .copy(v, 0)
                .map_err(|e| e.within(format!("argument {}", i + 1)))
        })
        .collect()
}

/// Builds a fresh Lua value from a [`Value`].
pub fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<mlua::Value> {
    Ok(match v {
        Value::Nil => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Int(i) => mlua::Value::Integer(*i),
        Value::Num(n) => mlua::Value::Number(*n),
        Value::Str(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(t)
        }
        Value::Map(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, val) in pairs {
                t.raw_set(to_lua(lua, k)?, to_lua(lua, val)?)?;
            }
            mlua::Value::Table(t)
        }
    })
}

/// Builds several Lua values.
pub fn to_lua_multi(lua: &Lua, values: &[Value]) -> mlua::Result<mlua::MultiValue> {
    values.iter().map(|v| to_lua(lua, v)).collect()
}

/// Converts a [`Value`] to JSON. Tables with non-string keys use the key's text; NaN and
/// infinities are refused.
pub fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Num(n) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("the number {n} cannot be encoded as JSON"))?
            }
        }
        Value::Str(s) => serde_json::Value::String(String::from_utf8_lossy(s).into_owned()),
        Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Map(pairs) => {
            let mut m = serde_json::Map::with_capacity(pairs.len());
            for (k, val) in pairs {
                let key = match k {
                    Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
                    Value::Int(i) => i.to_string(),
                    Value::Num(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!("a {} key cannot be a JSON key", other.type_name()))
                    }
                };
                m.insert(key, to_json(val)?);
            }
            serde_json::Value::Object(m)
        }
    })
}

/// Converts JSON into a [`Value`] (objects become maps, arrays arrays, null nil).
pub fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::str(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (Value::str(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// A short human-readable rendering (JSON where possible), for logs and error texts.
pub fn display(v: &Value) -> String {
    match v {
        Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
        other => to_json(other)
            .map(|j| j.to_string())
            .unwrap_or_else(|_| format!("{other:?}")),
    }
}
