//! Error values handed to Lua as the `err` of `value, err` returns: objects with
//! `err:kind()` and `err:message()`, whose `tostring` (and `..`) is the message.

use mlua::{Lua, MetaMethod, UserData, UserDataMethods};

/// An error value for Lua.
#[derive(Clone, Debug)]
pub struct LuaError {
    /// `INVALID`, `NOT_FOUND`, `UNAVAILABLE`, `INTERNAL`, ...
    pub kind: &'static str,
    /// One-line message.
    pub message: String,
}

impl LuaError {
    /// Builds an error of `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> LuaError {
        LuaError {
            kind,
            message: message.into(),
        }
    }

    /// `nil, err` as a Lua multi-value.
    pub fn into_nil_err(self, lua: &Lua) -> mlua::Result<mlua::MultiValue> {
        Ok(mlua::MultiValue::from_vec(vec![
            mlua::Value::Nil,
            mlua::Value::UserData(lua.create_userdata(self)?),
        ]))
    }
}

impl From<crate::process::ProcessError> for LuaError {
    fn from(e: crate::process::ProcessError) -> Self {
        LuaError::new(e.kind(), e.to_string())
    }
}

impl UserData for LuaError {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("kind", |_, this, ()| Ok(this.kind));
        methods.add_method("message", |_, this, ()| Ok(this.message.clone()));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.message.clone()));
        methods.add_meta_function(
            MetaMethod::Concat,
            |lua, (a, b): (mlua::Value, mlua::Value)| {
                let s = |v: &mlua::Value| -> mlua::Result<String> {
                    match v {
                        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
                            Ok(e) => Ok(e.message.clone()),
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
    }
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

/// The text of an error value returned as `nil, err`: an error object's message, a
/// string as it is, any other value described.
pub fn text_of(v: &mlua::Value) -> String {
    match v {
        mlua::Value::String(s) => s.to_string_lossy(),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
            Ok(e) => e.message.clone(),
            Err(_) => "error value of type userdata".to_string(),
        },
        other => match crate::value::from_lua(other) {
            Ok(val) => crate::value::display(&val),
            Err(_) => format!("error value of type {}", other.type_name()),
        },
    }
}

/// Describes an error value that is not a string (a table, a number, nil, an error object)
/// so that a failure reads as text, not as an address. The sandbox's error handler calls
/// it; strings and mlua's own error values pass through unchanged.
pub fn describe(lua: &Lua, v: mlua::Value) -> mlua::Result<mlua::Value> {
    let text = match &v {
        mlua::Value::String(_) => return Ok(v),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaError>() {
            Ok(e) => e.message.clone(),
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
