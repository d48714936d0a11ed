//! Go's time layouts (`"2006-01-02 15:04:05 MST"`), which Wippy's `time.parse`,
//! `t:format` and the layout constants use: a layout is split into Go's elements once,
//! then formatted or parsed element by element, with Go's rules (a `.999` fraction drops
//! trailing zeros, `Z07:00` prints and reads `Z` for UTC, `MST` is the zone's
//! abbreviation, a two-digit year reads 69-99 as 19xx, a value without a date is in year
//! 0).

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// One element of a Go layout.
#[derive(Clone, Debug, PartialEq)]
enum Elem {
    Lit(String),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    /// The zone's abbreviation (`MST`).
    TzName,
    /// A numeric offset: `z` writes `Z` for UTC, `colon` separates the fields, `secs`
    /// adds seconds, `hours_only` is `-07`.
    Offset {
        z: bool,
        colon: bool,
        secs: bool,
        hours_only: bool,
    },
    /// A fraction of a second with `n` digits; `trim`: `.999` (trailing zeros dropped).
    Frac {
        sep: char,
        n: usize,
        trim: bool,
    },
}

const OFFSETS: &[(&str, bool, bool, bool)] = &[
    // (text after the sign or Z, colon, secs, hours_only), longest first
    ("07:00:00", true, true, false),
    ("070000", false, true, false),
    ("07:00", true, false, false),
    ("0700", false, false, false),
    ("07", false, false, true),
];

/// Splits a layout into its elements (Go's `nextStdChunk`).
fn elements(layout: &str) -> Vec<Elem> {
    use Elem::*;
    let b = layout.as_bytes();
    let mut out: Vec<Elem> = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        let rest = &layout[i..];
        let (elem, len): (Option<Elem>, usize) = match b[i] {
            b'J' if rest.starts_with("January") => (Some(LongMonth), 7),
            b'J' if rest.starts_with("Jan") => (Some(Month), 3),
            b'M' if rest.starts_with("Monday") => (Some(LongWeekDay), 6),
            b'M' if rest.starts_with("Mon") => (Some(WeekDay), 3),
            b'M' if rest.starts_with("MST") => (Some(TzName), 3),
            b'0' if rest.starts_with("002") => (Some(ZeroYearDay), 3),
            b'0' if rest.len() > 1 && (b'1'..=b'6').contains(&b[i + 1]) => (
                Some(
                    [ZeroMonth, ZeroDay, ZeroHour12, ZeroMinute, ZeroSecond, Year]
                        [(b[i + 1] - b'1') as usize]
                        .clone(),
                ),
                2,
            ),
            b'1' if rest.starts_with("15") => (Some(Hour), 2),
            b'1' => (Some(NumMonth), 1),
            b'2' if rest.starts_with("2006") => (Some(LongYear), 4),
            b'2' => (Some(Day), 1),
            b'_' if rest.starts_with("__2") => (Some(UnderYearDay), 3),
            b'_' if rest.starts_with("_2") && !rest.starts_with("_2006") => (Some(UnderDay), 2),
            b'3' => (Some(Hour12), 1),
            b'4' => (Some(Minute), 1),
            b'5' => (Some(Second), 1),
            b'P' if rest.starts_with("PM") => (Some(PM), 2),
            b'p' if rest.starts_with("pm") => (Some(Pm), 2),
            c @ (b'-' | b'Z') => OFFSETS
                .iter()
                .find(|(t, ..)| rest[1..].starts_with(t))
                .map(|(t, colon, secs, hours_only)| {
                    (
                        Some(Offset {
                            z: c == b'Z',
                            colon: *colon,
                            secs: *secs,
                            hours_only: *hours_only,
                        }),
                        1 + t.len(),
                    )
                })
                .unwrap_or((None, 1)),
            c @ (b'.' | b',') if rest.len() > 1 && (b[i + 1] == b'0' || b[i + 1] == b'9') => {
                let d = b[i + 1];
                let n = rest[1..].bytes().take_while(|x| *x == d).count();
                if rest[1 + n..].starts_with(|c: char| c.is_ascii_digit()) {
                    (None, 1)
                } else {
                    (
                        Some(Frac {
                            sep: c as char,
                            n,
                            trim: d == b'9',
                        }),
                        1 + n,
                    )
                }
            }
            _ => (None, rest.chars().next().map_or(1, char::len_utf8)),
        };
        match elem {
            Some(e) => {
                if !lit.is_empty() {
                    out.push(Lit(std::mem::take(&mut lit)));
                }
                out.push(e);
            }
            None => lit.push_str(&layout[i..i + len]),
        }
        i += len;
    }
    if !lit.is_empty() {
        out.push(Lit(lit));
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The text of an offset in seconds as a layout element writes it.
fn offset_text(off: i32, colon: bool, secs: bool, hours_only: bool) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    let sep = if colon { ":" } else { "" };
    let mut out = format!("{sign}{h:02}");
    if !hours_only {
        out.push_str(&format!("{sep}{m:02}"));
    }
    if secs {
        out.push_str(&format!("{sep}{s:02}"));
    }
    out
}

/// Formats a wall-clock time (`t`, in its zone, whose offset is `offset` seconds east of
/// UTC and whose abbreviation is `abbrev`) with a Go layout.
pub fn format(layout: &str, t: &NaiveDateTime, offset: i32, abbrev: &str) -> String {
    use Elem::*;
    let mut out = String::new();
    let h12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    for e in elements(layout) {
        match e {
            Lit(s) => out.push_str(&s),
            LongMonth => out.push_str(MONTHS[t.month0() as usize]),
            Month => out.push_str(&MONTHS[t.month0() as usize][..3]),
            NumMonth => out.push_str(&t.month().to_string()),
            ZeroMonth => out.push_str(&format!("{:02}", t.month())),
            LongWeekDay => out.push_str(DAYS[t.weekday().num_days_from_sunday() as usize]),
            WeekDay => out.push_str(&DAYS[t.weekday().num_days_from_sunday() as usize][..3]),
            Day => out.push_str(&t.day().to_string()),
            UnderDay => out.push_str(&format!("{:>2}", t.day())),
            ZeroDay => out.push_str(&format!("{:02}", t.day())),
            UnderYearDay => out.push_str(&format!("{:>3}", t.ordinal())),
            ZeroYearDay => out.push_str(&format!("{:03}", t.ordinal())),
            Hour => out.push_str(&format!("{:02}", t.hour())),
            Hour12 => out.push_str(&h12.to_string()),
            ZeroHour12 => out.push_str(&format!("{h12:02}")),
            Minute => out.push_str(&t.minute().to_string()),
            ZeroMinute => out.push_str(&format!("{:02}", t.minute())),
            Second => out.push_str(&t.second().to_string()),
            ZeroSecond => out.push_str(&format!("{:02}", t.second())),
            LongYear => out.push_str(&format!("{:04}", t.year())),
            Year => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            PM => out.push_str(if t.hour() >= 12 { "PM" } else { "AM" }),
            Pm => out.push_str(if t.hour() >= 12 { "pm" } else { "am" }),
            TzName if !abbrev.is_empty() => out.push_str(abbrev),
            TzName => out.push_str(&offset_text(offset, false, false, false)),
            Offset { z: true, .. } if offset == 0 => out.push('Z'),
            Offset {
                colon,
                secs,
                hours_only,
                ..
            } => out.push_str(&offset_text(offset, colon, secs, hours_only)),
            Frac { sep, n, trim } => {
                let digits = format!("{:09}", t.nanosecond() % 1_000_000_000);
                let mut d = &digits[..n.min(9)];
                if trim {
                    d = d.trim_end_matches('0');
                    if d.is_empty() {
                        continue;
                    }
                }
                out.push(sep);
                out.push_str(d);
            }
        }
    }
    out
}

/// What a value parsed with a layout says: the wall-clock time and, if it names one, its
/// zone (an offset, an abbreviation, or `Z`).
#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// The wall-clock date and time as written.
    pub wall: NaiveDateTime,
    /// The offset east of UTC, in seconds, if the value gives one (`Z` is 0, with `utc`).
    pub offset: Option<i32>,
    /// The value said `Z` (UTC) for a `Z07:00` element.
    pub utc: bool,
    /// The zone abbreviation the value gives for `MST`.
    pub abbrev: Option<String>,
}

/// Reads up to `max` digits (at least `min`) from the front of `v`.
fn digits(v: &str, min: usize, max: usize) -> Option<(u32, usize)> {
    let n = v.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((v[..n].parse().ok()?, n))
}

/// Reads one of `names` (or its three-letter form, with `short`), ignoring case, from the
/// front of `v`: its index and length.
fn name_of(v: &str, names: &[&str], short: bool) -> Option<(usize, usize)> {
    names.iter().enumerate().find_map(|(i, n)| {
        let n = if short { &n[..3] } else { n };
        (v.len() >= n.len() && v[..n.len()].eq_ignore_ascii_case(n)).then_some((i, n.len()))
    })
}

/// Parses `value` with a Go layout, as Go's `time.Parse` reads it.
pub fn parse(layout: &str, value: &str) -> Result<Parsed, String> {
    use Elem::*;
    let fail = |elem: &str, rest: &str, why: &str| {
        format!("parsing time {value:?} as {layout:?}: cannot parse {rest:?} as {elem:?}{why}")
    };
    let (mut year, mut month, mut day, mut yday) = (0i32, 1u32, 1u32, None::<u32>);
    let (mut hour, mut min, mut sec, mut nsec) = (0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let (mut offset, mut utc, mut abbrev) = (None::<i32>, false, None::<String>);
    let mut v = value;
    let elems = elements(layout);
    for (idx, e) in elems.iter().enumerate() {
        let shown = layout_text(e);
        macro_rules! num {
            ($min:expr, $max:expr) => {{
                let (n, len) = digits(v, $min, $max).ok_or_else(|| fail(&shown, v, ""))?;
                v = &v[len..];
                n
            }};
        }
        match e {
            Lit(s) => {
                v = v.strip_prefix(s.as_str()).ok_or_else(|| fail(s, v, ""))?;
            }
            LongMonth | Month => {
                let (i, len) =
                    name_of(v, &MONTHS, *e == Month).ok_or_else(|| fail(&shown, v, ""))?;
                month = i as u32 + 1;
                v = &v[len..];
            }
            LongWeekDay | WeekDay => {
                let (_, len) =
                    name_of(v, &DAYS, *e == WeekDay).ok_or_else(|| fail(&shown, v, ""))?;
                v = &v[len..];
            }
            NumMonth | ZeroMonth => {
                month = num!(if *e == ZeroMonth { 2 } else { 1 }, 2);
                if !(1..=12).contains(&month) {
                    return Err(format!("parsing time {value:?}: month out of range"));
                }
            }
            Day | UnderDay | ZeroDay => {
                if *e == UnderDay {
                    v = v.strip_prefix(' ').unwrap_or(v);
                }
                day = num!(if *e == ZeroDay { 2 } else { 1 }, 2);
            }
            UnderYearDay | ZeroYearDay => {
                if *e == UnderYearDay {
                    v = v.trim_start_matches(' ');
                }
                yday = Some(num!(if *e == ZeroYearDay { 3 } else { 1 }, 3));
            }
            Hour => {
                hour = num!(1, 2);
                if hour > 23 {
                    return Err(format!("parsing time {value:?}: hour out of range"));
                }
            }
            Hour12 | ZeroHour12 => {
                hour = num!(if *e == ZeroHour12 { 2 } else { 1 }, 2);
                if hour > 12 {
                    return Err(format!("parsing time {value:?}: hour out of range"));
                }
            }
            Minute | ZeroMinute => {
                min = num!(if *e == ZeroMinute { 2 } else { 1 }, 2);
                if min > 59 {
                    return Err(format!("parsing time {value:?}: minute out of range"));
                }
            }
            Second | ZeroSecond => {
                sec = num!(if *e == ZeroSecond { 2 } else { 1 }, 2);
                if sec > 59 {
                    return Err(format!("parsing time {value:?}: second out of range"));
                }
                // Go reads a fraction after the seconds even when the layout has none
                let next_is_frac = matches!(elems.get(idx + 1), Some(Frac { .. }));
                if !next_is_frac && v.len() > 1 && (v.starts_with('.') || v.starts_with(',')) {
                    let n = v[1..].bytes().take_while(u8::is_ascii_digit).count();
                    if n > 0 {
                        nsec = frac_nanos(&v[1..1 + n]);
                        v = &v[1 + n..];
                    }
                }
            }
            LongYear => year = num!(4, 4) as i32,
            Year => {
                let y = num!(2, 2) as i32;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            PM | Pm => {
                let (am, p) = if *e == PM { ("AM", "PM") } else { ("am", "pm") };
                pm = Some(if v.starts_with(p) {
                    true
                } else if v.starts_with(am) {
                    false
                } else {
                    return Err(fail(&shown, v, ""));
                });
                v = &v[2..];
            }
            TzName => {
                if let Some(r) = v.strip_prefix("UTC") {
                    abbrev = Some("UTC".into());
                    v = r;
                    continue;
                }
                let n = v.bytes().take_while(u8::is_ascii_alphabetic).count();
                if n >= 3 {
                    abbrev = Some(v[..n].to_string());
                    v = &v[n..];
                } else if v.starts_with(['+', '-']) {
                    // an unnamed zone, as Go writes one: "+03", "-0530"
                    let (off, len) = read_offset(v, false, false, false)
                        .or_else(|| read_offset(v, false, false, true))
                        .ok_or_else(|| fail(&shown, v, ""))?;
                    offset = Some(off);
                    v = &v[len..];
                } else {
                    return Err(fail(&shown, v, ""));
                }
            }
            Offset {
                z,
                colon,
                secs,
                hours_only,
            } => {
                if *z && v.starts_with('Z') {
                    offset = Some(0);
                    utc = true;
                    v = &v[1..];
                    continue;
                }
                let (off, len) = read_offset(v, *colon, *secs, *hours_only)
                    .ok_or_else(|| fail(&shown, v, ""))?;
                offset = Some(off);
                v = &v[len..];
            }
            Frac { n, trim, .. } => {
                if !(v.starts_with('.') || v.starts_with(',')) {
                    if *trim {
                        continue;
                    }
                    return Err(fail(&shown, v, ""));
                }
                let got = v[1..].bytes().take_while(u8::is_ascii_digit).count();
                if !*trim && got != *n {
                    return Err(fail(&shown, v, ""));
                }
                nsec = frac_nanos(&v[1..1 + got]);
                v = &v[1 + got..];
            }
        }
    }
    if !v.is_empty() {
        return Err(format!("parsing time {value:?}: extra text: {v:?}"));
    }
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    let date = match yday {
        Some(d) => NaiveDate::from_yo_opt(year, d),
        None => NaiveDate::from_ymd_opt(year, month, day),
    }
    .ok_or_else(|| format!("parsing time {value:?}: day out of range"))?;
    let wall = date
        .and_hms_nano_opt(hour, min, sec, nsec)
        .ok_or_else(|| format!("parsing time {value:?}: time out of range"))?;
    Ok(Parsed {
        wall,
        offset,
        utc,
        abbrev,
    })
}

/// The nanoseconds a fraction's digits (after the point) stand for.
fn frac_nanos(d: &str) -> u32 {
    let d = &d[..d.len().min(9)];
    format!("{d:0<9}").parse().unwrap_or(0)
}

/// Reads a signed offset (`+07:00`, `-0700`, `+07`...) from the front of `v`.
fn read_offset(v: &str, colon: bool, secs: bool, hours_only: bool) -> Option<(i32, usize)> {
    let sign = match v.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let mut i = 1;
    let field = |i: &mut usize, sep: bool| -> Option<i32> {
        if sep {
            if v.as_bytes().get(*i) != Some(&b':') {
                return None;
            }
            *i += 1;
        }
        let s = v.get(*i..*i + 2)?;
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *i += 2;
        s.parse().ok()
    };
    let h = field(&mut i, false)?;
    let m = if hours_only { 0 } else { field(&mut i, colon)? };
    let s = if secs { field(&mut i, colon)? } else { 0 };
    Some((sign * (h * 3600 + m * 60 + s), i))
}

/// How an element is written in a layout (for error messages).
fn layout_text(e: &Elem) -> String {
    use Elem::*;
    match e {
        Lit(s) => s.clone(),
        LongMonth => "January".into(),
        Month => "Jan".into(),
        NumMonth => "1".into(),
        ZeroMonth => "01".into(),
        LongWeekDay => "Monday".into(),
        WeekDay => "Mon".into(),
        Day => "2".into(),
        UnderDay => "_2".into(),
        ZeroDay => "02".into(),
        UnderYearDay => "__2".into(),
        ZeroYearDay => "002".into(),
        Hour => "15".into(),
        Hour12 => "3".into(),
        ZeroHour12 => "03".into(),
        Minute => "4".into(),
        ZeroMinute => "04".into(),
        Second => "5".into(),
        ZeroSecond => "05".into(),
        LongYear => "2006".into(),
        Year => "06".into(),
        PM => "PM".into(),
        Pm => "pm".into(),
        TzName => "MST".into(),
        Offset {
            z,
            colon,
            secs,
            hours_only,
        } => {
            let sep = if *colon { ":" } else { "" };
            let mut s = format!("{}07", if *z { "Z" } else { "-" });
            if !hours_only {
                s = format!("{s}{sep}00");
            }
            if *secs {
                s = format!("{s}{sep}00");
            }
            s
        }
        Frac { sep, n, trim } => format!("{sep}{}", if *trim { "9" } else { "0" }.repeat(*n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn formats_as_go_does() {
        let t = wall("2024-03-05 07:08:09.120000");
        assert_eq!(
            format("2006-01-02T15:04:05Z07:00", &t, 0, "UTC"),
            "2024-03-05T07:08:09Z"
        );
        assert_eq!(
            format("2006-01-02T15:04:05.999999999Z07:00", &t, 3600, "CET"),
            "2024-03-05T07:08:09.12+01:00"
        );
        assert_eq!(
            format("Jan _2 15:04:05.000", &t, 0, "UTC"),
            "Mar  5 07:08:09.120"
        );
        assert_eq!(
            format("Mon, 02 Jan 2006 15:04:05 MST", &t, -18000, "EST"),
            "Tue, 05 Mar 2024 07:08:09 EST"
        );
        assert_eq!(
            format("3:04PM -0700 MST", &t, 19800, ""),
            "7:08AM +0530 +0530"
        );
        assert_eq!(
            format("Monday 002 __2 06", &t, 0, "UTC"),
            "Tuesday 065  65 24"
        );
        assert_eq!(format("100%", &t, 0, "UTC"), "300%");
    }

    #[test]
    fn parses_as_go_does() {
        let p = parse("2006-01-02T15:04:05Z07:00", "2024-03-05T07:08:09Z").unwrap();
        assert_eq!(
            (p.wall, p.offset, p.utc),
            (wall("2024-03-05 07:08:09"), Some(0), true)
        );
        let p = parse("2006-01-02T15:04:05Z07:00", "2024-03-05T09:08:09.5+02:00").unwrap();
        assert_eq!(
            (p.wall, p.offset),
            (wall("2024-03-05 09:08:09.5"), Some(7200))
        );
        let p = parse("2006-01-02 15:04:05 MST", "2024-12-29 14:30:00 EST").unwrap();
        assert_eq!(p.abbrev.as_deref(), Some("EST"));
        let p = parse("15:04:05", "14:30:00").unwrap();
        assert_eq!(p.wall, wall("0000-01-01 14:30:00"));
        let p = parse("Jan _2 3:04PM 06", "mar  5 7:08pm 99");
        assert!(p.is_err(), "PM is upper case in the layout");
        let p = parse("Jan _2 3:04PM 06", "mar  5 7:08PM 99").unwrap();
        assert_eq!(p.wall, wall("1999-03-05 19:08:00"));
        assert!(parse("2006-01-02", "05/03/2024")
            .unwrap_err()
            .contains(r#"cannot parse "05/03/2024" as "2006""#));
        assert!(parse("2006-01-02", "2024-02-30")
            .unwrap_err()
            .contains("day out of range"));
        assert!(parse("2006-01-02", "2024-02-01x")
            .unwrap_err()
            .contains("extra text"));
    }
}
