//! Reading an entry's fields from its loaded form (`Entry::raw`, JSON): the one set of
//! readers every check after the YAML pass uses (supervision specs, function pools, the
//! cluster entry), so a field of one type is read, and its error worded, the same way
//! everywhere. Each reader takes the field's value (None when absent) and returns the
//! value, None for absent or null, or the message; [`error`] makes the message a
//! [`LoadError`] naming the file, the entry and the field. Names checked against a list
//! get their "did you mean" from `hint.rs`.
//!
//! The loader's first pass reads YAML before this form exists, with the same words
//! ("expected X, found Y"); it then hands sub-mappings such as `pool` to these readers.

use super::loader::LoadError;
use super::{Entry, Id};
use serde_json::Value as Json;
use std::path::Path;
use std::time::Duration;

/// The error of `field` of entry `e`, its file shown relative to the app's `root`.
pub fn error(root: &Path, e: &Entry, field: &str, message: impl Into<String>) -> LoadError {
    let file = e
        .file
        .strip_prefix(root)
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|_| e.file.clone());
    LoadError {
        file,
        entry: Some(e.id.to_string()),
        field: Some(field.to_string()),
        message: message.into(),
    }
}

/// A string.
pub fn text(v: Option<&Json>) -> Result<Option<String>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("expected a string, found {other}")),
    }
}

/// `true` or `false`.
pub fn flag(v: Option<&Json>) -> Result<Option<bool>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!("expected true or false, found {other}")),
    }
}

/// A duration: Go's text (`"1h30m"`, `"500ms"`) or whole milliseconds.
pub fn duration(v: Option<&Json>) -> Result<Option<Duration>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(ms) if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
            _ => Err(format!("must be a non-negative duration, found {n}")),
        },
        Some(Json::String(s)) => crate::duration::parse(s).map(Some),
        Some(other) => Err(format!("expected a duration like \"5s\", found {other}")),
    }
}

/// A positive integer of at most `max`.
pub fn positive(v: Option<&Json>, max: usize) -> Result<Option<usize>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) if i > max as i64 => Err(format!("must be at most {max}, found {n}")),
            Some(i) if i > 0 => Ok(Some(i as usize)),
            _ => Err(format!("must be a positive integer, found {n}")),
        },
        Some(other) => Err(format!("expected a positive integer, found {other}")),
    }
}

/// A non-negative integer (a count: attempts, restarts), capped at `u32::MAX`.
pub fn count(v: Option<&Json>) -> Result<Option<u32>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => match n.as_u64() {
            Some(m) => Ok(Some(m.min(u32::MAX as u64) as u32)),
            None => Err(format!("must be a non-negative integer, found {n}")),
        },
        Some(other) => Err(format!("expected a non-negative integer, found {other}")),
    }
}

/// A number in `range`, which `words` name ("at least 1", "between 0 and 1").
pub fn number(
    v: Option<&Json>,
    range: std::ops::RangeInclusive<f64>,
    words: &str,
) -> Result<Option<f64>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => match n.as_f64() {
            Some(f) if range.contains(&f) => Ok(Some(f)),
            _ => Err(format!("must be {words}, found {n}")),
        },
        Some(other) => Err(format!("expected a number {words}, found {other}")),
    }
}

/// An entry id, resolved in namespace `ns` when it has none of its own.
pub fn reference(v: &Json, ns: &str) -> Result<Id, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("expected an entry id, found {v}"))?;
    Id::resolve(s, ns)
}

/// A list (its items as they are).
pub fn list(v: Option<&Json>) -> Result<Option<&Vec<Json>>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Array(items)) => Ok(Some(items)),
        Some(other) => Err(format!("expected a list, found {other}")),
    }
}

/// One of `options`; a `what` ("strategy", "restart type") outside them is an error with
/// a "did you mean" for a near miss.
pub fn one_of<'a>(what: &str, word: &str, options: &[&'a str]) -> Result<&'a str, String> {
    if let Some(o) = options.iter().find(|o| **o == word) {
        return Ok(o);
    }
    let hint = super::hint::did_you_mean(word, options, super::hint::NEAR);
    Err(format!(
        "unknown {what} {word}{hint}; expected one of {}",
        options.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readers_word_their_errors_alike() {
        assert_eq!(
            duration(Some(&json!("1m30s"))).unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            duration(Some(&json!(250))).unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(duration(None).unwrap(), None);
        assert_eq!(
            duration(Some(&json!(-1))).unwrap_err(),
            "must be a non-negative duration, found -1"
        );
        assert_eq!(
            duration(Some(&json!([1]))).unwrap_err(),
            "expected a duration like \"5s\", found [1]"
        );
        assert_eq!(positive(Some(&json!(4)), 10).unwrap(), Some(4));
        assert_eq!(
            positive(Some(&json!(0)), 10).unwrap_err(),
            "must be a positive integer, found 0"
        );
        assert_eq!(
            positive(Some(&json!(11)), 10).unwrap_err(),
            "must be at most 10, found 11"
        );
        assert_eq!(
            text(Some(&json!(5))).unwrap_err(),
            "expected a string, found 5"
        );
        assert_eq!(
            reference(&json!("svc"), "app").unwrap(),
            Id::new("app", "svc")
        );
        assert_eq!(
            one_of("restart type", "tempory", &["permanent", "transient", "temporary"])
                .unwrap_err(),
            "unknown restart type tempory (did you mean temporary?); expected one of permanent, transient, temporary"
        );
    }
}
