//! The `registry` module's read side: `get`, `find`, `parse_id`, and `registry.entry`
//! data entries (issue 20, first part).

mod common;

use common::App;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_reads_and_finds_entries() {
    let v = App::new()
        .entry("  - {name: cfg, kind: registry.entry, meta: {type: config}, data: {retries: 3, url: 'http://x'}}\n")
        .entry("  - {name: t1, kind: registry.entry, meta: {type: test, suite: math}, data: {n: 1}}\n")
        .entry("  - {name: t2, kind: registry.entry, meta: {type: test, suite: text}, n: 2}\n")
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
    tests = ids(registry.find({ type = "test" })),
    math = ids(registry.find({ ["meta.type"] = "test", suite = "math" })),
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
            "missing": "NOT_FOUND", "invalid": "INVALID",
            "tests": ["app:t1", "app:t2"], "math": ["app:t1"],
            "data": ["app:cfg", "app:t1", "app:t2"], "funcs": ["app:f"], "none": 0,
            "inline_data": {"n": 2},
            "parsed": ["app.sub", "thing"],
        })
    );
}
