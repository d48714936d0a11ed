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

/// The arguments at stack slots `first..=last` of `l` as WIT values of `params`; None
/// when any of them needs the general path (a wrong count, type or range included).
///
/// # Safety
/// `first..=last` must be valid stack indices of `l` (none when `last < first`). Raises no
/// Lua error: it only reads values and walks tables with `lua_next`.
pub(crate) unsafe fn args_at(
    l: *mut ffi::lua_State,
    first: c_int,
    last: c_int,
    params: &[(String, Type)],
) -> Option<Vec<Val>> {
    if (last - first + 1).max(0) as usize != params.len() {
        return None;
    }
    let mut out = Vec::with_capacity(params.len());
    for (i, (_, ty)) in params.iter().enumerate() {
        out.push(val_at(l, first + i as c_int, ty)?);
    }
    Some(out)
}

/// # Safety
/// `idx` is an absolute, valid stack index of `l`.
unsafe fn val_at(l: *mut ffi::lua_State, idx: c_int, ty: &Type) -> Option<Val> {
    let t = ffi::lua_type(l, idx);
    Some(match ty {
        Type::Bool if t == ffi::LUA_TBOOLEAN => Val::Bool(ffi::lua_toboolean(l, idx) != 0),
        Type::S8 => Val::S8(int_at(l, idx, t)?.try_into().ok()?),
        Type::U8 => Val::U8(int_at(l, idx, t)?.try_into().ok()?),
        Type::S16 => Val::S16(int_at(l, idx, t)?.try_into().ok()?),
        Type::U16 => Val::U16(int_at(l, idx, t)?.try_into().ok()?),
        Type::S32 => Val::S32(int_at(l, idx, t)?.try_into().ok()?),
        Type::U32 => Val::U32(int_at(l, idx, t)?.try_into().ok()?),
        Type::S64 => Val::S64(int_at(l, idx, t)?),
        Type::U64 => Val::U64(int_at(l, idx, t)?.try_into().ok()?),
        Type::Float32 => Val::Float32(num_at(l, idx, t)? as f32),
        Type::Float64 => Val::Float64(num_at(l, idx, t)?),
        Type::Char => {
            let mut chars = str_at(l, idx, t)?.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return None,
            }
        }
        Type::String => Val::String(str_at(l, idx, t)?.to_owned()),
        Type::Enum(e) => {
            let s = str_at(l, idx, t)?;
            if !e.names().any(|n| n == s) {
                return None;
            }
            Val::Enum(s.to_owned())
        }
        Type::Option(_) if t == ffi::LUA_TNIL => Val::Option(None),
        Type::Option(o) => Val::Option(Some(Box::new(val_at(l, idx, &o.ty())?))),
        Type::List(list) => {
            let elem = list.ty();
            if let (Type::U8, ffi::LUA_TSTRING) = (&elem, t) {
                let bytes = super::raw::string_at(l, idx)?;
                return Some(Val::List(bytes.iter().map(|b| Val::U8(*b)).collect()));
            }
            Val::List(sequence_at(l, idx, t, |l, i, _| val_at(l, i, &elem))?)
        }
        Type::Tuple(tuple) => {
            let types: Vec<Type> = tuple.types().collect();
            let items = sequence_at(l, idx, t, |l, i, k| val_at(l, i, types.get(k)?))?;
            if items.len() != types.len() {
                return None;
            }
            Val::Tuple(items)
        }
        Type::Record(r) => record_at(l, idx, t, r)?,
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
    std::str::from_utf8(super::raw::string_at(l, idx)?).ok()
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
/// key, a missing field, a table of more than 64 fields, or an empty table.
unsafe fn record_at(
    l: *mut ffi::lua_State,
    idx: c_int,
    t: c_int,
    r: &wasmtime::component::types::Record,
) -> Option<Val> {
    if t != ffi::LUA_TTABLE || ffi::lua_checkstack(l, 3) == 0 {
        return None;
    }
    let fields: Vec<wasmtime::component::types::Field<'_>> = r.fields().collect();
    if fields.len() > 64 {
        return None;
    }
    let mut out: Vec<(String, Val)> = fields
        .iter()
        .map(|f| (f.name.to_string(), crate::wasm::values::placeholder()))
        .collect();
    let mut set = 0u64;
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        let top = ffi::lua_gettop(l);
        let found = super::raw::string_at(l, top - 1)
            .and_then(|key| fields.iter().position(|f| field_is(f.name, key)))
            .filter(|j| set & (1 << j) == 0)
            .and_then(|j| Some((j, val_at(l, top, &fields[j].ty)?)));
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
    for (j, f) in fields.iter().enumerate() {
        if set & (1 << j) == 0 {
            match f.ty {
                Type::Option(_) => out[j].1 = Val::Option(None),
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
            ffi::lua_createtable(l, len_hint(items.len()), 0);
            for (i, item) in items.iter().enumerate() {
                push_val(l, item);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
            }
        }
        Val::Map(pairs) => {
            ffi::lua_createtable(l, 0, len_hint(pairs.len()));
            for (k, val) in pairs {
                push_val(l, k);
                push_val(l, val);
                ffi::lua_rawset(l, -3);
            }
        }
        Val::Record(fields) => {
            ffi::lua_createtable(l, 0, len_hint(fields.len()));
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
            ffi::lua_createtable(l, len_hint(names.len()), 0);
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

fn len_hint(n: usize) -> c_int {
    n.min(c_int::MAX as usize) as c_int
}
