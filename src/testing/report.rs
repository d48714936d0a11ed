//! What `warden test` prints or writes: a line per test, the failures with their place,
//! expected and actual values and log lines, the count line; JUnit XML (through the
//! `quick-junit` crate) and TAP.

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

/// The last line: `N passed, M failed` (`, K skipped`).
pub fn count_line(results: &[TestResult]) -> String {
    let (p, f, s) = totals(results);
    if s > 0 {
        format!("{p} passed, {f} failed, {s} skipped")
    } else {
        format!("{p} passed, {f} failed")
    }
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

/// The failures of a test, each with its place, message, expected and actual values,
/// then the test's log lines.
pub fn failures(r: &TestResult) -> String {
    let mut out = String::new();
    let failed: Vec<&Case> = r
        .cases
        .iter()
        .filter(|c| c.status == Status::Failed)
        .collect();
    if failed.is_empty() {
        return out;
    }
    for c in &failed {
        let _ = writeln!(out, "--- FAIL {}: {}", r.id, c.name);
        let msg = c.message.as_deref().unwrap_or("failed");
        // a raised Lua error already starts with its place
        match place(c) {
            Some(p) if !msg.starts_with(&p) => {
                let _ = writeln!(out, "    {p}: {msg}");
            }
            _ => {
                let _ = writeln!(out, "    {msg}");
            }
        }
        if let Some(e) = &c.expected {
            let _ = writeln!(out, "    expected: {e}");
        }
        if let Some(a) = &c.actual {
            let _ = writeln!(out, "    actual:   {a}");
        }
    }
    if !r.logs.is_empty() {
        let _ = writeln!(out, "    log of {}:", r.id);
        for l in &r.logs {
            let _ = writeln!(out, "      {l}");
        }
    }
    out
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
