//! `warden test`: the runner's counts, exit code, reports, isolation, timeouts and leaks,
//! on a suite meant to fail and on the example suite of the pipeline tree.

mod common;

use common::App;
use std::process::Command;

fn warden_test(dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("test")
        .arg("-d")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn test_entry(name: &str, kind: &str, meta: &str, src: &str) -> String {
    format!(
        "  - name: {name}\n    kind: {kind}\n    meta: {{type: test{meta}}}\n    source: |\n{}\n    method: run\n    modules: [test, time, logger]\n",
        src.lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// A suite with every outcome: passing, failing, skipped, crashing, hanging, leaking, a
/// plain process, a Wippy-style function importing `wippy.test:test`.
fn failing_suite() -> App {
    App::new()
        .entry("  - name: sleeper\n    kind: process.lua\n    source: \"return { main = function() process.inbox():receive() end }\"\n    method: main\n")
        .entry(&test_entry("a_pass", "process.lua", "", r#"
local test = require("test")
return { run = test.run_cases(function()
  describe("math", function()
    it("adds", function() test.eq(1 + 1, 2) end)
    it("compares tables deeply", function() test.eq({ a = { 1, 2 } }, { a = { 1, 2 } }) end)
    it_skip("later", function() error("not run") end)
  end)
  local api = { value = function() return "real" end }
  describe("mocks", function()
    it("replace a field for one case", function()
      test.mock(api, "value", function() return "fake" end)
      test.eq(api.value(), "fake")
    end)
    it("are restored after it", function() test.eq(api.value(), "real") end)
  end)
end) }
"#))
        .entry(&test_entry("b_fail", "process.lua", "", r#"
local test = require("test")
local logger = require("logger")
return { run = test.run_cases(function()
  describe("tables", function()
    it("passes", function() test.ok(true) end)
    it("differs", function()
      logger:info("about to compare")
      test.eq({ a = { 1, 2 } }, { a = { 1, 3 } })
    end)
  end)
end) }
"#))
        .entry(&test_entry("c_crash", "process.lua", "", r#"
return { run = function() error("broken before any case") end }
"#))
        .entry(&test_entry("d_hang", "process.lua", ", timeout: 300ms", r#"
local test = require("test")
local time = require("time")
return { run = test.run_cases(function()
  it("first", function() end)
  it("hangs", function() time.sleep(10000 * time.MILLISECOND) end)
  it("never reached", function() end)
end) }
"#))
        .entry(&test_entry("e_leak", "process.lua", "", r#"
local test = require("test")
return { run = test.run_cases(function()
  it("spawns and forgets", function() process.spawn("app:sleeper", "app:host") end)
end) }
"#))
        .entry(&test_entry("f_plain", "process.lua", "", r#"
return { run = function() return true end }
"#))
        .entry("  - name: g_wippy\n    kind: function.lua\n    meta: {type: test}\n    source: file://g_wippy.lua\n    method: run\n    imports: {test: wippy.test:test}\n")
}

const WIPPY_STYLE: &str = r#"
local test = require("test")
local function define_tests()
  describe("a Wippy-style test", function()
    before_each(function() test.mock(string, "upper", function() return "MOCKED" end) end)
    -- en/framework/testing.md, "Mocking": mock("object.field"), mock_process,
    -- restore_mock; every mock is restored after the case
    it("uses process and mocks", function()
      test.is_string(process.pid())
      test.eq(string.upper("x"), "MOCKED")
      test.mock("string.rep", function() return "mocked" end)
      test.eq(string.rep("x", 3), "mocked")
      test.mock_process("send", function(pid, topic) return "sent " .. topic end)
      test.eq(process.send("nobody", "hello"), "sent hello")
      test.restore_mock("string.rep")
      test.eq(string.rep("x", 2), "xx")
    end)
    it("sees the mocks of the last case restored", function()
      test.eq(string.rep("x", 2), "xx")
      test.has_error(process.send("{nobody|1}", "hello"))
      test.restore_all_mocks()
      test.eq(string.upper("x"), "X")
    end)
  end)
end
local run_cases = test.run_cases(define_tests)
-- the page's runner: `result.failed_tests`
local function run(options)
  local result = run_cases(options)
  if result.failed_tests > 0 or result.total_tests ~= 2 or result.passed_tests ~= 2 then
    error("tests failed: " .. result.failed_tests)
  end
  return result
end
return { run = run }
"#;

#[test]
fn a_suite_with_every_outcome_gives_the_counts_the_exit_code_and_the_reports() {
    let app = failing_suite();
    app.write("g_wippy.lua", WIPPY_STYLE);
    app.finish();
    let (code, out, _) = warden_test(app.path(), &[]);
    assert_eq!(code, 1, "{out}");
    // 15 cases: a 4 + a skip, b 1 + 1, c 1, d 1 + 2, e 1, f 1, g 2; laid out as Wippy's
    // runner prints them (en/framework/testing.md, "Example Output")
    assert!(out.starts_with("15 tests in 7 suites\n\n"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("  7 suites | 10 passed | 4 failed | 1 skipped | ")
            && last.ends_with("ms"),
        "{out}"
    );
    // a suite per test (none names one), in id order
    let suites: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && !l.contains('|'))
        .map(str::trim)
        .collect();
    assert_eq!(
        suites,
        [
            "app:a_pass",
            "app:b_fail",
            "app:c_crash",
            "app:d_hang",
            "app:e_leak",
            "app:f_plain",
            "app:g_wippy"
        ],
        "{out}"
    );
    // the failure: place, expected, actual, the test's log
    assert!(out.contains("\n    - tables > differs "), "{out}");
    assert!(
        out.contains("\n      Error: _index.yaml#app:b_fail:9: at .a[2]: expected 3, got 2\n"),
        "{out}"
    );
    assert!(out.contains("\n      expected: {a = {1, 3}}\n"), "{out}");
    assert!(out.contains("\n      actual:   {a = {1, 2}}\n"), "{out}");
    assert!(out.contains("about to compare"), "{out}");
    assert!(out.contains("    - app:c_crash "), "{out}");
    assert!(out.contains("broken before any case"), "{out}");
    assert!(
        out.contains("\n    - hangs\n      Error: still running at the timeout (300ms)\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "\n    - never reached\n      Error: not run: still running at the timeout (300ms)\n"
        ),
        "{out}"
    );
    assert!(out.contains("\n    ~ math > later "), "{out}");
    // a process left running is reported, not failed (the docs make it no failure)
    assert!(out.contains("\n    + spawns and forgets "), "{out}");
    assert!(
        out.contains("\n    ! the test left 1 process(es) running: {test5|"),
        "{out}"
    );
    assert!(out.contains("(app:sleeper)"), "{out}");
    // the Wippy-style test (a function.lua using process.*, mocks, failed_tests)
    assert!(
        out.contains("\n    + a Wippy-style test > uses process and mocks ")
            && out
                .contains("\n    + a Wippy-style test > sees the mocks of the last case restored "),
        "{out}"
    );
    // --fail-leaks makes the leak a failure of its last case
    let (code, out, _) = warden_test(app.path(), &["--fail-leaks", "e_leak"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\n    - spawns and forgets "), "{out}");
    assert!(
        out.contains("Error: the test left 1 process(es) running"),
        "{out}"
    );

    // JUnit
    let xml = app.path().join("report.xml");
    let (code, _, err) = warden_test(
        app.path(),
        &["--format", "junit", "--output", xml.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("7 suites | 10 passed | 4 failed | 1 skipped | ")),
        "{err}"
    );
    let xml = std::fs::read_to_string(xml).unwrap();
    assert!(
        xml.contains(
            r#"<testsuites name="warden test" tests="15" skipped="1" failures="4" errors="0">"#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(
            r#"<testsuite name="app:b_fail" tests="2" skipped="0" errors="0" failures="1""#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="tables &gt; differs" classname="app:b_fail">"#),
        "{xml}"
    );

    // TAP
    let (code, tap, _) = warden_test(app.path(), &["--format", "tap"]);
    assert_eq!(code, 1);
    assert!(tap.starts_with("TAP version 13\n1..15\n"), "{tap}");
    assert_eq!(
        tap.lines().filter(|l| l.starts_with("not ok ")).count(),
        4,
        "{tap}"
    );
    assert_eq!(
        tap.lines().filter(|l| l.ends_with("# SKIP")).count(),
        1,
        "{tap}"
    );

    // a filter runs only the tests it names; all passing is exit 0
    let (code, out, _) = warden_test(app.path(), &["a_pass", "f_plain"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("  2 suites | 5 passed | 0 failed | 1 skipped | ")),
        "{out}"
    );
}

/// en/framework/testing.md, "Test Metadata": `suite` groups tests in the output, `name`
/// is the name shown, `order` sorts tests within a suite (lower first).
#[test]
fn test_metadata_groups_names_and_orders_the_tests() {
    let plain = |name: &str, meta: &str| {
        test_entry(
            name,
            "function.lua",
            meta,
            "return { run = function() return true end }",
        )
    };
    let app = App::new()
        .entry(&plain("z_first", ", suite: math, name: Adds, order: 1"))
        .entry(&plain(
            "a_second",
            ", suite: math, name: Multiplies, order: 2",
        ))
        .entry(&plain("m_alone", ", suite: strings"))
        .entry(&plain("b_unordered", ", suite: math"));
    app.finish();
    let (code, out, _) = warden_test(app.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            // the words, without the time
            let words: Vec<&str> = l
                .split_whitespace()
                .filter(|w| !w.ends_with("ms"))
                .collect();
            words.join(" ")
        })
        .collect();
    assert_eq!(
        lines[..6],
        [
            "math",
            "+ Adds",
            "+ Multiplies",
            "+ app:b_unordered",
            "strings",
            "+ app:m_alone",
        ]
        .map(|l| l.to_string()),
        "{out}"
    );
    assert!(out.starts_with("4 tests in 2 suites\n"), "{out}");
}

/// The example suite of the pipeline tree passes: one test per strategy and restart type,
/// intensity escalation, a service's backoff under a faster clock.
#[test]
fn the_example_supervision_suite_passes() {
    let dir = format!("{}/examples/supervision-tests", env!("CARGO_MANIFEST_DIR"));
    let xml = tempfile::NamedTempFile::new().unwrap();
    let (code, _, err) = warden_test(
        std::path::Path::new(&dir),
        &[
            "--format",
            "junit",
            "--output",
            xml.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("6 suites | 10 passed | 0 failed | 0 skipped | ")),
        "{err}"
    );
    let xml = std::fs::read_to_string(xml.path()).unwrap();
    assert!(
        xml.contains(r#"tests="10" skipped="0" failures="0""#),
        "{xml}"
    );
    for t in [
        "rest_for_one",
        "one_for_all",
        "simple_one_for_one",
        "restart_types",
        "intensity",
        "backoff",
    ] {
        assert!(
            xml.contains(&format!(r#"<testsuite name="tests:{t}""#)),
            "{t}\n{xml}"
        );
    }
}

/// Every assertion of the `test` module: the passing forms pass, and each failing one
/// fails its case with its message (read from the TAP report).
#[test]
fn assertions_pass_and_fail_with_their_messages() {
    let app = App::new().entry(&test_entry(
        "asserts",
        "process.lua",
        "",
        r#"
local test = require("test")
return { run = test.run_cases(function()
  it("pass", function()
    test.eq({ 1, { x = "y" } }, { 1, { x = "y" } }); test.neq(1, 2); test.ok(1)
    test.is_nil(nil); test.not_nil(0); test.is_true(true); test.is_false(false)
    test.is_string("s"); test.is_number(1.5); test.is_table({}); test.is_function(print)
    test.is_boolean(false); test.contains("abc", "b"); test.contains({ 1, { 2 } }, { 2 })
    test.matches("abc", "^a"); test.has_key({ k = 1 }, "k"); test.len("abc", 3); test.len({ 1 }, 1)
    test.gt(2, 1); test.gte(2, 2); test.lt(1, 2); test.lte(2, 2)
    test.eq(tostring(test.throws(function() error("boom") end, "boom")):match("boom"), "boom")
    test.has_error(nil, "failed"); test.eq(test.no_error(5, nil), 5)
  end)
  it("neq", function() test.neq(1, 1) end)
  it("ok", function() test.ok(false, "the flag") end)
  it("is_nil", function() test.is_nil(1) end)
  it("is_string", function() test.is_string(1) end)
  it("contains", function() test.contains("abc", "z") end)
  it("matches", function() test.matches("abc", "^b") end)
  it("has_key", function() test.has_key({}, "k") end)
  it("len", function() test.len({ 1, 2 }, 3) end)
  it("gt", function() test.gt(1, 2) end)
  it("throws", function() test.throws(function() end) end)
  it("has_error", function() test.has_error("value", nil) end)
  it("has_error_none", function() test.has_error(nil, nil) end)
  it("throws_note", function() test.throws(function() end, "the reason") end)
  it("no_error", function() test.no_error(nil, "bad input") end)
  it("fail", function() test.fail("custom reason") end)
end) }
"#,
    ));
    app.finish();
    let (code, tap, _) = warden_test(app.path(), &["--format", "tap"]);
    assert_eq!(code, 1);
    assert!(tap.contains("ok 1 - app:asserts pass\n"), "{tap}");
    for (case, message) in [
        ("neq", "expected a value other than 1"),
        ("ok", "the flag: expected a true value, got false"),
        ("is_nil", "expected nil, got 1"),
        ("is_string", "expected a string, got 1 (number)"),
        ("contains", r#"expected \"abc\" to contain \"z\""#),
        ("matches", r#"expected \"abc\" to match \"^b\""#),
        ("has_key", r#"expected a key \"k\" in {}"#),
        ("len", "expected length 3, got 2"),
        ("gt", "expected 1 > 2"),
        ("throws", "expected an error, none was raised"),
        // en/framework/testing.md: `has_error(val, err, msg?)`: val is nil, err is not
        (
            "has_error",
            r#"expected nil and an error, got the value \"value\""#,
        ),
        ("has_error_none", "expected an error, got none"),
        // `throws(fn, msg?)`: the second argument is the message
        (
            "throws_note",
            "the reason: expected an error, none was raised",
        ),
        ("no_error", "expected no error, got bad input"),
        ("fail", "custom reason"),
    ] {
        let want = format!("- app:asserts {case}\n  ---\n  message: \"{message}\"");
        assert!(tap.contains(&want), "{want}\n{tap}");
    }
}

/// `warden test -j N` (README's command table: "up to N at once"): with `-j 3`, three
/// tests that each sleep 300 ms overlap, so the run takes less than the sum of their
/// times; with `-j 1` it takes at least that sum.
#[test]
fn jobs_run_tests_side_by_side() {
    let sleepy = |name: &str| {
        test_entry(
            name,
            "function.lua",
            "",
            "local time = require('time')\nreturn { run = function() time.sleep('300ms') return true end }",
        )
    };
    let app = App::new()
        .entry(&sleepy("t1"))
        .entry(&sleepy("t2"))
        .entry(&sleepy("t3"));
    app.finish();
    let ms = |w: &str| -> u64 { w.strip_suffix("ms").unwrap().parse().unwrap() };
    // (sum of the cases' times, the run's time)
    let times = |jobs: &str| -> (u64, u64) {
        let (code, out, err) = warden_test(app.path(), &["-j", jobs]);
        assert_eq!(code, 0, "{out}{err}");
        let cases: Vec<u64> = out
            .lines()
            .filter(|l| l.trim_start().starts_with("+ app:t"))
            .map(|l| ms(l.split_whitespace().last().unwrap()))
            .collect();
        assert_eq!(cases.len(), 3, "{out}");
        assert!(cases.iter().all(|&c| c >= 300), "{out}");
        let total = out
            .lines()
            .last()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap();
        (cases.iter().sum(), ms(total))
    };
    let (sum, total) = times("3");
    assert!(total < sum, "-j 3: {total} ms for cases of {sum} ms in all");
    let (sum, total) = times("1");
    assert!(
        total >= sum,
        "-j 1: {total} ms for cases of {sum} ms in all"
    );
}
