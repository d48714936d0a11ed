//! What `warden test` prints or writes: the report Wippy's runner prints (en/framework/
//! testing.md, "Example Output": the cases by suite, `+` passed, `-` failed with its
//! error, then `N suites | P passed | F failed | S skipped | Tms`), with each failure's
//! place, expected and actual values and the test's log lines; a line per test while it
//! runs on a terminal; JUnit XML (through the `quick-junit` crate) and TAP.

use super::{Case, Status, TestResult};
use std::fmt::Write;

/// Total cases by status: (passed, failed, skipped).
pub fn totals(results: &[TestResult]) -> (usize, usize, usize) {
    results.iter().fold((0, 0, 0), |(p, f, s), r| {
        (
            p + r.count(Status::Passed),
            f + r.count(Status::Failed),
            s + r.count(Status::Skipped),
        )
    })
}

/// The suites of the results, in the order they came, each with its results.
fn suites(results: &[TestResult]) -> Vec<(&str, Vec<&TestResult>)> {
    let mut out: Vec<(&str, Vec<&TestResult>)> = Vec::new();
    for r in results {
        match out.iter_mut().find(|(s, _)| *s == r.suite) {
            Some((_, rs)) => rs.push(r),
            None => out.push((r.suite.as_str(), vec![r])),
        }
    }
    out
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The last line: `N suites | P passed | F failed | S skipped | Tms`.
pub fn count_line(results: &[TestResult], elapsed: std::time::Duration) -> String {
    let (p, f, s) = totals(results);
    format!(
        "{} | {p} passed | {f} failed | {s} skipped | {}ms",
        plural(suites(results).len(), "suite"),
        elapsed.as_millis()
    )
}

/// The whole report, as Wippy's runner lays it out: `N tests in M suites`, then each
/// suite with its cases (`+` passed, `-` failed with its error, place, expected and
/// actual values, `~` skipped), the processes a test left running and the log lines of
/// a failed test, then the count line.
pub fn text(results: &[TestResult], elapsed: std::time::Duration) -> String {
    let groups = suites(results);
    let cases: usize = results.iter().map(|r| r.cases.len()).sum();
    let mut out = format!("{cases} tests in {} suites\n", groups.len());
    for (suite, rs) in &groups {
        let _ = writeln!(out, "\n  {suite}");
        for r in rs {
            for c in &r.cases {
                // a test without cases of its own is its name; the cases of a test are
                // prefixed by it where the suite holds several tests or names it apart
                let id = r.id.to_string();
                let name = if c.name == id {
                    r.title.clone()
                } else if rs.len() > 1 || (r.title != id && *suite != r.title) {
                    format!("{}: {}", r.title, c.name)
                } else {
                    c.name.clone()
                };
                let ms = c
                    .duration
                    .map(|d| format!("{}ms", d.as_millis()))
                    .unwrap_or_default();
                let mark = match c.status {
                    Status::Passed => '+',
                    Status::Failed => '-',
                    Status::Skipped => '~',
                };
                let line = format!("    {mark} {name:<40} {ms}");
                let _ = writeln!(out, "{}", line.trim_end());
                if c.status == Status::Failed {
                    let msg = c.message.as_deref().unwrap_or("failed");
                    match place(c) {
                        Some(p) if !msg.starts_with(&p) => {
                            let _ = writeln!(out, "      Error: {p}: {msg}");
                        }
                        _ => {
                            let _ = writeln!(out, "      Error: {msg}");
                        }
                    }
                    if let Some(e) = &c.expected {
                        let _ = writeln!(out, "      expected: {e}");
                    }
                    if let Some(a) = &c.actual {
                        let _ = writeln!(out, "      actual:   {a}");
                    }
                }
            }
            if let Some(l) = &r.leaked {
                let _ = writeln!(out, "    ! {l}");
            }
            if r.count(Status::Failed) > 0 && !r.logs.is_empty() {
                let _ = writeln!(out, "      log of {}:", r.id);
                for l in &r.logs {
                    let _ = writeln!(out, "        {l}");
                }
            }
        }
    }
    let _ = writeln!(out, "\n  {}", count_line(results, elapsed));
    out
}

/// One line for a finished test: `ok`/`FAIL`, its id, its counts and time.
pub fn test_line(r: &TestResult) -> String {
    let failed = r.count(Status::Failed);
    let mut counts = format!("{} passed", r.count(Status::Passed));
    if failed > 0 {
        let _ = write!(counts, ", {failed} failed");
    }
    let skipped = r.count(Status::Skipped);
    if skipped > 0 {
        let _ = write!(counts, ", {skipped} skipped");
    }
    format!(
        "{} {} ({counts}; {} ms)",
        if failed > 0 { "FAIL" } else { "ok  " },
        r.id,
        r.duration.as_millis()
    )
}

fn place(c: &Case) -> Option<String> {
    Some(match (&c.file, c.line) {
        (Some(f), Some(l)) => format!("{f}:{l}"),
        (Some(f), None) => f.clone(),
        _ => return None,
    })
}

/// The run as JUnit XML: a test suite per test entry, a test case per case.
pub fn junit(results: &[TestResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("warden test");
    for r in results {
        let mut suite = TestSuite::new(r.id.to_string());
        suite.set_time(r.duration);
        for c in &r.cases {
            let status = match c.status {
                Status::Passed => TestCaseStatus::success(),
                Status::Skipped => TestCaseStatus::skipped(),
                Status::Failed => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let msg = c.message.clone().unwrap_or_else(|| "failed".into());
                    s.set_message(msg.clone());
                    let mut text = match place(c) {
                        Some(p) if !msg.starts_with(&p) => format!("{p}: {msg}"),
                        _ => msg,
                    };
                    if let Some(e) = &c.expected {
                        let _ = write!(text, "\nexpected: {e}");
                    }
                    if let Some(a) = &c.actual {
                        let _ = write!(text, "\nactual: {a}");
                    }
                    s.set_description(text);
                    s
                }
            };
            let mut tc = TestCase::new(c.name.clone(), status);
            tc.set_classname(r.id.to_string());
            suite.add_test_case(tc);
        }
        if !r.logs.is_empty() {
            suite.set_system_out(r.logs.join("\n"));
        }
        report.add_test_suite(suite);
    }
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- cannot write the report: {e} -->\n"))
}

/// The run in TAP 13: one test point per case.
pub fn tap(results: &[TestResult]) -> String {
    let n: usize = results.iter().map(|r| r.cases.len()).sum();
    let mut out = format!("TAP version 13\n1..{n}\n");
    let mut i = 0;
    for r in results {
        for c in &r.cases {
            i += 1;
            let name = format!("{} {}", r.id, c.name).replace('#', "\\#");
            match c.status {
                Status::Passed => {
                    let _ = writeln!(out, "ok {i} - {name}");
                }
                Status::Skipped => {
                    let _ = writeln!(out, "ok {i} - {name} # SKIP");
                }
                Status::Failed => {
                    let _ = writeln!(out, "not ok {i} - {name}");
                    let _ = writeln!(out, "  ---");
                    let msg = c.message.as_deref().unwrap_or("failed");
                    let _ = writeln!(out, "  message: {}", yaml_str(msg));
                    if let Some(p) = place(c) {
                        let _ = writeln!(out, "  at: {}", yaml_str(&p));
                    }
                    if let Some(e) = &c.expected {
                        let _ = writeln!(out, "  expected: {}", yaml_str(e));
                    }
                    if let Some(a) = &c.actual {
                        let _ = writeln!(out, "  actual: {}", yaml_str(a));
                    }
                    let _ = writeln!(out, "  ...");
                }
            }
        }
    }
    out
}

/// A YAML scalar for TAP's diagnostics (a JSON string is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}
