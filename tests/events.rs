//! The `events` module: subscriptions with patterns, delivery in order, closing, and a
//! subscriber whose mailbox is full (issue 20, second part).

mod common;

use common::App;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_matching_events_in_order() {
    let v = App::new()
        .lua(
            "listener",
            r#"
local events = require("events")
return { main = function(parent, system, kind)
  local sub = events.subscribe(system, kind)
  process.send(parent, "ready", true)
  local got = {}
  local ch = sub:channel()
  while true do
    local ev = ch:receive()
    if ev.data == "stop" then break end
    table.insert(got, { ev.system, ev.kind, ev.path or false, ev.data, ev.from ~= nil })
  end
  sub:close()
  return got
end }
"#,
        )
        .lua(
            "main",
            r#"
local events = require("events")
return { main = function()
  local events_ch = process.events()
  local results = {}
  local names = {}
  -- en/lua/core/events.md; Wippy's bus: `**` is any number of segments, `*` exactly one
  for name, args in pairs({ orders = { "orders.**" }, created = { "*", "created" }, exact = { "orders" },
                            one = { "orders.*", "(paid|tick)" } }) do
    local pid = process.spawn_monitored("app:listener", "app:host", process.pid(), args[1], args[2])
    names[pid] = name
    process.inbox():receive()
  end
  assert(events.send("orders", "created", "/o/1", { n = 1 }))
  assert(events.send("orders.eu", "paid", "/o/2", { n = 2 }))
  assert(events.send("users", "created", "/u/1", { n = 3 }))
  assert(events.send("ordersx", "created", nil, { n = 4 }))
  for i = 5, 50 do assert(events.send("orders.eu", "tick", nil, i)) end
  -- matches all three subscriptions
  assert(events.send("orders", "created", nil, "stop"))
  assert(events.send("orders.eu", "tick", nil, "stop"))
  for _ = 1, 4 do
    local ev = events_ch:receive()
    results[names[ev.from]] = ev.result.value or tostring(ev.result.error)
  end
  return { results = results, ok_after = events.send("nobody", "listens") }
end }
"#,
        )
        .value("main")
        .await;
    let orders = v["results"]["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(orders.len(), 2 + 46, "{v}");
    assert_eq!(
        orders[0],
        json!(["orders", "created", "/o/1", {"n": 1}, true])
    );
    assert_eq!(
        orders[1],
        json!(["orders.eu", "paid", "/o/2", {"n": 2}, true])
    );
    let ticks: Vec<i64> = orders[2..].iter().map(|e| e[3].as_i64().unwrap()).collect();
    assert_eq!(ticks, (5..=50).collect::<Vec<_>>(), "in the order sent");
    assert_eq!(
        v["results"]["created"],
        json!([
            ["orders", "created", "/o/1", {"n": 1}, true],
            ["users", "created", "/u/1", {"n": 3}, true],
            ["ordersx", "created", false, {"n": 4}, true],
        ])
    );
    assert_eq!(
        v["results"]["exact"],
        json!([["orders", "created", "/o/1", {"n": 1}, true]])
    );
    assert_eq!(v["ok_after"], true);
    let one = v["results"]["one"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(one.len(), 1 + 46, "{v}");
    assert_eq!(one[0], json!(["orders.eu", "paid", "/o/2", {"n": 2}, true]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_subscriber_makes_send_report_it() {
    let v = App::new()
        .lua(
            "sleeper",
            r#"
local events = require("events")
return { main = function(parent)
  local sub = events.subscribe("flood")
  process.send(parent, "ready", true)
  require("time").sleep("1h")
end }
"#,
        )
        .lua(
            "main",
            r#"
local events = require("events")
return { main = function()
  local pid = process.spawn("app:sleeper", "app:host", process.pid())
  process.inbox():receive()
  local first_err, sent = nil, 0
  for i = 1, 70000 do
    local ok, err = events.send("flood", "e", nil, i)
    if not ok then first_err = err break end
    sent = i
  end
  process.terminate(pid)
  return { sent = sent, kind = first_err and first_err:kind(), text = first_err and tostring(first_err) }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["kind"], "Unavailable", "{v}");
    assert!(v["sent"].as_i64().unwrap() >= 65_536, "{v}");
    assert_eq!(
        v["text"],
        "events.send: 1 of 1 subscribers had a full mailbox and did not get the event"
    );
}
