//! Error values handed to Lua as the `err` of `value, err` returns, and the `errors`
//! global that makes them (Wippy's `errors.new`, `wrap`, `is`, `call_stack` and the kind
//! constants). An error object has `err:kind()`, `err:message()`, `err:retryable()`,
//! `err:details()`, `err:stack()`, `err:unwrap()`; its `tostring` (and `..`) is the
//! message, and the string functions take it where they take a string (the sandbox
//! converts it), so `string.find(err, "x")` works as on a string error.

use crate::value::Value;
use mlua::{Lua, MetaMethod, UserData, UserDataMethods};
use std::sync::Arc;

pub use crate::process::ERROR_KINDS as KINDS;

/// An error value for Lua.
#[derive(Clone, Debug)]
pub struct LuaError {
    /// `INVALID`, `NOT_FOUND`, `UNAVAILABLE`, `INTERNAL`, ... (see [`KINDS`]).
    pub kind: &'static str,
    /// Its own one-line message (for a wrapped error: the context given to `wrap`; the
    /// whole text, with the causes', is [`LuaError::text`]).
    pub message: String,
    /// Whether trying again may succeed (None: not said).
    pub retryable: Option<bool>,
    /// Structured details given to `errors.new`.
    pub details: Option<Value>,
    /// The error this one wraps.
    pub cause: Option<Arc<LuaError>>,
    /// Where and by whom `errors.new` / `errors.wrap` made it (None for the runtime's own
    /// errors; boxed, as most errors have none).
    pub origin: Option<Box<Origin>>,
}

/// Where an error was made with `errors.new` / `errors.wrap`.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The call stack there: (source, line, function name), innermost first.
    pub frames: Vec<(String, usize, Option<String>)>,
    /// The pid of the process (or the id of the function) whose code made it
    /// (`errors.call_stack(err).thread`).
    pub thread: Option<String>,
}

impl LuaError {
    /// Builds an error of `kind`, as the runtime raises them: not retryable (Wippy's
    /// runtime marks the errors of its modules `retryable = false`; an error code makes
    /// with `errors.new` says what it says, nil when it says nothing).
    pub fn new(kind: &'static str, message: impl Into<String>) -> LuaError {
        LuaError {
            kind,
            message: message.into(),
            retryable: Some(false),
            details: None,
            cause: None,
            origin: None,
        }
    }

    /// `nil, err` as a Lua multi-value.
    pub fn into_nil_err(self, lua: &Lua) -> mlua::Result<mlua::MultiValue> {
        Ok(mlua::MultiValue::from_vec(vec![
            mlua::Value::Nil,
            mlua::Value::UserData(lua.create_userdata(self)?),
        ]))
    }

    /// The whole text: its message, then each cause's after `: ` (what `tostring` gives,
    /// and what a copy of the error carries).
    pub fn text(&self) -> String {
        let mut out = self.message.clone();
        for c in self.chain().skip(1) {
            if !c.message.is_empty() {
                if !out.is_empty() {
                    out.push_str(": ");
                }
                out.push_str(&c.message);
            }
        }
        out
    }

    /// This error and the ones it wraps, outermost first.
    fn chain(&self) -> impl Iterator<Item = &LuaError> {
        std::iter::successors(Some(self), |e| e.cause.as_deref())
    }
}

impl From<crate::process::ProcessError> for LuaError {
    fn from(e: crate::process::ProcessError) -> Self {
        LuaError::new(e.kind(), e.to_string())
    }
}

impl UserData for LuaError {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("kind", |_, this, ()| Ok(lua_kind(this.kind)));
        methods.add_method("message", |_, this, ()| Ok(this.message.clone()));
        methods.add_method("retryable", |_, this, ()| Ok(this.retryable));
        methods.add_method("details", |lua, this, ()| match &this.details {
            Some(d) => crate::value::to_lua(lua, d),
            None => Ok(mlua::Value::Nil),
        });
        methods.add_method("stack", |_, this, ()| Ok(stack_text(this)));
        methods.add_method("unwrap", |lua, this, ()| match &this.cause {
            Some(c) => Ok(mlua::Value::UserData(lua.create_userdata((**c).clone())?)),
            None => Ok(mlua::Value::Nil),
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.text()));
        // copied into a message, an event, a call: the error's text
        methods.add_meta_method("__copy", |_, this, ()| Ok(this.text()));
        methods.add_meta_function(
            MetaMethod::Concat,
            |lua, (a, b): (mlua::Value, mlua::Value)| {
                let s = |v: &mlua::Value| -> mlua::Result<String> {
                    match v {
                        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
                            Ok(e) => Ok(e.text()),
                            Err(_) => Ok(lua
                                .coerce_string(v.clone())?
                                .map(|s| s.to_string_lossy())
                                .unwrap_or_default()),
                        },
                        other => Ok(lua
                            .coerce_string(other.clone())?
                            .map(|s| s.to_string_lossy())
                            .unwrap_or_else(|| other.type_name().to_string())),
                    }
                };
                Ok(format!("{}{}", s(&a)?, s(&b)?))
            },
        );
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: mlua::AnyUserData| {
            Ok(other
                .borrow::<LuaError>()
                .map(|o| o.kind == this.kind && o.text() == this.text())
                .unwrap_or(false))
        });
    }
}

fn stack_text(e: &LuaError) -> String {
    e.origin
        .iter()
        .flat_map(|o| o.frames.iter())
        .map(|(src, line, name)| match name {
            Some(n) => format!("{src}:{line}: in function {n}"),
            None => format!("{src}:{line}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Lua frames of the caller of a Rust function, innermost first (at most 32).
fn capture_stack(lua: &Lua) -> Vec<(String, usize, Option<String>)> {
    let mut out = Vec::new();
    for level in 1..33 {
        let frame = lua.inspect_stack(level, |d| {
            let src = d.source();
            if src.what == "C" {
                return None;
            }
            let name = d.names().name.map(|n| n.into_owned());
            let file = src.short_src.map(|s| s.into_owned()).unwrap_or_default();
            Some((file, d.current_line().unwrap_or(0), name))
        });
        match frame {
            None => break,
            Some(Some(f)) => out.push(f),
            Some(None) => {}
        }
    }
    out
}

/// The kind as Lua sees it: the value of Wippy's constant (`errors.NOT_FOUND` is
/// `"NotFound"`, `errors.UNKNOWN` is `""`; the runtime's api/error/error.go and
/// runtime/lua/modules/errors.md). An error a function returned as a plain value
/// (warden's FAILED) reads as UNKNOWN, as Wippy has no such kind.
pub fn lua_kind(kind: &str) -> &'static str {
    match kind {
        "INVALID" => "Invalid",
        "NOT_FOUND" => "NotFound",
        "ALREADY_EXISTS" => "AlreadyExists",
        "PERMISSION_DENIED" => "PermissionDenied",
        "UNAVAILABLE" => "Unavailable",
        "INTERNAL" => "Internal",
        "CANCELED" => "Canceled",
        "CONFLICT" => "Conflict",
        "TIMEOUT" => "Timeout",
        "RATE_LIMITED" => "RateLimited",
        _ => "",
    }
}

/// The kind named by a Lua value: a constant's value (`"NotFound"`, `""`), or, as warden
/// read them before, the constant's name (`"NOT_FOUND"`).
pub fn kind_of(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "Unknown" {
        return Some("UNKNOWN");
    }
    KINDS
        .iter()
        .copied()
        .filter(|k| *k != "FAILED")
        .find(|k| *k == name || lua_kind(k) == name)
}

/// An error object from a Lua value: an error object as it is, a string as an UNKNOWN
/// error with that message, anything else described.
fn as_error(v: &mlua::Value) -> LuaError {
    if let mlua::Value::UserData(ud) = v {
        if let Ok(e) = ud.borrow::<LuaError>() {
            return e.clone();
        }
    }
    LuaError {
        retryable: None,
        ..LuaError::new("UNKNOWN", text_of(v))
    }
}

/// The code running now, for `errors.call_stack(err).thread`: its pid, or the id of the
/// function whose call it is.
fn thread_now() -> Option<String> {
    let (_, entry, pid) = super::running()?;
    Some(pid.map_or_else(|| entry.id.to_string(), |p| p.to_string()))
}

/// The `errors` global.
pub fn module(lua: &Lua) -> mlua::Result<mlua::Table> {
    let t = lua.create_table()?;
    for k in KINDS.iter().filter(|k| **k != "FAILED") {
        t.set(*k, lua_kind(k))?;
    }
    t.set(
        "new",
        lua.create_function(|lua, spec: mlua::Value| {
            let mut e = match &spec {
                mlua::Value::Table(t) => {
                    let message: Option<String> = t.get("message")?;
                    let kind = match t.get::<Option<String>>("kind")? {
                        None => "UNKNOWN",
                        Some(k) => kind_of(&k).ok_or_else(|| {
                            let known: Vec<String> = KINDS
                                .iter()
                                .filter(|k| **k != "FAILED")
                                .map(|k| format!("errors.{k}"))
                                .collect();
                            mlua::Error::runtime(format!(
                                "errors.new: unknown kind {k:?} (one of {})",
                                known.join(", ")
                            ))
                        })?,
                    };
                    let mut e = LuaError::new(kind, message.unwrap_or_default());
                    e.retryable = t.get("retryable")?;
                    e.details = match t.get::<mlua::Value>("details")? {
                        mlua::Value::Nil => None,
                        d => Some(crate::value::from_lua(&d).map_err(|err| {
                            mlua::Error::runtime(format!("errors.new: details: {err}"))
                        })?),
                    };
                    e
                }
                mlua::Value::String(s) => LuaError {
                    retryable: None,
                    ..LuaError::new("UNKNOWN", s.to_string_lossy())
                },
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "errors.new: expected a message or a table, got {}",
                        other.type_name()
                    )))
                }
            };
            e.origin = Some(Box::new(Origin {
                frames: capture_stack(lua),
                thread: thread_now(),
            }));
            Ok(e)
        })?,
    )?;
    t.set(
        "wrap",
        lua.create_function(|lua, (err, message): (mlua::Value, Option<String>)| {
            if err.is_nil() {
                return Ok(mlua::Value::Nil);
            }
            // en/lua/core/errors.md: the wrapper keeps the kind, retryable and details;
            // its message is the context, its text the context and the cause's
            let cause = as_error(&err);
            let mut e = cause.clone();
            if let Some(m) = message {
                e.message = m;
                e.cause = Some(Arc::new(cause));
            }
            e.origin = Some(Box::new(Origin {
                frames: capture_stack(lua),
                thread: thread_now(),
            }));
            Ok(mlua::Value::UserData(lua.create_userdata(e)?))
        })?,
    )?;
    t.set(
        "is",
        lua.create_function(|_, (err, target): (mlua::Value, mlua::Value)| {
            let e = match &err {
                mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
                    Ok(e) => e.clone(),
                    Err(_) => return Ok(false),
                },
                _ => return Ok(false),
            };
            Ok(match &target {
                mlua::Value::String(k) => match kind_of(&k.to_string_lossy()) {
                    Some(k) => e
                        .chain()
                        .any(|c| c.kind == k || lua_kind(c.kind) == lua_kind(k)),
                    None => false,
                },
                mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
                    Ok(t) => e.chain().any(|c| c.kind == t.kind && c.text() == t.text()),
                    Err(_) => false,
                },
                _ => false,
            })
        })?,
    )?;
    t.set(
        "call_stack",
        // en/lua/core/errors.md: `{thread, frames = {{source, line, name}, ...}}` of an
        // error made with `errors.new` / `errors.wrap`, nil for any other value
        lua.create_function(|lua, err: mlua::Value| {
            let mlua::Value::UserData(ud) = &err else {
                return Ok(mlua::Value::Nil);
            };
            let Ok(e) = ud.borrow::<LuaError>() else {
                return Ok(mlua::Value::Nil);
            };
            let Some(origin) = e.origin.as_deref().filter(|o| !o.frames.is_empty()) else {
                return Ok(mlua::Value::Nil);
            };
            let frames = lua.create_table()?;
            for (i, (src, line, name)) in origin.frames.iter().enumerate() {
                let f = lua.create_table()?;
                f.set("source", src.as_str())?;
                f.set("line", *line)?;
                f.set("name", name.clone())?;
                frames.raw_set(i + 1, f)?;
            }
            let out = lua.create_table()?;
            out.set("thread", origin.thread.as_deref())?;
            out.set("frames", frames)?;
            Ok(mlua::Value::Table(out))
        })?,
    )?;
    Ok(t)
}

/// The message of a Lua error, without mlua's wrapping ("runtime error: ", callback
/// tracebacks) and without the Lua stack traceback (logged at debug level instead).
pub fn message(e: &mlua::Error) -> String {
    let full = raw_message(e);
    match full.split_once("\nstack traceback:") {
        Some((msg, trace)) => {
            tracing::debug!(target: "lua", "{msg}\nstack traceback:{trace}");
            msg.to_string()
        }
        None => full,
    }
}

fn raw_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(s) => s.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => raw_message(cause),
        mlua::Error::WithContext { context, cause } => {
            format!("{context}: {}", raw_message(cause))
        }
        mlua::Error::MemoryError(s) => format!("out of memory: {s}"),
        mlua::Error::ExternalError(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// The kind of an error value returned as `nil, err`: an error object's own, FAILED for
/// anything else (as a function's returned error).
pub fn kind_of_value(v: &mlua::Value) -> &'static str {
    match v {
        mlua::Value::UserData(ud) => ud.borrow::<LuaError>().map(|e| e.kind).unwrap_or("FAILED"),
        _ => "FAILED",
    }
}

/// The text of an error value returned as `nil, err`: an error object's message, a
/// string as it is, any other value described.
pub fn text_of(v: &mlua::Value) -> String {
    match v {
        mlua::Value::String(s) => s.to_string_lossy(),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
            Ok(e) => e.text(),
            Err(_) => "error value of type userdata".to_string(),
        },
        other => match crate::value::from_lua(other) {
            Ok(val) => crate::value::display(&val),
            Err(_) => format!("error value of type {}", other.type_name()),
        },
    }
}

thread_local! {
    /// The last error object raised on this thread (its message and kind), recorded as it
    /// is described to text: the process or call it ended reads the kind back.
    static LAST_RAISED: std::cell::RefCell<Option<(String, &'static str)>> =
        const { std::cell::RefCell::new(None) };
}

/// The kind of a raised error whose text is `message`: the kind of the error object that
/// was raised with that text on this thread just before, else INTERNAL (a Lua error that
/// is a string, or a runtime fault).
pub fn kind_of_raised(message: &str) -> &'static str {
    LAST_RAISED.with(|l| match l.borrow_mut().take() {
        Some((m, kind)) if m == message => kind,
        _ => "INTERNAL",
    })
}

/// Describes an error value that is not a string (a table, a number, nil, an error object)
/// so that a failure reads as text, not as an address. The sandbox's error handler calls
/// it; strings and mlua's own error values pass through unchanged.
pub fn describe(lua: &Lua, v: mlua::Value) -> mlua::Result<mlua::Value> {
    let text = match &v {
        mlua::Value::String(_) => return Ok(v),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
            Ok(e) => {
                // the error leaves Lua as its text; its kind waits here for the exit
                let text = e.text();
                LAST_RAISED.with(|l| *l.borrow_mut() = Some((text.clone(), e.kind)));
                text
            }
            Err(_) => return Ok(v),
        },
        mlua::Value::Error(_) => return Ok(v),
        other => match crate::value::from_lua(other) {
            Ok(crate::value::Value::Nil) => "error raised with a nil value".to_string(),
            Ok(val) => format!("error value {}", crate::value::display(&val)),
            Err(_) => format!("error value of type {}", other.type_name()),
        },
    };
    Ok(mlua::Value::String(lua.create_string(&text)?))
}
