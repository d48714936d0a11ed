//! Payload objects and the `payload` global: a value as it travels between processes and
//! functions. `payload.new(v)` wraps a value; `p:data()` gives it back (a fresh copy each
//! time), `p:format()` names its encoding (`"lua/any"`: warden moves plain values, not
//! encoded bytes), `p:transcode(format)` gives the payload in another format (only
//! `"lua/any"` and `"json"` are known; both keep the data). A future's response
//! channel (`fut:response()`) delivers one of these.

use crate::value::{self, Value};
use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods};

/// A payload: a copied value.
#[derive(Clone, Debug)]
pub struct LuaPayload(pub Value);

/// The format of every payload warden makes.
pub const FORMAT: &str = "lua/any";

impl UserData for LuaPayload {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("data", |lua, p, ()| value::to_lua(lua, &p.0));
        m.add_method("format", |_, _, ()| Ok(FORMAT));
        m.add_method("transcode", |lua, p, fmt: String| match fmt.as_str() {
            FORMAT | "json" => Ok(mlua::MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(p.clone())?,
            )])),
            other => super::errors::LuaError::new(
                "INVALID",
                format!("payload:transcode: unknown format {other:?} (lua/any and json are known)"),
            )
            .into_nil_err(lua),
        });
        // sent or passed on: its data
        m.add_meta_method("__copy", |lua, p, ()| value::to_lua(lua, &p.0));
        m.add_meta_method(MetaMethod::ToString, |_, p, ()| {
            Ok(format!("payload({})", value::display(&p.0)))
        });
    }
}

/// The `payload` global: `payload.new(value)`.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "new",
        lua.create_function(|lua, v: mlua::Value| match value::from_lua(&v) {
            Ok(v) => Ok(mlua::MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(LuaPayload(v))?,
            )])),
            Err(e) => super::errors::LuaError::new("INVALID", format!("payload.new: {e}"))
                .into_nil_err(lua),
        })?,
    )?;
    Ok(t)
}
