//! The `env` module over `env.variable` entries and the `env.storage.*` kinds.

mod common;

use common::App;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_are_read_and_written_through_their_storages() {
    let app = App::new()
        .entry("  - {name: os_env, kind: env.storage.os}\n")
        .entry("  - {name: mem, kind: env.storage.memory, values: {PORT: 8080, LOCKED: x}}\n")
        .entry("  - {name: dotenv, kind: env.storage.file, file: ./app.env}\n")
        .entry("  - {name: pkg, kind: env.variable, variable: CARGO_PKG_NAME, storage: os_env}\n")
        .entry("  - {name: greeting, kind: env.variable, value: hello}\n")
        .entry("  - {name: port, kind: env.variable, variable: PORT, storage: mem}\n")
        .entry("  - {name: locked, kind: env.variable, variable: LOCKED, storage: mem, read_only: true}\n")
        .entry("  - {name: token, kind: env.variable, variable: TOKEN, storage: dotenv}\n")
        .entry("  - {name: fresh, kind: env.variable, variable: FRESH, storage: dotenv, default: none}\n")
        .entry("  - {name: missing, kind: env.variable, variable: WARDEN_TEST_SURELY_UNSET}\n")
        .lua(
            "main",
            r#"
local env = require("env")
return { main = function()
  local function kind(v, err) return { v = v, kind = err and err:kind() } end
  local out = {
    pkg = env.get("pkg"), by_id = env.get("app:greeting"), by_variable = env.get("PORT"),
    token = env.get("token"), fresh = env.get("fresh"),
    missing = kind(env.get("missing")), unknown = kind(env.get("nope")),
    set_port = env.set("port", 9090), set_token = env.set("TOKEN", "xyz"),
    set_fresh = env.set("fresh", "yes"),
    locked = kind(env.set("locked", "y")), literal = kind(env.set("greeting", "bye")),
    os = kind(env.set("pkg", "other")), bad = kind(env.set("port", {})),
  }
  out.port_after = env.get("port")
  out.token_after = env.get("token")
  out.all = env.get_all()
  return out
end }
"#,
        );
    app.write("app.env", "# secrets\nexport TOKEN=\"abc\"\nOTHER=1\n");
    let v = app.value("main").await;
    assert_eq!(v["pkg"], "warden");
    assert_eq!(v["by_id"], "hello");
    assert_eq!(v["by_variable"], "8080");
    assert_eq!(v["token"], "abc");
    assert_eq!(v["fresh"], "none");
    assert_eq!(v["missing"], json!({"kind": "NOT_FOUND"}));
    assert_eq!(v["unknown"], json!({"kind": "NOT_FOUND"}));
    assert_eq!(v["set_port"], true);
    assert_eq!(v["set_token"], true);
    assert_eq!(v["set_fresh"], true);
    assert_eq!(v["locked"], json!({"kind": "PERMISSION_DENIED"}));
    assert_eq!(v["literal"], json!({"kind": "PERMISSION_DENIED"}));
    assert_eq!(v["os"], json!({"kind": "PERMISSION_DENIED"}));
    assert_eq!(v["bad"], json!({"kind": "INVALID"}));
    assert_eq!(v["port_after"], "9090");
    assert_eq!(v["token_after"], "xyz");
    assert_eq!(v["all"]["PORT"], "9090");
    assert_eq!(v["all"]["greeting"], "hello");
    assert!(v["all"].get("WARDEN_TEST_SURELY_UNSET").is_none());
    let file = std::fs::read_to_string(app.path().join("app.env")).unwrap();
    assert_eq!(file, "# secrets\nTOKEN=xyz\nOTHER=1\nFRESH=yes\n");
}

#[test]
fn a_variable_storage_must_be_an_env_storage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("_index.yaml"),
        "namespace: app\nentries:\n  - {name: h, kind: terminal.host}\n  - {name: a, kind: env.variable, storage: h}\n  - {name: b, kind: env.variable, storage: gone}\n",
    )
    .unwrap();
    let err = warden::registry::load_dir(dir.path())
        .expect_err("must not load")
        .to_string();
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "_index.yaml: entry app:a: field storage: dangling reference: app:h is a terminal.host, not an env.storage.* entry",
            "_index.yaml: entry app:b: field storage: dangling reference: app:gone does not exist",
        ]
    );
}
