//! Loading YAML apps with `warden::registry::load_dir`.

use std::path::Path;

use tempfile::TempDir;
use warden::registry::{load_dir, EntrySpec, Id, LoadError, LoadErrors, Registry};

/// Writes `text` to `rel` under `dir`, creating parent directories.
fn write(dir: &TempDir, rel: &str, text: &str) {
    let path = dir.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn load_ok(dir: &TempDir) -> Registry {
    match load_dir(dir.path()) {
        Ok(r) => r,
        Err(e) => panic!("expected a successful load, got:\n{e}"),
    }
}

fn load_err(dir: &TempDir) -> LoadErrors {
    match load_dir(dir.path()) {
        Ok(r) => panic!("expected load errors, got {} entries", r.entries.len()),
        Err(e) => e,
    }
}

/// The single error line of a load that must fail with exactly one error.
fn one_error(dir: &TempDir) -> String {
    let errs = load_err(dir);
    assert_eq!(errs.0.len(), 1, "expected exactly one error, got:\n{errs}");
    errs.to_string()
}

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn lua(reg: &Registry, s: &str) -> warden::registry::LuaSpec {
    match &reg
        .get(&id(s))
        .unwrap_or_else(|| panic!("{s} missing"))
        .spec
    {
        EntrySpec::ProcessLua(l) | EntrySpec::LibraryLua(l) | EntrySpec::FunctionLua(l) => {
            l.clone()
        }
        other => panic!("{s} is not a Lua entry: {other:?}"),
    }
}

#[test]
fn loads_all_kinds_with_fields() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/worker.lua",
        "local function main() return 1 end\nreturn {main = main}\n",
    );
    std::fs::create_dir_all(dir.path().join("app/wasm")).unwrap();
    write(
        &dir,
        "app/_index.yaml",
        r#"
version: "1.0"
namespace: app
entries:
  - name: processes
    kind: process.host
    host: {workers: 3, queue_size: 10, local_queue_size: 5}
  - name: worker
    kind: process.lua
    meta: {comment: "the worker", command: {name: work, short: "does work"}}
    source: file://worker.lua
    method: main
    modules: [time, json, time]
    imports: {util: util}
  - name: util
    kind: library.lua
    source: |
      local M = {}
      function M.twice(x) return x * 2 end
      return M
  - name: compute
    kind: function.lua
    source: "return {run = function(a, b) return a * b end}"
    method: run
    pool: {type: lazy, max_size: 4}
  - name: assets
    kind: fs.directory
    directory: ./wasm
  - name: api_key
    kind: env.variable
    variable: API_KEY
    default: none
  - name: port
    kind: env.variable
    value: 8080
  - name: terminal
    kind: terminal.host
  - name: svc
    kind: process.service
    process: app:worker
    host: app:processes
    lifecycle: {auto_start: true}
"#,
    );
    let reg = load_ok(&dir);
    assert!(reg.warnings.is_empty(), "{:?}", reg.warnings);
    let ids: Vec<String> = reg.entries.keys().map(Id::to_string).collect();
    assert_eq!(
        ids,
        [
            "app:api_key",
            "app:assets",
            "app:compute",
            "app:port",
            "app:processes",
            "app:svc",
            "app:terminal",
            "app:util",
            "app:worker"
        ]
    );
    assert_eq!(reg.root, std::path::absolute(dir.path()).unwrap());

    match &reg.get(&id("app:processes")).unwrap().spec {
        EntrySpec::ProcessHost(h) => {
            assert_eq!((h.workers, h.queue_size, h.local_queue_size), (3, 10, 5));
        }
        other => panic!("{other:?}"),
    }

    let worker = reg.get(&id("app:worker")).unwrap();
    assert_eq!(worker.kind, "process.lua");
    assert_eq!(worker.file, dir.path().join("app/_index.yaml"));
    assert_eq!(worker.meta["comment"], "the worker");
    assert_eq!(worker.meta["command"]["name"], "work");
    assert_eq!(worker.raw["method"], "main");
    assert_eq!(worker.raw["imports"]["util"], "util");
    let w = lua(&reg, "app:worker");
    assert_eq!(
        &*w.source,
        "local function main() return 1 end\nreturn {main = main}\n"
    );
    assert_eq!(w.chunk_name, "app/worker.lua");
    assert_eq!(w.method.as_deref(), Some("main"));
    assert_eq!(w.modules, ["time", "json"]);
    assert_eq!(w.imports, [("util".to_string(), id("app:util"))]);
    assert!(w.pool.is_none());

    let u = lua(&reg, "app:util");
    assert!(u.source.contains("function M.twice(x)"));
    assert_eq!(u.chunk_name, "app/_index.yaml#app:util");
    assert_eq!(u.method, None);
    assert!(matches!(
        reg.get(&id("app:util")).unwrap().spec,
        EntrySpec::LibraryLua(_)
    ));
    assert_eq!(
        reg.get(&id("app:util")).unwrap().meta,
        serde_json::Value::Null
    );

    let c = lua(&reg, "app:compute");
    assert_eq!(c.method.as_deref(), Some("run"));
    let pool = c.pool.as_ref().unwrap();
    assert_eq!(pool.kind, warden::registry::PoolKind::Lazy);
    assert_eq!(pool.max_size, 4);

    match &reg.get(&id("app:assets")).unwrap().spec {
        EntrySpec::FsDirectory { directory } => {
            assert_eq!(directory, &dir.path().join("app/wasm"));
            assert!(directory.is_absolute());
        }
        other => panic!("{other:?}"),
    }
    match &reg.get(&id("app:api_key")).unwrap().spec {
        EntrySpec::EnvVariable {
            value,
            variable,
            default,
            storage,
            read_only,
        } => {
            assert_eq!(storage, &None);
            assert!(!read_only);
            assert_eq!(value, &None);
            assert_eq!(variable.as_deref(), Some("API_KEY"));
            assert_eq!(default.as_deref(), Some("none"));
        }
        other => panic!("{other:?}"),
    }
    match &reg.get(&id("app:port")).unwrap().spec {
        EntrySpec::EnvVariable { value, .. } => assert_eq!(value.as_deref(), Some("8080")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        reg.get(&id("app:terminal")).unwrap().spec,
        EntrySpec::TerminalHost
    ));
    let svc = reg.get(&id("app:svc")).unwrap();
    assert!(matches!(svc.spec, EntrySpec::Deferred));
    assert_eq!(svc.raw["lifecycle"]["auto_start"], true);
    assert_eq!(svc.raw["process"], "app:worker");

    let lua_ids: Vec<String> = reg
        .of_kind("process.lua")
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(lua_ids, ["app:worker"]);
}

#[test]
fn host_defaults() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "_index.yaml",
        "namespace: app\nentries:\n  - {name: h, kind: process.host}\n  - {name: h2, kind: process.host, host: {queue_size: 7}}\n",
    );
    let reg = load_ok(&dir);
    let cpus = std::thread::available_parallelism().unwrap().get();
    match &reg.get(&id("app:h")).unwrap().spec {
        EntrySpec::ProcessHost(h) => {
            assert_eq!(
                (h.workers, h.queue_size, h.local_queue_size),
                (cpus, 1024, 256)
            );
        }
        other => panic!("{other:?}"),
    }
    match &reg.get(&id("app:h2")).unwrap().spec {
        EntrySpec::ProcessHost(h) => {
            assert_eq!(
                (h.workers, h.queue_size, h.local_queue_size),
                (cpus, 7, 256)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn imports_resolve_bare_names_and_other_namespaces_in_nested_dirs() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "lib/_index.yaml",
        "namespace: app.lib\nentries:\n  - {name: util, kind: library.lua, source: 'return {}'}\n  - {name: strings, kind: library.lua, source: 'return {}', imports: {u: util}}\n",
    );
    write(
        &dir,
        "workers/deep/nested/_index.yml",
        "namespace: app.workers\nentries:\n  - name: worker\n    kind: process.lua\n    source: file://../code/w.lua\n    method: main\n    imports: {util: app.lib:util, s: app.lib:strings, h: helper}\n  - {name: helper, kind: library.lua, source: 'return {}'}\n",
    );
    write(
        &dir,
        "workers/deep/code/w.lua",
        "return {main = function() end}",
    );
    // Not YAML, and hidden: ignored.
    write(&dir, "workers/notes.txt", "not yaml: [");
    write(&dir, ".hidden/_index.yaml", "not: [valid");

    let reg = load_ok(&dir);
    assert_eq!(reg.entries.len(), 4);
    let w = lua(&reg, "app.workers:worker");
    assert_eq!(
        w.imports,
        [
            ("util".to_string(), id("app.lib:util")),
            ("s".to_string(), id("app.lib:strings")),
            ("h".to_string(), id("app.workers:helper")),
        ]
    );
    assert_eq!(&*w.source, "return {main = function() end}");
    assert_eq!(w.chunk_name, "workers/deep/code/w.lua");
    assert_eq!(
        reg.get(&id("app.workers:worker")).unwrap().file,
        dir.path().join("workers/deep/nested/_index.yml")
    );
    assert_eq!(
        lua(&reg, "app.lib:strings").imports,
        [("u".to_string(), id("app.lib:util"))]
    );
}

#[test]
fn bad_yaml_reports_file_and_line() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - name: a\n    kind: [process.lua\n",
    );
    let err = one_error(&dir);
    assert!(err.starts_with("app/_index.yaml: invalid YAML: "), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

#[test]
fn top_level_not_a_mapping() {
    let dir = TempDir::new().unwrap();
    write(&dir, "app/_index.yaml", "- name: a\n  kind: process.lua\n");
    write(&dir, "b/_index.yaml", "# nothing here\n");
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "app/_index.yaml: top level must be a mapping with `namespace` and `entries`, found a sequence",
            "b/_index.yaml: file is empty (expected a mapping with `namespace` and `entries`)",
        ]
    );
}

#[test]
fn missing_namespace_and_entries() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a/_index.yaml", "version: \"1.0\"\nentries: []\n");
    write(&dir, "b/_index.yaml", "version: \"1.0\"\nnamespace: b\n");
    write(&dir, "c/_index.yaml", "namespace: 5\nentries: {x: 1}\n");
    let errs = load_err(&dir).to_string();
    let lines: Vec<&str> = errs.lines().collect();
    assert_eq!(
        lines,
        [
            "a/_index.yaml: field namespace: missing required field (expected a string)",
            "b/_index.yaml: field entries: missing required field (expected a sequence of entries)",
            "c/_index.yaml: field namespace: expected a string, found number 5",
            "c/_index.yaml: field entries: expected a sequence of entries, found a mapping",
        ]
    );
}

#[test]
fn entry_not_a_mapping() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: t, kind: terminal.host}\n  - just a string\n",
    );
    let err = one_error(&dir);
    assert_eq!(
        err,
        "app/_index.yaml: entry entries[1]: entry must be a mapping, found string \"just a string\""
    );
}

#[test]
fn missing_and_ill_typed_fields() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        r#"namespace: app
entries:
  - {kind: process.lua}
  - {name: nokind}
  - {name: nosource, kind: process.lua, method: main}
  - {name: nomethod, kind: function.lua, source: "return {}"}
  - {name: badmethod, kind: process.lua, source: "return {}", method: 5}
  - {name: badmodules, kind: process.lua, source: "return {}", method: m, modules: time}
  - {name: badimports, kind: library.lua, source: "return {}", imports: [a, b]}
  - {name: nodir, kind: fs.directory}
  - {name: badmeta, kind: terminal.host, meta: [1]}
  - {name: badhost, kind: process.host, host: {workers: "4"}}
"#,
    );
    let errs = load_err(&dir);
    let text = errs.to_string();
    let expected = [
        "app/_index.yaml: entry entries[0]: field name: missing required field (expected a string)",
        "app/_index.yaml: entry app:nokind: field kind: missing required field (expected a string)",
        "app/_index.yaml: entry app:nosource: field source: missing required field (expected a string)",
        "app/_index.yaml: entry app:nomethod: field method: missing required field (expected a string)",
        "app/_index.yaml: entry app:badmethod: field method: expected a string, found number 5",
        "app/_index.yaml: entry app:badmodules: field modules: expected a sequence of strings, found string \"time\"",
        "app/_index.yaml: entry app:badimports: field imports: expected a mapping of alias -> library id, found a sequence",
        "app/_index.yaml: entry app:nodir: field directory: missing required field (expected a string)",
        "app/_index.yaml: entry app:badmeta: field meta: expected a mapping, found a sequence",
        "app/_index.yaml: entry app:badhost: field host.workers: expected a positive integer, found string \"4\"",
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, expected);
    assert_eq!(
        errs.0[2],
        LoadError {
            file: "app/_index.yaml".into(),
            entry: Some("app:nosource".into()),
            field: Some("source".into()),
            message: "missing required field (expected a string)".into(),
        }
    );
}

#[test]
fn duplicate_id_across_files_names_both() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "a/_index.yaml",
        "namespace: app\nentries:\n  - {name: t, kind: terminal.host}\n",
    );
    write(
        &dir,
        "b/_index.yaml",
        "namespace: app\nentries:\n  - {name: t, kind: process.host}\n",
    );
    let err = one_error(&dir);
    assert_eq!(
        err,
        "b/_index.yaml: entry app:t: field name: duplicate id app:t: already declared in a/_index.yaml"
    );
}

#[test]
fn dangling_imports() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        r#"namespace: app
entries:
  - name: worker
    kind: process.lua
    source: "return {}"
    method: main
    imports: {util: app.lib:util, other: other, bad: "x:"}
  - {name: other, kind: process.lua, source: "return {}", method: main}
"#,
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    // The unparsable reference is found while reading the entry; the worker is then not
    // built, so the other two are not reported.
    assert_eq!(
        lines,
        ["app/_index.yaml: entry app:worker: field imports.bad: id \"x:\" has an empty name (expected namespace:name)"]
    );

    write(
        &dir,
        "app/_index.yaml",
        r#"namespace: app
entries:
  - name: worker
    kind: process.lua
    source: "return {}"
    method: main
    imports: {util: app.lib:util, other: other}
  - {name: other, kind: process.lua, source: "return {}", method: main}
"#,
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "app/_index.yaml: entry app:worker: field imports.util: dangling reference: app.lib:util does not exist",
            "app/_index.yaml: entry app:worker: field imports.other: dangling reference: app:other is a process.lua, not a library.lua",
        ]
    );
}

#[test]
fn import_cycle() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        r#"namespace: app
entries:
  - {name: x, kind: library.lua, source: "return {}", imports: {y: y}}
  - {name: y, kind: library.lua, source: "return {}", imports: {z: z}}
  - {name: z, kind: library.lua, source: "return {}", imports: {x: x}}
  - {name: self, kind: library.lua, source: "return {}", imports: {me: self}}
  - {name: ok, kind: library.lua, source: "return {}", imports: {x: x}}
"#,
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "app/_index.yaml: entry app:self: field imports: import cycle: app:self -> app:self",
            "app/_index.yaml: entry app:x: field imports: import cycle: app:x -> app:y -> app:z -> app:x",
        ]
    );
}

#[test]
fn missing_file_target() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: worker, kind: process.lua, source: file://missing.lua, method: main}\n",
    );
    let err = one_error(&dir);
    let looked = dir.path().join("app/missing.lua");
    assert_eq!(
        err,
        format!(
            "app/_index.yaml: entry app:worker: field source: file://missing.lua not found (looked at {})",
            looked.display()
        )
    );
}

#[test]
fn lua_syntax_errors_carry_line_numbers() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/worker.lua",
        "local function main()\n  local x = 1\n  x = = 2\nend\nreturn {main = main}\n",
    );
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: worker, kind: process.lua, source: file://worker.lua, method: main}\n  - name: inline\n    kind: library.lua\n    source: |\n      local M = {}\n      function M.f(\n      return M\n",
    );
    let errs = load_err(&dir);
    assert_eq!(errs.0.len(), 2, "{errs}");
    let text = errs.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(
            "app/_index.yaml: entry app:worker: field source: Lua syntax error: app/worker.lua:3: unexpected symbol near '='"
        ),
        "{text}"
    );
    assert!(
        lines[1].starts_with(
            "app/_index.yaml: entry app:inline: field source: Lua syntax error: app/_index.yaml#app:inline:3:"
        ),
        "{text}"
    );
}

#[test]
fn host_numbers_must_be_positive() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: h, kind: process.host, host: {workers: 0, queue_size: -5, local_queue_size: 1.5}}\n",
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "app/_index.yaml: entry app:h: field host.workers: must be a positive integer, found 0",
            "app/_index.yaml: entry app:h: field host.queue_size: must be a positive integer, found -5",
            "app/_index.yaml: entry app:h: field host.local_queue_size: expected a positive integer, found number 1.5",
        ]
    );
}

#[test]
fn env_variable_and_fs_directory_errors() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: e, kind: env.variable, default: x}\n  - {name: d, kind: fs.directory, directory: ./nope}\n",
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "app/_index.yaml: entry app:e: field value: missing required field: either `value` or `variable` must be set".to_string(),
            format!(
                "app/_index.yaml: entry app:d: field directory: ./nope not found (looked at {}, {}, {})",
                dir.path().join("app/nope").display(),
                dir.path().join("nope").display(),
                std::env::current_dir().unwrap().join("nope").display()
            ),
        ]
    );
}

#[test]
fn fs_directory_paths_resolve_beside_the_yaml_then_from_the_app_root() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("app/local")).unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: root, kind: fs.directory, directory: ./data}\n  - {name: near, kind: fs.directory, directory: ./local}\n",
    );
    let reg = load_ok(&dir);
    let path = |id: &str| match &reg
        .get(&warden::registry::Id::parse(id).unwrap())
        .unwrap()
        .spec
    {
        warden::registry::EntrySpec::FsDirectory { directory } => directory.clone(),
        _ => panic!("not a directory"),
    };
    assert_eq!(path("app:root"), dir.path().join("data"));
    assert_eq!(path("app:near"), dir.path().join("app/local"));
}

#[test]
fn independent_errors_in_two_files_are_both_reported() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "b/_index.yaml",
        "namespace: b\nentries:\n  - {name: worker, kind: process.lua, source: file://gone.lua, method: main}\n",
    );
    write(
        &dir,
        "a/_index.yaml",
        "namespace: a\nentries:\n  - {name: h, kind: process.host, host: {workers: 0}}\n  - {name: ok, kind: terminal.host}\n",
    );
    let errs = load_err(&dir);
    assert_eq!(errs.0.len(), 2, "{errs}");
    let text = errs.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "a/_index.yaml: entry a:h: field host.workers: must be a positive integer, found 0"
    );
    assert!(
        lines[1].starts_with(
            "b/_index.yaml: entry b:worker: field source: file://gone.lua not found (looked at "
        ),
        "{text}"
    );
    // LoadErrors is a std error.
    let boxed: Box<dyn std::error::Error> = Box::new(errs);
    assert!(boxed.to_string().contains('\n'));
}

#[test]
fn unsupported_kind_is_a_warning_and_skipped() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: api, kind: http.service, addr: ':8080'}\n  - {name: db, kind: db.sql.postgres}\n  - {name: t, kind: terminal.host}\n",
    );
    let reg = load_ok(&dir);
    assert_eq!(
        reg.warnings,
        [
            "app/_index.yaml: kind http.service is not supported; entry app:api skipped",
            "app/_index.yaml: kind db.sql.postgres is not supported; entry app:db skipped",
        ]
    );
    assert!(reg.get(&id("app:api")).is_none());
    assert!(reg.get(&id("app:t")).is_some());
    assert_eq!(reg.entries.len(), 1);
}

#[test]
fn unknown_kind_did_you_mean() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: w, kind: proces.lua, source: 'return {}', method: main}\n  - {name: z, kind: zebra.crossing}\n",
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    // a typo of a kind warden runs is an error; any other kind is skipped with a warning
    assert_eq!(
        lines,
        ["app/_index.yaml: entry app:w: field kind: unknown kind proces.lua (did you mean process.lua?)"]
    );
}

/// Issue 34, en/system/filesystem.md (fs.embed), en/temporal/*.md, en/http/*.md: kinds of
/// Wippy that warden does not run are skipped with one warning each; the rest loads.
#[test]
fn wippy_kinds_warden_does_not_run_are_skipped_with_a_warning() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: static, kind: fs.embed}\n  - {name: flow, kind: workflow.lua, source: 'return {}', method: run}\n  - {name: bc, kind: function.lua.bc, source: 'x'}\n  - {name: worker, kind: temporal.worker}\n  - {name: z, kind: zebra.crossing}\n  - {name: t, kind: terminal.host}\n",
    );
    let reg = load_ok(&dir);
    assert_eq!(
        reg.warnings,
        [
            "app/_index.yaml: kind fs.embed is not supported; entry app:static skipped",
            "app/_index.yaml: kind workflow.lua is not supported; entry app:flow skipped",
            "app/_index.yaml: kind function.lua.bc is not supported; entry app:bc skipped",
            "app/_index.yaml: kind temporal.worker is not supported; entry app:worker skipped",
            "app/_index.yaml: kind zebra.crossing is not supported; entry app:z skipped",
        ]
    );
    assert_eq!(reg.entries.len(), 1);
}

#[test]
fn modules_warnings_and_errors() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: w, kind: process.lua, source: 'return {}', method: main, modules: [time, http, logger]}\n",
    );
    let reg = load_ok(&dir);
    assert_eq!(
        reg.warnings,
        ["app/_index.yaml: entry app:w: module http is not provided by warden; require(\"http\") will fail"]
    );
    assert_eq!(lua(&reg, "app:w").modules, ["time", "logger"]);

    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: w, kind: process.lua, source: 'return {}', method: main, modules: [jsno, quantum]}\n",
    );
    // a module warden does not have is a warning, never an error; a hint only for a
    // near miss, never for another Wippy module
    let reg = load_ok(&dir);
    assert_eq!(
        reg.warnings,
        [
            "app/_index.yaml: entry app:w: module jsno is not provided by warden (did you mean json?); require(\"jsno\") will fail",
            "app/_index.yaml: entry app:w: module quantum is not provided by warden; require(\"quantum\") will fail",
        ]
    );
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: w, kind: process.lua, source: 'return {}', method: main, modules: [io, env, os, process, uuid, fs]}\n",
    );
    let reg = load_ok(&dir);
    assert_eq!(
        reg.warnings,
        ["app/_index.yaml: entry app:w: module fs is not provided by warden; require(\"fs\") will fail"]
    );
    assert_eq!(
        lua(&reg, "app:w").modules,
        ["io", "env", "os", "process", "uuid"]
    );
}

#[test]
fn many_errors_in_one_file_are_all_reported() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "_index.yaml",
        "namespace: app\nentries:\n  - {name: a, kind: process.lua, source: 'x = = 1', method: main}\n  - {name: b, kind: proces.lua}\n  - {name: a, kind: terminal.host}\n",
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(
        "_index.yaml: entry app:a: field source: Lua syntax error: _index.yaml#app:a:1:"
    ));
    assert_eq!(
        lines[1],
        "_index.yaml: entry app:b: field kind: unknown kind proces.lua (did you mean process.lua?)"
    );
    assert_eq!(
        lines[2],
        "_index.yaml: entry app:a: field name: duplicate id app:a: already declared in _index.yaml"
    );
}

#[test]
fn empty_or_missing_directory() {
    let dir = TempDir::new().unwrap();
    let err = one_error(&dir);
    assert!(err.ends_with(": no *.yaml or *.yml files found"), "{err}");

    let missing = dir.path().join("nope");
    let errs = load_dir(Path::new(&missing)).unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert!(
        errs.to_string().ends_with(": directory not found"),
        "{errs}"
    );
}

// ---- WebAssembly entries (function.wat, function.wasm, process.wasm) ----

fn wasm_spec(reg: &Registry, s: &str) -> warden::registry::WasmSpec {
    match &reg
        .get(&id(s))
        .unwrap_or_else(|| panic!("{s} missing"))
        .spec
    {
        EntrySpec::Wasm(w) => w.clone(),
        other => panic!("{s} is not a wasm entry: {other:?}"),
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An app with a `wasm/` directory holding `mod.wasm` (arbitrary bytes; the loader only
/// hashes them), `app:assets` pointing at it, and `entries` appended.
fn wasm_app(entries: &str) -> (TempDir, String) {
    let dir = TempDir::new().unwrap();
    write(&dir, "app/wasm/mod.wasm", "\0asm-not-really");
    write(&dir, "app/data/.keep", "");
    let hash = sha256(b"\0asm-not-really");
    let yaml = format!(
        "namespace: app\nentries:\n  - {{name: assets, kind: fs.directory, directory: ./wasm}}\n  - {{name: data, kind: fs.directory, directory: ./data}}\n  - {{name: key, kind: env.variable, value: secret}}\n{}",
        entries.replace("HASH", &hash)
    );
    write(&dir, "app/_index.yaml", &yaml);
    (dir, hash)
}

#[test]
fn wasm_entries_load_with_all_fields() {
    let (dir, hash) = wasm_app(
        r#"  - name: answer
    kind: function.wat
    source: |
      (module (func (export "answer") (result i32) i32.const 42))
    wit: "answer: func() -> s32;"
    method: answer
    pool: {type: inline}
  - name: from_file
    kind: function.wat
    source: file://answer.wat
    wit: file://answer.wit
    method: answer
  - name: mapper
    kind: function.wasm
    fs: assets
    path: /mod.wasm
    hash: sha256:HASH
    method: "types#transform-users"
    imports: [wasi:io, wasi:clocks, wasi:io, warden:funcs]
    wasi:
      args: ["--verbose", 3]
      cwd: /app
      env: [{id: key, name: API_KEY, required: true}, {id: "app:key", name: OTHER}]
      mounts: [{fs: data, guest: /data, read_only: true}, {fs: app:data, guest: /rw}]
    limits: {max_execution_ms: 5000, max_memory: 64MiB}
    transport: payload
  - name: proc
    kind: process.wasm
    fs: app:assets
    path: mod.wasm
    hash: sha256:HASH
    method: run
    pool: {type: static, size: 2}
    limits: {max_memory: 1GB}
  - name: bytes
    kind: function.wasm
    fs: assets
    path: /mod.wasm
    hash: "sha256:HASH"
    method: run
    limits: {max_memory: 1048576}
"#,
    );
    write(&dir, "app/answer.wat", "(module)");
    write(&dir, "app/answer.wit", "answer: func() -> s32;");
    let reg = load_ok(&dir);

    let a = wasm_spec(&reg, "app:answer");
    match &a.source {
        warden::registry::WasmSource::Wat { text } => assert!(text.contains("i32.const 42")),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.method, "answer");
    assert_eq!(a.wit.as_deref(), Some("answer: func() -> s32;"));
    assert_eq!(
        a.pool.as_ref().unwrap().kind,
        warden::registry::PoolKind::Inline
    );
    assert!(a.imports.is_empty());
    assert_eq!(a.wasi, warden::registry::WasiSpec::default());
    assert_eq!(a.limits, warden::registry::WasmLimits::default());
    assert_eq!(reg.get(&id("app:answer")).unwrap().kind, "function.wat");

    let f = wasm_spec(&reg, "app:from_file");
    match &f.source {
        warden::registry::WasmSource::Wat { text } => assert_eq!(&**text, "(module)"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.wit.as_deref(), Some("answer: func() -> s32;"));

    let m = wasm_spec(&reg, "app:mapper");
    match &m.source {
        warden::registry::WasmSource::Binary {
            path,
            bytes,
            sha256,
        } => {
            assert_eq!(path, &dir.path().join("app/wasm/mod.wasm"));
            assert_eq!(&**bytes, b"\0asm-not-really");
            assert_eq!(sha256, &hash);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.method, "types#transform-users");
    assert_eq!(m.imports, ["wasi:io", "wasi:clocks", "warden:funcs"]);
    assert_eq!(m.wasi.args, ["--verbose", "3"]);
    assert_eq!(m.wasi.cwd.as_deref(), Some("/app"));
    assert_eq!(
        m.wasi.env,
        [
            warden::registry::EnvMapping {
                id: id("app:key"),
                name: "API_KEY".into(),
                required: true
            },
            warden::registry::EnvMapping {
                id: id("app:key"),
                name: "OTHER".into(),
                required: false
            }
        ]
    );
    assert_eq!(
        m.wasi.mounts,
        [
            warden::registry::Mount {
                fs: id("app:data"),
                guest: "/data".into(),
                read_only: true
            },
            warden::registry::Mount {
                fs: id("app:data"),
                guest: "/rw".into(),
                read_only: false
            }
        ]
    );
    assert_eq!(m.limits.max_execution_ms, Some(5000));
    assert_eq!(m.limits.max_memory, Some(64 << 20));
    assert!(m.pool.is_none());

    // process.wasm: pool checked like a function's, then ignored by the runtime.
    let p = wasm_spec(&reg, "app:proc");
    assert!(p.pool.is_some());
    assert_eq!(p.limits.max_memory, Some(1_000_000_000));
    assert_eq!(reg.get(&id("app:proc")).unwrap().kind, "process.wasm");
    assert_eq!(
        wasm_spec(&reg, "app:bytes").limits.max_memory,
        Some(1_048_576)
    );
}

#[test]
fn wasm_hash_mismatch_names_both_hashes() {
    let (dir, hash) = wasm_app(
        "  - {name: m, kind: function.wasm, fs: assets, path: /mod.wasm, hash: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\", method: run}\n",
    );
    let err = one_error(&dir);
    assert_eq!(
        err,
        format!("app/_index.yaml: entry app:m: field hash: hash mismatch: the entry declares sha256:0000000000000000000000000000000000000000000000000000000000000000, but /mod.wasm has sha256:{hash}")
    );
}

#[test]
fn wasm_field_errors() {
    let (dir, _) = wasm_app(
        r#"  - {name: a, kind: function.wasm, method: run}
  - {name: b, kind: function.wasm, fs: assets, path: /mod.wasm, hash: "md5:abc", method: "x#"}
  - {name: c, kind: function.wat, method: answer}
  - {name: d, kind: function.wat, source: "(module)", method: answer, transport: wasi-http}
  - {name: e, kind: function.wat, source: "(module)", method: answer, imports: [wasi:clock, wasi:io/poll, http]}
  - {name: f, kind: function.wat, source: "(module)", method: answer, wasi: {cwd: app, mounts: [{fs: data, guest: data}], env: [{id: key}], argz: []}}
  - {name: g, kind: function.wat, source: "(module)", method: answer, limits: {max_execution_ms: 0, max_memory: 64XB, max_cpu: 1}}
  - {name: h, kind: function.wasm, fs: assets, path: /missing.wasm, hash: "sha256:HASH", method: run}
  - {name: i, kind: function.wasm, fs: assets, path: /../_index.yaml, hash: "sha256:HASH", method: run}
  - {name: j, kind: function.wat, source: file://nope.wat, method: answer, transport: grpc}
  - {name: k, kind: function.wat, source: "(module)", method: answer, imports: [warden:proccess, warden:process]}
  - {name: l, kind: process.wasm, source: "(module)", method: run, pool: {type: bogus}}
"#,
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    let f = "app/_index.yaml";
    let expected = [
        format!("{f}: entry app:a: field fs: missing required field (expected a string)"),
        format!("{f}: entry app:a: field path: missing required field (expected a string)"),
        format!("{f}: entry app:a: field hash: missing required field (expected a string)"),
        format!("{f}: entry app:b: field hash: expected sha256:<64 hex digits>, found \"md5:abc\""),
        format!("{f}: entry app:b: field method: invalid method \"x#\": expected an export name or iface#name"),
        format!("{f}: entry app:c: field source: missing required field (expected a string)"),
        format!("{f}: entry app:d: field transport: transport wasi-http is not supported yet"),
        format!("{f}: entry app:e: field imports: unknown capability group wasi:clock (did you mean wasi:clocks?); known groups: wasi:cli, wasi:io, wasi:poll, wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets, wasi:http, warden:process, warden:funcs"),
        format!("{f}: entry app:e: field imports: unknown capability group wasi:io/poll (did you mean wasi:io? groups name whole WASI packages); known groups: wasi:cli, wasi:io, wasi:poll, wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets, wasi:http, warden:process, warden:funcs"),
        format!("{f}: entry app:e: field imports: unknown capability group http; known groups: wasi:cli, wasi:io, wasi:poll, wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets, wasi:http, warden:process, warden:funcs"),
        format!("{f}: entry app:f: field wasi.argz: unknown field (did you mean args?); known fields: args, cwd, env, mounts"),
        format!("{f}: entry app:f: field wasi.cwd: must be an absolute guest path (starting with /), found \"app\""),
        format!("{f}: entry app:f: field wasi.env[0].name: missing required field (expected a string)"),
        format!("{f}: entry app:f: field wasi.mounts[0].guest: must be an absolute guest path (starting with /), found \"data\""),
        format!("{f}: entry app:g: field limits.max_cpu: unknown field; known fields: max_execution_ms, max_memory"),
        format!("{f}: entry app:g: field limits.max_execution_ms: expected a positive integer (milliseconds), found number 0"),
        format!("{f}: entry app:g: field limits.max_memory: expected a size like 64MiB, 1GB or a number of bytes, found \"64XB\""),
        format!("{f}: entry app:j: field source: file://nope.wat not found (looked at {})", dir.path().join("app/nope.wat").display()),
        format!("{f}: entry app:j: field transport: unknown transport string \"grpc\" (expected payload)"),
        format!("{f}: entry app:k: field imports: unknown capability group warden:proccess (did you mean warden:process?); known groups: wasi:cli, wasi:io, wasi:poll, wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets, wasi:http, warden:process, warden:funcs"),
        format!("{f}: entry app:k: field imports: warden:process is only granted to process.wasm entries (a function has no mailbox)"),
        format!("{f}: entry app:l: field pool.type: unknown pool type bogus; expected one of inline, lazy, static, adaptive"),
        format!("{f}: entry app:h: field path: /missing.wasm not found in app:assets (looked at {})", dir.path().join("app/wasm/missing.wasm").display()),
        format!("{f}: entry app:i: field path: /../_index.yaml leaves the directory of app:assets"),
    ];
    assert_eq!(
        lines,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "\n{text}"
    );
}

#[test]
fn wasm_dangling_references() {
    let (dir, _) = wasm_app(
        r#"  - name: m
    kind: function.wasm
    fs: nowhere
    path: /mod.wasm
    hash: sha256:HASH
    method: run
    wasi:
      env: [{id: other:missing, name: A}, {id: assets, name: B}]
      mounts: [{fs: key, guest: /k}, {fs: gone, guest: /g}]
  - name: w
    kind: function.wat
    source: "(module)"
    method: run
    wasi: {mounts: [{fs: data, guest: /d}], env: [{id: key, name: K}]}
"#,
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "app/_index.yaml: entry app:m: field wasi.env[0].id: dangling reference: other:missing does not exist",
            "app/_index.yaml: entry app:m: field wasi.env[1].id: dangling reference: app:assets is a fs.directory, not a env.variable",
            "app/_index.yaml: entry app:m: field wasi.mounts[0].fs: dangling reference: app:key is a env.variable, not a fs.directory",
            "app/_index.yaml: entry app:m: field wasi.mounts[1].fs: dangling reference: app:gone does not exist",
            "app/_index.yaml: entry app:m: field fs: dangling reference: app:nowhere does not exist",
        ],
        "\n{text}"
    );
}

#[test]
fn wasm_fs_in_another_file_resolves() {
    let dir = TempDir::new().unwrap();
    write(&dir, "lib/wasm/x.wasm", "bytes");
    write(
        &dir,
        "lib/_index.yaml",
        "namespace: lib\nentries:\n  - {name: assets, kind: fs.directory, directory: ./wasm}\n",
    );
    write(
        &dir,
        "a/_index.yaml",
        &format!(
            "namespace: a\nentries:\n  - {{name: f, kind: function.wasm, fs: lib:assets, path: x.wasm, hash: \"sha256:{}\", method: run}}\n",
            sha256(b"bytes").to_uppercase()
        ),
    );
    let reg = load_ok(&dir);
    match wasm_spec(&reg, "a:f").source {
        warden::registry::WasmSource::Binary {
            path, sha256: h, ..
        } => {
            assert_eq!(path, dir.path().join("lib/wasm/x.wasm"));
            assert_eq!(h, sha256(b"bytes"));
        }
        other => panic!("{other:?}"),
    }
}

/// en/guides/dependency-management.md (wippy.lock: `directories.src`, `directories.modules`,
/// vendored modules under `vendor/org/module`, the deprecated `replacements`),
/// en/system/filesystem.md (`base`: a module's relative path resolves against the module's
/// root): a Wippy project loads its source and its vendored modules, and each module's
/// entries are tagged with `meta.module`.
#[test]
fn a_wippy_project_loads_its_source_and_vendored_modules() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "wippy.lock",
        "directories:\n  modules: .wippy\n  src: ./src\nmodules:\n  - {name: acme/tools, version: v1.2.0, hash: abc}\n  - {name: acme/packed, version: v0.1.0}\n  - {name: acme/local, version: v2.0.0}\nreplacements:\n  - {from: acme/local, to: ../local_src}\n",
    );
    // the lock's replacement points outside the project: make it inside for the test
    std::fs::create_dir_all(dir.path().join("local_src/src")).unwrap();
    let lock = std::fs::read_to_string(dir.path().join("wippy.lock")).unwrap();
    std::fs::write(
        dir.path().join("wippy.lock"),
        lock.replace("../local_src", "./local_src"),
    )
    .unwrap();
    write(
        &dir,
        "src/_index.yaml",
        "namespace: app\nentries:\n  - {name: main, kind: process.lua, source: 'return {main = function() end}', method: main}\n  - {name: data, kind: fs.directory, directory: ./data, auto_init: true}\n",
    );
    write(
        &dir,
        ".wippy/vendor/acme/tools/src/_index.yaml",
        "namespace: acme.tools\nentries:\n  - {name: assets, kind: fs.directory, directory: ./assets}\n  - {name: cache, kind: fs.directory, directory: ./cache, auto_init: true, mode: \"0700\"}\n  - {name: lib, kind: library.lua, source: 'return {}', meta: {comment: kept}}\n",
    );
    std::fs::create_dir_all(dir.path().join(".wippy/vendor/acme/tools/assets")).unwrap();
    write(&dir, ".wippy/vendor/acme/packed-v0.1.0.wapp", "packed");
    write(
        &dir,
        "local_src/src/_index.yaml",
        "namespace: acme.local\nentries:\n  - {name: f, kind: function.lua, source: 'return {main = function() return 1 end}', method: main}\n",
    );
    // a hidden folder that is not the modules directory still never loads
    write(
        &dir,
        "src/.hidden/_index.yaml",
        "namespace: no\nentries: [{name: x, kind: nope}]\n",
    );
    let reg = load_ok(&dir);
    let ids: Vec<String> = reg.entries.keys().map(|i| i.to_string()).collect();
    assert_eq!(
        ids,
        [
            "acme.local:f",
            "acme.tools:assets",
            "acme.tools:cache",
            "acme.tools:lib",
            "app:data",
            "app:main"
        ]
    );
    let path = |i: &str| match &reg.get(&id(i)).unwrap().spec {
        EntrySpec::FsDirectory { directory } => directory.clone(),
        _ => panic!("not a directory"),
    };
    let root = dir.path().canonicalize().unwrap();
    let module_root = root.join(".wippy/vendor/acme/tools");
    assert_eq!(path("acme.tools:assets"), module_root.join("assets"));
    assert_eq!(path("acme.tools:cache"), module_root.join("cache"));
    assert_eq!(path("app:data"), root.join("data"));
    assert!(
        root.join("data").is_dir(),
        "auto_init made the app's directory"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(module_root.join("cache"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let meta = &reg.get(&id("acme.tools:lib")).unwrap().meta;
    assert_eq!(meta["module"], "acme/tools");
    assert_eq!(meta["module_version"], "v1.2.0");
    assert_eq!(meta["comment"], "kept");
    assert_eq!(
        reg.get(&id("acme.local:f")).unwrap().meta["module"],
        "acme/local"
    );
    assert!(reg
        .get(&id("app:main"))
        .unwrap()
        .meta
        .get("module")
        .is_none());
    assert_eq!(reg.warnings.len(), 2, "{:?}", reg.warnings);
    assert!(
        reg.warnings[0].contains("`replacements` is deprecated"),
        "{:?}",
        reg.warnings
    );
    assert!(
        reg.warnings[1].starts_with("module acme/packed: ")
            && reg.warnings[1].contains("packed module"),
        "{:?}",
        reg.warnings
    );
}

/// en/guides/dependency-management.md: `.wippy.yaml`'s `workspace.replacements` replace a
/// locked module with a local directory (its `src` when it has one).
#[test]
fn workspace_replacements_come_from_the_wippy_yaml() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "wippy.lock",
        "directories: {src: ./app}\nmodules:\n  - {name: acme/tools, version: v1.0.0}\n",
    );
    write(
        &dir,
        ".wippy.yaml",
        "version: \"1.0\"\nworkspace:\n  replacements:\n    acme/tools: ./dev/tools\n",
    );
    write(
        &dir,
        "app/_index.yaml",
        "namespace: app\nentries:\n  - {name: t, kind: terminal.host}\n",
    );
    write(
        &dir,
        "dev/tools/src/_index.yaml",
        "namespace: acme.tools\nentries:\n  - {name: dev, kind: terminal.host}\n",
    );
    write(
        &dir,
        ".wippy/vendor/acme/tools/_index.yaml",
        "namespace: acme.tools\nentries:\n  - {name: vendored, kind: terminal.host}\n",
    );
    let reg = load_ok(&dir);
    assert!(reg.get(&id("acme.tools:dev")).is_some());
    assert!(reg.get(&id("acme.tools:vendored")).is_none());
    assert!(reg.warnings.is_empty(), "{:?}", reg.warnings);
}

/// en/system/filesystem.md: `base` is `project` or `module`; `mode` is an octal mode;
/// a directory without `auto_init` must exist.
#[test]
fn fs_directory_fields_are_checked() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "_index.yaml",
        "namespace: app\nentries:\n  - {name: a, kind: fs.directory, directory: ./x, base: somewhere}\n  - {name: b, kind: fs.directory, directory: ./x, mode: \"rwx\", auto_init: true}\n  - {name: c, kind: fs.directory, directory: ./x, auto_init: yes please}\n",
    );
    let text = load_err(&dir).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "_index.yaml: entry app:a: field base: unknown base \"somewhere\" (expected project or module)",
            "_index.yaml: entry app:b: field mode: \"rwx\" is not an octal mode such as \"0755\"",
            "_index.yaml: entry app:c: field auto_init: expected true or false, found string \"yes please\"",
        ]
    );
    assert!(!dir.path().join("x").exists());
}
