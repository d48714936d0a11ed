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
  local d = time.HOUR + 30 * time.MINUTE
  local p, err = time.parse_duration("1.5s")
  local _, bad = time.parse_duration("five")
  local t0 = time.now()
  time.sleep(time.MILLISECOND * 20)
  local slept = time.now():sub(t0)
  return {
    text = tostring(d), minutes = d:minutes(), ms = d:milliseconds(),
    parsed = p:milliseconds(), parsed_s = p:seconds(), err = err,
    bad = bad and bad:kind(),
    cmp = time.SECOND < time.MINUTE and time.SECOND * 60 == time.MINUTE,
    ratio = time.MINUTE / time.SECOND, half = tostring(time.SECOND / 2),
    neg = tostring(-time.SECOND),
    slept_ok = slept >= 20 * time.MILLISECOND and slept:milliseconds() < 2000,
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
            "bad": "Invalid", "cmp": true, "ratio": 60, "half": "500ms", "neg": "-1s",
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
    trunc = t:add(1234 * time.MILLISECOND):truncate(time.SECOND):format(time.RFC3339NANO),
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
