//! Process groups (`pg`): Erlang's semantics in Lua.

mod common;

use common::App;
use serde_json::json;

const MEMBER: &str = r#"
return { main = function() while true do process.inbox():receive() end end }
"#;

/// Joins count (a process joined twice is a member twice), a leave removes one join, an
/// exit removes all, and monitors of a group and of the scope see every join and leave in
/// order; broadcast reaches each distinct member once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_follow_erlang_pg() {
    let v = App::new()
        .entry("  - name: groups\n    kind: pg.scope\n")
        .lua("member", MEMBER)
        .lua(
            "main",
            r#"
local pg, events = require("pg"), require("events")
return { main = function()
  local r = {}
  local _, e1 = pg.open("app:nothing")
  local _, e2 = pg.open("app:main")
  r.open_errors = e1:kind() .. " " .. e2:kind()
  local scope = assert(pg.open("groups"))
  local sub = events.subscribe("pg", "join")
  local ch = process.listen("pg")
  local gref, now = scope:monitor("g")
  local sref = scope:monitor()
  r.initially = #now
  local w1 = process.spawn("app:member", "app:host")
  local w2 = process.spawn("app:member", "app:host")
  assert(scope:join("g"))
  assert(scope:join("g"))
  assert(scope:join("g", { w1, w2 }))
  assert(scope:join("h", w1))
  local names = { [w1] = "w1", [w2] = "w2", [process.pid()] = "me" }
  local function named(list)
    local out = {}
    for i, p in ipairs(list) do out[i] = names[p] end
    return out
  end
  r.members = named(scope:get_members("g"))
  r.local_members = #scope:get_local_members("g")
  r.groups = scope:which_groups()
  r.broadcast = scope:broadcast("g", "hello", 1)
  r.leave = scope:leave("g")
  r.not_joined = scope:leave("h")
  r.after_leave = named(scope:get_members("g"))
  process.terminate(w1)
  -- the group monitor: its group only; the scope monitor: every group
  local seen_g, seen_s = {}, {}
  for _ = 1, 12 do
    local e = ch:receive()
    local short = {}
    for i, p in ipairs(e.pids) do short[i] = names[p] end
    local line = e.event .. " " .. e.group .. " " .. table.concat(short, ",")
    if e.ref == gref then table.insert(seen_g, line) else table.insert(seen_s, line) end
    if #seen_g == 5 and #seen_s == 7 then break end
  end
  r.seen_g, r.seen_s = seen_g, seen_s
  r.after_exit = named(scope:get_members("g"))
  r.groups_after = scope:which_groups()
  r.bus = sub:channel():receive().path
  r.demonitor = scope:demonitor(gref) and not scope:demonitor(gref)
  r.bad_pid = select(2, scope:join("g", "nope")):kind()
  return r
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["open_errors"], json!("NOT_FOUND INVALID"));
    assert_eq!(v["initially"], json!(0));
    assert_eq!(v["members"], json!(["w1", "w2", "me", "me"]));
    assert_eq!(v["local_members"], json!(4));
    assert_eq!(v["groups"], json!(["g", "h"]));
    assert_eq!(v["broadcast"], json!(3));
    assert_eq!(v["leave"], json!(true));
    assert_eq!(v["not_joined"], json!(false));
    assert_eq!(v["after_leave"], json!(["w1", "w2", "me"]));
    assert_eq!(
        v["seen_g"],
        json!([
            "join g me",
            "join g me",
            "join g w1,w2",
            "leave g me",
            "leave g w1"
        ])
    );
    assert_eq!(
        v["seen_s"],
        json!([
            "join g me",
            "join g me",
            "join g w1,w2",
            "join h w1",
            "leave g me",
            "leave g w1",
            "leave h w1"
        ])
    );
    assert_eq!(v["after_exit"], json!(["w2", "me"]));
    assert_eq!(v["groups_after"], json!(["g"]));
    assert_eq!(v["bus"], json!("g"));
    assert_eq!(v["demonitor"], json!(true));
    assert_eq!(v["bad_pid"], json!("INVALID"));
}
