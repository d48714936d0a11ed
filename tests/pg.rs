//! Process groups (`pg`): Erlang's semantics in Lua.

mod common;

use common::App;
use serde_json::json;

const MEMBER: &str = r#"
return { main = function() while true do process.inbox():receive() end end }
"#;

/// en/lua/core/pg.md: joins count (a process joined twice is a member twice, and must
/// leave twice), a leave removes one join, an exit removes all; `monitor(group)` and
/// `events()` give a subscription whose channel sees every `member.joined` /
/// `member.left` in order, with the members at subscription time; broadcast reaches each
/// distinct member once and answers true; leaving groups the process is in none of is
/// INVALID; a released instance refuses every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_follow_wippys_pg_page() {
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
  local sub = events.subscribe("pg", "member.joined")
  local gsub, now = scope:monitor("g")
  local ssub, snapshot = scope:events()
  r.initially = { #now, next(snapshot) == nil }
  local w1 = process.spawn("app:member", "app:host")
  local w2 = process.spawn("app:member", "app:host")
  assert(scope:join("g"))
  assert(scope:join({"g", "k"}))
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
  r.broadcast_local = scope:broadcast_local("g", "hello", 2)
  r.leave = scope:leave("g")
  r.leave_k = scope:leave({"k"})
  local _, not_joined = scope:leave("h")
  r.not_joined = not_joined:kind()
  r.after_leave = named(scope:get_members("g"))
  process.terminate(w1)
  local function drain(s, n)
    local seen = {}
    for _ = 1, n do
      local e = s:channel():receive()
      local short = {}
      for i, p in ipairs(e.data.PIDs) do short[i] = names[p] end
      table.insert(seen, e.system .. " " .. e.kind .. " " .. e.path .. " " .. e.data.Group .. " " .. table.concat(short, ","))
    end
    return seen
  end
  r.seen_g = drain(gsub, 5)
  r.seen_s = drain(ssub, 9)
  r.after_exit = named(scope:get_members("g"))
  r.groups_after = scope:which_groups()
  r.bus = sub:channel():receive().path
  r.closed = gsub:close()
  r.bad_pid = select(2, scope:join("g", "nope")):kind()
  r.bad_group = select(2, scope:join({})):kind()
  scope:release()
  local _, released = scope:get_members("g")
  r.released = { released:kind(), tostring(scope) }
  return r
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["open_errors"], json!("NotFound Invalid"));
    assert_eq!(v["initially"], json!([0, true]));
    assert_eq!(v["members"], json!(["w1", "w2", "me", "me"]));
    assert_eq!(v["local_members"], json!(4));
    assert_eq!(v["groups"], json!(["g", "h", "k"]));
    assert_eq!(v["broadcast"], json!(true));
    assert_eq!(v["broadcast_local"], json!(true));
    assert_eq!(v["leave"], json!(true));
    assert_eq!(v["leave_k"], json!(true));
    assert_eq!(v["not_joined"], json!("Invalid"));
    assert_eq!(v["after_leave"], json!(["w1", "w2", "me"]));
    assert_eq!(
        v["seen_g"],
        json!([
            "pg member.joined g g me",
            "pg member.joined g g me",
            "pg member.joined g g w1,w2",
            "pg member.left g g me",
            "pg member.left g g w1"
        ])
    );
    assert_eq!(
        v["seen_s"],
        json!([
            "pg member.joined g g me",
            "pg member.joined g g me",
            "pg member.joined k k me",
            "pg member.joined g g w1,w2",
            "pg member.joined h h w1",
            "pg member.left g g me",
            "pg member.left k k me",
            "pg member.left g g w1",
            "pg member.left h h w1"
        ])
    );
    assert_eq!(v["after_exit"], json!(["w2", "me"]));
    assert_eq!(v["groups_after"], json!(["g"]));
    assert_eq!(v["bus"], json!("g"));
    assert_eq!(v["closed"], json!(true));
    assert_eq!(v["bad_pid"], json!("Invalid"));
    assert_eq!(v["bad_group"], json!("Invalid"));
    assert_eq!(
        v["released"],
        json!(["Invalid", "pg.Instance{app:groups, released}"])
    );
}
