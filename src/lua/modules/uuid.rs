//! The `uuid` module, as en/lua/security/uuid.md describes it: `v1()`, `v3(namespace,
//! name)`, `v4()`, `v5(namespace, name)`, `v7()` give UUID strings; `validate(s)` tells
//! whether `s` is one; `version(s)` gives its version, `variant(s)` its variant
//! (`RFC4122`, `Reserved`, `Microsoft`, `Future`, `NCS`), `parse(s)` a table `{version,
//! variant, timestamp, node}` (timestamp in Unix seconds for v1 and v7, node for v1, the
//! six bytes as Wippy's runtime gives them), `format(s, "standard" | "simple" | "urn")`.
//! A value that is not a string, or not a UUID, is `nil, err` (INVALID). The namespaces
//! of v3 and v5 are UUID strings or `uuid.NAMESPACE_DNS`, `_URL`, `_OID`, `_X500`.

use crate::lua::errors::LuaError;
use mlua::{Lua, MultiValue, Table};
use uuid::Uuid;

fn parse(lua: &Lua, s: &str, func: &str) -> Result<Uuid, mlua::Result<MultiValue>> {
    Uuid::parse_str(s).map_err(|e| {
        LuaError::new("INVALID", format!("uuid.{func}: {s:?} is not a UUID: {e}")).into_nil_err(lua)
    })
}

/// A UUID argument: a string holding one.
fn uuid_arg(lua: &Lua, v: &mlua::Value, func: &str) -> Result<Uuid, mlua::Result<MultiValue>> {
    match v {
        mlua::Value::String(s) => parse(lua, &s.to_string_lossy(), func),
        other => Err(LuaError::new(
            "INVALID",
            format!(
                "uuid.{func}: expected a UUID string, got {}",
                other.type_name()
            ),
        )
        .into_nil_err(lua)),
    }
}

/// The variant's name, as Wippy's runtime names it.
fn variant_name(u: &Uuid) -> &'static str {
    match u.get_variant() {
        uuid::Variant::RFC4122 => "RFC4122",
        uuid::Variant::Microsoft => "Microsoft",
        uuid::Variant::Future => "Future",
        uuid::Variant::NCS => "NCS",
        _ => "Reserved",
    }
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
        lua.create_function(|lua, s: mlua::Value| match uuid_arg(lua, &s, "version") {
            Ok(u) => one(lua, u.get_version_num()),
            Err(r) => r,
        })?,
    )?;
    t.set(
        "variant",
        lua.create_function(|lua, s: mlua::Value| match uuid_arg(lua, &s, "variant") {
            Ok(u) => one(lua, variant_name(&u)),
            Err(r) => r,
        })?,
    )?;
    t.set(
        "parse",
        lua.create_function(|lua, s: mlua::Value| {
            let u = match uuid_arg(lua, &s, "parse") {
                Ok(u) => u,
                Err(r) => return r,
            };
            let info = lua.create_table()?;
            info.set("version", u.get_version_num())?;
            info.set("variant", variant_name(&u))?;
            if matches!(u.get_version_num(), 1 | 7) {
                if let Some(ts) = u.get_timestamp() {
                    info.set("timestamp", ts.to_unix().0)?;
                }
            }
            if u.get_version_num() == 1 {
                // the node id: the last six bytes, as bytes (Wippy's runtime)
                info.set("node", lua.create_string(&u.as_bytes()[10..])?)?;
            }
            one(lua, info)
        })?,
    )?;
    t.set(
        "format",
        lua.create_function(|lua, (s, how): (mlua::Value, Option<String>)| {
            let u = match uuid_arg(lua, &s, "format") {
                Ok(u) => u,
                Err(r) => return r,
            };
            let text = match how.as_deref().unwrap_or("standard") {
                "standard" => u.hyphenated().to_string(),
                "simple" => u.simple().to_string(),
                "urn" => u.urn().to_string(),
                other => {
                    return LuaError::new(
                        "INVALID",
                        format!(
                            "uuid.format: unsupported format {other:?} (standard, simple or urn)"
                        ),
                    )
                    .into_nil_err(lua)
                }
            };
            one(lua, text)
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
