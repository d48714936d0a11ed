//! Payload objects and the `payload` global (en/lua/data/payload.md): a value as it
//! travels between processes and functions, in a format. `payload.new(v)` wraps a Lua
//! value (`lua/any`; an error object: `golang/error`); `p:get_format()` names the format
//! (one of `payload.format.*`); `p:transcode(format)` encodes it as JSON, YAML or
//! MessagePack (serde_json, serde_yaml_ng, rmp-serde), as text or bytes, or decodes it
//! back; `p:data()` and `p:unmarshal()` give the Lua value, decoding when the payload is
//! encoded (a fresh copy each time). A future's response channel (`fut:response()`)
//! delivers one of these. A failed transcoding is `nil, err` (INTERNAL), as on Wippy.

use crate::lua::errors::LuaError;
use crate::value::{self, Value};
use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods};

/// The formats, under Wippy's constant names (`payload.format.JSON` is `"json/plain"`).
pub const FORMATS: &[(&str, &str)] = &[
    ("JSON", "json/plain"),
    ("YAML", "yaml/plain"),
    ("STRING", "text/plain"),
    ("BYTES", "application/octet-stream"),
    ("MSGPACK", "application/msgpack"),
    ("LUA", "lua/any"),
    ("GOLANG", "golang/any"),
    ("ERROR", "golang/error"),
];

/// The format of a payload made from a Lua value.
pub const FORMAT: &str = "lua/any";

/// What a payload holds.
#[derive(Clone, Debug)]
enum Body {
    /// A Lua value, copied (`lua/any`; `golang/any` reads the same way).
    Value(Value),
    /// An error object (`golang/error`).
    Error(LuaError),
    /// Encoded bytes in the payload's format (JSON, YAML, MessagePack, text, bytes).
    Bytes(Vec<u8>),
}

/// A payload: a value in a format.
#[derive(Clone, Debug)]
pub struct LuaPayload {
    format: &'static str,
    body: Body,
}

impl LuaPayload {
    /// A payload of a Lua value (`lua/any`), as calls and futures deliver results.
    pub fn lua(v: Value) -> LuaPayload {
        LuaPayload {
            format: FORMAT,
            body: Body::Value(v),
        }
    }

    /// The Lua value it stands for, decoding it when it is encoded.
    fn decoded(&self) -> Result<Decoded, String> {
        let bytes = match &self.body {
            Body::Value(v) => return Ok(Decoded::Value(v.clone())),
            Body::Error(e) => return Ok(Decoded::Error(e.clone())),
            Body::Bytes(b) => b,
        };
        let v = match self.format {
            "json/plain" => {
                let j: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| format!("json: {e}"))?;
                value::from_json(&j)
            }
            "yaml/plain" => {
                let j: serde_json::Value =
                    serde_yaml_ng::from_slice(bytes).map_err(|e| format!("yaml: {e}"))?;
                value::from_json(&j)
            }
            "application/msgpack" => {
                let j: serde_json::Value =
                    rmp_serde::from_slice(bytes).map_err(|e| format!("msgpack: {e}"))?;
                value::from_json(&j)
            }
            // text and bytes read as a string
            _ => Value::Str(bytes.clone()),
        };
        Ok(Decoded::Value(v))
    }

    /// This payload in `format`.
    fn transcode(&self, format: &str) -> Result<LuaPayload, String> {
        let Some(&(_, target)) = FORMATS.iter().find(|(_, f)| *f == format) else {
            let known: Vec<&str> = FORMATS.iter().map(|(_, f)| *f).collect();
            return Err(format!(
                "unknown format {format:?} (one of {})",
                known.join(", ")
            ));
        };
        if target == self.format {
            return Ok(self.clone());
        }
        let v = match self.decoded()? {
            Decoded::Value(v) => v,
            Decoded::Error(e) => match target {
                "lua/any" | "golang/any" => {
                    return Ok(LuaPayload {
                        format: target,
                        body: Body::Error(e),
                    })
                }
                _ => Value::str(e.text()),
            },
        };
        let json = || value::to_json(&v);
        let body = match target {
            "lua/any" | "golang/any" => Body::Value(v.clone()),
            "golang/error" => Body::Error(LuaError {
                retryable: None,
                ..LuaError::new("UNKNOWN", value::display(&v))
            }),
            "json/plain" => {
                Body::Bytes(serde_json::to_vec(&json()?).map_err(|e| format!("json: {e}"))?)
            }
            "yaml/plain" => Body::Bytes(
                serde_yaml_ng::to_string(&json()?)
                    .map_err(|e| format!("yaml: {e}"))?
                    .into_bytes(),
            ),
            "application/msgpack" => {
                Body::Bytes(rmp_serde::to_vec(&json()?).map_err(|e| format!("msgpack: {e}"))?)
            }
            // text and bytes: a string as it is, anything else as its JSON text
            _ => Body::Bytes(match &v {
                Value::Str(s) => s.clone(),
                other => {
                    serde_json::to_vec(&value::to_json(other)?).map_err(|e| format!("json: {e}"))?
                }
            }),
        };
        Ok(LuaPayload {
            format: target,
            body,
        })
    }
}

/// A payload's value for Lua.
enum Decoded {
    Value(Value),
    Error(LuaError),
}

/// `value` or `nil, err` (INTERNAL, "<what> failed: ...") for Lua.
fn decoded_for_lua(lua: &Lua, p: &LuaPayload, what: &str) -> mlua::Result<MultiValue> {
    match p.decoded() {
        Ok(Decoded::Value(v)) => Ok(MultiValue::from_vec(vec![value::to_lua(lua, &v)?])),
        Ok(Decoded::Error(e)) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
            lua.create_userdata(e)?,
        )])),
        Err(e) => LuaError::new("INTERNAL", format!("{what} failed: {e}")).into_nil_err(lua),
    }
}

impl UserData for LuaPayload {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("data", |lua, p, ()| decoded_for_lua(lua, p, "transcode"));
        m.add_method("unmarshal", |lua, p, ()| {
            decoded_for_lua(lua, p, "unmarshal")
        });
        // `get_format()` is Wippy's name; `format()` warden's older one
        for name in ["get_format", "format"] {
            m.add_method(name, |_, p, ()| Ok(p.format));
        }
        m.add_method("transcode", |lua, p, fmt: String| {
            // warden's older short name for JSON
            let fmt = if fmt == "json" { "json/plain" } else { &fmt };
            match p.transcode(fmt) {
                Ok(t) => Ok(MultiValue::from_vec(vec![
                    mlua::Value::UserData(lua.create_userdata(t)?),
                    mlua::Value::Nil,
                ])),
                Err(e) => {
                    LuaError::new("INTERNAL", format!("transcode failed: {e}")).into_nil_err(lua)
                }
            }
        });
        // sent or passed on: its data
        m.add_meta_method("__copy", |lua, p, ()| match p.decoded() {
            Ok(Decoded::Value(v)) => value::to_lua(lua, &v),
            Ok(Decoded::Error(e)) => Ok(mlua::Value::String(lua.create_string(e.text())?)),
            Err(e) => Err(mlua::Error::runtime(format!("payload: {e}"))),
        });
        m.add_meta_method(MetaMethod::ToString, |_, p, ()| {
            Ok(format!("payload{{format={}}}", p.format))
        });
    }
}

/// The `payload` global: `payload.new(value)`, `payload.format`.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let formats = lua.create_table()?;
    for (name, f) in FORMATS {
        formats.set(*name, *f)?;
    }
    t.set("format", formats)?;
    t.set(
        "new",
        lua.create_function(|lua, v: mlua::Value| {
            if let mlua::Value::UserData(ud) = &v {
                if let Ok(e) = ud.borrow::<LuaError>() {
                    let p = LuaPayload {
                        format: "golang/error",
                        body: Body::Error(e.clone()),
                    };
                    return Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                        lua.create_userdata(p)?,
                    )]));
                }
            }
            match value::from_lua(&v) {
                Ok(v) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                    lua.create_userdata(LuaPayload::lua(v))?,
                )])),
                Err(e) => LuaError::new("INVALID", format!("payload.new: {e}")).into_nil_err(lua),
            }
        })?,
    )?;
    Ok(t)
}
