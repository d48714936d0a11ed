//! `funcs.call` of a WebAssembly function, straight between the Lua stack and WIT values.
//!
//! The general path copies Lua arguments into [`Value`](crate::value::Value)s, which the
//! WebAssembly layer converts to WIT values, and the result back the same two steps: two
//! allocations per string and table on each side, a third of a call to a small export
//! by callgrind. Here plain arguments (scalars, strings, enums, options, lists, tuples and
//! records of them) become WIT values in one step, and results are pushed onto the stack
//! as the general path would build them (`values::from_val`, then `raw::push_value`).
//! Anything else, and every argument that does not fit its type, is left to the general
//! path, which checks and describes it (so error texts have one source).

use mlua::ffi;
use std::os::raw::{c_char, c_int};
use wasmtime::component::types::Type;
use wasmtime::component::Val;

/// A WIT type as the direct conversion needs it, resolved once per function (wasmtime's
/// `Type` makes its field and case lists afresh at every look).
pub(crate) enum Shape {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    /// The case names.
    Enum(Vec<String>),
    Option(Box<Shape>),
    List(Box<Shape>),
    Tuple(Vec<Shape>),
    /// Field names as written in the WIT, and their shapes.
    Record(Vec<(String, Shape)>),
    /// Left to the general path (variants, results, flags, maps, resources).
    Other,
}

impl Shape {
    /// The shape of `ty`.
    pub(crate) fn of(ty: &Type) -> Shape {
        match ty {
            Type::Bool => Shape::Bool,
            Type::S8 => Shape::S8,
            Type::U8 => Shape::U8,
            Type::S16 => Shape::S16,
            Type::U16 => Shape::U16,
            Type::S32 => Shape::S32,
            Type::U32 => Shape::U32,
            Type::S64 => Shape::S64,
            Type::U64 => Shape::U64,
            Type::Float32 => Shape::F32,
            Type::Float64 => Shape::F64,
            Type::Char => Shape::Char,
            Type::String => Shape::String,
            Type::Enum(e) => Shape::Enum(e.names().map(str::to_string).collect()),
            Type::Option(o) => Shape::Option(Box::new(Shape::of(&o.ty()))),
            Type::List(l) => Shape::List(Box::new(Shape::of(&l.ty()))),
            Type::Tuple(t) => Shape::Tuple(t.types().map(|t| Shape::of(&t)).collect()),
            Type::Record(r) if r.fields().len() <= 64 => Shape::Record(
                r.fields()
                    .map(|f| (f.name.to_string(), Shape::of(&f.ty)))
                    .collect(),
            ),
            _ => Shape::Other,
        }
    }
}

/// The arguments at stack slots `first..=last` of `l` as WIT values of the parameter
/// shapes `params`; None when any of them needs the general path (a wrong count, type or
/// range included).
///
/// # Safety
/// `first..=last` must be valid stack indices of `l` (none when `last < first`). Raises no
/// Lua error: it only reads values and walks tables with `lua_next`.
pub(crate) unsafe fn args_at(
    l: *mut ffi::lua_State,
    first: c_int,
    last: c_int,
    params: &[Shape],
) -> Option<Vec<Val>> {
    if (last - first + 1).max(0) as usize != params.len() {
        return None;
    }
    let mut out = Vec::with_capacity(params.len());
    for (i, shape) in params.iter().enumerate() {
        out.push(val_at(l, first + i as c_int, shape)?);
    }
    Some(out)
}

/// # Safety
/// `idx` is an absolute, valid stack index of `l`.
unsafe fn val_at(l: *mut ffi::lua_State, idx: c_int, shape: &Shape) -> Option<Val> {
    let t = ffi::lua_type(l, idx);
    Some(match shape {
        Shape::Bool if t == ffi::LUA_TBOOLEAN => Val::Bool(ffi::lua_toboolean(l, idx) != 0),
        Shape::S8 => Val::S8(int_at(l, idx, t)?.try_into().ok()?),
        Shape::U8 => Val::U8(int_at(l, idx, t)?.try_into().ok()?),
        Shape::S16 => Val::S16(int_at(l, idx, t)?.try_into().ok()?),
        Shape::U16 => Val::U16(int_at(l, idx, t)?.try_into().ok()?),
        Shape::S32 => Val::S32(int_at(l, idx, t)?.try_into().ok()?),
        Shape::U32 => Val::U32(int_at(l, idx, t)?.try_into().ok()?),
        Shape::S64 => Val::S64(int_at(l, idx, t)?),
        Shape::U64 => Val::U64(int_at(l, idx, t)?.try_into().ok()?),
        Shape::F32 => Val::Float32(num_at(l, idx, t)? as f32),
        Shape::F64 => Val::Float64(num_at(l, idx, t)?),
        Shape::Char => {
            let mut chars = str_at(l, idx, t)?.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return None,
            }
        }
        Shape::String => Val::String(str_at(l, idx, t)?.to_owned()),
        Shape::Enum(names) => {
            let s = str_at(l, idx, t)?;
            if !names.iter().any(|n| n == s) {
                return None;
            }
            Val::Enum(s.to_owned())
        }
        Shape::Option(_) if t == ffi::LUA_TNIL => Val::Option(None),
        Shape::Option(inner) => Val::Option(Some(Box::new(val_at(l, idx, inner)?))),
        Shape::List(elem) => {
            if let (Shape::U8, ffi::LUA_TSTRING) = (&**elem, t) {
                let bytes = crate::lua::raw::string_at(l, idx)?;
                return Some(Val::List(bytes.iter().map(|b| Val::U8(*b)).collect()));
            }
            Val::List(sequence_at(l, idx, t, |l, i, _| val_at(l, i, elem))?)
        }
        Shape::Tuple(shapes) => {
            let items = sequence_at(l, idx, t, |l, i, k| val_at(l, i, shapes.get(k)?))?;
            if items.len() != shapes.len() {
                return None;
            }
            Val::Tuple(items)
        }
        Shape::Record(fields) => record_at(l, idx, t, fields)?,
        _ => return None,
    })
}

/// A Lua integer (floats, even integral ones, take the general path).
unsafe fn int_at(l: *mut ffi::lua_State, idx: c_int, t: c_int) -> Option<i64> {
    (t == ffi::LUA_TNUMBER && ffi::lua_isinteger(l, idx) != 0)
        .then(|| ffi::lua_tointegerx(l, idx, std::ptr::null_mut()))
}

/// A Lua number as a float.
unsafe fn num_at(l: *mut ffi::lua_State, idx: c_int, t: c_int) -> Option<f64> {
    if t != ffi::LUA_TNUMBER {
        return None;
    }
    Some(if ffi::lua_isinteger(l, idx) != 0 {
        ffi::lua_tointegerx(l, idx, std::ptr::null_mut()) as f64
    } else {
        ffi::lua_tonumberx(l, idx, std::ptr::null_mut())
    })
}

/// A Lua string that is valid UTF-8 (numbers are not converted).
unsafe fn str_at<'a>(l: *mut ffi::lua_State, idx: c_int, t: c_int) -> Option<&'a str> {
    if t != ffi::LUA_TSTRING {
        return None;
    }
    std::str::from_utf8(crate::lua::raw::string_at(l, idx)?).ok()
}

/// The items of a table whose keys are exactly 1..n, met in that order by `lua_next` (the
/// array part of a table built as a list), each converted by `each(l, index, k)` (k from
/// 0). None for anything else: other keys, or items in the hash part out of order.
unsafe fn sequence_at(
    l: *mut ffi::lua_State,
    idx: c_int,
    t: c_int,
    mut each: impl FnMut(*mut ffi::lua_State, c_int, usize) -> Option<Val>,
) -> Option<Vec<Val>> {
    if t != ffi::LUA_TTABLE || ffi::lua_checkstack(l, 3) == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(ffi::lua_rawlen(l, idx));
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        let top = ffi::lua_gettop(l);
        let next = out.len() as ffi::lua_Integer + 1;
        let item = (ffi::lua_isinteger(l, top - 1) != 0
            && ffi::lua_tointegerx(l, top - 1, std::ptr::null_mut()) == next)
            .then(|| each(l, top, out.len()))
            .flatten();
        match item {
            Some(v) => out.push(v),
            None => {
                ffi::lua_settop(l, top - 2);
                return None;
            }
        }
        ffi::lua_settop(l, top - 1);
    }
    Some(out)
}

/// A record from a table with string keys: each key one field, by its WIT name or its
/// snake_case spelling; absent `option` fields are none. None for an unknown or doubled
/// key, a missing field or an empty table (records of more than 64 fields are `Other`).
unsafe fn record_at(
    l: *mut ffi::lua_State,
    idx: c_int,
    t: c_int,
    fields: &[(String, Shape)],
) -> Option<Val> {
    if t != ffi::LUA_TTABLE || ffi::lua_checkstack(l, 3) == 0 {
        return None;
    }
    let mut out: Vec<(String, Val)> = fields
        .iter()
        .map(|(name, _)| (name.clone(), crate::wasm::values::placeholder()))
        .collect();
    let mut set = 0u64;
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        let top = ffi::lua_gettop(l);
        let found = crate::lua::raw::string_at(l, top - 1)
            .and_then(|key| fields.iter().position(|(name, _)| field_is(name, key)))
            .filter(|j| set & (1 << j) == 0)
            .and_then(|j| Some((j, val_at(l, top, &fields[j].1)?)));
        let Some((j, v)) = found else {
            ffi::lua_settop(l, top - 2);
            return None;
        };
        out[j].1 = v;
        set |= 1 << j;
        ffi::lua_settop(l, top - 1);
    }
    if set == 0 {
        return None;
    }
    for (j, (_, shape)) in fields.iter().enumerate() {
        if set & (1 << j) == 0 {
            match shape {
                Shape::Option(_) => out[j].1 = Val::Option(None),
                _ => return None,
            }
        }
    }
    Some(Val::Record(out))
}

/// Whether table key `key` names field `name` (`tag-count`, or `tag_count`).
fn field_is(name: &str, key: &[u8]) -> bool {
    name.len() == key.len()
        && name
            .bytes()
            .zip(key)
            .all(|(n, &k)| n == k || (n == b'-' && k == b'_'))
}

/// Pushes the Lua value of WIT value `v` onto the stack of `l`: the same value
/// `raw::push_value(values::from_val(v))` pushes (records and `{case = payload}` tables
/// keyed by name, enums and payload-less cases as strings, flags as an array of names,
/// none as nil, a u64 above the integer range as a float).
///
/// # Safety
/// As `raw::push_value`: a Lua error (out of memory, stack overflow) unwinds through this
/// frame, so the caller keeps `v` alive without a pending destructor until this returns.
pub(crate) unsafe fn push_val(l: *mut ffi::lua_State, v: &Val) {
    if ffi::lua_checkstack(l, 3) == 0 {
        ffi::luaL_error(l, c"a result is nested too deeply".as_ptr());
    }
    match v {
        Val::Bool(b) => ffi::lua_pushboolean(l, *b as c_int),
        Val::S8(i) => ffi::lua_pushinteger(l, *i as ffi::lua_Integer),
        Val::U8(i) => ffi::lua_pushinteger(l, *i as ffi::lua_Integer),
        Val::S16(i) => ffi::lua_pushinteger(l, *i as ffi::lua_Integer),
        Val::U16(i) => ffi::lua_pushinteger(l, *i as ffi::lua_Integer),
        Val::S32(i) => ffi::lua_pushinteger(l, *i as ffi::lua_Integer),
        Val::U32(i) => ffi::lua_pushinteger(l, *i as ffi::lua_Integer),
        Val::S64(i) => ffi::lua_pushinteger(l, *i),
        Val::U64(i) => match i64::try_from(*i) {
            Ok(i) => ffi::lua_pushinteger(l, i),
            Err(_) => ffi::lua_pushnumber(l, *i as f64),
        },
        Val::Float32(f) => ffi::lua_pushnumber(l, *f as f64),
        Val::Float64(f) => ffi::lua_pushnumber(l, *f),
        Val::Char(c) => push_str(l, c.encode_utf8(&mut [0; 4])),
        Val::String(s) | Val::Enum(s) | Val::Variant(s, None) => push_str(l, s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            ffi::lua_createtable(l, crate::lua::raw::len_hint(items.len()), 0);
            for (i, item) in items.iter().enumerate() {
                push_val(l, item);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
            }
        }
        Val::Map(pairs) => {
            ffi::lua_createtable(l, 0, crate::lua::raw::len_hint(pairs.len()));
            for (k, val) in pairs {
                push_val(l, k);
                push_val(l, val);
                ffi::lua_rawset(l, -3);
            }
        }
        Val::Record(fields) => {
            ffi::lua_createtable(l, 0, crate::lua::raw::len_hint(fields.len()));
            for (name, val) in fields {
                push_str(l, name);
                push_val(l, val);
                ffi::lua_rawset(l, -3);
            }
        }
        Val::Variant(case, Some(p)) => {
            ffi::lua_createtable(l, 0, 1);
            push_str(l, case);
            push_val(l, p);
            ffi::lua_rawset(l, -3);
        }
        Val::Option(None) => ffi::lua_pushnil(l),
        Val::Option(Some(v)) => push_val(l, v),
        Val::Result(r) => {
            let (case, payload) = match r {
                Ok(p) => ("ok", p),
                Err(p) => ("err", p),
            };
            ffi::lua_createtable(l, 0, 1);
            push_str(l, case);
            match payload {
                Some(p) => push_val(l, p),
                None => ffi::lua_pushboolean(l, 1),
            }
            ffi::lua_rawset(l, -3);
        }
        Val::Flags(names) => {
            ffi::lua_createtable(l, crate::lua::raw::len_hint(names.len()), 0);
            for (i, n) in names.iter().enumerate() {
                push_str(l, n);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
            }
        }
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            ffi::lua_pushnil(l)
        }
    }
}

unsafe fn push_str(l: *mut ffi::lua_State, s: &str) {
    ffi::lua_pushlstring(l, s.as_ptr() as *const c_char, s.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{self, Value};
    use crate::wasm::values::{self as wit_values, test_params};

    /// A value with its maps sorted, for comparing tables whatever their traversal order.
    fn canonical(v: Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
            Value::Map(pairs) => {
                let mut pairs: Vec<(Value, Value)> = pairs
                    .into_iter()
                    .map(|(k, v)| (canonical(k), canonical(v)))
                    .collect();
                pairs.sort_by_key(|(k, _)| value::display(k));
                Value::Map(pairs)
            }
            other => other,
        }
    }

    /// Over many Lua values and WIT types: a value the direct conversion takes becomes the
    /// WIT value the general one (Lua -> `Value` -> WIT) makes, and pushing any WIT value
    /// gives the Lua value the general path gives.
    #[test]
    fn direct_conversions_agree_with_the_general_path() {
        let types = test_params(
            "record point { x: s32, y: s32 }\nenum color { red, green }\nrecord pair { first-one: option<string>, second: list<u8> }\nvariant shape { circle(u32), none }\nflags perms { read, write }",
            "func(a: bool, b: s8, c: u8, d: s16, e: u16, f: s32, g: u32, h: s64, i: u64, j: f32, k: f64, l: char, m: string, n: list<s32>, o: tuple<s32, string>, p: point, q: color, r: option<point>, s: pair, t: list<list<point>>, u: shape, v: perms, w: option<option<bool>>)",
        );
        let exprs = [
            "true",
            "false",
            "0",
            "-1",
            "255",
            "256",
            "-129",
            "65536",
            "2^63",
            "1.5",
            "3.0",
            "4294967296",
            "-2147483649",
            "math.maxinteger",
            "math.mininteger",
            "'a'",
            "'ab'",
            "'\\xff'",
            "'é'",
            "''",
            "'red'",
            "'blue'",
            "'none'",
            "{}",
            "{1,2,3}",
            "{1,'x'}",
            "{x=1,y=2}",
            "{x=1}",
            "{x=1,y=2,z=3}",
            "{x=1.0,y=2}",
            "{first_one='a', second='bytes'}",
            "{['first-one']='a', second={1,2}}",
            "{second={}}",
            "{first_one='a', ['first-one']='b', second={}}",
            "nil",
            "{{ {x=1,y=2} }, {}}",
            "{5, 'five'}",
            "{5}",
            "{5, 'five', 6}",
            "(function() local t = {} t[2] = 2 t[1] = 1 return t end)()",
            "{circle=3}",
            "{'read'}",
            "{1, 2, n=2}",
            "{[1]=1, [3]=3}",
        ];
        let lua = mlua::Lua::new();
        let (mut taken, mut compared) = (0, 0);
        for e in exprs {
            let v: mlua::Value = lua.load(format!("return {e}")).eval().unwrap();
            for ty in &types {
                let general = value::from_lua(&v)
                    .ok()
                    .and_then(|x| wit_values::to_val(&x, ty).ok());
                let shape = [Shape::of(ty)];
                let mut direct = None;
                // SAFETY: the value is at index 1 of the stack exec_raw gives.
                unsafe {
                    lua.exec_raw::<()>(v.clone(), |l| direct = args_at(l, 1, 1, &shape))
                        .unwrap();
                }
                if let Some(mut d) = direct {
                    taken += 1;
                    assert_eq!(Some(d.remove(0)), general, "{e} as {ty:?}");
                }
                let Some(g) = general else { continue };
                // SAFETY: pushes one value.
                let pushed: mlua::Value = unsafe {
                    lua.exec_raw((), |l| {
                        ffi::lua_settop(l, 0);
                        push_val(l, &g)
                    })
                    .unwrap()
                };
                let expected = value::to_lua(&lua, &wit_values::from_val(&g)).unwrap();
                assert_eq!(
                    canonical(value::from_lua(&pushed).unwrap()),
                    canonical(value::from_lua(&expected).unwrap()),
                    "push of {e} as {ty:?}"
                );
                compared += 1;
            }
        }
        // the direct path takes most plain cases, and the comparisons cover them
        assert!(
            taken >= 80 && compared >= taken,
            "{taken} taken, {compared} compared"
        );
    }
}
