//! The `time` module, as Wippy documents it (after Go's `time` package): `now`, `unix`,
//! `date`, `parse`, `parse_duration`, `since`, `until`, `sleep`, `after`, `timer`,
//! `ticker`, `load_location`; Duration constants (`time.SECOND`...), layout constants
//! (`time.RFC3339`...), month and weekday numbers, the `UTC` and `LOCAL` locations; Time
//! objects with Go's methods (`t:sub(u)` is a Duration, `t:add(d)` a Time,
//! `t:format(layout)` with Go layouts such as `"2006-01-02 15:04"`).
//!
//! Durations are [`LuaDuration`] objects (signed nanoseconds); every function that takes
//! one also takes milliseconds and strings such as `"500ms"`, as before.

use super::channel::{self, Chan};
use crate::duration::{self, LuaDuration};
use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime};
use chrono::{Offset, TimeZone, Timelike, Utc};
use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, UserDataRef};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

fn duration_arg(v: &mlua::Value, func: &str) -> mlua::Result<Duration> {
    duration::from_lua(v).map_err(|e| mlua::Error::runtime(format!("{func}: {e}")))
}

/// Where a time is shown: UTC or the machine's local zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loc {
    /// Coordinated Universal Time.
    Utc,
    /// The machine's zone.
    Local,
}

/// A location object (`time.UTC`, `time.LOCAL`, `time.load_location(name)`).
#[derive(Clone, Copy)]
pub struct LuaLocation(Loc);

impl UserData for LuaLocation {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("string", |_, l, ()| Ok(loc_name(l.0)));
        m.add_meta_method(MetaMethod::ToString, |_, l, ()| Ok(loc_name(l.0)));
    }
}

fn loc_name(l: Loc) -> &'static str {
    match l {
        Loc::Utc => "UTC",
        Loc::Local => "Local",
    }
}

/// The local zone's offset at `secs` (Unix seconds). Asking the zone costs microseconds
/// (chrono consults the zone rules), which `time.now()` in a timing loop would pay on
/// every call; offsets only change on quarter-hour boundaries, so each thread keeps the
/// last quarter hour's answer.
fn local_offset(secs: i64) -> FixedOffset {
    thread_local! {
        static LAST: Cell<Option<(i64, FixedOffset)>> = const { Cell::new(None) };
    }
    let bucket = secs.div_euclid(900);
    LAST.with(|last| match last.get() {
        Some((b, off)) if b == bucket => off,
        _ => {
            let off = Local
                .timestamp_opt(secs, 0)
                .single()
                .map(|t| t.offset().fix())
                .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
            last.set(Some((bucket, off)));
            off
        }
    })
}

/// A point in time with its location.
#[derive(Clone, Copy)]
pub struct LuaTime {
    t: DateTime<FixedOffset>,
    loc: Loc,
}

impl LuaTime {
    /// Now, in the local zone (as Go's `time.Now()`).
    pub fn now() -> LuaTime {
        LuaTime::at(Utc::now(), Loc::Local)
    }

    fn at(t: DateTime<Utc>, loc: Loc) -> LuaTime {
        let t = match loc {
            Loc::Utc => t.fixed_offset(),
            Loc::Local => t.with_timezone(&local_offset(t.timestamp())),
        };
        LuaTime { t, loc }
    }

    fn utc(&self) -> DateTime<Utc> {
        self.t.with_timezone(&Utc)
    }

    fn nanos(&self) -> i128 {
        self.t.timestamp() as i128 * 1_000_000_000 + self.t.timestamp_subsec_nanos() as i128
    }

    fn from_nanos(n: i128, loc: Loc) -> mlua::Result<LuaTime> {
        let secs = n.div_euclid(1_000_000_000);
        let sub = n.rem_euclid(1_000_000_000) as u32;
        let t = i64::try_from(secs)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, sub))
            .ok_or_else(|| mlua::Error::runtime("time out of range"))?;
        Ok(LuaTime::at(t, loc))
    }

    fn zone_name(&self) -> String {
        match self.loc {
            Loc::Utc => "UTC".into(),
            Loc::Local => Local
                .timestamp_opt(self.t.timestamp(), 0)
                .single()
                .map(|t| t.format("%Z").to_string())
                .unwrap_or_else(|| self.t.format("%:z").to_string()),
        }
    }

    fn format(&self, layout: &str) -> String {
        let fmt = chrono_format(layout, Some(self.t.offset().local_minus_utc() == 0));
        let text = self.t.format(&fmt).to_string();
        // chrono's %Z of a fixed offset is the offset; Go prints the zone's name
        text.replace('\u{1}', &self.zone_name())
    }
}

/// Go's reference layouts under Wippy's names.
pub const LAYOUTS: &[(&str, &str)] = &[
    ("RFC3339", "2006-01-02T15:04:05Z07:00"),
    ("RFC3339NANO", "2006-01-02T15:04:05.999999999Z07:00"),
    ("RFC822", "02 Jan 06 15:04 MST"),
    ("RFC822Z", "02 Jan 06 15:04 -0700"),
    ("RFC850", "Monday, 02-Jan-06 15:04:05 MST"),
    ("RFC1123", "Mon, 02 Jan 2006 15:04:05 MST"),
    ("RFC1123Z", "Mon, 02 Jan 2006 15:04:05 -0700"),
    ("ANSIC", "Mon Jan _2 15:04:05 2006"),
    ("UNIX_DATE", "Mon Jan _2 15:04:05 MST 2006"),
    ("KITCHEN", "3:04PM"),
    ("STAMP", "Jan _2 15:04:05"),
    ("STAMP_MILLI", "Jan _2 15:04:05.000"),
    ("DATE_TIME", "2006-01-02 15:04:05"),
    ("DATE_ONLY", "2006-01-02"),
    ("TIME_ONLY", "15:04:05"),
];

/// Go layout elements and their chrono equivalents, longest first where they share a
/// prefix. `\u{1}` stands for the zone name (filled in after formatting).
const ELEMENTS: &[(&str, &str)] = &[
    ("January", "%B"),
    ("Jan", "%b"),
    ("Monday", "%A"),
    ("Mon", "%a"),
    ("MST", "\u{1}"),
    ("2006", "%Y"),
    ("002", "%j"),
    ("01", "%m"),
    ("02", "%d"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("15", "%H"),
    ("_2", "%e"),
    ("-07:00", "%:z"),
    ("-0700", "%z"),
    ("-07", "%#z"),
    ("PM", "%p"),
    ("pm", "%P"),
    (".000000000", "%.9f"),
    (".000000", "%.6f"),
    (".000", "%.3f"),
    (".999999999", "%.f"),
    (".999999", "%.f"),
    (".999", "%.f"),
    ("1", "%-m"),
    ("2", "%-d"),
    ("3", "%-I"),
    ("4", "%-M"),
    ("5", "%-S"),
];

/// A chrono format string for a Go layout. `utc`: for formatting, whether the time is
/// UTC (Go's `Z07:00` prints `Z` then); None when parsing.
fn chrono_format(layout: &str, utc: Option<bool>) -> String {
    let mut out = String::new();
    let mut rest = layout;
    'outer: while let Some(c) = rest.chars().next() {
        for z in ["Z07:00", "Z0700"] {
            if let Some(r) = rest.strip_prefix(z) {
                out.push_str(match (utc, z) {
                    (Some(true), _) => "Z",
                    (_, "Z07:00") => "%:z",
                    _ => "%z",
                });
                rest = r;
                continue 'outer;
            }
        }
        for (go, ch) in ELEMENTS {
            if let Some(r) = rest.strip_prefix(go) {
                out.push_str(ch);
                rest = r;
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Parses `value` with a Go layout (Wippy's `time.parse`). A layout without a zone gives
/// UTC, without a date gives year 0 (as Go).
fn parse_with_layout(layout: &str, value: &str) -> Result<LuaTime, String> {
    let bad = |e: chrono::ParseError| format!("cannot parse {value:?} as {layout:?}: {e}");
    let has_zone = ["Z07", "-07", "MST"].iter().any(|z| layout.contains(z));
    if layout.contains("MST") && !layout.contains("-07") && !layout.contains("Z07") {
        // a zone name alone: read it as UTC when it says UTC/GMT, else refuse
        let zone_at = layout.find("MST").unwrap_or(0);
        let prefix = chrono_format(&layout[..zone_at], None);
        let (dt, rest) = NaiveDateTime::parse_and_remainder(value, &prefix).map_err(bad)?;
        let name = rest.trim_start();
        let name_end = name
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(name.len());
        if !matches!(&name[..name_end], "UTC" | "GMT" | "Z") {
            return Err(format!(
                "cannot parse {value:?} as {layout:?}: only the zone names UTC and GMT are known"
            ));
        }
        return Ok(LuaTime::at(dt.and_utc(), Loc::Utc));
    }
    let fmt = chrono_format(layout, None);
    if has_zone {
        // Go's Z07:00 reads "Z" as UTC
        let v = if layout.contains("Z07") && value.ends_with('Z') {
            format!("{}+00:00", &value[..value.len() - 1])
        } else {
            value.to_string()
        };
        let t = DateTime::parse_from_str(&v, &fmt).map_err(bad)?;
        let loc = if t.offset().local_minus_utc() == 0 {
            Loc::Utc
        } else {
            Loc::Local
        };
        return Ok(LuaTime { t, loc });
    }
    match NaiveDateTime::parse_from_str(value, &fmt) {
        Ok(dt) => Ok(LuaTime::at(dt.and_utc(), Loc::Utc)),
        Err(e) => {
            if let Ok(d) = NaiveDate::parse_from_str(value, &fmt) {
                return Ok(LuaTime::at(d.and_time(NaiveTime::MIN).and_utc(), Loc::Utc));
            }
            if let Ok(t) = NaiveTime::parse_from_str(value, &fmt) {
                let d = NaiveDate::from_ymd_opt(0, 1, 1).expect("valid date");
                return Ok(LuaTime::at(d.and_time(t).and_utc(), Loc::Utc));
            }
            Err(bad(e))
        }
    }
}

fn location_arg(v: &mlua::Value) -> mlua::Result<Loc> {
    match v {
        mlua::Value::Nil => Ok(Loc::Local),
        mlua::Value::UserData(ud) => Ok(ud.borrow::<LuaLocation>()?.0),
        mlua::Value::String(s) => match &*s.to_string_lossy() {
            "UTC" | "utc" => Ok(Loc::Utc),
            "Local" | "local" => Ok(Loc::Local),
            other => Err(mlua::Error::runtime(format!(
                "unknown location {other:?} (UTC and Local are known)"
            ))),
        },
        other => Err(mlua::Error::runtime(format!(
            "expected a location, got {}",
            other.type_name()
        ))),
    }
}

impl UserData for LuaTime {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("unix", |_, t, ()| Ok(t.t.timestamp()));
        m.add_method("unix_milli", |_, t, ()| Ok((t.nanos() / 1_000_000) as i64));
        m.add_method("unix_micro", |_, t, ()| Ok((t.nanos() / 1_000) as i64));
        m.add_method("unix_nano", |_, t, ()| Ok(t.nanos() as i64));
        m.add_method("sub", |_, t, u: UserDataRef<LuaTime>| {
            Ok(LuaDuration((t.nanos() - u.nanos()) as i64))
        });
        m.add_method("add", |_, t, d: mlua::Value| {
            let n = match &d {
                mlua::Value::UserData(ud) => ud.borrow::<LuaDuration>()?.0 as i128,
                other => duration_arg(other, "t:add")?.as_nanos() as i128,
            };
            LuaTime::from_nanos(t.nanos() + n, t.loc)
        });
        m.add_method("add_date", |_, t, (y, mo, d): (i32, i32, i64)| {
            let utc = t.t.naive_local();
            let total_months = utc.year() * 12 + utc.month0() as i32 + y * 12 + mo;
            let (ny, nm0) = (
                total_months.div_euclid(12),
                total_months.rem_euclid(12) as u32,
            );
            // overflowing days roll into the next month, as in Go
            let first = NaiveDate::from_ymd_opt(ny, nm0 + 1, 1)
                .ok_or_else(|| mlua::Error::runtime("t:add_date: date out of range"))?;
            let date = first + chrono::Duration::days(utc.day() as i64 - 1 + d);
            let naive = date.and_time(utc.time());
            let off = *t.t.offset();
            let shifted = off
                .from_local_datetime(&naive)
                .single()
                .ok_or_else(|| mlua::Error::runtime("t:add_date: date out of range"))?;
            Ok(LuaTime::at(shifted.with_timezone(&Utc), t.loc))
        });
        m.add_method("before", |_, t, u: UserDataRef<LuaTime>| Ok(t.t < u.t));
        m.add_method("after", |_, t, u: UserDataRef<LuaTime>| Ok(t.t > u.t));
        m.add_method("equal", |_, t, u: UserDataRef<LuaTime>| Ok(t.t == u.t));
        m.add_method("is_zero", |_, t, ()| Ok(t.t.timestamp() == -62_135_596_800));
        m.add_method("format", |_, t, layout: Option<String>| {
            Ok(t.format(layout.as_deref().unwrap_or(LAYOUTS[1].1)))
        });
        m.add_method("year", |_, t, ()| Ok(t.t.year()));
        m.add_method("month", |_, t, ()| Ok(t.t.month()));
        m.add_method("day", |_, t, ()| Ok(t.t.day()));
        m.add_method("hour", |_, t, ()| Ok(t.t.hour()));
        m.add_method("minute", |_, t, ()| Ok(t.t.minute()));
        m.add_method("second", |_, t, ()| Ok(t.t.second()));
        m.add_method(
            "nanosecond",
            |_, t, ()| Ok(t.t.nanosecond() % 1_000_000_000),
        );
        m.add_method("weekday", |_, t, ()| {
            Ok(t.t.weekday().num_days_from_sunday())
        });
        m.add_method("year_day", |_, t, ()| Ok(t.t.ordinal()));
        m.add_method("date", |_, t, ()| Ok((t.t.year(), t.t.month(), t.t.day())));
        m.add_method("clock", |_, t, ()| {
            Ok((t.t.hour(), t.t.minute(), t.t.second()))
        });
        m.add_method("utc", |_, t, ()| Ok(LuaTime::at(t.utc(), Loc::Utc)));
        m.add_method("local_time", |_, t, ()| {
            Ok(LuaTime::at(t.utc(), Loc::Local))
        });
        m.add_method("in_location", |_, t, l: mlua::Value| {
            Ok(LuaTime::at(t.utc(), location_arg(&l)?))
        });
        m.add_method("location", |_, t, ()| Ok(LuaLocation(t.loc)));
        m.add_method("truncate", |_, t, d: mlua::Value| {
            let step = duration_arg(&d, "t:truncate")?.as_nanos() as i128;
            if step == 0 {
                return Ok(*t);
            }
            LuaTime::from_nanos(t.nanos() - t.nanos().rem_euclid(step), t.loc)
        });
        m.add_method("round", |_, t, d: mlua::Value| {
            let step = duration_arg(&d, "t:round")?.as_nanos() as i128;
            if step == 0 {
                return Ok(*t);
            }
            let r = t.nanos().rem_euclid(step);
            let down = t.nanos() - r;
            LuaTime::from_nanos(if r * 2 >= step { down + step } else { down }, t.loc)
        });
        m.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(t.format("2006-01-02 15:04:05.999999999 -0700 MST"))
        });
        m.add_meta_function(
            MetaMethod::Eq,
            |_, (a, b): (UserDataRef<LuaTime>, UserDataRef<LuaTime>)| Ok(a.t == b.t),
        );
        m.add_meta_function(
            MetaMethod::Lt,
            |_, (a, b): (UserDataRef<LuaTime>, UserDataRef<LuaTime>)| Ok(a.t < b.t),
        );
        m.add_meta_function(
            MetaMethod::Le,
            |_, (a, b): (UserDataRef<LuaTime>, UserDataRef<LuaTime>)| Ok(a.t <= b.t),
        );
    }
}

/// A ticker: `t:response()` (or `t:channel()`) receives a time every period; `t:stop()`
/// ends it.
pub struct LuaTicker {
    chan: Chan,
    stopped: Rc<Cell<bool>>,
}

impl UserData for LuaTicker {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // en/lua/core/time.md: `response()`, and `channel()` its alias
        for name in ["response", "channel"] {
            m.add_method(name, |lua, t, ()| channel::to_userdata(lua, t.chan.clone()));
        }
        m.add_method("stop", |_, t, ()| {
            t.stopped.set(true);
            Ok(true)
        });
    }
}

impl Drop for LuaTicker {
    fn drop(&mut self) {
        self.stopped.set(true);
    }
}

/// A one-shot timer: `t:response()` (or `t:channel()`) receives the time when it fires; `t:stop()` cancels
/// it (true if it had not fired); `t:reset(d)` starts it again with a new duration.
pub struct LuaTimer {
    chan: Chan,
    /// Bumped by stop and reset: a sleeping task whose generation is old does nothing.
    generation: Rc<Cell<u64>>,
    fired: Rc<Cell<bool>>,
}

impl LuaTimer {
    fn arm(&self, lua: &Lua, d: Duration) {
        let gen = self.generation.get() + 1;
        self.generation.set(gen);
        self.fired.set(false);
        let (generation, fired) = (self.generation.clone(), self.fired.clone());
        let weak = self.chan.downgrade();
        let lua = lua.clone();
        super::tasks::spawn(async move {
            tokio::time::sleep(d).await;
            if generation.get() != gen {
                return;
            }
            fired.set(true);
            if let (Some(chan), Ok(ud)) = (weak.upgrade(), lua.create_userdata(LuaTime::now())) {
                chan.push(mlua::Value::UserData(ud));
            }
        });
    }
}

impl UserData for LuaTimer {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // en/lua/core/time.md: `response()`, and `channel()` its alias
        for name in ["response", "channel"] {
            m.add_method(name, |lua, t, ()| channel::to_userdata(lua, t.chan.clone()));
        }
        m.add_method("stop", |_, t, ()| {
            let was_pending = !t.fired.get();
            t.generation.set(t.generation.get() + 1);
            t.fired.set(true);
            Ok(was_pending)
        });
        m.add_method("reset", |lua, t, d: mlua::Value| {
            let was_pending = !t.fired.get();
            t.arm(lua, duration_arg(&d, "timer:reset")?);
            Ok(was_pending)
        });
    }
}

impl Drop for LuaTimer {
    fn drop(&mut self) {
        self.generation.set(self.generation.get() + 1);
    }
}

fn nil_err(lua: &Lua, kind: &'static str, message: String) -> mlua::Result<MultiValue> {
    super::errors::LuaError::new(kind, message).into_nil_err(lua)
}

/// `time.date(year, month, day, hour, min, sec, nsec, loc)`: the clock fields may be
/// left out.
type DateArgs = (
    i32,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    mlua::Value,
);

/// The `time` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (name, ns) in [
        ("NANOSECOND", 1i64),
        ("MICROSECOND", 1_000),
        ("MILLISECOND", 1_000_000),
        ("SECOND", 1_000_000_000),
        ("MINUTE", 60_000_000_000),
        ("HOUR", 3_600_000_000_000),
    ] {
        t.set(name, LuaDuration(ns))?;
    }
    for (name, layout) in LAYOUTS {
        t.set(*name, *layout)?;
    }
    for (i, name) in [
        "JANUARY",
        "FEBRUARY",
        "MARCH",
        "APRIL",
        "MAY",
        "JUNE",
        "JULY",
        "AUGUST",
        "SEPTEMBER",
        "OCTOBER",
        "NOVEMBER",
        "DECEMBER",
    ]
    .iter()
    .enumerate()
    {
        t.set(*name, i + 1)?;
    }
    for (i, name) in [
        "SUNDAY",
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
    ]
    .iter()
    .enumerate()
    {
        t.set(*name, i)?;
    }
    t.set("UTC", LuaLocation(Loc::Utc))?;
    t.set("LOCAL", LuaLocation(Loc::Local))?;
    t.set(
        "load_location",
        lua.create_function(|lua, name: String| {
            let named = mlua::Value::String(lua.create_string(&name)?);
            match location_arg(&named) {
                Ok(l) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                    lua.create_userdata(LuaLocation(l))?,
                )])),
                Err(e) => nil_err(lua, "NOT_FOUND", format!("time.load_location: {e}")),
            }
        })?,
    )?;
    t.set(
        "sleep",
        lua.create_async_function(|_, d: mlua::Value| {
            let d = duration_arg(&d, "time.sleep");
            async move {
                tokio::time::sleep(d?).await;
                Ok(true)
            }
        })?,
    )?;
    t.set("now", lua.create_function(|_, ()| Ok(LuaTime::now()))?)?;
    t.set(
        "unix",
        lua.create_function(|_, (sec, nsec): (i64, Option<i64>)| {
            LuaTime::from_nanos(
                sec as i128 * 1_000_000_000 + nsec.unwrap_or(0) as i128,
                Loc::Local,
            )
        })?,
    )?;
    t.set(
        "date",
        lua.create_function(|_, (y, mo, d, h, mi, s, ns, loc): DateArgs| {
            let loc = location_arg(&loc)?;
            // out-of-range fields roll over, as in Go's time.Date
            let base = NaiveDate::from_ymd_opt(y, 1, 1)
                .ok_or_else(|| mlua::Error::runtime("time.date: year out of range"))?;
            let months = mo - 1;
            let year = y as i64 + months.div_euclid(12);
            let first = NaiveDate::from_ymd_opt(year as i32, months.rem_euclid(12) as u32 + 1, 1)
                .unwrap_or(base);
            let naive = first.and_time(NaiveTime::MIN)
                + chrono::Duration::days(d - 1)
                + chrono::Duration::hours(h.unwrap_or(0))
                + chrono::Duration::minutes(mi.unwrap_or(0))
                + chrono::Duration::seconds(s.unwrap_or(0))
                + chrono::Duration::nanoseconds(ns.unwrap_or(0));
            let utc = match loc {
                Loc::Utc => naive.and_utc(),
                Loc::Local => Local
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|| naive.and_utc()),
            };
            Ok(LuaTime::at(utc, loc))
        })?,
    )?;
    t.set(
        "parse",
        lua.create_function(|lua, (layout, value): (String, String)| {
            match parse_with_layout(&layout, &value) {
                Ok(t) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                    lua.create_userdata(t)?,
                )])),
                Err(e) => nil_err(lua, "INVALID", format!("time.parse: {e}")),
            }
        })?,
    )?;
    t.set(
        "parse_duration",
        lua.create_function(|lua, s: String| match duration::go_parse(&s) {
            Ok(n) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(LuaDuration(n))?,
            )])),
            Err(e) => nil_err(lua, "INVALID", format!("time.parse_duration: {e}")),
        })?,
    )?;
    t.set(
        "since",
        lua.create_function(|_, u: UserDataRef<LuaTime>| {
            Ok(LuaDuration((LuaTime::now().nanos() - u.nanos()) as i64))
        })?,
    )?;
    t.set(
        "until",
        lua.create_function(|_, u: UserDataRef<LuaTime>| {
            Ok(LuaDuration((u.nanos() - LuaTime::now().nanos()) as i64))
        })?,
    )?;
    t.set(
        "after",
        lua.create_function(|lua, d: mlua::Value| {
            let d = duration_arg(&d, "time.after")?;
            let chan = Chan::new(1);
            let weak = chan.downgrade();
            let lua2 = lua.clone();
            super::tasks::spawn(async move {
                tokio::time::sleep(d).await;
                if let Ok(ud) = lua2.create_userdata(LuaTime::now()) {
                    if let Some(chan) = weak.upgrade() {
                        chan.push(mlua::Value::UserData(ud));
                    }
                }
            });
            channel::to_userdata(lua, chan)
        })?,
    )?;
    t.set(
        "timer",
        lua.create_function(|lua, d: mlua::Value| {
            let d = duration_arg(&d, "time.timer")?;
            let timer = LuaTimer {
                chan: Chan::new(1),
                generation: Rc::new(Cell::new(0)),
                fired: Rc::new(Cell::new(false)),
            };
            timer.arm(lua, d);
            Ok(timer)
        })?,
    )?;
    t.set(
        "ticker",
        lua.create_function(|lua, d: mlua::Value| {
            let d = duration_arg(&d, "time.ticker")?;
            if d.is_zero() {
                return Err(mlua::Error::runtime(
                    "time.ticker: the period must be positive",
                ));
            }
            let chan = Chan::new(1);
            let weak = chan.downgrade();
            let stopped = Rc::new(Cell::new(false));
            let stop2 = stopped.clone();
            let lua2 = lua.clone();
            super::tasks::spawn(async move {
                let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    iv.tick().await;
                    if stop2.get() {
                        break;
                    }
                    let Some(chan) = weak.upgrade() else { break };
                    if chan.is_closed() {
                        break;
                    }
                    if chan.is_empty() {
                        if let Ok(ud) = lua2.create_userdata(LuaTime::now()) {
                            chan.push(mlua::Value::UserData(ud));
                        }
                    }
                }
            });
            Ok(LuaTicker { chan, stopped })
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> LuaTime {
        LuaTime::at(
            DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc),
            Loc::Utc,
        )
    }

    #[test]
    fn go_layouts_format() {
        let t = utc("2024-03-05T07:08:09.123456789Z");
        assert_eq!(t.format("2006-01-02 15:04:05"), "2024-03-05 07:08:09");
        assert_eq!(t.format(LAYOUTS[0].1), "2024-03-05T07:08:09Z");
        assert_eq!(t.format(LAYOUTS[1].1), "2024-03-05T07:08:09.123456789Z");
        assert_eq!(t.format("Jan _2, 2006 at 3:04PM"), "Mar  5, 2024 at 7:08AM");
        assert_eq!(
            t.format("Monday 02/01/06 .000 MST"),
            "Tuesday 05/03/24 .123 UTC"
        );
        assert_eq!(t.format("x%"), "x%");
        assert_eq!(t.format("100%"), "300%"); // "1" is the month, as in Go
    }

    #[test]
    fn go_layouts_parse() {
        let t = parse_with_layout(LAYOUTS[0].1, "2024-03-05T07:08:09Z").unwrap();
        assert_eq!(t.t.timestamp(), 1_709_622_489);
        let t = parse_with_layout(LAYOUTS[0].1, "2024-03-05T09:08:09+02:00").unwrap();
        assert_eq!(t.t.timestamp(), 1_709_622_489);
        let t = parse_with_layout("2006-01-02 15:04", "2024-03-05 07:08").unwrap();
        assert_eq!(t.t.timestamp(), 1_709_622_480);
        let t = parse_with_layout("2006-01-02", "2024-03-05").unwrap();
        assert_eq!(t.t.timestamp(), 1_709_596_800);
        let t = parse_with_layout(
            "Mon, 02 Jan 2006 15:04:05 MST",
            "Tue, 05 Mar 2024 07:08:09 GMT",
        )
        .unwrap();
        assert_eq!(t.t.timestamp(), 1_709_622_489);
        assert!(parse_with_layout("2006-01-02", "05/03/2024").is_err());
    }
}
