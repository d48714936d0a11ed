//! Isolation: no process can change what another process sees. A hostile process (and a
//! hostile function call) tries every way Lua offers to reach a shared table, function or
//! metatable; an honest process on the same worker thread (a host of one worker, so both
//! share one Lua state) then checks that nothing it can see has changed.

mod common;

use common::App;

/// The shared tables a process reaches: globals and the built-in modules.
const TARGETS: &str = r#"
local json, time, env, logger, funcs, uuid, registry, events, pg, system =
  require("json"), require("time"), require("env"), require("logger"), require("funcs"),
  require("uuid"), require("registry"), require("events"), require("pg"), require("system")
local targets = {
  string = string, table = table, math = math, os = os, utf8 = utf8, coroutine = coroutine,
  process = process, channel = channel, errors = errors, payload = payload,
  ["process.registry"] = process.registry, ["process.event"] = process.event,
  json = json, time = time, env = env, logger = logger, funcs = funcs, uuid = uuid,
  registry = registry, events = events, pg = pg, system = system,
}
"#;

/// Every way of writing into a shared table that Lua offers without the debug library.
const ATTACK: &str = r#"
local done = {}
local function pwn() return "pwned" end
local function try(what, f)
  local ok, err = pcall(f)
  if ok then done[#done + 1] = what end
end
local function overwrite(raw)
  if type(raw) ~= "table" then error("not a table") end
  local keys = {}
  for k in next, raw do keys[#keys + 1] = k end
  for _, k in ipairs(keys) do raw[k] = pwn end
  if #keys == 0 then error("nothing to write") end
end
for name, t in pairs(targets) do
  -- pairs and its iterator hand back the state they iterate
  try("pairs state " .. name, function() local _, raw = pairs(t) overwrite(raw) end)
  try("pairs iterator " .. name, function()
    local it, st = pairs(t)
    local k = it(st)
    if k == nil then error("empty") end
    local ok = pcall(function() st[k] = pwn end)
    if not ok then rawset(st, k, pwn) end
  end)
  try("next " .. name, function()
    local k = next(t)
    if k == nil then error("empty") end
    rawset(t, k, pwn)
  end)
  try("rawset " .. name, function() rawset(t, "format", pwn) end)
  try("assign " .. name, function() t.format = pwn end)
  try("getmetatable " .. name, function()
    local mt = getmetatable(t)
    pcall(overwrite, mt)
    overwrite(mt.__index)
  end)
  try("setmetatable " .. name, function() setmetatable(t, { __index = function() return pwn end }) end)
  try("load env " .. name, function() load("format = ...; pid = ...; encode = ...", "x", "t", t)(pwn) end)
  try("table.insert " .. name, function() table.insert(t, pwn) end)
end
-- the metatables of strings, messages and userdata
try("string metatable", function()
  local mt = getmetatable("")
  pcall(overwrite, mt)
  overwrite(mt.__index)
end)
try("userdata metatable", function()
  for _, u in ipairs({ process.inbox(), process.events(), channel.new(0), errors.new("x") }) do
    local mt = getmetatable(u)
    pcall(overwrite, mt)
    overwrite(mt.__index)
  end
end)
try("string methods through a value", function() local s = "" s.format = pwn end)
-- a library the standard Lua has but the sandbox does not give
try("debug", function() debug.setupvalue(string.rep, 1, pwn) end)
try("package", function() package.loaded.string.format = pwn end)
try("_G's metatable", function() setmetatable(_G, nil) end)
try("coroutine's globals", function()
  local co = coroutine.create(function() local _, raw = pairs(string) overwrite(raw) end)
  local ok, err = coroutine.resume(co)
  if not ok then error(err) end
end)
try("os.execute", function() os.execute("true") end)
try("os.getenv", function() return os.getenv("HOME") .. "" end)
"#;

/// What an honest process checks: each value it can see (by identity) and a few calls.
const CHECK: &str = r#"
local function snapshot()
  local s = {}
  for name, t in pairs(targets) do
    for k, v in pairs(t) do s[name .. "." .. tostring(k)] = tostring(v) end
  end
  s["(\"\").format"] = tostring(("").format)
  s["string.format(%d, 42)"] = string.format("%d", 42)
  s["(\"ab\"):rep(2)"] = ("ab"):rep(2)
  s["process.pid()"] = type(process.pid()) .. ":" .. tostring(process.pid() ~= "pwned")
  s["json.encode"] = json.encode({ 1 })
  s["table.concat"] = table.concat({ "a", "b" }, ",")
  s["math.floor(1.5)"] = tostring(math.floor(1.5))
  return s
end
local function changed(before, after)
  local out = {}
  for k, v in pairs(before) do
    if after[k] ~= v then out[#out + 1] = k .. ": " .. tostring(v) .. " -> " .. tostring(after[k]) end
  end
  for k, v in pairs(after) do
    if before[k] == nil then out[#out + 1] = k .. " added: " .. tostring(v) end
  end
  table.sort(out)
  return out
end
"#;

fn process_src(body: &str) -> String {
    format!("{TARGETS}\n{ATTACK}\n{CHECK}\n{body}")
}

/// The hostile process and the honest one share one worker: the honest one snapshots what
/// it sees, waits while the hostile one tries every way in, and finds nothing changed.
/// (Wippy's process model: en/concepts/process-model.md, "isolated".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_process_changes_nothing_another_process_on_its_worker_sees() {
    let v = App::with_host(1, 1024)
        .lua(
            "honest",
            &process_src(
                r#"
return { main = function()
  local before = snapshot()
  local m = process.inbox():receive()
  process.send(m:from(), "report", { changed = changed(before, snapshot()), fresh = changed(before, before) })
end }
"#,
            ),
        )
        .lua(
            "hostile",
            &process_src("return { main = function() return { done = done } end }"),
        )
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  local honest = process.spawn("app:honest", "app:host")
  time.sleep(20 * time.MILLISECOND)
  local hostile = process.spawn_monitored("app:hostile", "app:host")
  local ev = process.events():receive()
  local done = ev.result and ev.result.value and ev.result.value.done or ev.result
  process.send(honest, "go", true)
  local r = process.inbox():receive():payload():data()
  -- a process started after the attack sees the same as one started before it
  local late = process.spawn("app:honest", "app:host")
  process.send(late, "go", true)
  local r2 = process.inbox():receive():payload():data()
  return { done = done, changed = r.changed, fresh = r.fresh, late_changed = r2.changed }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["done"], serde_json::json!([]), "ways in that worked: {v}");
    assert_eq!(v["changed"], serde_json::json!([]), "{v}");
    assert_eq!(v["late_changed"], serde_json::json!([]), "{v}");
}

/// The same attacks from a function call: a later call of another function on the same
/// worker thread, and the calling process itself, see nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_function_call_changes_nothing_a_later_call_on_its_worker_sees() {
    let v = App::with_host(1, 1024)
        .func(
            "hostile",
            &process_src("return { main = function() return done end }"),
            Some("{type: static, workers: 1}"),
        )
        .func(
            "honest",
            &process_src("return { main = function() return snapshot() end }"),
            Some("{type: static, workers: 1}"),
        )
        .lua(
            "main",
            &process_src(
                r#"
return { main = function()
  local funcs = require("funcs")
  local before = snapshot()
  local first = assert(funcs.call("app:honest"))
  local done = funcs.call("app:hostile")
  local second = assert(funcs.call("app:honest"))
  return { done = done, caller = changed(before, snapshot()), call = changed(first, second) }
end }
"#,
            ),
        )
        .value("main")
        .await;
    assert_eq!(v["done"], serde_json::json!([]), "ways in that worked: {v}");
    assert_eq!(v["caller"], serde_json::json!([]), "{v}");
    assert_eq!(v["call"], serde_json::json!([]), "{v}");
}

/// A function instance runs each of its calls in its own coroutine, which it may keep
/// (`coroutine.running()` in a global) and look at in a later call: that coroutine never
/// runs another function's call or a process, so what it reaches is itself. Here the
/// keeper saves its coroutine, another function then waits (suspended) in a call on the
/// same worker, and the keeper's next call finds its saved coroutine running (itself),
/// not suspended, and cannot resume it; the other call ends untouched. Statuses as
/// en/lua/core/base.md, "Coroutines", names them ("running", "suspended", ...).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_keeps_its_coroutine_reaches_no_other_call_through_it() {
    let v = App::with_host(1, 1024)
        .func(
            "keeper",
            r#"
local saved
return { main = function(op)
  if op == "save" then
    saved = coroutine.running()
    return "saved"
  end
  local status = coroutine.status(saved)
  local resumed = coroutine.resume(saved)
  return { status = status, resumed = resumed, same = saved == coroutine.running() }
end }
"#,
            Some("{type: static, size: 1}"),
        )
        .func(
            "sleeper",
            r#"
local time = require("time")
return { main = function(ms) time.sleep(ms * time.MILLISECOND) return "slept" end }
"#,
            Some("{type: static, size: 1}"),
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
local time = require("time")
return { main = function()
  local saved = funcs.call("app:keeper", "save")
  local done = channel.new(1)
  coroutine.spawn(function() done:send(funcs.call("app:sleeper", 100)) end)
  time.sleep("20ms")
  local probe = funcs.call("app:keeper", "probe")
  return { saved = saved, probe = probe, slept = done:receive() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["saved"], "saved", "{v}");
    assert_ne!(v["probe"]["status"], "suspended", "{v}");
    assert_eq!(v["probe"]["resumed"], false, "{v}");
    assert_eq!(v["slept"], "slept", "{v}");
}
