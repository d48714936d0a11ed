//! Types as values at run time (en/lua/types.md): a `type` declaration of typed Lua is a
//! value. `Point(data)` validates `data` against the type and gives it back (raising on
//! failure), `Point:is(data)` gives `data, nil` or `nil, err`; types reflect themselves
//! (`kind`, `name`, `fields`, `elem`, `key`, `val`, `inner`, `variants`, `params`, `ret`,
//! a record's field types as `User.name`), compare (`==`, `<=` for a subtype, `<`), and
//! serve as table keys: `typeof(v)` gives the same value as the globals `Number`,
//! `Integer`, `String`, `Boolean`... for the value's own type. Validators (`@min`, `@max`,
//! `@min_len`, `@max_len`, `@pattern`) check at run time what they say.
//!
//! The loader (`registry/loader/typed_lua.rs`) turns `type Name = T` into
//! `local Name = __wtype("Name", [=[T]=], {refs}, {generics})`: this module parses `T`
//! once per text (a thread's cache) and builds the value.

use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Value as LV};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// A check a type carries beside its shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// `@min(n)`: a number at least n.
    Min(f64),
    /// `@max(n)`: a number at most n.
    Max(f64),
    /// `@min_len(n)`: a string or array at least n long.
    MinLen(usize),
    /// `@max_len(n)`: a string or array at most n long.
    MaxLen(usize),
    /// `@pattern(re)`: a string the regular expression matches.
    Pattern(String),
}

/// A record field.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
    /// `name?:`: may be missing.
    pub optional: bool,
}

/// A type.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    /// `any`: every value.
    Any,
    /// `unknown`: every value.
    Unknown,
    /// `never`: no value.
    Never,
    /// `nil`.
    Nil,
    /// `boolean`.
    Boolean,
    /// `number` (integers too).
    Number,
    /// `integer`.
    Integer,
    /// `string`.
    String,
    /// `function` (and any function type's values).
    Function,
    /// `table`.
    Table,
    /// `thread`.
    Thread,
    /// `userdata`.
    Userdata,
    /// `error`: an error object or a string.
    Error,
    /// A literal: a string.
    LitStr(String),
    /// A literal: a number.
    LitNum(f64),
    /// A literal: `true` / `false`.
    LitBool(bool),
    /// `T?`.
    Optional(Box<Ty>),
    /// `A | B`.
    Union(Vec<Ty>),
    /// `A & B`.
    Intersection(Vec<Ty>),
    /// `{T}`.
    Array(Box<Ty>),
    /// `{[K]: V}`.
    Map(Box<Ty>, Box<Ty>),
    /// `{name: T, ...}`.
    Record(Vec<Field>),
    /// `(A, B) -> R`.
    Func(Vec<Ty>, Vec<Ty>),
    /// A type with validators.
    Checked(Box<Ty>, Vec<Validator>),
    /// Another declared type, by its value.
    Named(Arc<LuaType>),
}

/// A type as Lua holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct LuaType {
    /// Its name (`Point`; a primitive's own name; None for an anonymous part).
    pub name: Option<String>,
    /// What it is.
    pub ty: Ty,
}

/// Parses a type's text. `refs` resolves names of other types, `generics` are the
/// declaration's type parameters (any value fits one).
pub fn parse(
    text: &str,
    refs: &dyn Fn(&str) -> Option<Arc<LuaType>>,
    generics: &[String],
) -> Result<Ty, String> {
    let toks = tokenize(text)?;
    let mut p = Parser {
        toks,
        at: 0,
        refs,
        generics,
    };
    // a union may start with `|`
    p.eat("|");
    let t = p.union()?;
    if p.at < p.toks.len() {
        return Err(format!("unexpected {:?} in type", p.toks[p.at]));
    }
    Ok(t)
}

fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            // a comment to the end of the line
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(s[st..i].to_string());
        } else if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let st = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(s[st..i].to_string());
        } else if c == b'"' || c == b'\'' {
            let st = i;
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(s[st..i.min(b.len())].to_string());
        } else if s[i..].starts_with("->") || s[i..].starts_with("...") {
            let n = if s[i..].starts_with("->") { 2 } else { 3 };
            out.push(s[i..i + n].to_string());
            i += n;
        } else if b"{}[]()<>,;:?|&@.=".contains(&c) {
            out.push((c as char).to_string());
            i += 1;
        } else {
            return Err(format!("unexpected {:?} in type", c as char));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<String>,
    at: usize,
    refs: &'a dyn Fn(&str) -> Option<Arc<LuaType>>,
    generics: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.at).map(String::as_str)
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.peek() == Some(t) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) -> Result<(), String> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(format!(
                "expected {t:?} in type, found {}",
                self.peek()
                    .map_or("the end".to_string(), |p| format!("{p:?}"))
            ))
        }
    }
    fn union(&mut self) -> Result<Ty, String> {
        let mut v = vec![self.inter()?];
        while self.eat("|") {
            v.push(self.inter()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Ty::Union(v)
        })
    }
    fn inter(&mut self) -> Result<Ty, String> {
        let mut v = vec![self.postfix()?];
        while self.eat("&") {
            v.push(self.postfix()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Ty::Intersection(v)
        })
    }
    fn postfix(&mut self) -> Result<Ty, String> {
        let mut t = self.primary()?;
        loop {
            if self.eat("?") {
                t = Ty::Optional(Box::new(t));
            } else if self.peek() == Some("@") {
                let mut vals = Vec::new();
                while self.eat("@") {
                    vals.push(self.validator()?);
                }
                t = Ty::Checked(Box::new(t), vals);
            } else {
                return Ok(t);
            }
        }
    }
    fn validator(&mut self) -> Result<Validator, String> {
        let name = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or("a validator's name")?;
        self.at += 1;
        self.expect("(")?;
        let arg = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or("a validator's argument")?;
        self.at += 1;
        self.expect(")")?;
        let num = || {
            arg.parse::<f64>()
                .map_err(|_| format!("@{name}: expected a number, found {arg}"))
        };
        Ok(match name.as_str() {
            "min" => Validator::Min(num()?),
            "max" => Validator::Max(num()?),
            "min_len" => Validator::MinLen(num()? as usize),
            "max_len" => Validator::MaxLen(num()? as usize),
            "pattern" => {
                let re = unquote(&arg)
                    .ok_or_else(|| format!("@pattern: expected a string, found {arg}"))?;
                regex::Regex::new(&re).map_err(|e| format!("@pattern: {e}"))?;
                Validator::Pattern(re)
            }
            other => {
                return Err(format!(
                    "unknown validator @{other} (@min, @max, @min_len, @max_len, @pattern)"
                ))
            }
        })
    }
    fn primary(&mut self) -> Result<Ty, String> {
        let Some(t) = self.peek().map(str::to_string) else {
            return Err("a type is missing".into());
        };
        self.at += 1;
        match t.as_str() {
            "{" => self.table(),
            "(" => {
                // a parenthesised type or a function type's parameters
                let mut items = Vec::new();
                if !self.eat(")") {
                    loop {
                        if self.eat("...") {
                            items.push(self.union()?);
                        } else {
                            // a named parameter `name: T`
                            if self.toks.get(self.at + 1).map(String::as_str) == Some(":")
                                && self.peek().is_some_and(is_name)
                            {
                                self.at += 2;
                            }
                            items.push(self.union()?);
                        }
                        if !self.eat(",") {
                            break;
                        }
                    }
                    self.expect(")")?;
                }
                if self.eat("->") {
                    let ret = if self.eat("(") {
                        let mut r = Vec::new();
                        if !self.eat(")") {
                            loop {
                                self.eat("...");
                                r.push(self.union()?);
                                if !self.eat(",") {
                                    break;
                                }
                            }
                            self.expect(")")?;
                        }
                        r
                    } else {
                        vec![self.postfix()?]
                    };
                    return Ok(Ty::Func(items, ret));
                }
                match items.len() {
                    1 => Ok(items.remove(0)),
                    _ => {
                        Err("a parenthesised list is not a type (a function type needs ->)".into())
                    }
                }
            }
            "true" => Ok(Ty::LitBool(true)),
            "false" => Ok(Ty::LitBool(false)),
            "nil" => Ok(Ty::Nil),
            s if s.starts_with('"') || s.starts_with('\'') => Ok(Ty::LitStr(
                unquote(s).ok_or("a bad string literal in type")?,
            )),
            s if s.starts_with(|c: char| c.is_ascii_digit() || c == '-') => s
                .parse::<f64>()
                .map(Ty::LitNum)
                .map_err(|_| format!("a bad number {s} in type")),
            "typeof" => {
                // `typeof(expr)`: erased; any value
                self.expect("(")?;
                let mut depth = 1;
                while depth > 0 {
                    match self.peek() {
                        Some("(") => depth += 1,
                        Some(")") => depth -= 1,
                        None => return Err("an unclosed typeof(".into()),
                        _ => {}
                    }
                    self.at += 1;
                }
                Ok(Ty::Any)
            }
            name if is_name(name) => {
                let mut full = name.to_string();
                while self.eat(".") {
                    let part = self.peek().ok_or("a name after .")?.to_string();
                    self.at += 1;
                    full = format!("{full}.{part}");
                }
                let mut args = Vec::new();
                if self.eat("<") {
                    loop {
                        args.push(self.union()?);
                        if !self.eat(",") {
                            break;
                        }
                    }
                    self.expect(">")?;
                }
                Ok(self.named(&full, args))
            }
            other => Err(format!("unexpected {other:?} in type")),
        }
    }
    fn named(&self, name: &str, mut args: Vec<Ty>) -> Ty {
        match name {
            "any" => Ty::Any,
            "unknown" => Ty::Unknown,
            "never" => Ty::Never,
            "boolean" | "bool" => Ty::Boolean,
            "number" => Ty::Number,
            "integer" => Ty::Integer,
            "string" => Ty::String,
            "function" => Ty::Function,
            "table" => Ty::Table,
            "thread" => Ty::Thread,
            "userdata" => Ty::Userdata,
            "error" => Ty::Error,
            "Array" | "array" if args.len() == 1 => Ty::Array(Box::new(args.remove(0))),
            "Map" | "map" if args.len() == 2 => {
                let v = args.remove(1);
                Ty::Map(Box::new(args.remove(0)), Box::new(v))
            }
            n if self.generics.iter().any(|g| g == n) => Ty::Any,
            n => match (self.refs)(n) {
                Some(t) => Ty::Named(t),
                // a type declared later, or one this code cannot see: any value
                None => Ty::Any,
            },
        }
    }
    fn table(&mut self) -> Result<Ty, String> {
        if self.eat("}") {
            return Ok(Ty::Table);
        }
        // `{[K]: V}`
        if self.peek() == Some("[") {
            self.at += 1;
            let k = self.union()?;
            self.expect("]")?;
            self.expect(":")?;
            let v = self.union()?;
            self.eat(",");
            self.eat(";");
            self.expect("}")?;
            return Ok(Ty::Map(Box::new(k), Box::new(v)));
        }
        // a record: `name:` or `name?:` first
        let is_field = self.peek().is_some_and(is_name)
            && matches!(
                self.toks.get(self.at + 1).map(String::as_str),
                Some(":") | Some("?")
            )
            && (self.toks.get(self.at + 1).map(String::as_str) == Some(":")
                || self.toks.get(self.at + 2).map(String::as_str) == Some(":"));
        if !is_field {
            let elem = self.union()?;
            self.eat(",");
            self.expect("}")?;
            return Ok(Ty::Array(Box::new(elem)));
        }
        let mut fields = Vec::new();
        loop {
            if self.eat("}") {
                break;
            }
            let name = self.peek().ok_or("a field name")?.to_string();
            if !is_name(&name) {
                return Err(format!("expected a field name, found {name:?}"));
            }
            self.at += 1;
            let optional = self.eat("?");
            self.expect(":")?;
            let ty = self.union()?;
            fields.push(Field { name, ty, optional });
            if !self.eat(",") && !self.eat(";") {
                self.expect("}")?;
                break;
            }
        }
        Ok(Ty::Record(fields))
    }
}

fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
}

fn unquote(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if !(q == '"' || q == '\'') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    Some(
        s[1..s.len() - 1]
            .replace("\\\\", "\\")
            .replace(&format!("\\{q}"), &q.to_string()),
    )
}

impl Ty {
    /// The kind `t:kind()` names.
    pub fn kind(&self) -> &'static str {
        match self {
            Ty::Any => "any",
            Ty::Unknown => "unknown",
            Ty::Never => "never",
            Ty::Nil => "nil",
            Ty::Boolean => "boolean",
            Ty::Number => "number",
            Ty::Integer => "integer",
            Ty::String => "string",
            Ty::Function | Ty::Func(..) => "function",
            Ty::Table => "table",
            Ty::Thread => "thread",
            Ty::Userdata => "userdata",
            Ty::Error => "error",
            Ty::LitStr(_) | Ty::LitNum(_) | Ty::LitBool(_) => "literal",
            Ty::Optional(_) => "optional",
            Ty::Union(_) => "union",
            Ty::Intersection(_) => "intersection",
            Ty::Array(_) => "array",
            Ty::Map(..) => "map",
            Ty::Record(_) => "record",
            Ty::Checked(t, _) => t.kind(),
            Ty::Named(t) => t.ty.kind(),
        }
    }

    /// The type without its validators and names.
    fn shape(&self) -> &Ty {
        match self {
            Ty::Checked(t, _) => t.shape(),
            Ty::Named(t) => t.ty.shape(),
            other => other,
        }
    }

    /// How the type reads (`{x: number, y: number}`).
    pub fn text(&self) -> String {
        let list = |v: &[Ty], sep: &str| v.iter().map(Ty::text).collect::<Vec<_>>().join(sep);
        match self {
            Ty::LitStr(s) => format!("{s:?}"),
            Ty::LitNum(n) => fmt_num(*n),
            Ty::LitBool(b) => b.to_string(),
            Ty::Optional(t) => format!("{}?", t.text()),
            Ty::Union(v) => list(v, " | "),
            Ty::Intersection(v) => list(v, " & "),
            Ty::Array(t) => format!("{{{}}}", t.text()),
            Ty::Map(k, v) => format!("{{[{}]: {}}}", k.text(), v.text()),
            Ty::Record(fields) => format!(
                "{{{}}}",
                fields
                    .iter()
                    .map(|f| format!(
                        "{}{}: {}",
                        f.name,
                        if f.optional { "?" } else { "" },
                        f.ty.text()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Func(p, r) => format!("({}) -> {}", list(p, ", "), list(r, ", ")),
            Ty::Checked(t, _) => t.text(),
            Ty::Named(t) => t.name.clone().unwrap_or_else(|| t.ty.text()),
            other => other.kind().to_string(),
        }
    }

    /// Whether every value of `self` is one of `other` (`integer <= number`).
    pub fn subtype_of(&self, other: &Ty) -> bool {
        let (a, b) = (self.shape(), other.shape());
        if a == b {
            return true;
        }
        match (a, b) {
            (_, Ty::Any | Ty::Unknown) | (Ty::Never, _) => true,
            (Ty::Integer, Ty::Number) => true,
            (Ty::LitNum(n), Ty::Number) => n.is_finite(),
            (Ty::LitNum(n), Ty::Integer) => n.fract() == 0.0,
            (Ty::LitStr(_), Ty::String) | (Ty::LitBool(_), Ty::Boolean) => true,
            (Ty::Nil, Ty::Optional(_)) => true,
            (Ty::Optional(x), Ty::Optional(y)) => x.subtype_of(y),
            (x, Ty::Optional(y)) => x.subtype_of(y),
            (Ty::Union(xs), y) => xs.iter().all(|x| x.subtype_of(y)),
            (x, Ty::Union(ys)) => ys.iter().any(|y| x.subtype_of(y)),
            (Ty::Array(_) | Ty::Map(..) | Ty::Record(_), Ty::Table) => true,
            (Ty::Func(..), Ty::Function) => true,
            (Ty::Array(x), Ty::Array(y)) => x.subtype_of(y),
            (Ty::Record(xs), Ty::Record(ys)) => ys.iter().all(|y| {
                xs.iter()
                    .find(|x| x.name == y.name)
                    .map_or(y.optional, |x| {
                        x.ty.subtype_of(&y.ty) && (y.optional || !x.optional)
                    })
            }),
            _ => false,
        }
    }

    /// Checks a Lua value; the first mismatch as `at .path: expected T, got U`.
    pub fn check(&self, v: &LV, path: &str) -> Result<(), String> {
        let fail = |want: String| {
            let at = if path.is_empty() {
                String::new()
            } else {
                format!("at {path}: ")
            };
            Err(format!("{at}expected {want}, got {}", describe(v)))
        };
        match self {
            Ty::Any | Ty::Unknown => Ok(()),
            Ty::Never => fail("no value".into()),
            Ty::Nil => {
                if v.is_nil() {
                    Ok(())
                } else {
                    fail("nil".into())
                }
            }
            Ty::Boolean => {
                if v.is_boolean() {
                    Ok(())
                } else {
                    fail("boolean".into())
                }
            }
            Ty::Number => {
                if matches!(v, LV::Integer(_) | LV::Number(_)) {
                    Ok(())
                } else {
                    fail("number".into())
                }
            }
            Ty::Integer => match v {
                LV::Integer(_) => Ok(()),
                LV::Number(n) if n.fract() == 0.0 && n.is_finite() => Ok(()),
                _ => fail("integer".into()),
            },
            Ty::String => {
                if v.is_string() {
                    Ok(())
                } else {
                    fail("string".into())
                }
            }
            Ty::Function | Ty::Func(..) => {
                if v.is_function() {
                    Ok(())
                } else {
                    fail("function".into())
                }
            }
            Ty::Table => {
                if v.is_table() {
                    Ok(())
                } else {
                    fail("table".into())
                }
            }
            Ty::Thread => {
                if v.is_thread() {
                    Ok(())
                } else {
                    fail("thread".into())
                }
            }
            Ty::Userdata => {
                if v.is_userdata() {
                    Ok(())
                } else {
                    fail("userdata".into())
                }
            }
            Ty::Error => {
                let is_err = match v {
                    LV::String(_) => true,
                    LV::UserData(ud) => ud.borrow::<crate::lua::errors::LuaError>().is_ok(),
                    _ => false,
                };
                if is_err {
                    Ok(())
                } else {
                    fail("an error".into())
                }
            }
            Ty::LitStr(s) => match v {
                LV::String(x) if *x.as_bytes() == *s.as_bytes() => Ok(()),
                _ => fail(format!("{s:?}")),
            },
            Ty::LitNum(n) => match v {
                LV::Integer(i) if *i as f64 == *n => Ok(()),
                LV::Number(x) if x == n => Ok(()),
                _ => fail(fmt_num(*n)),
            },
            Ty::LitBool(b) => {
                if *v == LV::Boolean(*b) {
                    Ok(())
                } else {
                    fail(b.to_string())
                }
            }
            Ty::Optional(t) => {
                if v.is_nil() {
                    Ok(())
                } else {
                    t.check(v, path)
                }
            }
            Ty::Union(ts) => {
                if ts.iter().any(|t| t.check(v, path).is_ok()) {
                    return Ok(());
                }
                // one member of the value's own kind says more than the list
                let same: Vec<&Ty> = ts.iter().filter(|t| kind_fits(t, v)).collect();
                if let [only] = same.as_slice() {
                    return only.check(v, path);
                }
                fail(self.text())
            }
            Ty::Intersection(ts) => ts.iter().try_for_each(|t| t.check(v, path)),
            Ty::Array(t) => {
                let LV::Table(tab) = v else {
                    return fail(self.text());
                };
                for i in 1..=tab.raw_len() {
                    let item: LV = tab.raw_get(i).map_err(|e| e.to_string())?;
                    t.check(&item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            Ty::Map(k, val) => {
                let LV::Table(tab) = v else {
                    return fail(self.text());
                };
                for pair in tab.pairs::<LV, LV>() {
                    let (key, item) = pair.map_err(|e| e.to_string())?;
                    k.check(&key, &format!("{path}[{}]", describe_key(&key)))?;
                    val.check(&item, &format!("{path}[{}]", describe_key(&key)))?;
                }
                Ok(())
            }
            Ty::Record(fields) => {
                let LV::Table(tab) = v else {
                    return fail(self.text());
                };
                for f in fields {
                    let item: LV = tab.get(f.name.as_str()).map_err(|e| e.to_string())?;
                    let at = format!("{path}.{}", f.name);
                    if item.is_nil() {
                        if f.optional
                            || matches!(
                                f.ty.shape(),
                                Ty::Optional(_) | Ty::Nil | Ty::Any | Ty::Unknown
                            )
                        {
                            continue;
                        }
                        return Err(format!(
                            "at {at}: missing field {} ({})",
                            f.name,
                            f.ty.text()
                        ));
                    }
                    f.ty.check(&item, &at)?;
                }
                Ok(())
            }
            Ty::Checked(t, vals) => {
                t.check(v, path)?;
                for val in vals {
                    check_validator(val, v, path)?;
                }
                Ok(())
            }
            Ty::Named(t) => t.ty.check(v, path),
        }
    }
}

/// Whether a union member is of the value's kind (for a precise message).
fn kind_fits(t: &Ty, v: &LV) -> bool {
    matches!(
        (t.shape(), v),
        (
            Ty::Record(_) | Ty::Array(_) | Ty::Map(..) | Ty::Table,
            LV::Table(_)
        ) | (Ty::String | Ty::LitStr(_), LV::String(_))
            | (
                Ty::Number | Ty::Integer | Ty::LitNum(_),
                LV::Integer(_) | LV::Number(_)
            )
    )
}

fn check_validator(val: &Validator, v: &LV, path: &str) -> Result<(), String> {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!("at {path}: ")
    };
    let num = match v {
        LV::Integer(i) => Some(*i as f64),
        LV::Number(n) => Some(*n),
        _ => None,
    };
    let len = match v {
        LV::String(s) => Some(s.as_bytes().len()),
        LV::Table(t) => Some(t.raw_len()),
        _ => None,
    };
    match val {
        Validator::Min(m) if num.is_some_and(|n| n < *m) => Err(format!(
            "{at}{} is less than the minimum {}",
            describe(v),
            fmt_num(*m)
        )),
        Validator::Max(m) if num.is_some_and(|n| n > *m) => Err(format!(
            "{at}{} is more than the maximum {}",
            describe(v),
            fmt_num(*m)
        )),
        Validator::MinLen(m) if len.is_some_and(|n| n < *m) => Err(format!(
            "{at}length {} is less than the minimum length {m}",
            len.unwrap_or(0)
        )),
        Validator::MaxLen(m) if len.is_some_and(|n| n > *m) => Err(format!(
            "{at}length {} is more than the maximum length {m}",
            len.unwrap_or(0)
        )),
        Validator::Pattern(p) => match v {
            LV::String(s) => {
                let ok = regex::Regex::new(p).is_ok_and(|re| re.is_match(&s.to_string_lossy()));
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{at}{} does not match the pattern {p:?}",
                        describe(v)
                    ))
                }
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn describe_key(k: &LV) -> String {
    match k {
        LV::String(s) => format!("{:?}", s.to_string_lossy()),
        LV::Integer(i) => i.to_string(),
        other => other.type_name().to_string(),
    }
}

/// A value in a message: `"text"`, `42`, `a table`...
fn describe(v: &LV) -> String {
    match v {
        LV::Nil => "nil".into(),
        LV::Boolean(b) => b.to_string(),
        LV::Integer(i) => i.to_string(),
        LV::Number(n) => fmt_num(*n),
        LV::String(s) => {
            let s = s.to_string_lossy();
            if s.len() > 40 {
                format!("a string ({} bytes)", s.len())
            } else {
                format!("{s:?}")
            }
        }
        other => format!("a {}", other.type_name()),
    }
}

impl LuaType {
    /// Checks `v`; the error's message names the type.
    fn validate(&self, v: &LV) -> Result<(), String> {
        self.ty.check(v, "").map_err(|e| match &self.name {
            Some(n) => format!("{n}: {e}"),
            None => e,
        })
    }

    fn part(ty: &Ty) -> LuaType {
        match ty {
            Ty::Named(t) => (**t).clone(),
            other => LuaType {
                name: None,
                ty: other.clone(),
            },
        }
    }
}

impl UserData for LuaType {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // en/lua/types.md, "Safe Cast": `T(v)` validates and gives v back, raising on failure
        m.add_meta_method(MetaMethod::Call, |_, t, v: LV| match t.validate(&v) {
            Ok(()) => Ok(v),
            Err(e) => Err(mlua::Error::runtime(e)),
        });
        // "Type:is()": `v, nil` or `nil, err`
        m.add_method("is", |lua, t, v: LV| match t.validate(&v) {
            Ok(()) => Ok(MultiValue::from_vec(vec![v, LV::Nil])),
            Err(e) => crate::lua::errors::LuaError::new("INVALID", e).into_nil_err(lua),
        });
        m.add_method("kind", |_, t, ()| Ok(t.ty.kind()));
        m.add_method("name", |_, t, ()| Ok(t.name.clone()));
        m.add_method("fields", |lua, t, ()| {
            let list = lua.create_table()?;
            if let Ty::Record(fields) = t.ty.shape() {
                for (i, f) in fields.iter().enumerate() {
                    let pair = lua.create_table()?;
                    pair.raw_set(1, f.name.as_str())?;
                    pair.raw_set(2, LuaType::part(&f.ty))?;
                    list.raw_set(i + 1, pair)?;
                }
            }
            iterator(lua, list, true)
        });
        m.add_method("elem", |_, t, ()| match t.ty.shape() {
            Ty::Array(e) => Ok(Some(LuaType::part(e))),
            _ => Ok(None),
        });
        m.add_method("key", |_, t, ()| match t.ty.shape() {
            Ty::Map(k, _) => Ok(Some(LuaType::part(k))),
            _ => Ok(None),
        });
        m.add_method("val", |_, t, ()| match t.ty.shape() {
            Ty::Map(_, v) => Ok(Some(LuaType::part(v))),
            _ => Ok(None),
        });
        m.add_method("inner", |_, t, ()| match t.ty.shape() {
            Ty::Optional(i) => Ok(Some(LuaType::part(i))),
            _ => Ok(None),
        });
        m.add_method("variants", |lua, t, ()| {
            let list = lua.create_table()?;
            if let Ty::Union(vs) = t.ty.shape() {
                for (i, v) in vs.iter().enumerate() {
                    // a literal variant is its value (`"pending"`), any other a type
                    let item = match v {
                        Ty::LitStr(s) => LV::String(lua.create_string(s)?),
                        Ty::LitNum(n) => LV::Number(*n),
                        Ty::LitBool(b) => LV::Boolean(*b),
                        other => LV::UserData(lua.create_userdata(LuaType::part(other))?),
                    };
                    list.raw_set(i + 1, item)?;
                }
            }
            iterator(lua, list, false)
        });
        m.add_method("params", |lua, t, ()| {
            let list = lua.create_table()?;
            if let Ty::Func(ps, _) = t.ty.shape() {
                for (i, p) in ps.iter().enumerate() {
                    list.raw_set(i + 1, LuaType::part(p))?;
                }
            }
            iterator(lua, list, false)
        });
        m.add_method("ret", |_, t, ()| match t.ty.shape() {
            Ty::Func(_, r) if !r.is_empty() => Ok(Some(LuaType::part(&r[0]))),
            _ => Ok(None),
        });
        // a record's field types: `User.name`
        m.add_meta_method(MetaMethod::Index, |_, t, key: String| match t.ty.shape() {
            Ty::Record(fields) => Ok(fields
                .iter()
                .find(|f| f.name == key)
                .map(|f| LuaType::part(&f.ty))),
            _ => Ok(None),
        });
        m.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(t.name.clone().unwrap_or_else(|| t.ty.text()))
        });
        m.add_meta_function(
            MetaMethod::Eq,
            |_, (a, b): (mlua::UserDataRef<LuaType>, mlua::UserDataRef<LuaType>)| {
                Ok(a.ty.shape() == b.ty.shape())
            },
        );
        m.add_meta_function(
            MetaMethod::Le,
            |_, (a, b): (mlua::UserDataRef<LuaType>, mlua::UserDataRef<LuaType>)| {
                Ok(a.ty.subtype_of(&b.ty))
            },
        );
        m.add_meta_function(
            MetaMethod::Lt,
            |_, (a, b): (mlua::UserDataRef<LuaType>, mlua::UserDataRef<LuaType>)| {
                Ok(a.ty.subtype_of(&b.ty) && a.ty.shape() != b.ty.shape())
            },
        );
    }
}

/// An iterator over the items of `list`: `(name, type)` pairs spread when `pairs`, the
/// items as they are otherwise.
fn iterator(lua: &Lua, list: Table, pairs: bool) -> mlua::Result<mlua::Function> {
    let i = std::cell::Cell::new(0usize);
    lua.create_function(move |_, _: MultiValue| {
        let n = i.get() + 1;
        i.set(n);
        let item: LV = list.raw_get(n)?;
        if item.is_nil() {
            return Ok(MultiValue::new());
        }
        if pairs {
            if let LV::Table(p) = item {
                return Ok(MultiValue::from_vec(vec![p.raw_get(1)?, p.raw_get(2)?]));
            }
        }
        Ok(MultiValue::from_vec(vec![item]))
    })
}

/// The primitive types, as globals and as `typeof` gives them.
const PRIMITIVES: &[(&str, Ty)] = &[
    ("Any", Ty::Any),
    ("Unknown", Ty::Unknown),
    ("Nil", Ty::Nil),
    ("Boolean", Ty::Boolean),
    ("Number", Ty::Number),
    ("Integer", Ty::Integer),
    ("String", Ty::String),
    ("Table", Ty::Table),
    ("Function", Ty::Function),
    ("Thread", Ty::Thread),
    ("Userdata", Ty::Userdata),
];

const REGISTRY_KEY: &str = "warden.types";

thread_local! {
    /// Parsed type texts (a module's types are built again at each instantiation).
    static PARSED: RefCell<HashMap<String, Ty>> = RefCell::new(HashMap::new());
}

/// The globals this module gives every process: `Number`, `Integer`, `String`,
/// `Boolean`, `Any`... (the same values `typeof` gives), `typeof`, and `__wtype`, which
/// the loader's code for a `type` declaration calls.
pub fn globals(lua: &Lua) -> mlua::Result<Vec<(&'static str, LV)>> {
    let prims = lua.create_table()?;
    let mut out = Vec::new();
    for (name, ty) in PRIMITIVES {
        let ud = lua.create_userdata(LuaType {
            name: Some(ty.kind().to_string()),
            ty: ty.clone(),
        })?;
        prims.raw_set(ty.kind(), ud.clone())?;
        out.push((*name, LV::UserData(ud)));
    }
    lua.set_named_registry_value(REGISTRY_KEY, prims)?;
    out.push((
        "typeof",
        LV::Function(lua.create_function(|lua, v: LV| {
            let prims: Table = lua.named_registry_value(REGISTRY_KEY)?;
            let kind = match &v {
                LV::Nil => "nil",
                LV::Boolean(_) => "boolean",
                LV::Integer(_) => "integer",
                LV::Number(_) => "number",
                LV::String(_) => "string",
                LV::Table(_) => "table",
                LV::Function(_) => "function",
                LV::Thread(_) => "thread",
                LV::UserData(ud) => {
                    if ud.borrow::<LuaType>().is_ok() {
                        return Ok(v.clone());
                    }
                    "userdata"
                }
                _ => "userdata",
            };
            prims.raw_get::<LV>(kind)
        })?),
    ));
    out.push((
        "__wtype",
        LV::Function(lua.create_function(
            |_, (name, text, refs, generics): (String, String, Option<Table>, Option<Table>)| {
                let generics: Vec<String> = generics
                    .map(|g| {
                        g.sequence_values::<String>()
                            .filter_map(Result::ok)
                            .collect()
                    })
                    .unwrap_or_default();
                let resolve = |n: &str| -> Option<Arc<LuaType>> {
                    let v: LV = refs.as_ref()?.raw_get(n).ok()?;
                    let LV::UserData(ud) = v else { return None };
                    ud.borrow::<LuaType>().ok().map(|t| Arc::new(t.clone()))
                };
                // types naming others depend on them: only a standalone text is cached
                let cacheable = refs
                    .as_ref()
                    .is_none_or(|r| r.raw_len() == 0 && r.pairs::<LV, LV>().next().is_none());
                let cached = cacheable
                    .then(|| PARSED.with(|p| p.borrow().get(&text).cloned()))
                    .flatten();
                let ty = match cached {
                    Some(t) => t,
                    None => {
                        let t = parse(&text, &resolve, &generics)
                            .map_err(|e| mlua::Error::runtime(format!("type {name}: {e}")))?;
                        if cacheable {
                            PARSED.with(|p| p.borrow_mut().insert(text.clone(), t.clone()));
                        }
                        t
                    }
                };
                Ok(LuaType {
                    name: Some(name),
                    ty,
                })
            },
        )?),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Ty {
        parse(s, &|_| None, &[]).unwrap()
    }

    #[test]
    fn parses_wippys_type_syntax() {
        assert_eq!(
            ty("{x: number, y: number}").text(),
            "{x: number, y: number}"
        );
        assert_eq!(ty("{name?: string}").text(), "{name?: string}");
        assert_eq!(ty("\"a\" | \"b\"").text(), "\"a\" | \"b\"");
        assert_eq!(ty("| {ok: true} | {ok: false}").kind(), "union");
        assert_eq!(ty("{[string]: number}").kind(), "map");
        assert_eq!(ty("{number @min(0)}").kind(), "array");
        assert_eq!(ty("(number, string) -> boolean").kind(), "function");
        assert_eq!(ty("number?").kind(), "optional");
        assert!(parse("{x: }", &|_| None, &[]).is_err());
        assert!(parse("number @bogus(1)", &|_| None, &[]).is_err());
        assert!(ty("integer").subtype_of(&ty("number")));
        assert!(!ty("number").subtype_of(&ty("integer")));
        assert!(ty("\"a\"").subtype_of(&ty("string | number")));
    }
}
