//! Locations (time zones) as Go's `time.Location` and Wippy's `time` module have them:
//! UTC, the machine's local zone, a zone of the IANA database (chrono-tz) and a fixed
//! offset with a name (`time.fixed_zone`).

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetName, Tz};
use std::cell::Cell;
use std::sync::{Arc, OnceLock};

/// A location.
#[derive(Clone, Debug, PartialEq)]
pub enum Loc {
    /// Coordinated Universal Time (`time.utc`).
    Utc,
    /// The machine's zone (`time.localtz`), named "Local" as in Go.
    Local,
    /// A zone of the IANA database (`time.load_location("Europe/Berlin")`).
    Zone(Tz),
    /// A fixed offset east of UTC in seconds, with its name (`time.fixed_zone`).
    Fixed(Arc<str>, i32),
}

/// The machine's zone in the IANA database, found as Go finds it: `$TZ` (empty: UTC),
/// else the zone `/etc/localtime` links to, else `/etc/timezone`; no `/etc/localtime`
/// at all is UTC. None when none of these names a known zone (the system's offsets are
/// used then, without abbreviations).
fn local_zone() -> Option<Tz> {
    static ZONE: OnceLock<Option<Tz>> = OnceLock::new();
    *ZONE.get_or_init(|| {
        if let Ok(tz) = std::env::var("TZ") {
            let name = tz.trim_start_matches(':');
            if name.is_empty() {
                return Some(Tz::UTC);
            }
            if let Ok(z) = name.parse::<Tz>() {
                return Some(z);
            }
            let path = std::path::Path::new(name);
            return zone_of_file(path);
        }
        let etc = std::path::Path::new("/etc/localtime");
        if !etc.exists() {
            return Some(Tz::UTC);
        }
        zone_of_file(etc).or_else(|| {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .and_then(|s| s.trim().parse::<Tz>().ok())
        })
    })
}

/// The zone a zoneinfo file (or a link to one) is: the part of its path after
/// `zoneinfo/`.
fn zone_of_file(path: &std::path::Path) -> Option<Tz> {
    let target = std::fs::canonicalize(path).ok()?;
    let text = target.to_string_lossy();
    let (_, name) = text.split_once("zoneinfo/")?;
    name.trim_start_matches("posix/").parse::<Tz>().ok()
}

/// The system's offset at `secs` (Unix seconds), for a machine whose zone is not in the
/// database. Asking costs microseconds, which `time.now()` in a loop would pay on every
/// call; offsets change on quarter-hour boundaries, so each thread keeps the last answer.
fn system_offset(secs: i64) -> FixedOffset {
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

fn fixed(secs: i32) -> FixedOffset {
    FixedOffset::east_opt(secs).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero"))
}

impl Loc {
    /// A location by name, as `time.load_location` reads it: `UTC` (or empty: Go's
    /// LoadLocation("") is UTC, but Wippy refuses an empty name first), `Local`, or an
    /// IANA name.
    pub fn by_name(name: &str) -> Option<Loc> {
        match name {
            "UTC" => Some(Loc::Utc),
            "Local" => Some(Loc::Local),
            other => other.parse::<Tz>().ok().map(Loc::Zone),
        }
    }

    /// Its name (`loc:string()`): "UTC", "Local", the IANA name, the fixed zone's name.
    pub fn name(&self) -> String {
        match self {
            Loc::Utc => "UTC".into(),
            Loc::Local => "Local".into(),
            Loc::Zone(tz) => tz.name().into(),
            Loc::Fixed(name, _) => name.to_string(),
        }
    }

    /// The offset at the instant `utc`.
    pub fn offset_at(&self, utc: &DateTime<Utc>) -> FixedOffset {
        match self {
            Loc::Utc => fixed(0),
            Loc::Local => match local_zone() {
                Some(tz) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix(),
                None => system_offset(utc.timestamp()),
            },
            Loc::Zone(tz) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix(),
            Loc::Fixed(_, secs) => fixed(*secs),
        }
    }

    /// The zone's abbreviation at the instant `utc` ("CET", "EST"; empty where the
    /// database has only an offset, which Go then writes as "+03").
    pub fn abbreviation(&self, utc: &DateTime<Utc>) -> String {
        let of_tz = |tz: Tz| {
            let off = tz.offset_from_utc_datetime(&utc.naive_utc());
            match off.abbreviation() {
                Some(a) if !a.starts_with(['+', '-']) => a.to_string(),
                _ => String::new(),
            }
        };
        match self {
            Loc::Utc => "UTC".into(),
            Loc::Local => local_zone().map(of_tz).unwrap_or_default(),
            Loc::Zone(tz) => of_tz(*tz),
            Loc::Fixed(name, _) => name.to_string(),
        }
    }

    /// The instant a wall-clock time in this location stands for (the earlier one
    /// where the clock repeats, the time after a gap where it skips, as Go does).
    pub fn instant_of(&self, wall: &NaiveDateTime) -> DateTime<Utc> {
        let via = |off: FixedOffset| (*wall - off).and_utc();
        let of_tz = |tz: Tz| match tz.from_local_datetime(wall).earliest() {
            Some(t) => t.with_timezone(&Utc),
            // in a gap: the offset before it, as Go
            None => via(tz
                .offset_from_utc_datetime(&(*wall - chrono::Duration::hours(3)))
                .fix()),
        };
        match self {
            Loc::Utc => wall.and_utc(),
            Loc::Local => match local_zone() {
                Some(tz) => of_tz(tz),
                None => Local
                    .from_local_datetime(wall)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|| wall.and_utc()),
            },
            Loc::Zone(tz) => of_tz(*tz),
            Loc::Fixed(_, secs) => via(fixed(*secs)),
        }
    }

    /// The offset this location gives the abbreviation `abbrev` near the wall-clock
    /// time `wall` (Go's `lookupName`), if it uses that abbreviation there.
    pub fn offset_named(&self, abbrev: &str, wall: &NaiveDateTime) -> Option<i32> {
        // the offsets in force a day either side cover a change between them
        [-1i64, 0, 1].iter().find_map(|days| {
            let guess = (*wall + chrono::Duration::days(*days)).and_utc();
            (self.abbreviation(&guess) == abbrev).then(|| self.offset_at(&guess).local_minus_utc())
        })
    }
}
