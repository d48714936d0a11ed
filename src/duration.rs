//! Durations as users write them: Go/humantime strings ("1h30m", "500ms", "2s") or an
//! integer number of milliseconds.

use std::time::Duration;

/// Parses a duration string such as `"1h30m"`, `"500ms"` or `"10s"`. A bare integer string
/// is milliseconds. Negative or unparsable durations are refused with a one-line reason.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write e.g. \"500ms\", \"10s\" or \"1h30m\"")
    })
}

/// Converts a YAML/JSON value (integer milliseconds or a duration string) into a duration.
pub fn parse_json(v: &serde_json::Value) -> Result<Duration, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| format!("negative or invalid duration {n}")),
        serde_json::Value::String(s) => parse(s),
        other => Err(format!(
            "expected a duration like \"500ms\" or milliseconds, found {other}"
        )),
    }
}

/// Converts a Lua argument (integer milliseconds or a duration string) into a duration.
pub fn from_lua(v: &mlua::Value) -> Result<Duration, String> {
    match v {
        mlua::Value::Integer(i) if *i >= 0 => Ok(Duration::from_millis(*i as u64)),
        mlua::Value::Number(n) if *n >= 0.0 && n.is_finite() => {
            Ok(Duration::from_secs_f64(*n / 1000.0))
        }
        mlua::Value::Integer(_) | mlua::Value::Number(_) => {
            Err("negative or invalid duration".into())
        }
        mlua::Value::String(s) => parse(&s.to_string_lossy()),
        other => Err(format!(
            "expected a duration (milliseconds or a string like \"500ms\"), got {}",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_and_milliseconds() {
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn refuses_bad_durations() {
        assert!(parse("-1s").unwrap_err().contains("negative"));
        assert!(parse("soon").unwrap_err().contains("invalid duration"));
        assert!(parse("").is_err());
    }
}
