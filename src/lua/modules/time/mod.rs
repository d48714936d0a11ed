//! The `time` module, as Wippy documents it (after Go's `time` package): `now`, `unix`,
//! `date`, `parse`, `parse_duration`, `since`, `until`, `sleep`, `after`, `timer`,
//! `ticker`, `load_location`; Duration constants (`time.SECOND`...), layout constants
//! (`time.RFC3339`...), month and weekday numbers, the `UTC` and `LOCAL` locations; Time
//! objects with Go's methods (`t:sub(u)` is a Duration, `t:add(d)` a Time,
//! `t:format(layout)` with Go layouts such as `"2006-01-02 15:04"`).
//!
//! Durations are [`LuaDuration`] objects (signed nanoseconds); every function that takes
//! one also takes milliseconds and strings such as `"500ms"`, as before.

mod layout;
mod zone;

use crate::duration::{self, LuaDuration};
use crate::lua::channel::{self, Chan};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Timelike, Utc};
use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, UserDataRef};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
pub use zone::Loc;

/// A duration argument of the `time` module, as Wippy's runtime reads one: a number of
/// nanoseconds, a Go duration string (`"1h30m"`, `"500ms"`), or a Duration. Signed.
fn nanos_arg(v: &mlua::Value) -> Result<i64, String> {
    match v {
        mlua::Value::Integer(i) => Ok(*i),
        mlua::Value::Number(n) if n.is_finite() => Ok(*n as i64),
        mlua::Value::String(s) => duration::go_parse(&s.to_string_lossy()),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaDuration>() {
            Ok(d) => Ok(d.0),
            Err(_) => Err("duration must be number or string".into()),
        },
        _ => Err("duration must be number or string".into()),
    }
}

/// A duration to wait for (sleep, after, timer, ticker): at least zero.
fn wait_arg(v: &mlua::Value, func: &str) -> Result<Duration, String> {
    nanos_arg(v)
        .map(|n| Duration::from_nanos(n.max(0) as u64))
        .map_err(|e| format!("{func}: {e}"))
}

/// A location object (`time.utc`, `time.localtz`, `time.load_location(name)`,
/// `time.fixed_zone(name, offset)`).
#[derive(Clone)]
pub struct LuaLocation(Loc);

impl UserData for LuaLocation {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("string", |_, l, ()| Ok(l.0.name()));
        m.add_meta_method(MetaMethod::ToString, |_, l, ()| Ok(l.0.name()));
    }
}

/// A point in time with its location.
#[derive(Clone)]
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
        let t = t.with_timezone(&loc.offset_at(&t));
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

    fn format(&self, layout: &str) -> String {
        layout::format(
            layout,
            &self.t.naive_local(),
            self.t.offset().local_minus_utc(),
            &self.loc.abbreviation(&self.utc()),
        )
    }
}

/// Go's reference layouts under Wippy's names (runtime/lua/modules/time).
pub const LAYOUTS: &[(&str, &str)] = &[
    ("RFC3339", "2006-01-02T15:04:05Z07:00"),
    ("RFC3339NANO", "2006-01-02T15:04:05.999999999Z07:00"),
    ("RFC822", "02 Jan 06 15:04 MST"),
    ("RFC822Z", "02 Jan 06 15:04 -0700"),
    ("RFC850", "Monday, 02-Jan-06 15:04:05 MST"),
    ("RFC1123", "Mon, 02 Jan 2006 15:04:05 MST"),
    ("RFC1123Z", "Mon, 02 Jan 2006 15:04:05 -0700"),
    ("KITCHEN", "3:04PM"),
    ("STAMP", "Jan _2 15:04:05"),
    ("STAMP_MILLI", "Jan _2 15:04:05.000"),
    ("STAMP_MICRO", "Jan _2 15:04:05.000000"),
    ("STAMP_NANO", "Jan _2 15:04:05.000000000"),
    ("DATE_TIME", "2006-01-02 15:04:05"),
    ("DATE_ONLY", "2006-01-02"),
    ("TIME_ONLY", "15:04:05"),
];

/// Parses `value` with a Go layout in `loc` (Go's `time.ParseInLocation`, which Wippy's
/// `time.parse` is): a value without a zone is a wall-clock time in `loc`; with an offset,
/// the time is in `loc` if `loc` has that offset then, else in a zone of that offset; with
/// an abbreviation `loc` uses, in `loc`; with `UTC`, in UTC; with another abbreviation, in
/// a zone of that name and offset zero (as Go does).
fn parse_in(layout_text: &str, value: &str, loc: &Loc) -> Result<LuaTime, String> {
    let p = layout::parse(layout_text, value)?;
    if p.utc {
        return Ok(LuaTime::at(p.wall.and_utc(), Loc::Utc));
    }
    if let Some(off) = p.offset {
        let instant = (p.wall - chrono::Duration::seconds(off as i64)).and_utc();
        let same = loc.offset_at(&instant).local_minus_utc() == off
            && p.abbrev
                .as_deref()
                .is_none_or(|a| a == loc.abbreviation(&instant));
        let at = if same {
            loc.clone()
        } else if off == 0 && *loc == Loc::Utc {
            Loc::Utc
        } else {
            Loc::Fixed(p.abbrev.clone().unwrap_or_default().into(), off)
        };
        return Ok(LuaTime::at(instant, at));
    }
    if let Some(abbrev) = p.abbrev {
        if abbrev == "UTC" {
            return Ok(LuaTime::at(p.wall.and_utc(), Loc::Utc));
        }
        if let Some(off) = loc.offset_named(&abbrev, &p.wall) {
            let instant = (p.wall - chrono::Duration::seconds(off as i64)).and_utc();
            return Ok(LuaTime::at(instant, loc.clone()));
        }
        return Ok(LuaTime::at(p.wall.and_utc(), Loc::Fixed(abbrev.into(), 0)));
    }
    Ok(LuaTime::at(loc.instant_of(&p.wall), loc.clone()))
}

/// A location argument: a location object, or the names "UTC" / "Local" / an IANA name.
fn location_arg(v: &mlua::Value) -> mlua::Result<Loc> {
    match v {
        mlua::Value::Nil => Ok(Loc::Local),
        mlua::Value::UserData(ud) => match ud.borrow::<LuaLocation>() {
            Ok(l) => Ok(l.0.clone()),
            Err(_) => Err(mlua::Error::runtime("location expected")),
        },
        mlua::Value::String(s) => {
            let name = s.to_string_lossy();
            Loc::by_name(&name)
                .or_else(|| name.eq_ignore_ascii_case("local").then_some(Loc::Local))
                .or_else(|| name.eq_ignore_ascii_case("utc").then_some(Loc::Utc))
                .ok_or_else(|| mlua::Error::runtime(format!("unknown time zone {name}")))
        }
        other => Err(mlua::Error::runtime(format!(
            "location expected, got {}",
            other.type_name()
        ))),
    }
}

/// A Duration argument where Wippy's runtime takes only a Duration (`t:round`,
/// `t:truncate`).
fn duration_only(v: &mlua::Value, func: &str) -> mlua::Result<i64> {
    match v {
        mlua::Value::UserData(ud) => match ud.borrow::<LuaDuration>() {
            Ok(d) => Ok(d.0),
            Err(_) => Err(mlua::Error::runtime(format!("{func}: duration expected"))),
        },
        other => Err(mlua::Error::runtime(format!(
            "{func}: duration expected, got {} (use time.parse_duration)",
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
            let n = nanos_arg(&d).map_err(|e| mlua::Error::runtime(format!("t:add: {e}")))?;
            LuaTime::from_nanos(t.nanos() + n as i128, t.loc.clone())
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
            // the wall-clock date in the time's own location, as Go's AddDate
            Ok(LuaTime::at(t.loc.instant_of(&naive), t.loc.clone()))
        });
        m.add_method("before", |_, t, u: UserDataRef<LuaTime>| Ok(t.t < u.t));
        m.add_method("after", |_, t, u: UserDataRef<LuaTime>| Ok(t.t > u.t));
        m.add_method("equal", |_, t, u: UserDataRef<LuaTime>| Ok(t.t == u.t));
        m.add_method("is_zero", |_, t, ()| Ok(t.t.timestamp() == -62_135_596_800));
        m.add_method("format", |_, t, layout: Option<String>| {
            Ok(t.format(layout.as_deref().unwrap_or(LAYOUTS[1].1)))
        });
        m.add_method("format_rfc3339", |_, t, ()| Ok(t.format(LAYOUTS[0].1)));
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
        // en/lua/core/time.md: `in_local()` (warden's older name: `local_time`)
        for name in ["in_local", "local_time"] {
            m.add_method(name, |_, t, ()| Ok(LuaTime::at(t.utc(), Loc::Local)));
        }
        m.add_method("in_location", |_, t, l: mlua::Value| {
            Ok(LuaTime::at(t.utc(), location_arg(&l)?))
        });
        m.add_method("location", |_, t, ()| Ok(LuaLocation(t.loc.clone())));
        m.add_method("truncate", |_, t, d: mlua::Value| {
            let step = duration_only(&d, "t:truncate")? as i128;
            if step <= 0 {
                return Ok(t.clone());
            }
            LuaTime::from_nanos(t.nanos() - t.nanos().rem_euclid(step), t.loc.clone())
        });
        m.add_method("round", |_, t, d: mlua::Value| {
            let step = duration_only(&d, "t:round")? as i128;
            if step <= 0 {
                return Ok(t.clone());
            }
            let r = t.nanos().rem_euclid(step);
            let down = t.nanos() - r;
            LuaTime::from_nanos(
                if r * 2 >= step { down + step } else { down },
                t.loc.clone(),
            )
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
        crate::lua::tasks::spawn(async move {
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
            let d = match nanos_arg(&d) {
                Ok(n) if n > 0 => Duration::from_nanos(n as u64),
                Ok(_) => return Err(mlua::Error::runtime("timer:reset: duration must be > 0")),
                Err(e) => return Err(mlua::Error::runtime(format!("timer:reset: {e}"))),
            };
            t.arm(lua, d);
            Ok(was_pending)
        });
    }
}

impl Drop for LuaTimer {
    fn drop(&mut self) {
        self.generation.set(self.generation.get() + 1);
    }
}

/// A duration for a timer, a ticker or `after`: more than zero (runtime/lua/modules/time:
/// "duration must be > 0").
fn positive(v: &mlua::Value, func: &str) -> Result<Duration, String> {
    match nanos_arg(v) {
        Ok(n) if n > 0 => Ok(Duration::from_nanos(n as u64)),
        Ok(_) => Err(format!("{func}: duration must be > 0")),
        Err(e) => Err(format!("{func}: {e}")),
    }
}

fn nil_err(lua: &Lua, kind: &'static str, message: String) -> mlua::Result<MultiValue> {
    crate::lua::errors::LuaError::new(kind, message).into_nil_err(lua)
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
        // runtime/lua/modules/time: the constants are numbers of nanoseconds
        t.set(name, ns)?;
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
    // en/lua/core/time.md: `time.utc`, `time.localtz` (and warden's older `UTC`, `LOCAL`)
    for (name, loc) in [
        ("utc", Loc::Utc),
        ("localtz", Loc::Local),
        ("UTC", Loc::Utc),
        ("LOCAL", Loc::Local),
    ] {
        t.set(name, LuaLocation(loc))?;
    }
    t.set(
        "load_location",
        lua.create_function(|lua, name: String| {
            if name.is_empty() {
                return nil_err(lua, "INVALID", "empty location name".into());
            }
            match Loc::by_name(&name) {
                Some(l) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                    lua.create_userdata(LuaLocation(l))?,
                )])),
                None => nil_err(
                    lua,
                    "NOT_FOUND",
                    format!("time.load_location: unknown time zone {name}"),
                ),
            }
        })?,
    )?;
    t.set(
        "fixed_zone",
        lua.create_function(|_, (name, offset): (String, i32)| {
            if offset.unsigned_abs() >= 24 * 3600 {
                return Err(mlua::Error::runtime(format!(
                    "time.fixed_zone: offset {offset} s is a day or more"
                )));
            }
            Ok(LuaLocation(Loc::Fixed(name.into(), offset)))
        })?,
    )?;
    t.set(
        "sleep",
        lua.create_async_function(|lua, d: mlua::Value| {
            let d = wait_arg(&d, "time.sleep");
            async move {
                match d {
                    Ok(d) => {
                        tokio::time::sleep(d).await;
                        Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)]))
                    }
                    Err(e) => nil_err(&lua, "INVALID", e),
                }
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
            let loc =
                location_arg(&loc).map_err(|e| mlua::Error::runtime(format!("time.date: {e}")))?;
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
            Ok(LuaTime::at(loc.instant_of(&naive), loc))
        })?,
    )?;
    t.set(
        "parse",
        lua.create_function(|lua, (layout, value, loc): (String, String, mlua::Value)| {
            let loc =
                location_arg(&loc).map_err(|e| mlua::Error::runtime(format!("time.parse: {e}")))?;
            match parse_in(&layout, &value, &loc) {
                Ok(t) => Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                    lua.create_userdata(t)?,
                )])),
                Err(e) => nil_err(lua, "INVALID", format!("time.parse: {e}")),
            }
        })?,
    )?;
    t.set(
        "parse_duration",
        // en/lua/core/time.md: a string, a number of nanoseconds or a Duration
        lua.create_function(|lua, v: mlua::Value| match nanos_arg(&v) {
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
            let d = match positive(&d, "time.after") {
                Ok(d) => d,
                Err(e) => return nil_err(lua, "INVALID", e),
            };
            let chan = Chan::new(1);
            let weak = chan.downgrade();
            let lua2 = lua.clone();
            crate::lua::tasks::spawn(async move {
                tokio::time::sleep(d).await;
                if let Ok(ud) = lua2.create_userdata(LuaTime::now()) {
                    if let Some(chan) = weak.upgrade() {
                        chan.push(mlua::Value::UserData(ud));
                    }
                }
            });
            Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                channel::to_userdata(lua, chan)?,
            )]))
        })?,
    )?;
    t.set(
        "timer",
        lua.create_function(|lua, d: mlua::Value| {
            let d = match positive(&d, "time.timer") {
                Ok(d) => d,
                Err(e) => return nil_err(lua, "INVALID", e),
            };
            let timer = LuaTimer {
                chan: Chan::new(1),
                generation: Rc::new(Cell::new(0)),
                fired: Rc::new(Cell::new(false)),
            };
            timer.arm(lua, d);
            Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(timer)?,
            )]))
        })?,
    )?;
    t.set(
        "ticker",
        lua.create_function(|lua, d: mlua::Value| {
            let d = match positive(&d, "time.ticker") {
                Ok(d) => d,
                Err(e) => return nil_err(lua, "INVALID", e),
            };
            let chan = Chan::new(1);
            let weak = chan.downgrade();
            let stopped = Rc::new(Cell::new(false));
            let stop2 = stopped.clone();
            let lua2 = lua.clone();
            crate::lua::tasks::spawn(async move {
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
            Ok(MultiValue::from_vec(vec![mlua::Value::UserData(
                lua.create_userdata(LuaTicker { chan, stopped })?,
            )]))
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_a_location_as_go_does() {
        let berlin = Loc::Zone(chrono_tz::Europe::Berlin);
        let t = parse_in(LAYOUTS[0].1, "2024-03-05T07:08:09Z", &berlin).unwrap();
        assert_eq!((t.t.timestamp(), t.loc.clone()), (1_709_622_489, Loc::Utc));
        // an offset the location has then: in the location
        let t = parse_in(LAYOUTS[0].1, "2024-03-05T08:08:09+01:00", &berlin).unwrap();
        assert_eq!(
            (t.t.timestamp(), t.loc.clone()),
            (1_709_622_489, berlin.clone())
        );
        assert_eq!(t.format("15:04 MST"), "08:08 CET");
        // another offset: a zone of that offset
        let t = parse_in(LAYOUTS[0].1, "2024-03-05T09:08:09+02:00", &berlin).unwrap();
        assert_eq!(t.loc, Loc::Fixed("".into(), 7200));
        assert_eq!(t.format("15:04 MST"), "09:08 +0200");
        // no zone: a wall-clock time in the location (summer time in July)
        let t = parse_in("2006-01-02 15:04", "2024-07-01 12:00", &berlin).unwrap();
        assert_eq!(t.t.timestamp(), 1_719_828_000);
        // an abbreviation the location uses, one it does not
        let t = parse_in("2006-01-02 15:04 MST", "2024-07-01 12:00 CEST", &berlin).unwrap();
        assert_eq!(t.t.timestamp(), 1_719_828_000);
        let t = parse_in("2006-01-02 15:04 MST", "2024-07-01 12:00 EST", &berlin).unwrap();
        assert_eq!(t.format(LAYOUTS[0].1), "2024-07-01T12:00:00Z");
        assert_eq!(t.format("MST"), "EST");
    }
}
