//! The `registry` module's read side: `get`, `find`, `parse_id`, and `registry.entry`
//! data entries (issue 20, first part).

mod common;

use common::ExecWithin;

use common::App;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_reads_and_finds_entries() {
    let v = App::new()
        .entry("  - {name: cfg, kind: registry.entry, meta: {type: config}, data: {retries: 3, url: 'http://x'}}\n")
        .entry("  - {name: t1, kind: registry.entry, meta: {type: test, suite: math}, data: {n: 1}}\n")
        .entry("  - {name: t2, kind: registry.entry, meta: {type: test, suite: text}, n: 2}\n")
        .entry("  - {name: tagged, kind: registry.entry, meta: {tags: [api, backend, v2]}}\n")
        .func("f", "return { main = function() return 1 end }", None)
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local function ids(list)
    local out = {}
    for _, e in ipairs(list) do table.insert(out, e.id) end
    table.sort(out)
    return out
  end
  local cfg = registry.get("app:cfg")
  local _, missing = registry.get("app:nope")
  local _, invalid = registry.get("nonamespace")
  local p = registry.parse_id("app.sub:thing")
  return {
    cfg = { id = cfg.id, kind = cfg.kind, meta = cfg.meta, data = cfg.data },
    missing = missing:kind(), invalid = invalid:kind(),
    -- en/lua/core/registry.md and Wippy's finder: a meta key without `meta.` is ignored
    tests = #registry.find({ type = "test" }),
    math = ids(registry.find({ ["meta.type"] = "test", suite = "math" })),
    ops = {
      regex = ids(registry.find({ ["~meta.suite"] = "^ma" })),
      contains = ids(registry.find({ ["*meta.suite"] = "ex" })),
      prefix = ids(registry.find({ ["^meta.suite"] = "te" })),
      suffix = ids(registry.find({ ["$meta.suite"] = "th" })),
      name_glob = ids(registry.find({ [".name"] = "t*" })),
      id_glob = ids(registry.find({ [".id"] = "*:cfg" })),
      all_tags = ids(registry.find({ ["meta.tags"] = { "api", "v2" } })),
      missing_tag = ids(registry.find({ ["meta.tags"] = { "api", "v3" } })),
      tag_contains = ids(registry.find({ ["*meta.tags"] = "back" })),
      number = ids(registry.find({ ["meta.type"] = "config", [".kind"] = "registry.entry" })),
    },
    data = ids(registry.find({ [".kind"] = "registry.*" })),
    funcs = ids(registry.find({ [".kind"] = "function.lua", [".ns"] = "app" })),
    none = #registry.find({ [".ns"] = "other" }),
    inline_data = registry.get("app:t2").data,
    parsed = { p.ns, p.name },
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "cfg": {"id": "app:cfg", "kind": "registry.entry", "meta": {"type": "config"},
                    "data": {"retries": 3, "url": "http://x"}},
            "missing": "NotFound", "invalid": "Invalid",
            "tests": 7, "math": ["app:t1", "app:t2"],
            "ops": {"regex": ["app:t1"], "contains": ["app:t2"], "prefix": ["app:t2"],
                    "suffix": ["app:t1"], "name_glob": ["app:t1", "app:t2", "app:tagged"],
                    "id_glob": ["app:cfg"], "all_tags": ["app:tagged"], "missing_tag": [],
                    "tag_contains": ["app:tagged"], "number": ["app:cfg"]},
            "data": ["app:cfg", "app:t1", "app:t2", "app:tagged"], "funcs": ["app:f"], "none": 0,
            "inline_data": {"n": 2},
            "parsed": ["app.sub", "thing"],
        })
    );
}

/// A changeset creates, updates and deletes entries in one new version; snapshots taken
/// before keep what they saw; versions are numbered, listed and kept; `build_delta` lists
/// what differs; `apply_version` rolls back as a new version; a created function is
/// callable at once and an updated one runs its new code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changesets_make_numbered_versions_that_code_sees() {
    let v = App::new()
        .entry("  - {name: cfg, kind: registry.entry, meta: {type: config}, data: {retries: 3}}\n")
        .entry("  - {name: old, kind: registry.entry, data: {gone: false}}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
local funcs = require("funcs")
return { main = function()
  local before = registry.snapshot()
  local v1 = registry.current_version()
  local cs = registry.changes()
  cs:create({ id = "app:added", kind = "registry.entry", meta = { type = "config" }, data = { n = 1 } })
  cs:update({ id = "app:cfg", data = { retries = 5 } })
  cs:delete("app:old")
  cs:create({ id = "app:double", kind = "function.lua",
              data = { source = "return { main = function(x) return x * 2 end }", method = "main" } })
  local planned = #cs:ops()
  local v2, err = cs:apply()
  if not v2 then return { err = tostring(err) } end
  local doubled = funcs.call("app:double", 21)
  local up = registry.changes()
  up:update({ id = "app:double",
              data = { source = "return { main = function(x) return x * 3 end }", method = "main" } })
  local v3 = up:apply()
  local tripled = funcs.call("app:double", 21)
  local cfg = registry.get("app:cfg")
  local _, gone = registry.get("app:old")
  local delta = registry.build_delta(before, registry.snapshot())
  local kinds = {}
  for _, op in ipairs(delta) do table.insert(kinds, op.kind .. " " .. op.entry.id) end
  table.sort(kinds)
  local ids = {}
  for _, v in ipairs(registry.versions()) do table.insert(ids, v:id()) end
  local at2 = registry.snapshot_at(2)
  local back = registry.apply_version(1)
  local _, after_rollback = registry.get("app:added")
  return {
    planned = planned,
    versions = { v1:id(), v2:id(), v3:id(), back:id() },
    previous = v3:previous():id(),
    doubled = doubled, tripled = tripled,
    cfg = { cfg.data.retries, cfg.meta.type },
    gone = gone:kind(),
    before_cfg = before:get("app:cfg").data.retries,
    before_old = before:get("app:old").data.gone,
    at2 = at2:get("app:double").kind,
    added = #before:find({ [".name"] = "added" }) .. "/" .. #registry.snapshot_at(2):find({ [".name"] = "added" }),
    delta = kinds,
    ids = ids,
    history_current = registry.history():get_current():id(),
    rollback = { after_rollback:kind(), registry.get("app:old").data.gone, registry.get("app:cfg").data.retries },
    ns = #registry.snapshot():namespace("app"),
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v.get("err"), None, "{v}");
    assert_eq!(v["planned"], 4);
    assert_eq!(v["versions"], json!([1, 2, 3, 4]));
    assert_eq!(v["previous"], 2);
    assert_eq!(v["doubled"], 42);
    assert_eq!(v["tripled"], 63);
    assert_eq!(v["cfg"], json!([5, "config"]));
    assert_eq!(v["gone"], "NotFound");
    assert_eq!(v["before_cfg"], 3);
    assert_eq!(v["before_old"], false);
    assert_eq!(v["at2"], "function.lua");
    assert_eq!(v["added"], "0/1");
    assert_eq!(
        v["delta"],
        json!([
            "entry.create app:added",
            "entry.create app:double",
            "entry.delete app:old",
            "entry.update app:cfg"
        ])
    );
    assert_eq!(v["ids"], json!([1, 2, 3]));
    assert_eq!(v["history_current"], 4);
    assert_eq!(v["rollback"], json!(["NotFound", false, 3]));
    // host, cfg, old, main
    assert_eq!(v["ns"], 4);
}

/// A spawn after a change of the registry runs the entry as the registry now holds it,
/// from the same process as before: the new code, and "not found" once the entry is
/// deleted. Wippy's pages have a running process keep its code until it upgrades
/// (concepts/process-model.md, "Process Upgrading"; lua/core/process.md, `OUTDATED`) and
/// changesets change the registry (lua/core/registry.md); that a new spawn reads the
/// registry as it is, they take for granted. warden's spawn keeps the entry it last found
/// per worker; a new registry version must not see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_after_a_change_runs_the_entry_as_it_is_now() {
    let v = App::new()
        .lua(
            "child",
            "return { main = function(parent) process.send(parent, 'v', 1) end }",
        )
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local inbox = process.inbox()
  local function version_of_a_spawn()
    local pid, err = process.spawn("app:child", "app:host", process.pid())
    if not pid then return tostring(err) end
    return inbox:receive():payload():data()
  end
  local first, again = version_of_a_spawn(), version_of_a_spawn()
  local up = registry.changes()
  up:update({ id = "app:child", kind = "process.lua",
              data = { source = "return { main = function(parent) process.send(parent, 'v', 2) end }",
                       method = "main" } })
  assert(up:apply())
  local changed = version_of_a_spawn()
  local del = registry.changes()
  del:delete("app:child")
  assert(del:apply())
  return { first, again, changed, version_of_a_spawn() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v[0], 1, "{v}");
    assert_eq!(v[1], 1, "{v}");
    assert_eq!(v[2], 2, "{v}");
    let gone = v[3].as_str().unwrap_or_default();
    assert!(
        gone.contains("app:child") && gone.contains("not found"),
        "{v}"
    );
}

/// A changeset with a broken entry is refused whole, with the errors a load gives, and
/// nothing of it is applied: a Lua syntax error, an import of an entry that is gone, a
/// service of a missing process, an update of a missing entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_changeset_applies_nothing_and_says_why() {
    let v = App::new()
        .entry("  - {name: util, kind: library.lua, source: 'return { x = 1 }'}\n")
        .func(
            "user",
            "local u = require('u')\nreturn { main = function() return u.x end }",
            None,
        )
        .entry("    imports: {u: util}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local function try(build)
    local cs = registry.changes()
    build(cs)
    local v, err = cs:apply()
    return { v = v and v:id(), kind = err and err:kind(), text = err and tostring(err),
             count = err and #err:details().errors }
  end
  local syntax = try(function(cs)
    cs:create({ id = "app:fine", kind = "registry.entry", data = { a = 1 } })
    cs:create({ id = "app:bad", kind = "function.lua",
                data = { source = "return { main = function( end }", method = "main" } })
  end)
  local import = try(function(cs) cs:delete("app:util") end)
  local service = try(function(cs)
    cs:create({ id = "app:svc", kind = "process.service", data = { process = "app:nothing" } })
  end)
  local missing = try(function(cs) cs:update({ id = "app:nope", kind = "registry.entry" }) end)
  -- two broken entries: both named, nothing applied
  -- a load error and a service error: both named
  local phases = try(function(cs)
    cs:create({ id = "app:bad2", kind = "function.lua",
                data = { source = "return { main = function( end }", method = "main" } })
    cs:create({ id = "app:svc3", kind = "process.service", data = { process = "app:nothing3" } })
  end)
  local both = try(function(cs)
    cs:create({ id = "app:bad1", kind = "function.lua",
                data = { source = "return { main = function( end }", method = "main" } })
    cs:create({ id = "app:user2", kind = "function.lua",
                data = { source = "return { main = function() end }", method = "main",
                         imports = { g = "app:nothing2" } } })
  end)
  local _, fine = registry.get("app:fine")
  return {
    syntax = syntax, import = import, service = service, missing = missing, both = both,
    phases = phases,
    fine = fine:kind(), version = registry.current_version():id(),
    util = registry.get("app:util").kind,
  }
end }
"#,
        )
        .value("main")
        .await;
    for case in ["syntax", "import", "service", "missing", "both", "phases"] {
        assert_eq!(v[case]["v"], json!(null), "{case}: {v}");
        assert_eq!(v[case]["kind"], "Invalid", "{case}: {v}");
        let want = if case == "both" || case == "phases" {
            2
        } else {
            1
        };
        assert_eq!(v[case]["count"], want, "{case}: {v}");
    }
    assert!(
        text_of(&v, "phases").contains("app:bad2")
            && text_of(&v, "phases").contains("app:nothing3"),
        "{}",
        text_of(&v, "phases")
    );
    assert!(
        text_of(&v, "both").contains("app:bad1") && text_of(&v, "both").contains("app:nothing2"),
        "{}",
        text_of(&v, "both")
    );
    let text = |case: &str| text_of(&v, case);
    assert!(
        text("syntax").contains("changeset: entry app:bad: field source:"),
        "{}",
        text("syntax")
    );
    assert!(
        text("syntax").contains("nothing applied"),
        "{}",
        text("syntax")
    );
    assert!(
        text("import").contains(
            "entry app:user: field imports.u: dangling reference: app:util does not exist"
        ),
        "{}",
        text("import")
    );
    assert!(text("service").contains("app:svc"), "{}", text("service"));
    assert!(
        text("service").contains("app:nothing"),
        "{}",
        text("service")
    );
    assert!(
        text("missing").contains("cannot update: no such entry"),
        "{}",
        text("missing")
    );
    assert_eq!(v["fine"], "NotFound");
    assert_eq!(v["version"], 1);
    assert_eq!(v["util"], "library.lua");
}

/// en/internals/registry.md ("Transactions", "Non-propagating Entries"): every applied
/// change is published on the event bus, system `registry`: `registry.begin`, one event
/// per operation (kind `entry.create` / `entry.update` / `entry.delete`, path the id),
/// then `registry.commit`; changes of `registry.entry` data are not published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_changes_are_events() {
    let v = App::new()
        .entry("  - {name: a, kind: library.lua, source: 'return 1'}\n")
        .entry("  - {name: cfg, kind: registry.entry, data: {n: 1}}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
local events = require("events")
return { main = function()
  local sub = events.subscribe("registry")
  local entries = events.subscribe("registry", "entry.*")
  registry.changes()
    :create({ id = "app:b", kind = "library.lua", data = { source = "return 2" } })
    :update({ id = "app:a", data = { source = "return 10" } })
    :update({ id = "app:cfg", data = { n = 2 } })
    :apply()
  registry.changes():delete("app:b"):apply()
  local seen = {}
  for i = 1, 7 do
    local e = sub:channel():receive()
    table.insert(seen, e.kind .. " " .. e.path .. " " .. tostring(type(e.data) == "table" and e.data.version or e.data))
  end
  local n = 0
  while true do
    local r = channel.select({ entries:channel():case_receive(), default = true })
    if r.default then break end
    n = n + 1
  end
  return { seen = seen, entry_events = n, kind = "x" }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v["seen"],
        json!([
            "registry.begin 2 2",
            "entry.create app:b 2",
            "entry.update app:a 2",
            "registry.commit 2 2",
            "registry.begin 3 3",
            "entry.delete app:b 3",
            "registry.commit 3 3"
        ])
    );
    assert_eq!(v["entry_events"], 3);
}

/// en/lua/core/registry.md, "Versions" and "History": `version:next()` (nil for the
/// newest), `tostring` of a version, `history:snapshot_at(version)`, and
/// `registry.snapshot_at` taking a version object as well as its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_walk_both_ways_and_give_their_snapshots() {
    let v = App::new()
        .entry("  - {name: cfg, kind: registry.entry, data: {n: 1}}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local v1 = registry.current_version()
  local v2 = registry.changes():update({ id = "app:cfg", data = { n = 2 } }):apply()
  local next = v1:next()
  local hist = registry.history()
  local snap1 = hist:snapshot_at(v1)
  local snap2 = registry.snapshot_at(v2)
  local _, bad = hist:snapshot_at("x")
  return {
    next_is_v2 = next:id() == v2:id(), newest_next = v2:next() == nil,
    text = tostring(v2) == v2:string(),
    n1 = snap1:get("app:cfg").data.n, n2 = snap2:get("app:cfg").data.n,
    bad = bad:kind(),
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"next_is_v2": true, "newest_next": true, "text": true, "n1": 1, "n2": 2, "bad": "Invalid"})
    );
}

/// Issue 34: loading the app's files again (`run --watch`) applies what changed in the
/// files, and keeps the entries a changeset created at run time (they are in no file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_the_files_keeps_entries_created_at_run_time() {
    let app = App::new()
        .entry("  - {name: cfg, kind: registry.entry, data: {n: 1}}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local _, err = registry.changes()
    :create({ id = "app:made", kind = "registry.entry", data = { n = 7 } })
    :apply()
  return err == nil
end }
"#,
        );
    let rt = app.start().await;
    let made = rt
        .exec_within(&warden::registry::Id::new("app", "main"), vec![])
        .await
        .unwrap();
    assert!(
        matches!(
            made,
            warden::process::Exit::Normal(warden::value::Value::Bool(true))
        ),
        "{made:?}"
    );
    // a file changes: cfg's data
    let yaml = std::fs::read_to_string(app.path().join("_index.yaml")).unwrap();
    std::fs::write(
        app.path().join("_index.yaml"),
        yaml.replace("{n: 1}", "{n: 2}"),
    )
    .unwrap();
    let fresh = warden::registry::load_dir(app.path()).unwrap();
    let handle = rt.services().registry.clone();
    let v = handle.reload(fresh).await.expect("reload applies");
    assert!(v.is_some(), "the file change made a version");
    let reg = rt.node().registry();
    let id = |s: &str| warden::registry::Id::parse(s).unwrap();
    assert!(
        reg.get(&id("app:made")).is_some(),
        "the created entry stays"
    );
    assert_eq!(reg.get(&id("app:cfg")).unwrap().raw["data"]["n"], 2);
    rt.shutdown().await;
}

/// en/lua/core/registry.md, "Build Delta": two lists of entry tables give the operations
/// from one to the other (create, update, delete), entries named by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_delta_takes_lists_of_entries() {
    let v = App::new()
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  local from = {
    {id = "test:a", kind = "test", meta = {}, data = {}},
    {id = "test:same", kind = "test", meta = {x = 1}, data = {n = 1}},
    {id = "test:changed", kind = "test", meta = {}, data = {n = 1}},
  }
  local to = {
    {id = "test:b", kind = "test", meta = {}, data = {}},
    {id = "test:same", kind = "test", meta = {x = 1}, data = {n = 1}},
    {id = "test:changed", kind = "test", meta = {}, data = {n = 2}},
  }
  local ops, err = registry.build_delta(from, to)
  if not ops then return tostring(err) end
  local out = {}
  for _, op in ipairs(ops) do table.insert(out, op.kind .. " " .. (op.entry.id or op.entry)) end
  local _, bad = registry.build_delta({{kind = "test"}}, {})
  return { ops = out, bad = bad and bad:kind() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"ops": ["entry.create test:b", "entry.update test:changed", "entry.delete test:a"],
               "bad": "Invalid"})
    );
}

fn text_of(v: &serde_json::Value, case: &str) -> String {
    v[case]["text"].as_str().unwrap_or_default().to_string()
}

/// README, "registry": the last 1,000 versions are kept (warden's choice: Wippy's page
/// names no number): after 1,005 changes the oldest kept is version 7 of 1,006, and an
/// older one is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_thousand_versions_are_kept() {
    let v = App::new()
        .entry("  - {name: cfg, kind: registry.entry, data: {n: 0}}\n")
        .lua(
            "main",
            r#"
local registry = require("registry")
return { main = function()
  for i = 1, 1005 do
    local cs = registry.changes()
    cs:update({ id = "app:cfg", data = { n = i } })
    assert(cs:apply())
  end
  local vs = registry.versions()
  local _, gone = registry.snapshot_at(6)
  local kept = registry.snapshot_at(7)
  return { count = #vs, first = vs[1]:id(), last = vs[#vs]:id(),
           gone = gone and gone:kind(), kept = kept ~= nil,
           current = registry.current_version():id() }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"count": 1000, "first": 7, "last": 1006, "gone": "NotFound", "kept": true, "current": 1006})
    );
}
