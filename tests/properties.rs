//! Property tests (issue section 3):
//!
//! 1. random YAML registries (valid and broken) never panic the loader, and every error
//!    names a file (and an entry when it is about one);
//! 2. random Lua values round-trip through spawn arguments, messages and exit values
//!    unchanged;
//! 3. random WIT values round-trip Lua -> WASM -> Lua through complex.wasm's echo exports
//!    unchanged;
//! 4. random durations parse or are refused cleanly.
//!
//! Each property boots at most one runtime and runs all its cases through it. A failure's
//! minimal input is in the panic message and its seed in `proptest-regressions/`, so it
//! is replayed first on every later run.

mod common;

use common::ExecWithin;

use common::App;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden::process::Exit;
use warden::registry::{Id, LoadError};
use warden::runtime::Runtime;
use warden::value::Value;

/// Runs `test` on `cases` inputs of `strategy`; a failure panics with the shrunk input,
/// and its seed is kept in `proptest-regressions/properties-NAME.txt` (commit it: every
/// later run tries it first).
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let file: &'static str = Box::leak(
        format!(
            "{}/proptest-regressions/properties-{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        )
        .into_boxed_str(),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(file),
        )),
        // Shrinking a panicking case prints a backtrace per attempt (RUST_BACKTRACE=1):
        // bound it so that a failure is still reported quickly.
        max_shrink_iters: 1000,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Value helpers shared by properties 2 and 3
// ---------------------------------------------------------------------------------------

fn s(x: &str) -> Value {
    Value::str(x)
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Nil => 0,
        Value::Bool(_) => 1,
        Value::Int(_) => 2,
        Value::Num(_) => 3,
        Value::Str(_) => 4,
        Value::Array(_) => 5,
        Value::Map(_) => 6,
    }
}

/// A total order on values (floats by `total_cmp`), to sort map pairs.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Num(x), Value::Num(y)) => x.total_cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| cmp_values(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Map(x), Value::Map(y)) => x
            .iter()
            .zip(y)
            .map(|((k1, v1), (k2, v2))| cmp_values(k1, k2).then_with(|| cmp_values(v1, v2)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The value with every map's pairs sorted by key. Lua's `pairs` order is the order of its
/// hash part, so the order of a `Value::Map` coming back from Lua is not meaningful; all
/// else (types, numbers, bytes, array order) is compared exactly.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Map(pairs) => {
            let mut p: Vec<(Value, Value)> = pairs
                .iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect();
            p.sort_by(|a, b| cmp_values(&a.0, &b.0));
            Value::Map(p)
        }
        other => other.clone(),
    }
}

/// Exact comparison of canonical forms: `==` on `Value` plus the `Debug` text, which tells
/// `-0.0` from `0.0` and prints floats exactly.
fn same(got: &Value, want: &Value) -> Result<(), TestCaseError> {
    let (g, w) = (canonical(got), canonical(want));
    prop_assert_eq!(&g, &w);
    prop_assert_eq!(format!("{g:?}"), format!("{w:?}"));
    Ok(())
}

/// The value of `key` in a map value.
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// 1. YAML registries
// ---------------------------------------------------------------------------------------

const OK_LUA: &str = "local M = {}\nfunction M.main(x) return x end\nreturn M\n";

/// Lua sources: valid ones, ones with syntax errors, and printable junk (either).
fn lua_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "return { main = function() return 1 end }",
            OK_LUA,
            "return {}",
            "",
            "-- only a comment",
            "local x = ... return { main = function() return x end }",
        ])
        .prop_map(str::to_string),
        3 => prop::sample::select(vec![
            "return {",
            "function(",
            "local = 5",
            "end end",
            "return { main = function() return 1 }",
            "x = = 1",
            "\"unterminated",
            "goto nowhere",
            "return 1 return 2",
        ])
        .prop_map(str::to_string),
        1 => "[ -~\n]{0,24}",
    ]
}

fn ystr(x: &str) -> Yaml {
    Yaml::String(x.to_string())
}

fn ymap(pairs: Vec<(&str, Yaml)>) -> Yaml {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(ystr(k), v);
    }
    Yaml::Mapping(m)
}

/// Integers of every size: small, zero, negative and (often) huge, near the ends of the
/// i64/u64 ranges, where arithmetic on them overflows.
fn yint() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        2 => (1i64..8).prop_map(Yaml::from),
        1 => (-3i64..=0).prop_map(Yaml::from),
        1 => any::<i64>().prop_map(Yaml::from),
        1 => any::<u64>().prop_map(Yaml::from),
        3 => prop::sample::select(vec![i64::MAX, i64::MAX / 2, 1 << 58, 1 << 40, i64::MIN])
            .prop_map(Yaml::from),
        1 => Just(Yaml::from(u64::MAX)),
        1 => (-1.0e3f64..1.0e3).prop_map(Yaml::from),
    ]
}

/// A value of the wrong type for most fields.
fn wrong() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        yint(),
        any::<bool>().prop_map(Yaml::Bool),
        Just(Yaml::Null),
        Just(Yaml::Sequence(vec![ystr("a"), Yaml::from(1)])),
        Just(Yaml::Sequence(vec![])),
        Just(ymap(vec![("k", ystr("v"))])),
        Just(Yaml::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
            tag: serde_yaml_ng::value::Tag::new("custom"),
            value: ystr("x"),
        }))),
        "[ -~]{0,8}".prop_map(Yaml::String),
    ]
}

/// `valid` most of the time, else a wrong-typed value, else absent.
fn fld(valid: impl Strategy<Value = Yaml> + 'static) -> BoxedStrategy<Option<Yaml>> {
    prop_oneof![
        6 => valid.prop_map(Some),
        1 => wrong().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

/// References to entries: existing names (bare or qualified), missing and malformed ids.
fn id_ref() -> impl Strategy<Value = Yaml> {
    prop::sample::select(vec![
        "lib",
        "lib2",
        "main",
        "svc",
        "tree",
        "host",
        "dir",
        "app:lib",
        "app:main",
        "other:lib",
        "app.sub:lib",
        "missing",
        "nope:x",
        "a:b:c",
        "",
        ":x",
        "x:",
    ])
    .prop_map(ystr)
}

fn lua_source() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "file://ok.lua", "file://bad.lua", "file://gen0.lua", "file://gen1.lua",
            "file://missing.lua", "file://", "file://sub", "file://sub/inner.lua",
            "file://bin.lua", "file://../outside.lua", "file://./ok.lua",
        ])
        .prop_map(ystr),
        2 => lua_text().prop_map(Yaml::String),
    ]
}

fn modules() -> impl Strategy<Value = Yaml> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vec![
                "time", "json", "logger", "funcs", "ctx", "supervisor", "http", "sql",
                "tmie", "bogus",
            ])
            .prop_map(ystr),
            1 => wrong(),
        ],
        0..4,
    )
    .prop_map(Yaml::Sequence)
}

fn imports() -> impl Strategy<Value = Yaml> {
    prop::collection::vec(
        (
            prop_oneof![
                4 => prop::sample::select(vec!["a", "b", "util", ""]).prop_map(ystr),
                1 => yint(),
            ],
            prop_oneof![4 => id_ref(), 1 => wrong()],
        ),
        0..3,
    )
    .prop_map(|pairs| Yaml::Mapping(pairs.into_iter().collect()))
}

/// A `pool` mapping: a type (valid, misspelt, wrong-typed or missing) and any of the size
/// fields with integers of every size.
fn pool() -> impl Strategy<Value = Yaml> {
    (
        fld(
            prop::sample::select(vec!["inline", "lazy", "static", "adaptive", "statik"])
                .prop_map(ystr),
        ),
        prop::collection::vec(
            (
                prop::sample::select(vec!["size", "workers", "max_size", "buffer", "bogus"]),
                prop_oneof![4 => yint(), 1 => wrong()],
            ),
            0..4,
        ),
    )
        .prop_map(|(ty, sizes)| {
            let mut m = Mapping::new();
            if let Some(ty) = ty {
                m.insert(ystr("type"), ty);
            }
            for (k, v) in sizes {
                m.insert(ystr(k), v);
            }
            Yaml::Mapping(m)
        })
}

fn host() -> impl Strategy<Value = Yaml> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["workers", "queue_size", "local_queue_size", "bogus"]),
            prop_oneof![3 => yint(), 1 => wrong()],
        ),
        0..3,
    )
    .prop_map(ymap)
}

fn duration() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        prop::sample::select(vec!["5s", "100ms", "1h30m", "-1s", "soon", "", "250"]).prop_map(ystr),
        yint(),
    ]
}

fn lifecycle() -> impl Strategy<Value = Yaml> {
    (
        fld(any::<bool>().prop_map(Yaml::Bool)),
        fld(duration()),
        fld(prop::collection::vec(id_ref(), 0..3).prop_map(Yaml::Sequence)),
        fld(
            (fld(duration()), fld(yint()), fld(yint())).prop_map(|(d, f, m)| {
                let mut pairs = Vec::new();
                push(&mut pairs, "initial_delay", d);
                push(&mut pairs, "backoff_factor", f);
                push(&mut pairs, "max_attempts", m);
                ymap(pairs)
            }),
        ),
    )
        .prop_map(|(auto, timeout, requires, restart)| {
            let mut pairs = Vec::new();
            push(&mut pairs, "auto_start", auto);
            push(&mut pairs, "start_timeout", timeout);
            push(&mut pairs, "requires", requires);
            push(&mut pairs, "restart", restart);
            ymap(pairs)
        })
}

fn children() -> impl Strategy<Value = Yaml> {
    prop::collection::vec(
        prop_oneof![
            6 => (
                fld(prop::sample::select(vec!["a", "b", "a"]).prop_map(ystr)),
                prop_oneof![Just("process"), Just("supervisor")],
                fld(id_ref()),
                fld(prop::sample::select(vec!["permanent", "transient", "temporary", "forever"])
                    .prop_map(ystr)),
                fld(prop_oneof![duration(), Just(ystr("brutal_kill"))]),
            )
                .prop_map(|(id, target_key, target, restart, shutdown)| {
                    let mut pairs = Vec::new();
                    push(&mut pairs, "id", id);
                    push(&mut pairs, target_key, target);
                    push(&mut pairs, "restart", restart);
                    push(&mut pairs, "shutdown", shutdown);
                    ymap(pairs)
                }),
            1 => wrong(),
        ],
        0..3,
    )
    .prop_map(Yaml::Sequence)
}

fn push(pairs: &mut Vec<(&'static str, Yaml)>, key: &'static str, v: Option<Yaml>) {
    if let Some(v) = v {
        pairs.push((key, v));
    }
}

/// `limits`, `wasi` and `imports` of a wasm entry.
fn wasm_extra() -> impl Strategy<Value = (Option<Yaml>, Option<Yaml>, Option<Yaml>)> {
    let limits = (
        fld(yint()),
        fld(prop_oneof![
            yint(),
            prop::sample::select(vec![
                "64MiB",
                "1GB",
                "512 KiB",
                "0MiB",
                "99999999999GiB",
                "18446744073709551615",
                "lots",
            ])
            .prop_map(ystr),
        ]),
        any::<bool>(),
    )
        .prop_map(|(ms, mem, bogus)| {
            let mut pairs = Vec::new();
            push(&mut pairs, "max_execution_ms", ms);
            push(&mut pairs, "max_memory", mem);
            if bogus {
                pairs.push(("max_fuel", Yaml::from(1)));
            }
            ymap(pairs)
        });
    let env = prop_oneof![
        3 => (
            fld(id_ref()),
            fld(prop::sample::select(vec!["X", "A=B", ""]).prop_map(ystr)),
            fld(any::<bool>().prop_map(Yaml::Bool)),
        )
            .prop_map(|(id, name, required)| {
                let mut pairs = Vec::new();
                push(&mut pairs, "id", id);
                push(&mut pairs, "name", name);
                push(&mut pairs, "required", required);
                ymap(pairs)
            }),
        1 => wrong(),
    ];
    let mount = prop_oneof![
        3 => (
            fld(prop::sample::select(vec!["dir", "env", "missing"]).prop_map(ystr)),
            fld(prop::sample::select(vec!["/data", "rel", ""]).prop_map(ystr)),
            fld(any::<bool>().prop_map(Yaml::Bool)),
        )
            .prop_map(|(fs, guest, read_only)| {
                let mut pairs = Vec::new();
                push(&mut pairs, "fs", fs);
                push(&mut pairs, "guest", guest);
                push(&mut pairs, "read_only", read_only);
                ymap(pairs)
            }),
        1 => wrong(),
    ];
    let wasi = (
        fld(prop::collection::vec(prop_oneof![ystr_any(), wrong()], 0..3).prop_map(Yaml::Sequence)),
        fld(prop::sample::select(vec!["/", "/data", "rel"]).prop_map(ystr)),
        fld(prop::collection::vec(env, 0..3).prop_map(Yaml::Sequence)),
        fld(prop::collection::vec(mount, 0..3).prop_map(Yaml::Sequence)),
        any::<bool>(),
    )
        .prop_map(|(args, cwd, env, mounts, bogus)| {
            let mut pairs = Vec::new();
            push(&mut pairs, "args", args);
            push(&mut pairs, "cwd", cwd);
            push(&mut pairs, "env", env);
            push(&mut pairs, "mounts", mounts);
            if bogus {
                pairs.push(("stdin", Yaml::Bool(true)));
            }
            ymap(pairs)
        });
    let imports = prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vec![
                "wasi:io",
                "wasi:clocks",
                "wasi:io/poll",
                "warden:x",
                "warden:",
                "bogus",
            ])
            .prop_map(ystr),
            1 => wrong(),
        ],
        0..3,
    )
    .prop_map(Yaml::Sequence);
    (fld(limits), fld(wasi), fld(imports))
}

const KINDS: &[&str] = &[
    "process.host",
    "process.lua",
    "library.lua",
    "function.lua",
    "fs.directory",
    "env.variable",
    "terminal.host",
    "process.service",
    "supervisor",
    "function.wat",
    "function.wasm",
    // unknown words
    "processs.lua",
    "banana",
    "lua",
    "process",
    // Wippy kinds warden skips with a warning
    "http.service",
    "http.router",
    "db.sql.postgres",
    "store.memory",
    "registry.entry",
];

/// One entry of `entries:`: a mapping with a name, a kind and that kind's fields (each
/// valid, wrong-typed or missing), plus an occasional meta or unknown field; sometimes not a
/// mapping at all.
fn entry(ok_hash: String) -> impl Strategy<Value = Yaml> {
    let name = fld(prop_oneof![
        8 => prop::sample::select(vec![
            "main", "lib", "lib2", "svc", "tree", "host", "dir", "env", "w", "x",
        ])
        .prop_map(ystr),
        1 => prop::sample::select(vec!["bad name", "a:b", "", "tab\tname"]).prop_map(ystr),
    ]
    .boxed());
    // The kinds warden knows are drawn three times as often as unknown and Wippy kinds.
    let kind = fld(prop_oneof![
        3 => prop::sample::select(KINDS[..11].to_vec()),
        1 => prop::sample::select(KINDS[11..].to_vec()),
    ]
    .prop_map(ystr));
    let hash = prop_oneof![
        Just(format!("sha256:{ok_hash}")),
        Just(format!("sha256:{}", "0".repeat(64))),
        Just("sha256:xyz".to_string()),
        Just("md5:abc".to_string()),
    ]
    .prop_map(Yaml::String);
    let lua_fields = (
        fld(lua_source()),
        fld(prop::sample::select(vec!["main", "", "run"]).prop_map(ystr)),
        fld(modules()),
        fld(imports()),
        fld(pool()),
    );
    let other_fields = (
        fld(host()),
        fld(prop::sample::select(vec![
            ".",
            "sub",
            "missing",
            "ok.lua",
            "",
            "file://sub",
            "..",
        ])
        .prop_map(ystr)),
        (
            fld(prop_oneof![ystr_any(), yint()]),
            fld(prop::sample::select(vec!["HOME", "", "WARDEN_NOPE"]).prop_map(ystr)),
            fld(prop_oneof![ystr_any(), any::<bool>().prop_map(Yaml::Bool)]),
        ),
        (fld(id_ref()), fld(lifecycle()), fld(id_ref())),
        (
            fld(
                prop::sample::select(vec!["one_for_one", "rest_for_one", "one_for_none"])
                    .prop_map(ystr),
            ),
            fld(children()),
        ),
        (
            fld(prop_oneof![
                Just(ystr("(module (func (export \"f\")))")),
                Just(ystr("file://ok.lua")),
                Just(ystr("file://missing.wat")),
                Just(ystr("  ")),
            ]),
            fld(prop::sample::select(vec!["f", "iface#f", "#", "a#b#c", ""]).prop_map(ystr)),
            fld(prop::sample::select(vec!["dir", "app:dir", "missing", "main"]).prop_map(ystr)),
            fld(
                prop::sample::select(vec!["/ok.lua", "/missing.wasm", "/", "/../../x"])
                    .prop_map(ystr),
            ),
            fld(hash),
        ),
    );
    let extra = (
        prop::option::weighted(
            0.15,
            prop_oneof![Just(ymap(vec![("a", ystr("b"))])), wrong()],
        ),
        prop::option::weighted(0.1, wrong()),
    );
    prop_oneof![
        12 => (name, kind, lua_fields, other_fields, extra, wasm_extra()).prop_map(
            |(name, kind, lua, other, (meta, unknown), (limits, wasi, wasm_imports))| {
                let mut pairs = Vec::new();
                push(&mut pairs, "name", name);
                let k = kind.as_ref().and_then(|k| k.as_str().map(str::to_string));
                push(&mut pairs, "kind", kind);
                let (source, method, modules, imports, pool) = lua;
                let (host, directory, (value, variable, default), service, tree, wasm) = other;
                match k.as_deref().unwrap_or("") {
                    "process.host" => push(&mut pairs, "host", host),
                    "process.lua" | "library.lua" | "function.lua" => {
                        push(&mut pairs, "source", source);
                        push(&mut pairs, "method", method);
                        push(&mut pairs, "modules", modules);
                        push(&mut pairs, "imports", imports);
                        push(&mut pairs, "pool", pool);
                    }
                    "fs.directory" => push(&mut pairs, "directory", directory),
                    "env.variable" => {
                        push(&mut pairs, "value", value);
                        push(&mut pairs, "variable", variable);
                        push(&mut pairs, "default", default);
                    }
                    "process.service" => {
                        let (process, lifecycle, host) = service;
                        push(&mut pairs, "process", process);
                        push(&mut pairs, "lifecycle", lifecycle);
                        push(&mut pairs, "host", host);
                    }
                    "supervisor" => {
                        let (strategy, children) = tree;
                        push(&mut pairs, "strategy", strategy);
                        push(&mut pairs, "children", children);
                    }
                    "function.wat" | "function.wasm" => {
                        let (source, method, fs, path, hash) = wasm;
                        if k.as_deref() == Some("function.wat") {
                            push(&mut pairs, "source", source);
                            push(&mut pairs, "wit", Some(ystr("f: func();")));
                        } else {
                            push(&mut pairs, "fs", fs);
                            push(&mut pairs, "path", path);
                            push(&mut pairs, "hash", hash);
                        }
                        push(&mut pairs, "method", method);
                        push(&mut pairs, "pool", pool);
                        push(&mut pairs, "limits", limits);
                        push(&mut pairs, "wasi", wasi);
                        push(&mut pairs, "imports", wasm_imports);
                    }
                    // unknown and Wippy kinds: some fields of another kind
                    _ => {
                        push(&mut pairs, "source", source);
                        push(&mut pairs, "method", method);
                    }
                }
                push(&mut pairs, "meta", meta);
                push(&mut pairs, "no_such_field", unknown);
                ymap(pairs)
            }
        ),
        1 => wrong(),
    ]
}

fn ystr_any() -> impl Strategy<Value = Yaml> {
    "[ -~]{0,8}".prop_map(Yaml::String)
}

/// How a generated YAML file is written.
#[derive(Debug, Clone)]
enum FileText {
    /// A document built from a model (namespace as written, or None when missing/broken).
    Doc { yaml: String, ns: Option<String> },
    /// Text that must be refused as a whole file (invalid YAML or not a mapping): the
    /// load must fail with an error naming this file and no entry.
    Broken(String),
    /// The text of a document cut short or with junk spliced in: anything may happen.
    Mangled(String),
}

const BROKEN: &[&str] = &[
    "namespace: app\nentries: [\n",
    "namespace: app\n  entries: x\n bad",
    ": : :\n\t- x",
    "- just\n- a list\n",
    "42\n",
    "\"a string\"\n",
    "",
    "~\n",
    "# only a comment\n",
    "namespace: app\nentries:\n  - &a {name: x}\n  - *b\n",
    "namespace: app\nnamespace: dup\nentries: []\n",
    "a: b: c\n",
    "namespace: app\nentries:\n\t- name: x\n",
    "{namespace: app, entries: [}\n",
    "!!binary 'not base64!'\n",
    "\u{feff}\u{0}\u{1}",
];

fn namespace() -> impl Strategy<Value = Option<Yaml>> {
    fld(prop_oneof![
        8 => prop::sample::select(vec!["app", "app", "app.sub", "other"]).prop_map(ystr),
        1 => prop::sample::select(vec!["", "bad ns", "a..b", "x:y", ".a"]).prop_map(ystr),
    ]
    .boxed())
}

/// Entries that are well formed on their own (references may still dangle, names may
/// collide across files, imports may form cycles), so that some apps load and reach
/// `spec::check`.
fn sound_entry() -> impl Strategy<Value = Yaml> {
    let src = || {
        prop::sample::select(vec![
            "file://ok.lua",
            "file://./ok.lua",
            "return { main = function() return 1 end }",
            OK_LUA,
        ])
        .prop_map(ystr)
    };
    let entry = |name: &str, kind: &str, mut rest: Vec<(&'static str, Yaml)>| {
        let mut pairs = vec![("name", ystr(name)), ("kind", ystr(kind))];
        pairs.append(&mut rest);
        ymap(pairs)
    };
    prop_oneof![
        (1i64..4, 1i64..2000).prop_map(move |(w, q)| entry(
            "host",
            "process.host",
            vec![(
                "host",
                ymap(vec![("workers", w.into()), ("queue_size", q.into())])
            )]
        )),
        (
            prop::sample::select(vec!["lib", "lib2"]),
            src(),
            prop::option::of(prop::sample::select(vec!["lib", "lib2", "app:lib"])),
        )
            .prop_map(move |(name, source, import)| {
                let imports = import
                    .map(|i| ymap(vec![("dep", ystr(i))]))
                    .unwrap_or(Yaml::Null);
                entry(
                    name,
                    "library.lua",
                    vec![("source", source), ("imports", imports)],
                )
            }),
        (
            prop::sample::select(vec!["main", "w"]),
            src(),
            prop::sample::subsequence(vec!["time", "json", "funcs", "http"], 0..3),
            prop::option::of(prop::sample::select(vec!["lib", "lib2"])),
        )
            .prop_map(move |(name, source, modules, import)| {
                let mut rest = vec![
                    ("source", source),
                    ("method", ystr("main")),
                    (
                        "modules",
                        Yaml::Sequence(modules.into_iter().map(ystr).collect()),
                    ),
                ];
                if let Some(i) = import {
                    rest.push(("imports", ymap(vec![("dep", ystr(i))])));
                }
                entry(name, "process.lua", rest)
            }),
        (
            prop::sample::select(vec!["f", "x"]),
            src(),
            prop::sample::select(vec!["inline", "lazy", "static", "adaptive"]),
            1i64..16,
        )
            .prop_map(move |(name, source, ty, size)| entry(
                name,
                "function.lua",
                vec![
                    ("source", source),
                    ("method", ystr("main")),
                    (
                        "pool",
                        ymap(vec![("type", ystr(ty)), ("size", size.into())])
                    ),
                ]
            )),
        Just(entry("dir", "fs.directory", vec![("directory", ystr("."))])),
        prop_oneof![
            Just(vec![("value", ystr("v"))]),
            Just(vec![("variable", ystr("HOME")), ("default", Yaml::from(1))]),
        ]
        .prop_map(move |rest| entry("env", "env.variable", rest)),
        (
            prop::sample::select(vec!["svc", "svc2"]),
            prop::sample::select(vec!["main", "w", "tree"]),
            any::<bool>(),
            prop::sample::select(vec!["5s", "100ms", "1h30m", "250"]),
            prop::sample::subsequence(vec!["svc", "svc2"], 0..2),
            (0i64..5, 1i64..4),
        )
            .prop_map(
                move |(name, process, auto, timeout, requires, (attempts, factor))| {
                    let lifecycle = ymap(vec![
                        ("auto_start", Yaml::Bool(auto)),
                        ("start_timeout", ystr(timeout)),
                        (
                            "requires",
                            Yaml::Sequence(requires.into_iter().map(ystr).collect()),
                        ),
                        (
                            "restart",
                            ymap(vec![
                                ("initial_delay", ystr("100ms")),
                                ("max_attempts", attempts.into()),
                                ("backoff_factor", factor.into()),
                            ]),
                        ),
                    ]);
                    entry(
                        name,
                        "process.service",
                        vec![("process", ystr(process)), ("lifecycle", lifecycle)],
                    )
                }
            ),
        (
            prop::sample::select(vec!["one_for_one", "one_for_all", "rest_for_one"]),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["main", "w"]),
                    prop::sample::select(vec!["permanent", "transient", "temporary"]),
                ),
                0..3,
            ),
        )
            .prop_map(move |(strategy, kids)| {
                let children = kids
                    .into_iter()
                    .enumerate()
                    .map(|(i, (process, restart))| {
                        ymap(vec![
                            ("id", ystr(&format!("c{i}"))),
                            ("process", ystr(process)),
                            ("restart", ystr(restart)),
                        ])
                    })
                    .collect();
                entry(
                    "tree",
                    "supervisor",
                    vec![
                        ("strategy", ystr(strategy)),
                        ("children", Yaml::Sequence(children)),
                    ],
                )
            }),
        Just(entry(
            "router",
            "http.router",
            vec![("port", Yaml::from(8080))]
        )),
        Just(entry("term", "terminal.host", vec![])),
    ]
}

fn file_text(ok_hash: String) -> impl Strategy<Value = FileText> {
    let doc = (
        namespace(),
        prop_oneof![
            8 => prop::collection::vec(entry(ok_hash), 0..8).prop_map(|e| Some(Yaml::Sequence(e))),
            1 => wrong().prop_map(Some),
            1 => Just(None),
        ],
    );
    let sound = (
        prop::sample::select(vec!["app", "app", "app.sub"]).prop_map(|n| Some(ystr(n))),
        prop::collection::vec(sound_entry(), 0..6).prop_map(|e| Some(Yaml::Sequence(e))),
    );
    let doc = prop_oneof![2 => doc, 1 => sound]
        .prop_map(|(ns, entries)| {
            let mut pairs = vec![("version", ystr("1.0"))];
            let written = ns.as_ref().and_then(|n| n.as_str().map(str::to_string));
            push(&mut pairs, "namespace", ns);
            push(&mut pairs, "entries", entries);
            let yaml = serde_yaml_ng::to_string(&ymap(pairs)).unwrap();
            (yaml, written)
        })
        .boxed();
    prop_oneof![
        12 => doc.clone().prop_map(|(yaml, ns)| FileText::Doc { yaml, ns }),
        2 => prop::sample::select(BROKEN.to_vec()).prop_map(|t| FileText::Broken(t.to_string())),
        1 => (doc, any::<prop::sample::Index>(), prop::sample::select(vec!["", "\t", ": [", "\"", "\n  - {"]))
            .prop_map(|((yaml, _), at, junk)| {
                let mut cut = at.index(yaml.len() + 1);
                while !yaml.is_char_boundary(cut) {
                    cut -= 1;
                }
                FileText::Mangled(format!("{}{junk}", &yaml[..cut]))
            }),
    ]
}

/// An app directory: 1-3 YAML files (some hidden or not YAML at all) and the Lua sources
/// `gen0.lua` / `gen1.lua` (valid or not).
fn app_dir(
    ok_hash: String,
) -> impl Strategy<Value = (Vec<(&'static str, FileText)>, (String, String))> {
    let paths = prop::sample::subsequence(
        vec![
            "_index.yaml",
            "b.yml",
            "sub/more.yaml",
            "sub/deep/x.YAML",
            ".hidden.yaml",
            "notes.txt",
        ],
        1..=3,
    );
    let files = paths.prop_flat_map(move |ps| {
        ps.into_iter()
            .map(|p| file_text(ok_hash.clone()).prop_map(move |f| (p, f)))
            .collect::<Vec<_>>()
    });
    (files, (lua_text(), lua_text()))
}

/// A YAML file the loader reads (not hidden, `.yaml`/`.yml` in any case).
fn is_loaded(path: &str) -> bool {
    !path.starts_with('.')
        && (path.to_ascii_lowercase().ends_with(".yaml") || path.ends_with(".yml"))
}

/// Messages of errors that are about a whole file, not one of its entries.
const FILE_LEVEL: &[&str] = &[
    "invalid YAML",
    "file is empty",
    "top level must be a mapping",
    "cannot read file",
    "cannot read directory",
    "no *.yaml or *.yml files found",
];

/// The invariants of one error of a load of `root` (files: the loaded YAML files with the
/// namespace each one declares when it is known).
fn check_error(
    e: &LoadError,
    root: &Path,
    files: &BTreeMap<PathBuf, Option<String>>,
) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert!(
        !e.file.as_os_str().is_empty(),
        "error without a file: {shown}"
    );
    prop_assert!(!e.message.is_empty(), "error without a message: {shown}");
    // Every error names one of the YAML files (or the root directory, for "no YAML files").
    prop_assert!(
        files.contains_key(&e.file) || e.file == root,
        "error names a file that was not loaded: {shown}"
    );
    match &e.entry {
        // File-level errors (bad YAML, not a mapping, a bad `namespace` or `entries` field)
        // are about no entry: `entry: None` is right for them, and only for them.
        None => {
            let field_ok = matches!(e.field.as_deref(), None | Some("namespace" | "entries"));
            prop_assert!(
                field_ok,
                "an error about field {:?} names no entry: {shown}",
                e.field
            );
            if e.field.is_none() {
                prop_assert!(
                    FILE_LEVEL.iter().any(|p| e.message.starts_with(p)),
                    "an error that names no entry is not a file-level error: {shown}"
                );
            }
        }
        // Entries are named `ns:name`, in the namespace of their file, or `entries[i]` when
        // they have no usable name.
        Some(label) => {
            if let Some(i) = label.strip_prefix("entries[") {
                prop_assert!(
                    i.strip_suffix(']')
                        .is_some_and(|n| n.parse::<usize>().is_ok()),
                    "bad entry label: {shown}"
                );
            } else {
                let id = Id::parse(label);
                prop_assert!(id.is_ok(), "entry label is not an id: {shown}");
                if let Some(Some(ns)) = files.get(&e.file) {
                    prop_assert_eq!(
                        &id.unwrap().namespace,
                        ns,
                        "entry in the wrong file: {}",
                        shown
                    );
                }
            }
        }
    }
    Ok(())
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn yaml_registries_never_panic_the_loader_and_errors_name_file_and_entry() {
    let ok_hash = sha256_hex(OK_LUA.as_bytes());
    check("registry_load", 2048, app_dir(ok_hash), |(files, gen)| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |rel: &str, bytes: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        for dir in ["", "sub/", "sub/deep/"] {
            write(&format!("{dir}ok.lua"), OK_LUA.as_bytes());
        }
        write("bad.lua", b"return { main = function( }");
        write("bin.lua", b"return '\xff\xfe'");
        write("sub/inner.lua", b"return {}");
        write("gen0.lua", gen.0.as_bytes());
        write("gen1.lua", gen.1.as_bytes());
        // The loaded files, with their namespace when the model says what it is.
        let mut loaded: BTreeMap<PathBuf, Option<String>> = BTreeMap::new();
        let mut broken = Vec::new();
        for (path, text) in &files {
            let (bytes, ns) = match text {
                FileText::Doc { yaml, ns } => (yaml.as_str(), ns.clone()),
                FileText::Broken(t) => {
                    broken.push(PathBuf::from(path));
                    (t.as_str(), None)
                }
                FileText::Mangled(t) => (t.as_str(), None),
            };
            write(path, bytes.as_bytes());
            if is_loaded(path) {
                loaded.insert(PathBuf::from(path), ns);
            }
        }
        let result = catch_unwind(AssertUnwindSafe(|| warden::registry::load_dir(root)))
            .map_err(|p| panic_text(&*p));
        prop_assert!(result.is_ok(), "load_dir panicked: {}", result.unwrap_err());
        let result = result.unwrap();
        // Loading is deterministic: the same directory gives the same errors, in the same
        // order, or the same entries.
        let again = warden::registry::load_dir(root);
        match (&result, &again) {
            (Err(a), Err(b)) => prop_assert_eq!(&a.0, &b.0),
            (Ok(a), Ok(b)) => prop_assert_eq!(
                a.entries.keys().collect::<Vec<_>>(),
                b.entries.keys().collect::<Vec<_>>()
            ),
            _ => prop_assert!(
                false,
                "a second load of the same directory had another outcome"
            ),
        }
        match result {
            Err(errors) => {
                prop_assert!(!errors.0.is_empty(), "Err without errors");
                for e in &errors.0 {
                    check_error(e, root, &loaded)?;
                }
                for b in broken.iter().filter(|b| loaded.contains_key(*b)) {
                    prop_assert!(
                        errors.0.iter().any(|e| &e.file == b && e.entry.is_none()),
                        "no file-level error for broken file {}:\n{}",
                        b.display(),
                        errors
                    );
                }
            }
            Ok(reg) => {
                let broken_loaded: Vec<_> =
                    broken.iter().filter(|b| loaded.contains_key(*b)).collect();
                prop_assert!(
                    broken_loaded.is_empty(),
                    "broken files loaded: {broken_loaded:?}"
                );
                for e in reg.entries.values() {
                    let rel = e.file.strip_prefix(root).unwrap_or(&e.file).to_path_buf();
                    prop_assert!(
                        loaded.contains_key(&rel),
                        "entry {} from {}",
                        e.id,
                        rel.display()
                    );
                    if let Some(Some(ns)) = loaded.get(&rel) {
                        prop_assert_eq!(&e.id.namespace, ns);
                    }
                }
                let specs =
                    catch_unwind(AssertUnwindSafe(|| warden::supervision::spec::check(&reg)))
                        .map_err(|p| panic_text(&*p));
                prop_assert!(
                    specs.is_ok(),
                    "spec::check panicked: {}",
                    specs.unwrap_err()
                );
                if let Err(errors) = specs.unwrap() {
                    prop_assert!(!errors.is_empty());
                    for e in &errors {
                        prop_assert!(e.entry.is_some(), "spec error without an entry: {e}");
                        check_error(e, root, &loaded)?;
                    }
                }
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 2. Lua values through messages
// ---------------------------------------------------------------------------------------

/// Finite floats: any bit pattern that is finite, ordinary ranges, integral floats and
/// signed zeros. As *values* floats stay floats in Lua 5.4, integral or not (2.0 is not
/// turned into 2), so all of these must come back as `Num` with the same bits.
fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        -1.0e6f64..1.0e6,
        (-1000i32..1000).prop_map(f64::from),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(9007199254740993.0),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        "[a-z]{0,6}".prop_map(String::into_bytes),
        Just(vec![0xff, 0xfe, 0x00]),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-3i64..10).prop_map(Value::Int),
        Just(Value::Int(i64::MIN)),
        Just(Value::Int(i64::MAX)),
        finite_f64().prop_map(Value::Num),
        bytes().prop_map(Value::Str),
    ]
}

/// Table keys: strings (any bytes), integers (often 1..5, so that some maps are sequences),
/// booleans and *non-integral* finite floats. An integral float key (2.0) is normalised
/// by Lua to the integer key 2, so it cannot round-trip as `Num`: such keys are left out.
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => bytes().prop_map(Value::Str),
        3 => (1i64..5).prop_map(Value::Int),
        1 => any::<i64>().prop_map(Value::Int),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => finite_f64()
            .prop_filter("non-integral", |f| f.fract() != 0.0)
            .prop_map(Value::Num),
    ]
}

/// Value trees. Nil appears only at the top level: a Lua table cannot hold nil, neither
/// in an array nor as a map value. Maps have distinct keys.
fn lua_value() -> impl Strategy<Value = Value> {
    let tree = scalar().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|pairs| {
                let mut out: Vec<(Value, Value)> = Vec::new();
                for (k, v) in pairs {
                    if !out.iter().any(|(k2, _)| *k2 == k) {
                        out.push((k, v));
                    }
                }
                Value::Map(out)
            }),
        ]
    });
    prop_oneof![1 => Just(Value::Nil), 15 => tree]
}

/// What a value becomes after a trip through a Lua table. A Lua table does not remember
/// how it was built: one whose keys are exactly the integers 1..n is a sequence and comes
/// back as `Array` (the empty table as the empty `Array`), whatever `Value` built it. The
/// property keeps such maps in the generator and expects them back as arrays.
fn through_lua(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(through_lua).collect()),
        Value::Map(pairs) => {
            let pairs: Vec<(Value, Value)> = pairs
                .iter()
                .map(|(k, v)| (through_lua(k), through_lua(v)))
                .collect();
            let n = pairs.len() as i64;
            let mut seq: Vec<(i64, Value)> = pairs
                .iter()
                .filter_map(|(k, v)| match k {
                    Value::Int(i) if (1..=n).contains(i) => Some((*i, v.clone())),
                    _ => None,
                })
                .collect();
            if seq.len() as i64 == n {
                seq.sort_by_key(|(i, _)| *i);
                Value::Array(seq.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Map(pairs)
            }
        }
        other => other.clone(),
    }
}

/// Spawned with the value: sends back the payload of the first message it gets, then its
/// own spawn argument, and returns the payload as its exit value.
const RELAY: &str = r#"
return { main = function(v0)
  local msg = process.inbox():receive()
  assert(process.send(msg:from(), "back", msg:payload():data()))
  assert(process.send(msg:from(), "arg", v0))
  return msg:payload():data()
end }
"#;

/// Gets the value as its spawn argument, passes it to a relay both as the relay's spawn
/// argument and as a message payload, and returns what came back on every path, each
/// wrapped as `{v = x}` (nil becomes the empty table).
const ROUND_TRIP: &str = r#"
return { main = function(v)
  local relay = process.spawn_monitored("app:relay", "app:host", v)
  assert(process.send(relay, "go", v))
  local inbox = process.inbox()
  local got = { direct = { v = v } }
  for _ = 1, 2 do
    local m = inbox:receive()
    got[m:topic()] = { v = m:payload():data() }
  end
  local ev = process.events():receive()
  got.exit = { v = ev.result.value, error = ev.result.error }
  return got
end }
"#;

/// Unwraps `{v = x}`: the empty table stands for nil.
fn unwrap_v(w: Option<&Value>) -> Result<Value, TestCaseError> {
    match w {
        Some(Value::Array(a)) if a.is_empty() => Ok(Value::Nil),
        Some(m @ Value::Map(pairs)) if pairs.len() == 1 => {
            Ok(field(m, "v").cloned().unwrap_or(Value::Nil))
        }
        other => Err(TestCaseError::fail(format!(
            "not a {{v = x}} wrapper: {other:?}"
        ))),
    }
}

#[test]
fn lua_values_round_trip_through_messages_unchanged() {
    let tokio = tokio_rt();
    let app = App::new().lua("relay", RELAY).lua("main", ROUND_TRIP);
    let rt: Runtime = tokio.block_on(app.start());
    let main = Id::new("app", "main");
    check("lua_values", 1024, lua_value(), |v| {
        let exit = tokio
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    rt.exec_within(&main, vec![v.clone()]),
                )
                .await
            })
            .map_err(|_| TestCaseError::fail("timed out"))?
            .map_err(|e| TestCaseError::fail(format!("spawn failed: {e}")))?;
        let got = match exit {
            Exit::Normal(got) => got,
            other => return Err(TestCaseError::fail(format!("abnormal exit: {other:?}"))),
        };
        let want = through_lua(&v);
        for path in ["direct", "back", "arg", "exit"] {
            let x = unwrap_v(field(&got, path))
                .map_err(|e| TestCaseError::fail(format!("{path}: {e}; whole result {got:?}")))?;
            same(&x, &want).map_err(|e| TestCaseError::fail(format!("path {path}: {e}")))?;
        }
        Ok(())
    });
    tokio.block_on(rt.shutdown());
}

// ---------------------------------------------------------------------------------------
// 3. WIT values through complex.wasm
// ---------------------------------------------------------------------------------------

const COMPLEX: &str = "0b3b555c2dd2e9bb4e09dead45b0ba00c660abb3b9d5ea1f688dee9b17537b55";

/// The `echo-*` exports: each returns its argument.
const ECHOES: &[&str] = common::COMPLEX_EXPORTS.split_at(9).0;

/// Calls `target` with `v` through `funcs.call` and returns `{ok = r}` or `{err = text}`.
const WCALL: &str = r#"
local funcs = require("funcs")
return { main = function(target, v)
  local r, err = funcs.call(target, v)
  if err ~= nil then return { err = tostring(err) } end
  return { ok = r }
end }
"#;

/// A WIT input as Lua writes it and the value the echo must return.
#[derive(Debug, Clone)]
struct WitCase {
    export: &'static str,
    input: Value,
    want: Value,
}

fn s32() -> impl Strategy<Value = i32> {
    prop_oneof![any::<i32>(), -5i32..5, Just(i32::MIN), Just(i32::MAX)]
}

fn u32_() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), 0u32..200, Just(u32::MAX)]
}

/// A point record; as input sometimes written with float coordinates (2.0 is accepted for
/// an s32), the output always has integers.
fn point() -> impl Strategy<Value = (Value, Value)> {
    (s32(), s32(), any::<bool>()).prop_map(|(x, y, as_float)| {
        let num = |i: i32| {
            if as_float {
                Value::Num(f64::from(i))
            } else {
                Value::Int(i64::from(i))
            }
        };
        (
            Value::Map(vec![(s("x"), num(x)), (s("y"), num(y))]),
            Value::Map(vec![
                (s("x"), Value::Int(x.into())),
                (s("y"), Value::Int(y.into())),
            ]),
        )
    })
}

/// A rectangle; its fields are written `top-left` or `top_left` as input (both accepted),
/// and come back as written in WIT.
fn rectangle() -> impl Strategy<Value = (Value, Value)> {
    (point(), point(), any::<bool>()).prop_map(|((i1, o1), (i2, o2), snake)| {
        let (tl, br) = if snake {
            ("top_left", "bottom_right")
        } else {
            ("top-left", "bottom-right")
        };
        (
            Value::Map(vec![(s(tl), i1), (s(br), i2)]),
            Value::Map(vec![(s("top-left"), o1), (s("bottom-right"), o2)]),
        )
    })
}

fn wit_case() -> impl Strategy<Value = WitCase> {
    let case = |export: &'static str, (input, want): (Value, Value)| WitCase {
        export,
        input,
        want,
    };
    prop_oneof![
        point().prop_map(move |p| case("echo-point", p)),
        (any::<String>(), u32_()).prop_map(move |(name, age)| {
            let v = Value::Map(vec![
                (s("name"), Value::str(name)),
                (s("age"), Value::Int(age.into())),
            ]);
            case("echo-person", (v.clone(), v))
        }),
        rectangle().prop_map(move |r| case("echo-rectangle", r)),
        prop::sample::select(vec!["red", "green", "blue"])
            .prop_map(move |c| case("echo-color", (s(c), s(c)))),
        prop_oneof![
            u32_().prop_map(|n| {
                let v = Value::Map(vec![(s("circle"), Value::Int(n.into()))]);
                (v.clone(), v)
            }),
            u32_().prop_map(|n| {
                let v = Value::Map(vec![(s("square"), Value::Int(n.into()))]);
                (v.clone(), v)
            }),
            rectangle().prop_map(|(i, o)| (
                Value::Map(vec![(s("rect"), i)]),
                Value::Map(vec![(s("rect"), o)])
            )),
            Just((s("none"), s("none"))),
        ]
        .prop_map(move |v| case("echo-shape", v)),
        // Flags as an array of names (any order, repeats allowed) or as a set table
        // `{read = true, write = false}`; the output is the set of names.
        (
            prop::collection::vec(prop::sample::select(vec!["read", "write", "execute"]), 0..5),
            any::<bool>(),
            any::<[bool; 3]>(),
        )
            .prop_map(move |(names, as_set, extra_false)| {
                let set: BTreeSet<&str> = names.iter().copied().collect();
                let input = if as_set {
                    let mut pairs: Vec<(Value, Value)> =
                        set.iter().map(|n| (s(n), Value::Bool(true))).collect();
                    for (n, add) in ["read", "write", "execute"].iter().zip(extra_false) {
                        if add && !set.contains(n) {
                            pairs.push((s(n), Value::Bool(false)));
                        }
                    }
                    Value::Map(pairs)
                } else {
                    Value::Array(names.iter().map(|n| s(n)).collect())
                };
                let want = Value::Array(set.iter().map(|n| s(n)).collect());
                case("echo-permissions", (input, want))
            }),
        prop::collection::vec(s32(), 0..12).prop_map(move |xs| {
            let v = Value::Array(xs.into_iter().map(|x| Value::Int(x.into())).collect());
            case("echo-list-s32", (v.clone(), v))
        }),
        prop::collection::vec(any::<String>(), 0..6).prop_map(move |xs| {
            let v = Value::Array(xs.into_iter().map(Value::str).collect());
            case("echo-list-string", (v.clone(), v))
        }),
        prop::collection::vec(point(), 0..6).prop_map(move |ps| {
            let (i, o): (Vec<_>, Vec<_>) = ps.into_iter().unzip();
            case("echo-list-point", (Value::Array(i), Value::Array(o)))
        }),
    ]
}

/// Flags come back in declaration order: compare them as a set (sorted).
fn sorted_flags(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let mut items = items.clone();
            items.sort_by(cmp_values);
            Value::Array(items)
        }
        other => other.clone(),
    }
}

#[test]
fn wit_values_round_trip_through_complex_wasm_echoes() {
    let tokio = tokio_rt();
    let fixtures = format!("{}/../shared/fixtures/wasm", env!("CARGO_MANIFEST_DIR"));
    let mut app = App::new().entry(&format!(
        "  - name: fixtures\n    kind: fs.directory\n    directory: {fixtures}\n"
    ));
    for export in ECHOES {
        app = app.entry(&format!(
            "  - name: {export}\n    kind: function.wasm\n    fs: fixtures\n    path: /complex.wasm\n    hash: sha256:{COMPLEX}\n    method: {export}\n"
        ));
    }
    let app = app.lua("wcall", WCALL);
    let rt: Runtime = tokio.block_on(app.start());
    let wcall = Id::new("app", "wcall");
    check("wit_values", 1024, wit_case(), |c| {
        let target = format!("app:{}", c.export);
        let norm = |v: &Value| {
            if c.export == "echo-permissions" {
                sorted_flags(v)
            } else {
                v.clone()
            }
        };
        // From Lua: Rust -> Lua (spawn argument) -> funcs.call -> WIT -> Lua -> Rust.
        let exit = tokio
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    rt.exec_within(&wcall, vec![Value::str(target.clone()), c.input.clone()]),
                )
                .await
            })
            .map_err(|_| TestCaseError::fail("timed out"))?
            .map_err(|e| TestCaseError::fail(format!("spawn failed: {e}")))?;
        let got = match exit {
            Exit::Normal(v) => v,
            other => return Err(TestCaseError::fail(format!("abnormal exit: {other:?}"))),
        };
        let Some(out) = field(&got, "ok") else {
            return Err(TestCaseError::fail(format!("funcs.call failed: {got:?}")));
        };
        same(&norm(out), &c.want).map_err(|e| TestCaseError::fail(format!("funcs.call: {e}")))?;
        // From Rust: Runtime::call goes through the same mapping without a Lua caller.
        let out = tokio
            .block_on(rt.call(
                &target,
                vec![c.input.clone()],
                Some(Duration::from_secs(20)),
            ))
            .map_err(|e| TestCaseError::fail(format!("Runtime::call failed: {e:?}")))?;
        same(&norm(&out), &c.want)
            .map_err(|e| TestCaseError::fail(format!("Runtime::call: {e}")))?;
        Ok(())
    });
    tokio.block_on(rt.shutdown());
}

// ---------------------------------------------------------------------------------------
// 4. Durations
// ---------------------------------------------------------------------------------------

/// Whitespace around a duration, which `parse` trims.
fn padding() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(String::new()), 1 => "[ \t\n]{1,3}"]
}

/// A duration in one of the documented forms and the `Duration` it means.
fn duration_form() -> impl Strategy<Value = (String, Duration)> {
    prop_oneof![
        (0u64..1_000_000_000_000).prop_map(|n| (format!("{n}ms"), Duration::from_millis(n))),
        (0u64..1_000_000_000).prop_map(|n| (format!("{n}s"), Duration::from_secs(n))),
        (0u64..100_000, 0u64..100_000)
            .prop_map(|(h, m)| (format!("{h}h{m}m"), Duration::from_secs(h * 3600 + m * 60))),
        any::<u64>().prop_map(|n| (n.to_string(), Duration::from_millis(n))),
        (0u64..1000).prop_map(|n| (n.to_string(), Duration::from_millis(n))),
    ]
}

#[test]
fn durations_parse_or_are_refused_cleanly() {
    // Arbitrary text never panics; text that starts with '-' (after trimming) is refused as
    // negative; a refusal is one line.
    let junk = prop_oneof![
        any::<String>(),
        "[-+ 0-9a-zµ.]{0,12}",
        "[0-9]{1,30}(ns|us|ms|s|m|h|d|w|y|M)",
    ];
    check("duration_junk", 512, junk, |text| {
        let r = catch_unwind(|| warden::duration::parse(&text)).map_err(|p| panic_text(&*p));
        prop_assert!(r.is_ok(), "parse panicked on {text:?}: {}", r.unwrap_err());
        match r.unwrap() {
            Ok(_) => prop_assert!(!text.trim().starts_with('-'), "accepted {text:?}"),
            Err(msg) => {
                prop_assert!(!msg.is_empty());
                prop_assert!(!msg.contains('\n'), "multi-line error {msg:?}");
                if text.trim().starts_with('-') {
                    prop_assert!(msg.contains("negative"), "{text:?}: {msg}");
                }
            }
        }
        Ok(())
    });
    // The documented forms parse to what they mean; the same with a '-' is refused.
    check(
        "duration_forms",
        256,
        (duration_form(), padding(), padding()),
        |((text, want), pre, post)| {
            let padded = format!("{pre}{text}{post}");
            prop_assert_eq!(warden::duration::parse(&padded), Ok(want), "{:?}", padded);
            let negative = format!("{pre}-{text}{post}");
            match warden::duration::parse(&negative) {
                Ok(d) => prop_assert!(false, "{negative:?} parsed to {d:?}"),
                Err(msg) => prop_assert!(msg.contains("negative"), "{negative:?}: {msg}"),
            }
            Ok(())
        },
    );
}
