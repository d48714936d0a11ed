//! The `time` module as Wippy documents it: Duration constants and objects, Time objects
//! with Go's methods and layouts, parse / parse_duration / date / unix / since, timers.

mod common;

use common::lua_value;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_are_objects_with_go_methods_and_arithmetic() {
    let v = lua_value(
        r#"
local time = require("time")
return { main = function()
  local d = time.parse_duration(time.HOUR + 30 * time.MINUTE)
  local p, err = time.parse_duration("1.5s")
  local sec = time.parse_duration(time.SECOND)
  local _, bad = time.parse_duration("five")
  local t0 = time.now()
  time.sleep(time.MILLISECOND * 20)
  local slept = time.now():sub(t0)
  return {
    text = tostring(d), minutes = d:minutes(), ms = d:milliseconds(),
    parsed = p:milliseconds(), parsed_s = p:seconds(), err = err,
    bad = bad and bad:kind(),
    cmp = sec < d and sec * 60 == time.parse_duration("1m"),
    ratio = d / sec, half = tostring(sec / 2),
    neg = tostring(-sec),
    slept_ok = slept:nanoseconds() >= 20 * time.MILLISECOND and slept:milliseconds() < 2000,
    since_ok = time.since(t0):nanoseconds() >= 20000000,
    sub_type = type(slept),
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "text": "1h30m0s", "minutes": 90, "ms": 5400000, "parsed": 1500, "parsed_s": 1.5,
            "bad": "Invalid", "cmp": true, "ratio": 5400, "half": "500ms", "neg": "-1s",
            "slept_ok": true, "since_ok": true, "sub_type": "userdata",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_parse_format_and_compute_calendar_fields() {
    let v = lua_value(
        r#"
local time = require("time")
return { main = function()
  local t, err = time.parse(time.RFC3339, "2024-02-28T22:30:00Z")
  if not t then return {err = tostring(err)} end
  local next_day = t:add(2 * time.HOUR)
  local d = time.date(2024, time.DECEMBER, 31, 23, 59, 59, 0, time.UTC)
  local u = time.unix(1700000000, 0):utc()
  local _, perr = time.parse("2006-01-02", "31/12/2024")
  return {
    fields = {t:year(), t:month(), t:day(), t:hour(), t:minute(), t:weekday(), t:year_day()},
    next_day = next_day:format("2006-01-02 15:04"),
    leap = t:add_date(0, 0, 1):format(time.DATE_ONLY),
    rollover = d:add(time.SECOND):format(time.RFC3339),
    unix = u:format(time.DATE_TIME), unix_back = u:unix(),
    before = t:before(next_day), after = t:after(next_day), equal = t:equal(t:add(0)),
    lt = t < next_day,
    diff_h = next_day:sub(t):hours(),
    kitchen = t:format(time.KITCHEN),
    named = t:format("Mon Jan _2 2006"),
    perr = perr and perr:kind(),
    trunc = t:add(1234 * time.MILLISECOND):truncate((time.parse_duration("1s"))):format(time.RFC3339NANO),
    loc = tostring(u:location()),
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "fields": [2024, 2, 28, 22, 30, 3, 59],
            "next_day": "2024-02-29 00:30",
            "leap": "2024-02-29",
            "rollover": "2025-01-01T00:00:00Z",
            "unix": "2023-11-14 22:13:20", "unix_back": 1700000000,
            "before": true, "after": false, "equal": true, "lt": true,
            "diff_h": 2,
            "kitchen": "10:30PM",
            "named": "Wed Feb 28 2024",
            "perr": "Invalid",
            "trunc": "2024-02-28T22:30:01Z",
            "loc": "UTC",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_stop_and_reset() {
    let v = lua_value(
        r#"
local time = require("time")
return { main = function()
  local t = time.timer("20ms")
  local fired = t:channel():receive()
  local s = time.timer(time.SECOND)
  local stopped = s:stop()
  local sch, late = s:channel(), time.after("60ms")
  local r = channel.select({ sch:case_receive(), late:case_receive() })
  local again = time.timer(time.HOUR)
  again:reset("10ms")
  local got = again:channel():receive()
  return {
    fired = type(fired), stopped = stopped, stopped_silent = r.channel == late,
    reset_fired = got ~= nil,
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({"fired": "userdata", "stopped": true, "stopped_silent": true, "reset_fired": true})
    );
}

/// en/lua/core/time.md, "timer" and "ticker": `response()` is the channel (`channel()` its
/// alias), as the page's idle-timer pattern uses it: a select case and a comparison with
/// `r.channel`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_and_tickers_give_their_channel_as_response() {
    let v = lua_value(
        r#"
local time = require("time")
return { main = function()
  local idle_timer = time.timer("20ms")
  local other = channel.new()
  local r = channel.select { other:case_receive(), idle_timer:response():case_receive() }
  local fired = r.channel == idle_timer:response() and r.channel == idle_timer:channel()
  local ticker = time.ticker("10ms")
  local ticks = 0
  for _ = 1, 3 do ticker:response():receive() ticks = ticks + 1 end
  ticker:stop()
  return { fired = fired, ticks = ticks }
end }
"#,
    )
    .await;
    assert_eq!(v, json!({"fired": true, "ticks": 3}));
}

/// en/lua/core/time.md, checked against runtime/lua/modules/time: Duration constants are
/// numbers of nanoseconds and a bare number is nanoseconds; `time.utc`, `time.localtz`,
/// `fixed_zone`, IANA zones through `load_location` (NOT_FOUND for an unknown one,
/// INVALID for an empty name); layouts print zone abbreviations (`UTC`, `EST`, not an
/// offset); `parse(layout, value, loc)` reads a wall-clock time in `loc`;
/// `format_rfc3339`, `in_local`, `parse_duration` of a number or a Duration, the `STAMP_*`
/// layouts; a timer, ticker or `after` of no time is INVALID; `round` wants a Duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_follows_wippys_page() {
    let v = lua_value(
        r#"
local time = require("time")
return { main = function()
  local t = time.date(2024, time.DECEMBER, 29, 15, 4, 5, 0, time.utc)
  local summer = time.date(2024, time.JULY, 1, 12, 0, 0, 0, time.utc)
  local ny, nyerr = time.load_location("America/New_York")
  local _, unknown = time.load_location("Unknown/Zone")
  local _, empty = time.load_location("")
  local ist = time.fixed_zone("IST", 5*3600 + 30*60)
  local in_ny = time.parse("2006-01-02 15:04", "2024-12-29 14:30", ny)
  local named = time.parse("2006-01-02 15:04:05 MST", "2024-12-29 14:30:00 UTC")
  local d1 = time.parse_duration(5 * time.MINUTE)
  local d2 = time.parse_duration(d1)
  local t0 = time.now()
  local slept = time.sleep(1000)
  local quick = time.since(t0):milliseconds() < 500
  local _, timer_err = time.timer(0)
  local _, after_err = time.after(-1)
  local _, ticker_err = time.ticker("0s")
  local _, sleep_err = time.sleep("soon")
  return {
    units = {time.NANOSECOND, time.MICROSECOND, time.MILLISECOND, time.SECOND,
             time.MINUTE, time.HOUR, math.type(time.SECOND)},
    stamps = {time.STAMP_MICRO, time.STAMP_NANO},
    locs = {tostring(time.utc), time.localtz:string(), ny and ny:string(), ist:string()},
    nyerr = nyerr,
    rfc3339 = t:format_rfc3339(), rfc1123 = t:format(time.RFC1123),
    ny_winter = t:in_location(ny):format("15:04 MST"),
    ny_summer = summer:in_location(ny):format("15:04 MST -07:00"),
    ist = time.date(2024, 1, 15, 12, 0, 0, 0, ist):format_rfc3339(),
    ist_name = time.date(2024, 1, 15, 12, 0, 0, 0, ist):format("MST"),
    unknown = unknown and unknown:kind(), empty = empty and empty:kind(),
    parsed_in_ny = in_ny:utc():format_rfc3339(), parsed_loc = in_ny:location():string(),
    named = named:format("15:04 MST"),
    added = t:add(5 * time.MINUTE):format(time.TIME_ONLY), added_s = t:add("24h"):day(),
    d = {d1:minutes(), d2:seconds(), tostring(d1)},
    slept = slept, quick = quick,
    in_local = t:in_local():location():string(),
    text = tostring(time.unix(0, 0):utc()),
    errs = {timer_err and timer_err:kind(), after_err and after_err:kind(),
            ticker_err and ticker_err:kind(), sleep_err and sleep_err:kind()},
    round_number = (pcall(t.round, t, 1000)),
    rounded = t:round((time.parse_duration("1h"))):format(time.TIME_ONLY),
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "units": [1, 1000, 1000000, 1000000000, 60000000000i64, 3600000000000i64, "integer"],
            "stamps": ["Jan _2 15:04:05.000000", "Jan _2 15:04:05.000000000"],
            "locs": ["UTC", "Local", "America/New_York", "IST"],
            "rfc3339": "2024-12-29T15:04:05Z",
            "rfc1123": "Sun, 29 Dec 2024 15:04:05 UTC",
            "ny_winter": "10:04 EST",
            "ny_summer": "08:00 EDT -04:00",
            "ist": "2024-01-15T12:00:00+05:30",
            "ist_name": "IST",
            "unknown": "NotFound", "empty": "Invalid",
            "parsed_in_ny": "2024-12-29T19:30:00Z", "parsed_loc": "America/New_York",
            "named": "14:30 UTC",
            "added": "15:09:05", "added_s": 30,
            "d": [5, 300, "5m0s"],
            "slept": true, "quick": true,
            "in_local": "Local",
            "text": "1970-01-01 00:00:00 +0000 UTC",
            "errs": ["Invalid", "Invalid", "Invalid", "Invalid"],
            "round_number": false,
            "rounded": "15:00:00",
        })
    );
}
