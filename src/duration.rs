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
        mlua::Value::UserData(ud) => match ud.borrow::<LuaDuration>() {
            Ok(d) if d.0 >= 0 => Ok(Duration::from_nanos(d.0 as u64)),
            Ok(d) => Err(format!("negative duration {}", go_format(d.0))),
            Err(_) => Err("expected a duration, got userdata".into()),
        },
        other => Err(format!(
            "expected a duration (milliseconds or a string like \"500ms\"), got {}",
            other.type_name()
        )),
    }
}

/// Nanoseconds in each unit Go's duration strings use.
const UNITS: &[(&str, i64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a duration as Go's `time.ParseDuration` does (and Wippy's
/// `time.parse_duration`): a signed sequence of decimal numbers with units, such as
/// `"300ms"`, `"-1.5h"` or `"2h45m"`. Returns signed nanoseconds.
pub fn go_parse(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| {
                if unit.is_empty() {
                    format!("missing unit in duration {s:?}")
                } else {
                    format!("unknown unit {unit:?} in duration {s:?}")
                }
            })?;
        total += num * scale as f64;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(format!("duration {s:?} out of range"));
    }
    let n = total.round() as i64;
    Ok(if neg { -n } else { n })
}

/// Formats signed nanoseconds as Go's `Duration.String` does: `"1h30m0s"`, `"1.5s"`,
/// `"250ms"`, `"0s"`.
pub fn go_format(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, div: u64, unit: &str| {
        let whole = v / div;
        let rest = v % div;
        if rest == 0 {
            format!("{sign}{whole}{unit}")
        } else {
            let digits = div.ilog10() as usize;
            let f = format!("{rest:0digits$}");
            format!("{sign}{whole}.{}{unit}", f.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return frac(u, 1_000, "\u{b5}s");
    }
    if u < 1_000_000_000 {
        return frac(u, 1_000_000, "ms");
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = frac(u % 60_000_000_000, 1_000_000_000, "s");
    let s = s.trim_start_matches('-');
    match (h, m) {
        (0, 0) => format!("{sign}{s}"),
        (0, m) => format!("{sign}{m}m{s}"),
        (h, m) => format!("{sign}{h}h{m}m{s}"),
    }
}

/// A duration as Lua sees it (`time.SECOND`, `time.parse_duration`, `t:sub(u)`): signed
/// nanoseconds, with Go's methods and arithmetic. Everything that takes a duration
/// (`time.sleep`, timeouts) takes it, as well as milliseconds and strings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LuaDuration(pub i64);

impl mlua::UserData for LuaDuration {
    fn add_methods<M: mlua::UserDataMethods<Self>>(m: &mut M) {
        use mlua::MetaMethod;
        m.add_method("nanoseconds", |_, d, ()| Ok(d.0));
        m.add_method("microseconds", |_, d, ()| Ok(d.0 / 1_000));
        m.add_method("milliseconds", |_, d, ()| Ok(d.0 / 1_000_000));
        m.add_method("seconds", |_, d, ()| Ok(d.0 as f64 / 1e9));
        m.add_method("minutes", |_, d, ()| Ok(d.0 as f64 / 6e10));
        m.add_method("hours", |_, d, ()| Ok(d.0 as f64 / 3.6e12));
        m.add_method("string", |_, d, ()| Ok(go_format(d.0)));
        m.add_method("abs", |_, d, ()| Ok(LuaDuration(d.0.saturating_abs())));
        // a step is a Duration or a number of nanoseconds (`time.MICROSECOND`)
        let step = |v: &mlua::Value| -> mlua::Result<LuaDuration> {
            match v {
                mlua::Value::Integer(i) => Ok(LuaDuration(*i)),
                mlua::Value::Number(n) => Ok(LuaDuration(*n as i64)),
                mlua::Value::UserData(ud) => Ok(*ud.borrow::<LuaDuration>()?),
                other => Err(mlua::Error::runtime(format!(
                    "expected a duration, got {}",
                    other.type_name()
                ))),
            }
        };
        m.add_method("truncate", move |_, d, u: mlua::Value| {
            let u = step(&u)?;
            Ok(LuaDuration(if u.0 <= 0 { d.0 } else { d.0 - d.0 % u.0 }))
        });
        m.add_method("round", move |_, d, u: mlua::Value| {
            let u = step(&u)?;
            if u.0 <= 0 {
                return Ok(LuaDuration(d.0));
            }
            let r = d.0 % u.0;
            let down = d.0 - r;
            Ok(LuaDuration(if r.abs() * 2 >= u.0 {
                down + u.0 * d.0.signum()
            } else {
                down
            }))
        });
        m.add_meta_method(MetaMethod::ToString, |_, d, ()| Ok(go_format(d.0)));
        let nanos = |v: &mlua::Value, what: &str| -> mlua::Result<i64> {
            match v {
                mlua::Value::UserData(ud) => Ok(ud.borrow::<LuaDuration>()?.0),
                other => Err(mlua::Error::runtime(format!(
                    "duration {what}: expected a duration, got {}",
                    other.type_name()
                ))),
            }
        };
        let number = |v: &mlua::Value| -> Option<f64> {
            match v {
                mlua::Value::Integer(i) => Some(*i as f64),
                mlua::Value::Number(n) => Some(*n),
                _ => None,
            }
        };
        m.add_meta_function(
            MetaMethod::Add,
            move |_, (a, b): (mlua::Value, mlua::Value)| {
                Ok(LuaDuration(nanos(&a, "+")?.saturating_add(nanos(&b, "+")?)))
            },
        );
        m.add_meta_function(
            MetaMethod::Sub,
            move |_, (a, b): (mlua::Value, mlua::Value)| {
                Ok(LuaDuration(nanos(&a, "-")?.saturating_sub(nanos(&b, "-")?)))
            },
        );
        m.add_meta_function(
            MetaMethod::Mul,
            move |_, (a, b): (mlua::Value, mlua::Value)| {
                let (d, k) = match (number(&a), number(&b)) {
                    (Some(k), None) => (nanos(&b, "*")?, k),
                    (None, Some(k)) => (nanos(&a, "*")?, k),
                    _ => return Err(mlua::Error::runtime("duration *: multiply by a number")),
                };
                Ok(LuaDuration((d as f64 * k) as i64))
            },
        );
        m.add_meta_function(
            MetaMethod::Div,
            move |lua, (a, b): (mlua::Value, mlua::Value)| {
                let d = nanos(&a, "/")?;
                match number(&b) {
                    Some(k) => mlua::IntoLua::into_lua(LuaDuration((d as f64 / k) as i64), lua),
                    None => Ok(mlua::Value::Number(d as f64 / nanos(&b, "/")? as f64)),
                }
            },
        );
        m.add_meta_method(MetaMethod::Unm, |_, d, ()| Ok(LuaDuration(-d.0)));
        m.add_meta_function(
            MetaMethod::Eq,
            move |_, (a, b): (mlua::Value, mlua::Value)| Ok(nanos(&a, "==")? == nanos(&b, "==")?),
        );
        m.add_meta_function(
            MetaMethod::Lt,
            move |_, (a, b): (mlua::Value, mlua::Value)| Ok(nanos(&a, "<")? < nanos(&b, "<")?),
        );
        m.add_meta_function(
            MetaMethod::Le,
            move |_, (a, b): (mlua::Value, mlua::Value)| Ok(nanos(&a, "<=")? <= nanos(&b, "<=")?),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_and_print_as_in_go() {
        for (text, ns, back) in [
            ("1h30m", 5_400_000_000_000i64, "1h30m0s"),
            ("1.5s", 1_500_000_000, "1.5s"),
            ("-2m3s", -123_000_000_000, "-2m3s"),
            ("300ms", 300_000_000, "300ms"),
            ("2us", 2_000, "2\u{b5}s"),
            ("10ns", 10, "10ns"),
            ("0", 0, "0s"),
            ("1h0m0.25s", 3_600_250_000_000, "1h0m0.25s"),
        ] {
            assert_eq!(go_parse(text), Ok(ns), "{text}");
            assert_eq!(go_format(ns), back, "{text}");
        }
        assert!(go_parse("5").unwrap_err().contains("missing unit"));
        assert!(go_parse("5 days").is_err());
        assert!(go_parse("").is_err());
    }

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
