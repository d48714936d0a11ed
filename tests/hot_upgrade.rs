//! Registry changes reach what runs (issue 20, part 3): services and tree children running
//! changed code restart on the new code (one at a time, through their shutdown, unless
//! they opt out); services deleted from the registry stop; new services with auto_start
//! start; a spawn of a deleted entry fails with NOT_FOUND.

mod common;

use common::App;
use serde_json::json;

/// A worker that answers "ask" with its code's tag (`TAG`, replaced per version) and
/// ends when cancelled.
const WORKER: &str = r#"
return { main = function()
  while true do
    local r = channel.select({ process.inbox():case_receive(), process.events():case_receive() })
    if r.channel ~= process.inbox() then return end
    process.send(r.value:payload():data(), "tag", "TAG")
  end
end }
"#;

fn worker(tag: &str) -> String {
    WORKER.replace("TAG", tag)
}

/// Lua helpers for the driving process: `ask(pid)` -> the worker's tag; `wait_new(get,
/// old)` polls `get()` until it gives a pid other than `old` (at most 3 s).
const HELPERS: &str = r#"
local time = require("time")
local supervisor = require("supervisor")
local registry = require("registry")
local function ask(pid)
  process.send(pid, "ask", process.pid())
  local r = channel.select({ process.inbox():case_receive(), time.after(2000 * time.MILLISECOND):case_receive() })
  if r.channel == process.inbox() then return r.value:payload():data() end
  return "no answer"
end
local function wait_new(get, old)
  for _ = 1, 300 do
    local p = get()
    if p and p ~= old then return p end
    time.sleep(10 * time.MILLISECOND)
  end
  return nil
end
local function svc_pid(id)
  local info = supervisor.info(id)
  return info and info.pid
end
local function child_pid(tree, id)
  for _, c in ipairs(supervisor.children(tree) or {}) do
    if c.id == id then return c.pid end
  end
end
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_tree_children_restart_on_changed_code() {
    let main = format!(
        "{HELPERS}{}",
        r#"
return { main = function()
  local svc1 = svc_pid("app:svc")
  local keep1 = svc_pid("app:keep")
  local a1, b1, c1 = child_pid("app:tree", "a"), child_pid("app:tree", "b"), child_pid("app:tree", "c")
  local before = { ask(svc1), ask(a1), ask(b1), ask(c1), ask(keep1) }
  local v, err = registry.changes()
    :update({ id = "app:worker", data = { source = NEW_WORKER, method = "main" } })
    :apply()
  if not v then return { err = tostring(err) } end
  local svc2 = wait_new(function() return svc_pid("app:svc") end, svc1)
  local a2 = wait_new(function() return child_pid("app:tree", "a") end, a1)
  time.sleep(100 * time.MILLISECOND)
  return {
    before = before,
    after = { ask(svc2), ask(a2), ask(child_pid("app:tree", "b")), ask(child_pid("app:tree", "c")),
              ask(svc_pid("app:keep")) },
    same = { child_pid("app:tree", "b") == b1, child_pid("app:tree", "c") == c1,
             svc_pid("app:keep") == keep1 },
    restarts = supervisor.children("app:tree")[1].restarts,
    tree_state = supervisor.state("app:treesvc"),
  }
end }
"#
    )
    .replace("NEW_WORKER", &format!("{:?}", worker("v2")));
    let v = App::new()
        .lua("worker", &worker("v1"))
        .lua("other", &worker("other"))
        .entry("  - {name: svc, kind: process.service, process: worker, host: host, lifecycle: {auto_start: true}}\n")
        .entry("  - {name: keep, kind: process.service, process: worker, host: host, lifecycle: {auto_start: true, restart_on_change: false}}\n")
        .entry(concat!(
            "  - name: tree\n    kind: supervisor\n    strategy: one_for_all\n    children:\n",
            "      - {id: a, process: worker, host: host, shutdown: 1s}\n",
            "      - {id: b, process: other, host: host}\n",
            "      - {id: c, process: worker, host: host, restart_on_change: false}\n",
        ))
        .entry("  - {name: treesvc, kind: process.service, process: tree, lifecycle: {auto_start: true}}\n")
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(v.get("err"), None, "{v}");
    assert_eq!(v["before"], json!(["v1", "v1", "other", "v1", "v1"]));
    // the service and child a run the new code; b (other code) and the opted-out c and
    // keep still run the old code, with their old pids
    assert_eq!(v["after"], json!(["v2", "v2", "other", "v1", "v1"]));
    assert_eq!(v["same"], json!([true, true, true]));
    // an upgrade is not a crash: one_for_all did not restart the siblings, no restart counted
    assert_eq!(v["restarts"], 0);
    assert_eq!(v["tree_state"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_library_restarts_the_services_that_import_it() {
    let main = format!(
        "{HELPERS}{}",
        r#"
return { main = function()
  local p1 = svc_pid("app:svc")
  local before = ask(p1)
  registry.changes()
    :update({ id = "app:lib", data = { source = "return { tag = 'lib v2' }" } })
    :apply()
  local p2 = wait_new(function() return svc_pid("app:svc") end, p1)
  return { before = before, after = p2 and ask(p2) }
end }
"#
    );
    let v = App::new()
        .entry("  - {name: lib, kind: library.lua, source: \"return { tag = 'lib v1' }\"}\n")
        .lua(
            "worker",
            r#"
local lib = require("lib")
return { main = function()
  while true do
    local r = channel.select({ process.inbox():case_receive(), process.events():case_receive() })
    if r.channel ~= process.inbox() then return end
    process.send(r.value:payload():data(), "tag", lib.tag)
  end
end }
"#,
        )
        .entry("    imports: {lib: lib}\n")
        .entry("  - {name: svc, kind: process.service, process: worker, host: host, lifecycle: {auto_start: true}}\n")
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(v, json!({"before": "lib v1", "after": "lib v2"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_services_stop_and_new_ones_start() {
    let main = format!(
        "{HELPERS}{}",
        r#"
return { main = function()
  local old = svc_pid("app:svc")
  process.monitor(old)
  local v, err = registry.changes()
    :delete("app:svc")
    :delete("app:worker")
    :create({ id = "app:fresh", kind = "process.lua",
              data = { source = NEW_WORKER, method = "main" } })
    :create({ id = "app:svc2", kind = "process.service",
              data = { process = "app:fresh", host = "app:host", lifecycle = { auto_start = true } } })
    :apply()
  if not v then return { err = tostring(err) } end
  local ev = process.events():receive()
  -- the changeset is applied when apply() returns; services follow right after
  local gone
  for _ = 1, 300 do
    local st, err = supervisor.state("app:svc")
    if not st then gone = err break end
    time.sleep(10 * time.MILLISECOND)
  end
  local _, spawn_err = process.spawn("app:worker", "app:host")
  local fresh = wait_new(function() return svc_pid("app:svc2") end, nil)
  return {
    exit = ev.kind == process.event.EXIT and ev.from == old,
    gone = gone and gone:kind(),
    spawn = spawn_err and spawn_err:kind(),
    fresh = fresh and ask(fresh),
    state = supervisor.state("app:svc2"),
  }
end }
"#
    )
    .replace("NEW_WORKER", &format!("{:?}", worker("fresh")));
    let v = App::new()
        .lua("worker", &worker("v1"))
        .entry("  - {name: svc, kind: process.service, process: worker, host: host, lifecycle: {auto_start: true}}\n")
        .lua("main", &main)
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"exit": true, "gone": "NotFound", "spawn": "NotFound", "fresh": "fresh", "state": "Running"})
    );
}

/// `process.upgrade(id?, ...)` runs new code in the same process: same pid, the messages
/// waiting in its mailbox, its monitors; `nil` upgrades to the entry's newest version; an
/// entry that does not exist is `nil, err` and the old code goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_upgrade_keeps_pid_mailbox_and_monitors() {
    let v = App::new()
        .lua(
            "counter",
            r#"
return { main = function(count)
  count = count or 0
  while true do
    local msg = process.inbox():receive()
    local cmd, from = msg:topic(), msg:payload():data()
    if cmd == "add" then
      count = count + 1
    elseif cmd == "get" then
      process.send(from, "count", "v1:" .. count)
    elseif cmd == "bad" then
      local ok, err = process.upgrade("app:missing", count)
      process.send(from, "bad", (ok == nil and err:kind()) or "upgraded?")
    elseif cmd == "upgrade" then
      process.upgrade(nil, count)
      process.send(from, "count", "not reached")
    end
  end
end }
"#,
        )
        .lua(
            "final",
            r#"
return { main = function(count, tag)
  local msg = process.inbox():receive()
  process.send(msg:payload():data(), "count", tag .. ":" .. count .. ":" .. process.id())
  return "done"
end }
"#,
        )
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local me = process.pid()
  local pid = process.spawn_monitored("app:counter", "app:host")
  local function ask(topic)
    process.send(pid, topic, me)
    return process.inbox():receive():payload():data()
  end
  process.send(pid, "add", me)
  local v1 = ask("get")
  local bad = ask("bad")
  registry.changes():update({ id = "app:counter", data = { method = "main", source = [[
return { main = function(count)
  while true do
    local msg = process.inbox():receive()
    local cmd, from = msg:topic(), msg:payload():data()
    if cmd == "add" then count = count + 10
    elseif cmd == "get" then process.send(from, "count", "v2:" .. count .. ":" .. process.id())
    elseif cmd == "final" then process.upgrade("app:final", count, "final") end
  end
end }
]] } }):apply()
  -- these wait in the mailbox while the process upgrades
  process.send(pid, "upgrade", me)
  process.send(pid, "add", me)
  local v2 = ask("get")
  process.send(pid, "final", me)
  local final = ask("get")
  local ev = process.events():receive()
  return { v1 = v1, bad = bad, v2 = v2, final = final,
           exit = ev.kind == process.event.EXIT and ev.from == pid, result = ev.result.value }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "v1": "v1:1", "bad": "NotFound", "v2": "v2:11:app:counter",
            "final": "final:11:app:final", "exit": true, "result": "done"
        })
    );
}

/// README, `process.upgrade`: the process keeps its links, its names and the limits of
/// its first entry: after upgrading to an entry without limits that spins, it still holds
/// its name, its first entry's `max_execution_ms` stops it, and the process linked to it
/// hears LINK_DOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_upgrade_keeps_links_names_and_limits() {
    let v = App::new()
        .entry("  - name: keeper\n    kind: process.lua\n    source: |\n      return { main = function(owner)\n        process.registry.register(\"keeper\")\n        assert(process.link(owner))\n        process.inbox():receive()\n        process.upgrade(\"app:spinner\", owner)\n      end }\n    method: main\n    limits: {max_execution_ms: 100}\n")
        .lua(
            "spinner",
            r#"
return { main = function(owner)
  process.send(owner, "name", process.registry.lookup("keeper") == process.pid())
  while true do end
end }
"#,
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  process.set_options({ trap_links = true })
  local keeper = process.spawn("app:keeper", "app:host", process.pid())
  -- linked once it holds its name
  for _ = 1, 1000 do
    if process.registry.lookup("keeper") then break end
    time.sleep(5 * time.MILLISECOND)
  end
  process.send(keeper, "go")
  local name = process.inbox():receive():payload():data()
  local r = channel.select({ process.events():case_receive(), time.after(10000 * time.MILLISECOND):case_receive() })
  local ev = r.value
  if type(ev) ~= "table" then return { name = name, event = "none within 10 s" } end
  return { name = name, event = ev.kind, from = ev.from == keeper,
           limit = tostring(ev.result.error):find("max_execution_ms", 1, true) ~= nil }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"name": true, "event": "LINK_DOWN", "from": true, "limit": true})
    );
}

/// A changed function: calls already running finish on the old code, new calls run the
/// new one, for Lua and WebAssembly functions; a WebAssembly entry that does not compile
/// is refused with its error, and the old one keeps running; rolling back brings the old
/// WebAssembly code back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_functions_serve_new_calls_while_running_calls_finish_on_the_old() {
    let v = App::new()
        .func(
            "slow",
            r#"
local time = require("time")
return { main = function(ms) time.sleep(ms * time.MILLISECOND) return "old" end }
"#,
            Some("{type: static, size: 4}"),
        )
        .entry("  - name: answer\n    kind: function.wat\n    source: \"(module (func (export \\\"answer\\\") (result i32) i32.const 1))\"\n    wit: \"answer: func() -> s32;\"\n    method: answer\n")
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local registry = require("registry")
local function wat(n)
  return '(module (func (export "answer") (result i32) i32.const ' .. n .. '))'
end
return { main = function()
  -- two calls in flight on the old code
  local f1 = funcs.async("app:slow", 200)
  local f2 = funcs.async("app:slow", 200)
  local v, err = registry.changes()
    :update({ id = "app:slow", data = { method = "main", pool = { type = "static", size = 4 },
      modules = { "time" },
      source = "local time = require('time') return { main = function(ms) time.sleep(ms * time.MILLISECOND) return 'new' end }" } })
    :update({ id = "app:answer", data = { method = "answer", wit = "answer: func() -> s32;", source = wat(2) } })
    :apply()
  if not v then return { err = tostring(err) } end
  local now = funcs.call("app:slow", 1)
  local r1, r2 = f1:response():receive():data(), f2:response():receive():data()
  local answer2 = funcs.call("app:answer")
  local bad_v, bad = registry.changes()
    :update({ id = "app:answer", data = { method = "answer", wit = "answer: func() -> s32;", source = "(module (func" } })
    :apply()
  local still = funcs.call("app:answer")
  registry.apply_version(1)
  local back = funcs.call("app:answer")
  local back_slow = funcs.call("app:slow", 1)
  return { running = { r1, r2 }, now = now, answer2 = answer2, bad = bad and bad:kind(),
           bad_names = bad and string.find(tostring(bad), "app:answer", 1, true) ~= nil,
           still = still, back = back, back_slow = back_slow }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "running": ["old", "old"], "now": "new", "answer2": 2, "bad": "Invalid",
            "bad_names": true, "still": 2, "back": 1, "back_slow": "old"
        })
    );
}

/// en/lua/core/process.md, "Process Options" and "Event Types": a process that sets
/// `upgradable = true` gets one OUTDATED event when its code or a library it imports
/// changes, with the changed ids in `sources`; changes made while one is pending join
/// it; a process that did not opt in never sees one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgradable_processes_hear_outdated_with_the_changed_sources() {
    let v = App::new()
        .entry("  - {name: lib, kind: library.lua, source: \"return { tag = 'v1' }\"}\n")
        .lua(
            "watcher",
            r#"
local lib = require("lib")
return { main = function(parent, opt_in)
  if opt_in then process.set_options({ upgradable = true }) end
  local opts = process.get_options()
  process.send(parent, "ready", opts.upgradable)
  local r = channel.select({ process.events():case_receive(), require("time").after("1500ms"):case_receive() })
  if r.channel ~= process.events() then return { none = true } end
  local ev = r.value
  table.sort(ev.sources)
  return { kind = ev.kind, is_const = ev.kind == process.event.OUTDATED, sources = ev.sources }
end }
"#,
        )
        .entry("    imports: {lib: lib}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local events = process.events()
  local a = process.spawn_monitored("app:watcher", "app:host", process.pid(), true)
  local b = process.spawn_monitored("app:watcher", "app:host", process.pid(), false)
  local ready = { process.inbox():receive():payload():data(), process.inbox():receive():payload():data() }
  local _, err = registry.changes()
    :update({ id = "app:lib", data = { source = "return { tag = 'v2' }" } })
    :apply()
  local out = { ready = ready, err = err and tostring(err) }
  for _ = 1, 2 do
    local ev = events:receive()
    out[ev.from == a and "a" or "b"] = ev.result.value
  end
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["err"], serde_json::Value::Null, "{v}");
    assert_eq!(
        v["a"],
        json!({"kind": "OUTDATED", "is_const": true, "sources": ["app:lib", "app:watcher"]}),
        "{v}"
    );
    assert_eq!(v["b"], json!({"none": true}), "{v}");
}

/// README ("changes reaching what runs"): services whose code changed restart one at a
/// time: the next one is stopped only once the one before runs the new code. Each worker
/// says "down" when cancelled (and takes 100 ms to end) and "up" when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_services_restart_one_at_a_time() {
    const SAYS: &str = r#"
local time = require("time")
return { main = function(name)
  local function say(what)
    local log = process.registry.lookup("log")
    if log then process.send(log, what, name .. " TAG") end
  end
  say("up")
  process.events():receive()
  say("down")
  time.sleep(100 * time.MILLISECOND)
end }
"#;
    let main = format!(
        "{HELPERS}{}",
        r#"
return { main = function()
  process.registry.register("log")
  local v, err = registry.changes()
    :update({ id = "app:worker", data = { source = NEW_WORKER, method = "main", modules = { "time" } } })
    :apply()
  if not v then return { err = tostring(err) } end
  local said = {}
  for i = 1, 6 do
    local r = channel.select({ process.inbox():case_receive(), time.after(5000 * time.MILLISECOND):case_receive() })
    if r.channel ~= process.inbox() then break end
    said[i] = r.value:topic() .. " " .. r.value:payload():data()
  end
  return said
end }
"#
    )
    .replace("NEW_WORKER", &format!("{:?}", SAYS.replace("TAG", "v2")));
    let mut app = App::new().lua("worker", &SAYS.replace("TAG", "v1"));
    for s in ["s1", "s2", "s3"] {
        app = app.entry(&format!(
            "  - {{name: {s}, kind: process.service, process: worker, host: host, input: [{s}], lifecycle: {{auto_start: true, stop_timeout: 2s}}}}\n"
        ));
    }
    let v = app.lua("main", &main).value("main").await;
    let said: Vec<&str> = v
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(said.len(), 6, "{v}");
    let mut names: Vec<&str> = Vec::new();
    for pair in said.chunks(2) {
        let name = pair[0]
            .strip_prefix("down ")
            .and_then(|s| s.strip_suffix(" v1"))
            .unwrap_or_else(|| panic!("a stop expected, then its restart: {v}"));
        assert_eq!(pair[1], format!("up {name} v2"), "{v}");
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["s1", "s2", "s3"], "{v}");
}
