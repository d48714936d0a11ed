//! The `uuid` module: `v1()`, `v3(namespace, name)`, `v4()`, `v5(namespace, name)`,
//! `v7()` give UUID strings; `validate(s)` tells whether `s` is one; `version(s)` gives
//! its version (or `nil, err`); `parse(s)` gives its canonical lower-case form. The
//! namespaces of v3 and v5 are UUID strings or `uuid.NAMESPACE_DNS`, `_URL`, `_OID`,
//! `_X500`.

use super::errors::LuaError;
use mlua::{Lua, MultiValue, Table};
use uuid::Uuid;

fn parse(lua: &Lua, s: &str, func: &str) -> Result<Uuid, mlua::Result<MultiValue>> {
    Uuid::parse_str(s).map_err(|e| {
        LuaError::new("INVALID", format!("uuid.{func}: {s:?} is not a UUID: {e}")).into_nil_err(lua)
    })
}

fn one(lua: &Lua, v: impl mlua::IntoLua) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v.into_lua(lua)?]))
}

/// The `uuid` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (name, ns) in [
        ("NAMESPACE_DNS", Uuid::NAMESPACE_DNS),
        ("NAMESPACE_URL", Uuid::NAMESPACE_URL),
        ("NAMESPACE_OID", Uuid::NAMESPACE_OID),
        ("NAMESPACE_X500", Uuid::NAMESPACE_X500),
    ] {
        t.set(name, ns.to_string())?;
    }
    t.set(
        "v4",
        lua.create_function(|_, ()| Ok(Uuid::new_v4().to_string()))?,
    )?;
    t.set(
        "v7",
        lua.create_function(|_, ()| Ok(Uuid::now_v7().to_string()))?,
    )?;
    t.set(
        "v1",
        lua.create_function(|_, ()| {
            let node: [u8; 6] = rand_node();
            Ok(Uuid::now_v1(&node).to_string())
        })?,
    )?;
    for (name, v5) in [("v3", false), ("v5", true)] {
        t.set(
            name,
            lua.create_function(move |lua, (ns, n): (String, mlua::String)| {
                let ns = match parse(lua, &ns, name) {
                    Ok(u) => u,
                    Err(r) => return r,
                };
                let u = if v5 {
                    Uuid::new_v5(&ns, &n.as_bytes())
                } else {
                    Uuid::new_v3(&ns, &n.as_bytes())
                };
                one(lua, u.to_string())
            })?,
        )?;
    }
    t.set(
        "validate",
        lua.create_function(|_, s: mlua::Value| {
            Ok(match s {
                mlua::Value::String(s) => Uuid::parse_str(&s.to_string_lossy()).is_ok(),
                _ => false,
            })
        })?,
    )?;
    t.set(
        "version",
        lua.create_function(|lua, s: String| match parse(lua, &s, "version") {
            Ok(u) => one(lua, u.get_version_num()),
            Err(r) => r,
        })?,
    )?;
    t.set(
        "parse",
        lua.create_function(|lua, s: String| match parse(lua, &s, "parse") {
            Ok(u) => one(lua, u.hyphenated().to_string()),
            Err(r) => r,
        })?,
    )?;
    Ok(t)
}

/// A random node id for v1 UUIDs (multicast bit set, as RFC 9562 asks of ids that are not
/// a real MAC address).
fn rand_node() -> [u8; 6] {
    let mut n = [0u8; 6];
    for b in &mut n {
        *b = fastrand::u8(..);
    }
    n[0] |= 0x01;
    n
}
