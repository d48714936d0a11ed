//! How a process ends: its exit, the error kinds an exit can carry, and the exits the
//! runtime makes up (`noconnection` for a lost node, "no such process").

use crate::value::Value;
use std::fmt;
use std::sync::Arc;

/// The kinds an error can have (`errors.NOT_FOUND == "NOT_FOUND"`...). `FAILED` is
/// warden's kind of a function's own returned error.
pub const ERROR_KINDS: &[&str] = &[
    "UNKNOWN",
    "INVALID",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAVAILABLE",
    "INTERNAL",
    "CANCELED",
    "CONFLICT",
    "TIMEOUT",
    "RATE_LIMITED",
    "FAILED",
];

/// The error kind named `name`, if it is one of [`ERROR_KINDS`].
pub fn error_kind(name: &str) -> Option<&'static str> {
    ERROR_KINDS.iter().copied().find(|k| *k == name)
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    /// Its body returned this value.
    Normal(Value),
    /// Its body raised an error or returned one (`nil, err`).
    Error(ExitError),
    /// It was stopped from outside: terminated, killed by a link, or its host shut down.
    Killed(String),
}

/// The error a process failed with: its message, and its kind (`NOT_FOUND`,
/// `INTERNAL`... as error objects have; `UNKNOWN` for an error that names none, such as a
/// Lua `error("text")`). Reads as its message (`Deref<Target = str>`, `Display`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExitError {
    /// The error's kind.
    pub kind: &'static str,
    /// One line.
    pub message: String,
}

impl ExitError {
    /// An error of `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> ExitError {
        ExitError {
            kind,
            message: message.into(),
        }
    }
}

impl From<String> for ExitError {
    fn from(message: String) -> Self {
        ExitError::new("UNKNOWN", message)
    }
}

impl From<&str> for ExitError {
    fn from(message: &str) -> Self {
        ExitError::new("UNKNOWN", message)
    }
}

impl std::ops::Deref for ExitError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl PartialEq<str> for ExitError {
    fn eq(&self, other: &str) -> bool {
        self.message == other
    }
}

impl PartialEq<&str> for ExitError {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}

impl Exit {
    /// True for every exit except a normal return.
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, Exit::Normal(_))
    }

    /// The error text of an abnormal exit.
    pub fn error(&self) -> Option<&str> {
        match self {
            Exit::Normal(_) => None,
            Exit::Error(e) => Some(e),
            Exit::Killed(e) => Some(e),
        }
    }

    /// The kind of an abnormal exit's error: the error's own, `CANCELED` for a process
    /// stopped from outside.
    pub fn error_kind(&self) -> Option<&'static str> {
        match self {
            Exit::Normal(_) => None,
            Exit::Error(e) => Some(e.kind),
            Exit::Killed(_) => Some("CANCELED"),
        }
    }
}

/// The exit a watcher of a process of a lost node sees (Erlang's `noconnection`).
pub fn noconnection() -> Arc<Exit> {
    Arc::new(Exit::Error(ExitError::new("UNAVAILABLE", "noconnection")))
}

/// The exit a watcher of a process that is not running sees (Erlang's `noproc`).
pub(crate) fn noproc() -> Arc<Exit> {
    Arc::new(Exit::Error(ExitError::new("NOT_FOUND", "no such process")))
}
