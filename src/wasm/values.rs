//! WIT values <-> [`Value`], both directions, for every WIT type warden supports.
//!
//! | WIT | Value |
//! |---|---|
//! | bool | Bool |
//! | s8..s64, u8..u64 | Int (a float with no fraction is accepted; range-checked) |
//! | f32, f64 | Num (an Int is accepted) |
//! | char | a one-character Str |
//! | string | Str (UTF-8) |
//! | list<T>, tuple | Array (list<u8> also accepts a Str as bytes) |
//! | record | Map keyed by the field names as written in WIT (`tag-count`); as input the snake_case spelling (`tag_count`) is accepted too, and a missing `option` field is none |
//! | variant | `{case = payload}`; a case without payload is the bare string `"case"` |
//! | enum | Str |
//! | option<T> | the value, or Nil for none |
//! | result<T, E> | `{ok = v}` / `{err = e}` (a function's top-level result is split by the caller into a value or an error) |
//! | flags | Array of the set flag names (as input, a set table `{read = true}` also works) |
//!
//! Errors name the path inside the value with 1-based indices, like Lua:
//! `users[2].tags[1]: expected string, got number`.

use wasmtime::component::types::Type;
use wasmtime::component::Val;

use crate::value::Value;

/// A conversion error: where in the value, and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueError {
    /// The path from the parameter, e.g. `[2].tags[1]` (empty at the root).
    pub path: String,
    /// What is wrong, e.g. `expected string, got number`.
    pub message: String,
}

impl ValueError {
    fn new(message: impl Into<String>) -> ValueError {
        ValueError {
            path: String::new(),
            message: message.into(),
        }
    }

    fn at(mut self, segment: &str) -> ValueError {
        self.path = format!("{segment}{}", self.path);
        self
    }
}

/// The WIT name of a type, for messages (`u32`, `list<string>`, `record`, ...).
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, {}>", type_name(&l.ty()), l.len()),
        Type::Map(m) => format!("map<{}, {}>", type_name(&m.key()), type_name(&m.value())),
        Type::Record(_) => "record".into(),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types()
                .map(|t| type_name(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(_) => "variant".into(),
        Type::Enum(_) => "enum".into(),
        Type::Option(o) => format!("option<{}>", type_name(&o.ty())),
        Type::Result(r) => format!(
            "result<{}, {}>",
            r.ok().map(|t| type_name(&t)).unwrap_or_else(|| "_".into()),
            r.err().map(|t| type_name(&t)).unwrap_or_else(|| "_".into())
        ),
        Type::Flags(_) => "flags".into(),
        Type::Own(_) | Type::Borrow(_) => "resource".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
    }
}

/// Why values of `ty` cannot cross (resources, futures, streams), if they cannot. Checked
/// at load for every parameter and result of a called export.
pub fn unsupported(ty: &Type) -> Option<String> {
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("resources are not supported yet".into()),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Some(format!("{} values are not supported yet", type_name(ty)))
        }
        Type::List(l) => unsupported(&l.ty()),
        Type::FixedLengthList(l) => unsupported(&l.ty()),
        Type::Map(m) => unsupported(&m.key()).or_else(|| unsupported(&m.value())),
        Type::Record(r) => r.fields().find_map(|f| unsupported(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| unsupported(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.as_ref().and_then(unsupported)),
        Type::Option(o) => unsupported(&o.ty()),
        Type::Result(r) => r
            .ok()
            .and_then(|t| unsupported(&t))
            .or_else(|| r.err().and_then(|t| unsupported(&t))),
        _ => None,
    }
}

/// What a value is, for "expected X, got Y" messages (Lua's words: nil, boolean, number,
/// string, table).
fn got(v: &Value) -> String {
    match v {
        Value::Int(i) => format!("number {i}"),
        Value::Num(n) => format!("number {n}"),
        Value::Str(_) => "string".into(),
        other => other.type_name().into(),
    }
}

fn expected(what: &str, v: &Value) -> ValueError {
    let got = match v {
        Value::Int(_) | Value::Num(_) => "number".to_string(),
        other => got(other),
    };
    ValueError::new(format!("expected {what}, got {got}"))
}

/// An integer of `ty` from a Lua number.
fn integer(v: &Value, ty: &Type, min: i128, max: i128) -> Result<i128, ValueError> {
    let n: i128 = match v {
        Value::Int(i) => *i as i128,
        Value::Num(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 1.8e19 => *f as i128,
        Value::Num(f) => {
            return Err(ValueError::new(format!(
                "expected {}, got number {f} (not an integer)",
                type_name(ty)
            )))
        }
        other => return Err(expected(&type_name(ty), other)),
    };
    if n < min || n > max {
        return Err(ValueError::new(format!(
            "{n} is out of range for {} ({min}..{max})",
            type_name(ty)
        )));
    }
    Ok(n)
}

fn float(v: &Value, ty: &Type) -> Result<f64, ValueError> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Num(f) => Ok(*f),
        other => Err(expected(&type_name(ty), other)),
    }
}

fn string(v: &Value, ty: &Type) -> Result<String, ValueError> {
    match v {
        Value::Str(b) => String::from_utf8(b.clone())
            .map_err(|_| ValueError::new("expected a UTF-8 string, got invalid UTF-8 bytes")),
        other => Err(expected(&type_name(ty), other)),
    }
}

/// The items of an array value (an empty table is an empty array).
fn items<'a>(v: &'a Value, what: &str) -> Result<&'a [Value], ValueError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Map(m) if m.is_empty() => Ok(&[]),
        Value::Map(_) => Err(ValueError::new(format!(
            "expected {what} (an array), got a table with non-sequence keys"
        ))),
        other => Err(expected(&format!("{what} (an array)"), other)),
    }
}

/// The string-keyed pairs of a table value (an empty array is an empty table).
fn pairs<'a>(v: &'a Value, what: &str) -> Result<&'a [(Value, Value)], ValueError> {
    match v {
        Value::Map(m) => Ok(m),
        Value::Array(a) if a.is_empty() => Ok(&[]),
        Value::Array(_) => Err(ValueError::new(format!(
            "expected {what} (a table with named fields), got an array"
        ))),
        other => Err(expected(&format!("{what} (a table)"), other)),
    }
}

fn lookup<'a>(pairs: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

fn index_seg(i: usize) -> String {
    format!("[{}]", i + 1)
}

/// Converts `v` to a WIT value of type `ty`.
pub fn to_val(v: &Value, ty: &Type) -> Result<Val, ValueError> {
    Ok(match ty {
        Type::Bool => match v {
            Value::Bool(b) => Val::Bool(*b),
            other => return Err(expected("bool", other)),
        },
        Type::S8 => Val::S8(integer(v, ty, i8::MIN as i128, i8::MAX as i128)? as i8),
        Type::U8 => Val::U8(integer(v, ty, 0, u8::MAX as i128)? as u8),
        Type::S16 => Val::S16(integer(v, ty, i16::MIN as i128, i16::MAX as i128)? as i16),
        Type::U16 => Val::U16(integer(v, ty, 0, u16::MAX as i128)? as u16),
        Type::S32 => Val::S32(integer(v, ty, i32::MIN as i128, i32::MAX as i128)? as i32),
        Type::U32 => Val::U32(integer(v, ty, 0, u32::MAX as i128)? as u32),
        Type::S64 => Val::S64(integer(v, ty, i64::MIN as i128, i64::MAX as i128)? as i64),
        Type::U64 => Val::U64(integer(v, ty, 0, u64::MAX as i128)? as u64),
        Type::Float32 => Val::Float32(float(v, ty)? as f32),
        Type::Float64 => Val::Float64(float(v, ty)?),
        Type::Char => {
            let s = string(v, ty)?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(ValueError::new(format!(
                        "expected char (a one-character string), got a string of {} characters",
                        s.chars().count()
                    )))
                }
            }
        }
        Type::String => Val::String(string(v, ty)?),
        Type::List(l) => {
            let elem = l.ty();
            if let (Type::U8, Value::Str(bytes)) = (&elem, v) {
                return Ok(Val::List(bytes.iter().map(|b| Val::U8(*b)).collect()));
            }
            let items = items(v, &type_name(ty))?;
            Val::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| to_val(item, &elem).map_err(|e| e.at(&index_seg(i))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::FixedLengthList(l) => {
            let elem = l.ty();
            let items = items(v, &type_name(ty))?;
            if items.len() != l.len() as usize {
                return Err(ValueError::new(format!(
                    "expected {} elements, got {}",
                    l.len(),
                    items.len()
                )));
            }
            Val::FixedLengthList(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| to_val(item, &elem).map_err(|e| e.at(&index_seg(i))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Map(m) => {
            let (kt, vt) = (m.key(), m.value());
            let pairs = pairs(v, &type_name(ty))?;
            let mut out = Vec::with_capacity(pairs.len());
            for (k, val) in pairs {
                let seg = format!("[{}]", crate::value::display(k));
                let key = to_val(k, &kt).map_err(|e| e.at(&seg))?;
                let value = to_val(val, &vt).map_err(|e| e.at(&seg))?;
                out.push((key, value));
            }
            Val::Map(out)
        }
        Type::Record(r) => {
            let pairs = pairs(v, "record")?;
            let mut fields = Vec::new();
            for f in r.fields() {
                let found = lookup(pairs, f.name).or_else(|| {
                    f.name
                        .contains('-')
                        .then(|| lookup(pairs, &f.name.replace('-', "_")))
                        .flatten()
                });
                let val = match (found, &f.ty) {
                    (Some(x), _) => to_val(x, &f.ty).map_err(|e| e.at(&format!(".{}", f.name)))?,
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, _) => {
                        return Err(ValueError::new(format!(
                            "missing field {} ({})",
                            f.name,
                            type_name(&f.ty)
                        )))
                    }
                };
                fields.push((f.name.to_string(), val));
            }
            Val::Record(fields)
        }
        Type::Tuple(t) => {
            let types: Vec<Type> = t.types().collect();
            let items = items(v, &type_name(ty))?;
            if items.len() != types.len() {
                return Err(ValueError::new(format!(
                    "expected {} (an array of {} elements), got {} elements",
                    type_name(ty),
                    types.len(),
                    items.len()
                )));
            }
            Val::Tuple(
                items
                    .iter()
                    .zip(&types)
                    .enumerate()
                    .map(|(i, (item, t))| to_val(item, t).map_err(|e| e.at(&index_seg(i))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Variant(var) => {
            let names: Vec<String> = var.cases().map(|c| c.name.to_string()).collect();
            let (case, payload) = single_case(v, "variant", &names)?;
            let c = var
                .cases()
                .find(|c| c.name == case)
                .ok_or_else(|| unknown_case(&case, "variant", &names))?;
            let payload = match (&c.ty, payload) {
                (None, _) => None,
                (Some(t), Some(p)) => Some(Box::new(
                    to_val(p, t).map_err(|e| e.at(&format!(".{case}")))?,
                )),
                (Some(t), None) => {
                    return Err(ValueError::new(format!(
                        "case {case} needs a payload ({}): write {{{case} = value}}",
                        type_name(t)
                    )))
                }
            };
            Val::Variant(case, payload)
        }
        Type::Enum(e) => {
            let names: Vec<String> = e.names().map(str::to_string).collect();
            let s = match v {
                Value::Str(_) => string(v, ty)?,
                other => return Err(expected(&format!("enum ({})", names.join(", ")), other)),
            };
            if !names.contains(&s) {
                return Err(unknown_case(&s, "enum", &names));
            }
            Val::Enum(s)
        }
        Type::Option(o) => match v {
            Value::Nil => Val::Option(None),
            other => Val::Option(Some(Box::new(to_val(other, &o.ty())?))),
        },
        Type::Result(r) => {
            let names = vec!["ok".to_string(), "err".to_string()];
            let (case, payload) = single_case(v, "result", &names)?;
            let (t, is_ok) = match case.as_str() {
                "ok" => (r.ok(), true),
                "err" => (r.err(), false),
                _ => return Err(unknown_case(&case, "result", &names)),
            };
            let payload = match (t, payload) {
                (None, _) => None,
                (Some(t), Some(p)) => Some(Box::new(
                    to_val(p, &t).map_err(|e| e.at(&format!(".{case}")))?,
                )),
                (Some(t), None) => {
                    return Err(ValueError::new(format!(
                        "case {case} needs a payload ({})",
                        type_name(&t)
                    )))
                }
            };
            Val::Result(if is_ok { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(f) => {
            let names: Vec<String> = f.names().map(str::to_string).collect();
            let mut set: Vec<String> = Vec::new();
            let mut add = |name: &Value, seg: String| -> Result<(), ValueError> {
                let s = match name {
                    Value::Str(_) => string(name, &Type::String).map_err(|e| e.at(&seg))?,
                    other => {
                        return Err(expected("a flag name (string)", other).at(&seg));
                    }
                };
                if !names.contains(&s) {
                    return Err(unknown_case(&s, "flags", &names).at(&seg));
                }
                if !set.contains(&s) {
                    set.push(s);
                }
                Ok(())
            };
            match v {
                Value::Array(a) => {
                    for (i, item) in a.iter().enumerate() {
                        add(item, index_seg(i))?;
                    }
                }
                Value::Map(m) => {
                    for (k, on) in m {
                        match on {
                            Value::Bool(true) => add(k, String::new())?,
                            Value::Bool(false) => {}
                            other => {
                                return Err(expected("true or false", other)
                                    .at(&format!(".{}", crate::value::display(k))))
                            }
                        }
                    }
                }
                other => return Err(expected("flags (an array of flag names)", other)),
            }
            // Declaration order, whatever the input order.
            Val::Flags(names.iter().filter(|n| set.contains(n)).cloned().collect())
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(ValueError::new(
                unsupported(ty).unwrap_or_else(|| "unsupported type".into()),
            ))
        }
    })
}

/// A variant-like input: `"case"` or `{case = payload}`.
fn single_case<'a>(
    v: &'a Value,
    what: &str,
    names: &[String],
) -> Result<(String, Option<&'a Value>), ValueError> {
    match v {
        Value::Str(_) => Ok((string(v, &Type::String)?, None)),
        Value::Map(m) if m.len() == 1 => {
            let (k, p) = &m[0];
            match k.as_str() {
                Some(case) => Ok((case.to_string(), Some(p))),
                None => Err(ValueError::new(format!(
                    "expected {what} case name as key, got {}",
                    got(k)
                ))),
            }
        }
        Value::Map(m) => Err(ValueError::new(format!(
            "expected {what} as {{case = payload}} with exactly one key, got {} keys (cases: {})",
            m.len(),
            names.join(", ")
        ))),
        other => Err(expected(
            &format!("{what} (a case name or {{case = payload}})"),
            other,
        )),
    }
}

fn unknown_case(case: &str, what: &str, names: &[String]) -> ValueError {
    ValueError::new(format!(
        "unknown {what} case {case:?} (expected one of: {})",
        names.join(", ")
    ))
}

/// Converts a WIT value to a [`Value`].
pub fn from_val(v: &Val) -> Value {
    match v {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(i) => Value::Int(*i as i64),
        Val::U8(i) => Value::Int(*i as i64),
        Val::S16(i) => Value::Int(*i as i64),
        Val::U16(i) => Value::Int(*i as i64),
        Val::S32(i) => Value::Int(*i as i64),
        Val::U32(i) => Value::Int(*i as i64),
        Val::S64(i) => Value::Int(*i),
        Val::U64(i) => match i64::try_from(*i) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Num(*i as f64),
        },
        Val::Float32(f) => Value::Num(*f as f64),
        Val::Float64(f) => Value::Num(*f),
        Val::Char(c) => Value::str(c.to_string()),
        Val::String(s) => Value::str(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(from_val).collect())
        }
        Val::Map(pairs) => Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (from_val(k), from_val(v)))
                .collect(),
        ),
        Val::Record(fields) => Value::Map(
            fields
                .iter()
                .map(|(name, v)| (Value::str(name.clone()), from_val(v)))
                .collect(),
        ),
        Val::Variant(case, None) => Value::str(case.clone()),
        Val::Variant(case, Some(p)) => Value::Map(vec![(Value::str(case.clone()), from_val(p))]),
        Val::Enum(case) => Value::str(case.clone()),
        Val::Option(None) => Value::Nil,
        Val::Option(Some(v)) => from_val(v),
        Val::Result(r) => {
            let (case, payload) = match r {
                Ok(p) => ("ok", p),
                Err(p) => ("err", p),
            };
            let payload = payload
                .as_deref()
                .map(from_val)
                .unwrap_or(Value::Bool(true));
            Value::Map(vec![(Value::str(case), payload)])
        }
        Val::Flags(names) => Value::Array(names.iter().map(|n| Value::str(n.clone())).collect()),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Nil,
    }
}

/// A placeholder value (to size a results buffer; overwritten by the call).
pub fn placeholder() -> Val {
    Val::Bool(false)
}

/// Tests: the parameter types of `f` in a world with `decls` (types) and `export f: <sig>`.
#[cfg(test)]
pub(crate) fn test_params(decls: &str, sig: &str) -> Vec<Type> {
    let text = format!("package t:t;\nworld w {{\n{decls}\nexport f: {sig};\n}}\n");
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_source("t.wit", &text).unwrap();
    let world = resolve.select_world(&[pkg], None).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
    match component.get_export(None, "f") {
        Some((wasmtime::component::types::ComponentItem::ComponentFunc(f), _)) => {
            f.params().map(|(_, t)| t).collect()
        }
        _ => panic!("no f"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_params as params;

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    fn err(v: &Value, ty: &Type) -> String {
        let e = to_val(v, ty).unwrap_err();
        format!("{}: {}", e.path, e.message)
    }

    #[test]
    fn wasm_values_scalars() {
        let t = params(
            "",
            "func(c: char, x: f64, y: f32, big: u64, small: s16, b: bool)",
        );
        assert_eq!(to_val(&s("é"), &t[0]).unwrap(), Val::Char('é'));
        assert_eq!(
            err(&s("ab"), &t[0]),
            ": expected char (a one-character string), got a string of 2 characters"
        );
        assert_eq!(to_val(&Value::Int(2), &t[1]).unwrap(), Val::Float64(2.0));
        assert_eq!(to_val(&Value::Num(0.5), &t[2]).unwrap(), Val::Float32(0.5));
        assert_eq!(err(&s("1"), &t[1]), ": expected f64, got string");
        assert_eq!(
            to_val(&Value::Int(i64::MAX), &t[3]).unwrap(),
            Val::U64(i64::MAX as u64)
        );
        assert_eq!(
            to_val(&Value::Num(1.8e19), &t[3]).unwrap_err().message,
            "expected u64, got number 18000000000000000000 (not an integer)"
        );
        assert_eq!(from_val(&Val::U64(u64::MAX)), Value::Num(u64::MAX as f64));
        assert_eq!(
            err(&Value::Int(40000), &t[4]),
            ": 40000 is out of range for s16 (-32768..32767)"
        );
        assert_eq!(err(&Value::Nil, &t[5]), ": expected bool, got nil");
        assert_eq!(from_val(&Val::Char('x')), s("x"));
        assert_eq!(from_val(&Val::Float32(1.5)), Value::Num(1.5));
    }

    #[test]
    fn wasm_values_compound() {
        let t = params(
            "record cfg { name: string, max-port: option<u16> }",
            "func(bytes: list<u8>, pairs: list<tuple<u8, string>>, r: result<u32, string>, c: cfg, o: option<option<u8>>)",
        );
        assert_eq!(
            to_val(&s("hi"), &t[0]).unwrap(),
            Val::List(vec![Val::U8(b'h'), Val::U8(b'i')])
        );
        let pairs = Value::Array(vec![
            Value::Array(vec![Value::Int(1), s("a")]),
            Value::Array(vec![Value::Int(2)]),
        ]);
        assert_eq!(
            err(&pairs, &t[1]),
            "[2]: expected tuple<u8, string> (an array of 2 elements), got 1 elements"
        );
        let pairs = Value::Array(vec![Value::Array(vec![Value::Int(1), Value::Int(2)])]);
        assert_eq!(err(&pairs, &t[1]), "[1][2]: expected string, got number");
        let ok = Value::Map(vec![(s("ok"), Value::Int(3))]);
        assert_eq!(
            to_val(&ok, &t[2]).unwrap(),
            Val::Result(Ok(Some(Box::new(Val::U32(3)))))
        );
        let bad = Value::Map(vec![(s("maybe"), Value::Int(3))]);
        assert_eq!(
            err(&bad, &t[2]),
            ": unknown result case \"maybe\" (expected one of: ok, err)"
        );
        // A missing option field is none; snake_case input works.
        let cfg = Value::Map(vec![(s("name"), s("x"))]);
        assert_eq!(
            to_val(&cfg, &t[3]).unwrap(),
            Val::Record(vec![
                ("name".into(), Val::String("x".into())),
                ("max-port".into(), Val::Option(None)),
            ])
        );
        let cfg = Value::Map(vec![(s("name"), s("x")), (s("max_port"), Value::Int(80))]);
        assert_eq!(
            from_val(&to_val(&cfg, &t[3]).unwrap()),
            Value::Map(vec![(s("name"), s("x")), (s("max-port"), Value::Int(80))])
        );
        assert_eq!(
            err(
                &Value::Map(vec![(s("name"), s("x")), (s("max-port"), Value::Int(-1))]),
                &t[3]
            ),
            ".max-port: -1 is out of range for u16 (0..65535)"
        );
        assert_eq!(to_val(&Value::Nil, &t[4]).unwrap(), Val::Option(None));
        assert_eq!(
            from_val(&Val::Result(Err(Some(Box::new(Val::String("e".into())))))),
            Value::Map(vec![(s("err"), s("e"))])
        );
        assert_eq!(
            from_val(&Val::Result(Ok(None))),
            Value::Map(vec![(s("ok"), Value::Bool(true))])
        );
        assert_eq!(type_name(&t[1]), "list<tuple<u8, string>>");
        assert_eq!(type_name(&t[2]), "result<u32, string>");
        assert_eq!(type_name(&t[4]), "option<option<u8>>");
    }

    #[test]
    fn wasm_values_resources_are_unsupported() {
        let t = params("resource thing;", "func(t: list<borrow<thing>>)");
        assert_eq!(
            unsupported(&t[0]).as_deref(),
            Some("resources are not supported yet")
        );
    }
}
