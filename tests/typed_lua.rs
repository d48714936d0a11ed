//! Wippy's typed Lua: entries, libraries and functions written with type annotations load
//! and run, runtime errors name the user's line, typed syntax errors name theirs, and the
//! cast calls (`string(v)`, `number(v)`, `integer(v)`, `boolean(v)`) convert or fail.

mod common;

use common::{lua_value, App};
use serde_json::json;
use warden::process::Exit;
use warden::registry::load_dir;

const SHAPES: &str = r#"-- a typed library
type Point = {x: number, y: number, label?: string}
export type Shape<T: number> =
  | {kind: "circle", r: T}
  | {kind: "rect", w: T, h: T}

local M = {}

function M.area<T: number>(s: Shape<T>): number
  if s.kind == "circle" then
    return 3 * (s :: any).r * s.r
  end
  return s.w * s.h
end

function M.mid(a: Point, b: Point): Point
  return {x = (a.x + b.x) / 2, y = (a.y + b.y) / 2}
end

return M
"#;

const MAIN: &str = r#"local shapes = require("shapes")
local funcs = require("funcs")

type Pair<A, B> = {first: A, second: B}

local function sum(...: number): integer
  local total: integer = 0
  for _, v: number in ipairs({...}) do
    total = total + (v :: integer)
  end
  return total
end

local function swap<A, B>(p: Pair<A, B>): Pair<B, A>
  return {first = p.second, second = p.first}
end

return { main = function(): {[string]: any}
  local doubled: number?, err: string? = funcs.call("app:double", 21)
  local m = shapes.mid({x = 0, y = 0}, {x = 4, y = 2, label = "b"})
  return {
    sum = sum(1, 2, 3),
    swapped = swap({first = "a", second = 1}),
    circle = shapes.area({kind = "circle", r = 2}),
    rect = shapes.area({kind = "rect", w = 2, h = 5}),
    mid = {m.x, m.y},
    doubled = doubled,
    err = err,
  }
end }
"#;

const DOUBLE: &str = r#"local function main(n: number): (number?, string?)
  if n == nil then return nil, "no number" end
  return n * 2
end
return {main = main}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_entries_libraries_and_functions_run() {
    let app = App::new()
        .entry("  - {name: main, kind: process.lua, source: file://main.lua, method: main, modules: [funcs], imports: {shapes: app:shapes}}\n")
        .entry("  - {name: shapes, kind: library.lua, source: file://shapes.lua}\n")
        .func("double", DOUBLE, None);
    app.write("main.lua", MAIN);
    app.write("shapes.lua", SHAPES);
    let v = app.value("main").await;
    assert_eq!(
        v,
        json!({
            "sum": 6,
            "swapped": {"first": 1, "second": "a"},
            "circle": 12,
            "rect": 10,
            "mid": [2, 1],
            "doubled": 42,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_errors_in_typed_code_name_the_users_line() {
    let src = "type Config = {\n  name: string,\n  retries?: integer,\n}\n\nlocal function check(c: Config): (boolean, string?)\n  return c.retries > 0, nil\nend\n\nreturn { main = function(): boolean\n  return (check({name = \"x\"}))\nend }\n";
    let exit = App::new().lua("main", src).run("main", vec![]).await;
    let Exit::Error(err) = exit else {
        panic!("expected a failure, got {exit:?}")
    };
    assert!(
        err.contains("main.lua:7:") && err.contains("compare"),
        "error should name line 7: {err}"
    );
}

#[test]
fn typed_syntax_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.lua"),
        "local function f(a: number): string\n  return tostring(a)\nend\nlocal x: = 1\nreturn {main = f}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("worse.lua"),
        "type P = {x: number}\nlocal function f(p: P)\n  return p.x +\nend\nreturn {main = f}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("_index.yaml"),
        "namespace: app\nentries:\n  - {name: bad, kind: process.lua, source: file://bad.lua, method: main}\n  - {name: worse, kind: process.lua, source: file://worse.lua, method: main}\n",
    )
    .unwrap();
    let err = load_dir(dir.path()).expect_err("must not load").to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0]
            .starts_with("_index.yaml: entry app:bad: field source: Lua syntax error: bad.lua:4:"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(
            "_index.yaml: entry app:worse: field source: Lua syntax error: worse.lua:4:"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_calls_convert_or_raise() {
    let v = lua_value(
        r#"
return { main = function()
  -- en/lua/types.md, "Safe Cast": a cast that cannot convert raises
  -- (the message without the caller's place)
  local function both(f, x)
    local ok, err = pcall(f, x)
    return {ok = ok, err = (err:gsub("^[^:]+:%d+: ", ""))}
  end
  return {
    s_num = string(42), s_bool = string(true), s_str = string("a"),
    s_tbl = both(string, {}),
    n_str = number("3.5"), n_num = number(2), n_bad = both(number, "x1"),
    i_str = integer("42"), i_float = integer(4.0), i_frac = both(integer, 3.5),
    i_bad = both(integer, "nope"),
    b_true = boolean(true), b_str = boolean("false"), b_bad = both(boolean, 1),
    still_lib = string.upper("ok"),
  }
end }
"#,
    )
    .await;
    assert_eq!(v["s_num"], "42");
    assert_eq!(v["s_bool"], "true");
    assert_eq!(v["s_str"], "a");
    assert_eq!(v["s_tbl"]["ok"], false);
    assert!(
        v["s_tbl"]["err"]
            .as_str()
            .unwrap()
            .ends_with("cannot convert table to string"),
        "{v}"
    );
    assert_eq!(v["n_str"], 3.5);
    assert_eq!(v["n_num"], 2);
    assert_eq!(
        v["n_bad"],
        json!({"ok": false, "err": "cannot convert \"x1\" to number"})
    );
    assert_eq!(v["i_str"], 42);
    assert_eq!(v["i_float"], 4);
    assert_eq!(
        v["i_frac"],
        json!({"ok": false, "err": "cannot convert number to integer"})
    );
    assert_eq!(
        v["i_bad"],
        json!({"ok": false, "err": "cannot convert \"nope\" to integer"})
    );
    assert_eq!(v["b_true"], true);
    assert_eq!(v["b_str"], false);
    assert_eq!(
        v["b_bad"],
        json!({"ok": false, "err": "cannot convert number to boolean"})
    );
    assert_eq!(v["still_lib"], "OK");
}

#[test]
fn check_warns_about_literals_of_the_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("calc.lua"),
        "local function scale(x: number, by: integer): number\n  return x * by\nend\nlocal a = scale(2, 3)\nlocal b = scale(\"2\", 1.5)\nreturn {main = function() return a end}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("_index.yaml"),
        "namespace: app\nentries:\n  - {name: calc, kind: process.lua, source: file://calc.lua, method: main}\n",
    )
    .unwrap();
    let reg = load_dir(dir.path()).expect("loads: type errors are warnings");
    assert_eq!(
        reg.warnings,
        [
            "_index.yaml: entry app:calc: calc.lua:5: argument 1 of scale: expected number, got string \"2\"",
            "_index.yaml: entry app:calc: calc.lua:5: argument 2 of scale: expected integer, got number 1.5",
        ]
    );
}

/// Input the typed-Lua parser itself fails on (full_moon panics on `@` before a bad token) is a
/// plain syntax error naming the file and line, not a crash of the load.
#[test]
fn input_the_typed_parser_fails_on_is_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("at.lua"), "local x = 1\n@$").unwrap();
    std::fs::write(
        dir.path().join("_index.yaml"),
        "namespace: app\nentries:\n  - {name: at, kind: process.lua, source: file://at.lua, method: main}\n",
    )
    .unwrap();
    let err = load_dir(dir.path()).expect_err("must not load").to_string();
    assert!(
        err.starts_with("_index.yaml: entry app:at: field source: Lua syntax error: at.lua:2:"),
        "{err}"
    );
}

/// en/lua/types.md: a `type` declaration is a value. `T(v)` validates and gives v back,
/// raising on failure ("Safe Cast"); `T:is(v)` gives `v, nil` or `nil, err` ("Type:is()
/// Method"); validators check what they say ("Type Validators"); types reflect
/// themselves ("Type Reflection": kind, name, fields, a field's type, variants), compare
/// (`==`, `<=`, `<`) and key tables, with `typeof(v)` giving the same values as
/// `Number`, `String`...; `as` and `!` are erased ("Unsafe Cast", "Non-Nil Assertion").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_declarations_are_values_that_validate() {
    let v = lua_value(
        r#"
type Point = {x: number, y: number}
type Status = "pending" | "active" | "done"
type User = {
  name: string @min_len(1),
  age: number @min(0) @max(150),
  email?: string @pattern("^.+@.+$"),
}
type Named = {name: string}
type Aged = {age: number}
type Person = Named & Aged
type Scores = {number @min(0) @max(100)}

return { main = function()
  local ok_p = Point({x = 1, y = 2})
  local raised = select(2, pcall(Point, {x = 1, y = "2"}))
  local p, perr = Point:is({x = 1})
  local q, qerr = Point:is({x = 1, y = 2})
  local fields = {}
  for name, t in User:fields() do fields[#fields + 1] = name .. ":" .. t:kind() end
  local variants = {}
  for v in Status:variants() do variants[#variants + 1] = v end
  local _, age_err = User:is({name = "a", age = 200})
  local _, name_err = User:is({name = "", age = 1})
  local _, mail_err = User:is({name = "a", age = 1, email = "nope"})
  local _, score_err = Scores:is({10, 101})
  local handlers = {}
  handlers[Number] = "number"
  handlers[String] = "string"
  local data: any = {x = 3, y = 4}
  local cast = data as Point
  local maybe: Point? = cast
  return {
    ok = ok_p.x + ok_p.y, raised = tostring(raised),
    p = p == nil, perr = perr:kind(), perr_msg = perr:message(),
    q = q ~= nil and qerr == nil,
    kinds = {Point:kind(), Status:kind(), Number:kind(), Person:kind(), Scores:kind()},
    name = Point:name(), text = tostring(Point),
    fields = fields, field_type = User.age:kind(),
    variants = variants,
    age_err = age_err:message(), name_err = name_err:message(), mail_err = mail_err:message(),
    score_err = score_err:message(),
    user = User:is({name = "a", age = 1, email = "a@b"}) ~= nil,
    person = Person:is({name = "a", age = 3}) ~= nil,
    not_person = (Person:is({name = "a"})) == nil,
    status = {Status:is("active") ~= nil, (Status:is("gone")) == nil},
    cmp = {Number == Number, Integer <= Number, Integer < Number, Number < Number, Number <= Integer},
    by_type = {handlers[typeof(1.5)], handlers[typeof("s")], typeof(3) == Integer},
    cast = (maybe!).x,
  }
end }
"#,
    )
    .await;
    assert_eq!(v["ok"], 3, "{v}");
    assert!(
        v["raised"]
            .as_str()
            .unwrap()
            .contains("Point: at .y: expected number, got \"2\""),
        "{v}"
    );
    assert_eq!(v["p"], true);
    assert_eq!(v["perr"], "Invalid");
    assert_eq!(v["perr_msg"], "Point: at .y: missing field y (number)");
    assert_eq!(v["q"], true);
    assert_eq!(
        v["kinds"],
        json!(["record", "union", "number", "intersection", "array"])
    );
    assert_eq!(v["name"], "Point");
    assert_eq!(v["text"], "Point");
    assert_eq!(
        v["fields"],
        json!(["name:string", "age:number", "email:string"])
    );
    assert_eq!(v["field_type"], "number");
    assert_eq!(v["variants"], json!(["pending", "active", "done"]));
    assert_eq!(
        v["age_err"],
        "User: at .age: 200 is more than the maximum 150"
    );
    assert_eq!(
        v["name_err"],
        "User: at .name: length 0 is less than the minimum length 1"
    );
    assert_eq!(
        v["mail_err"],
        "User: at .email: \"nope\" does not match the pattern \"^.+@.+$\""
    );
    assert_eq!(
        v["score_err"],
        "Scores: at [2]: 101 is more than the maximum 100"
    );
    assert_eq!(v["user"], true);
    assert_eq!(v["person"], true);
    assert_eq!(v["not_person"], true);
    assert_eq!(v["status"], json!([true, true]));
    assert_eq!(v["cmp"], json!([true, true, true, false, false]));
    assert_eq!(v["by_type"], json!(["number", "string", true]));
    assert_eq!(v["cast"], 3);
}
