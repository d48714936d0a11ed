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
    assert_eq!(v["missing"], json!({"kind": "NotFound"}));
    assert_eq!(v["unknown"], json!({"kind": "NotFound"}));
    assert_eq!(v["set_port"], true);
    assert_eq!(v["set_token"], true);
    assert_eq!(v["set_fresh"], true);
    assert_eq!(v["locked"], json!({"kind": "PermissionDenied"}));
    assert_eq!(v["literal"], json!({"kind": "PermissionDenied"}));
    assert_eq!(v["os"], json!({"kind": "PermissionDenied"}));
    assert_eq!(v["bad"], json!({"kind": "Invalid"}));
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

/// A value written to a `.env` file is one line: it cannot declare, override or delete
/// another variable of the file, and a read-only variable stays as it is whichever entry
/// (or storage entry of the same file) names it. Wippy: en/system/env.md (`read_only`,
/// `env.storage.file` is a .env file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_cannot_reach_another_variable_of_its_file() {
    let app = App::new()
        .entry("  - {name: dotenv, kind: env.storage.file, file: ./app.env}\n")
        .entry("  - {name: same_file, kind: env.storage.file, file: ./app.env}\n")
        .entry("  - {name: note, kind: env.variable, variable: NOTE, storage: dotenv}\n")
        .entry("  - {name: secret, kind: env.variable, variable: SECRET, storage: dotenv, read_only: true}\n")
        .entry("  - {name: secret_alias, kind: env.variable, variable: SECRET, storage: dotenv}\n")
        .entry("  - {name: secret_other, kind: env.variable, variable: SECRET, storage: same_file}\n")
        .lua(
            "main",
            r#"
local env = require("env")
return { main = function()
  local function try(name, value)
    local ok, err = env.set(name, value)
    return { ok = ok, kind = err and err:kind(), msg = err and tostring(err) }
  end
  return {
    lf = try("note", "x\nSECRET=evil"),
    cr = try("note", "x\rSECRET=evil"),
    nul = try("note", "x\0SECRET=evil"),
    alias = try("secret_alias", "evil"),
    other = try("secret_other", "evil"),
    plain = try("note", "fine = with spaces"),
    secret = env.get("secret"),
    note = env.get("note"),
  }
end }
"#,
        );
    app.write("app.env", "SECRET=kept\nNOTE=first\n");
    let v = app.value("main").await;
    for k in ["lf", "cr", "nul"] {
        assert_eq!(v[k]["kind"], "Invalid", "{k}: {v}");
        assert!(
            v[k]["msg"]
                .as_str()
                .unwrap()
                .contains("env.set: app:note: value: contains"),
            "{v}"
        );
    }
    assert_eq!(v["alias"]["kind"], "PermissionDenied", "{v}");
    assert!(
        v["alias"]["msg"]
            .as_str()
            .unwrap()
            .contains("SECRET in app:dotenv is read_only (declared so by app:secret)"),
        "{v}"
    );
    assert_eq!(v["other"]["kind"], "PermissionDenied", "{v}");
    assert_eq!(v["plain"]["ok"], true, "{v}");
    assert_eq!(v["secret"], "kept");
    assert_eq!(v["note"], "fine = with spaces");
    let file = std::fs::read_to_string(app.path().join("app.env")).unwrap();
    assert_eq!(file, "SECRET=kept\nNOTE=fine = with spaces\n");
    // written through a temporary file that was renamed: nothing else is left beside it
    let mut names: Vec<String> = std::fs::read_dir(app.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("app.env"))
        .collect();
    names.sort();
    assert_eq!(names, ["app.env"]);
}

/// en/system/env.md: `env.storage.static` (read only: PERMISSION_DENIED on set),
/// `env.storage.router` (reads search in order, writes go to the first storage),
/// `env.storage.file` with `file_path` and `auto_create`, and `readonly` on a variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_router_and_file_storages_as_wippy_declares_them() {
    let app = App::new()
        .entry("  - {name: defaults, kind: env.storage.static, values: {API_HOST: 'https://api.example.com', APP_ENV: production}}\n")
        .entry("  - {name: mem, kind: env.storage.memory}\n")
        .entry("  - {name: config, kind: env.storage.router, storages: [app:mem, app:defaults]}\n")
        .entry("  - {name: secrets, kind: env.storage.file, file_path: ./conf/secrets.env, auto_create: true, file_mode: 0600, dir_mode: 0700}\n")
        .entry("  - {name: api_host, kind: env.variable, variable: API_HOST, storage: app:config}\n")
        .entry("  - {name: app_env, kind: env.variable, variable: APP_ENV, storage: app:defaults}\n")
        .entry("  - {name: key, kind: env.variable, variable: KEY, storage: app:secrets, readonly: true}\n")
        .entry("  - {name: note, kind: env.variable, variable: NOTE, storage: app:secrets, default: none}\n")
        .lua(
            "main",
            r#"
local env = require("env")
return { main = function()
  local function kind(v, err) return { v = v, kind = err and err:kind() } end
  local out = { host = env.get("API_HOST"), static_set = kind(env.set("app_env", "dev")),
                key_set = kind(env.set("key", "k")), note = env.get("note") }
  out.routed_set = env.set("api_host", "http://localhost")
  out.host_after = env.get("API_HOST")
  out.app_env = env.get("APP_ENV")
  out.note_set = env.set("note", "hi")
  out.note_after = env.get("note")
  return out
end }
"#,
        );
    let v = app.value("main").await;
    assert_eq!(v["host"], "https://api.example.com", "{v}");
    assert_eq!(v["static_set"], json!({"kind": "PermissionDenied"}));
    assert_eq!(v["key_set"], json!({"kind": "PermissionDenied"}));
    assert_eq!(v["note"], "none");
    assert_eq!(v["routed_set"], true);
    assert_eq!(v["host_after"], "http://localhost");
    assert_eq!(v["app_env"], "production");
    assert_eq!(v["note_set"], true);
    assert_eq!(v["note_after"], "hi");
    let file = app.path().join("conf/secrets.env");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "NOTE=hi\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&app.path().join("conf")), 0o700);
    }
}
