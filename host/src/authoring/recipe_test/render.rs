//! A report as text for a terminal: one `ok`/`FAILED` line per case, the
//! differences of each failed case as diffs, and a summary line.

use std::fmt::Write as _;

use similar::{ChangeTag, TextDiff};

use super::format::CommandsMatch;
use super::report::{BuildNote, CaseReport, Failure, SuiteReport};

/// Lines of context around each change in a diff.
const CONTEXT: usize = 3;
/// Lines of a file shown when it lacks an expected text.
const MAX_FILE_LINES: usize = 40;
/// Lines of the recipe's log shown under a failed run.
const MAX_LOG_LINES: usize = 12;
const INDENT: &str = "    ";

#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    /// Print every case's plan, passed or not.
    pub show_plan: bool,
}

/// The header line: which recipe, which file, how many cases.
pub fn header(report: &SuiteReport) -> String {
    let mut line = format!(
        "testing {} with {} ({} case{}",
        report.recipe_id,
        report.test_file.display(),
        report.cases.len(),
        if report.cases.len() == 1 { "" } else { "s" }
    );
    if report.filtered_out > 0 {
        let _ = write!(line, ", {} filtered out", report.filtered_out);
    }
    line.push(')');
    match &report.build {
        BuildNote::UpToDate => {}
        BuildNote::Built { rebuilt, duration } => {
            let what = if *rebuilt { "built" } else { "checked the build, unchanged," };
            let _ = write!(line, "; {what} in {}", seconds(duration));
        }
    }
    line
}

/// Everything: header, cases, summary.
pub fn render(report: &SuiteReport, options: RenderOptions) -> String {
    let mut out = header(report);
    out.push('\n');
    for case in &report.cases {
        out.push_str(&render_case(case, options));
    }
    out.push('\n');
    out.push_str(&summary(report));
    out.push('\n');
    out
}

/// `N passed, M failed`.
pub fn summary(report: &SuiteReport) -> String {
    format!("{} passed, {} failed", report.passed(), report.failed())
}

/// The case's status line, then its differences (and plan when asked).
pub fn render_case(case: &CaseReport, options: RenderOptions) -> String {
    let mut out = String::new();
    let status = if case.passed() { "ok    " } else { "FAILED" };
    let _ = writeln!(out, "{status} {} ({}, {})", case.name, case.action.name(), millis(&case.duration));
    for failure in &case.failures {
        out.push_str(&render_failure(failure));
    }
    let ran_badly = case.failures.iter().any(|f| matches!(f, Failure::RunFailed { .. } | Failure::Error { .. }));
    if ran_badly && !case.log.is_empty() {
        let skip = case.log.len().saturating_sub(MAX_LOG_LINES);
        let _ = writeln!(
            out,
            "{INDENT}the run's log{}:",
            if skip > 0 { format!(" (last {MAX_LOG_LINES} lines)") } else { String::new() }
        );
        for line in &case.log[skip..] {
            let _ = writeln!(out, "{INDENT}  {line}");
        }
    }
    if options.show_plan {
        let _ = writeln!(out, "{INDENT}plan:");
        for line in crate::plan::render(&case.plan, true).lines() {
            let _ = writeln!(out, "{INDENT}{line}");
        }
    }
    out
}

pub fn render_failure(failure: &Failure) -> String {
    let mut out = String::new();
    match failure {
        Failure::Params { message } => {
            let _ = writeln!(out, "{INDENT}the parameters were rejected:");
            indent_lines(&mut out, message, "  ");
        }
        Failure::Setup { message } => {
            let _ = writeln!(out, "{INDENT}the install this case starts from failed: {message}");
        }
        Failure::RunFailed { message } => {
            let _ = writeln!(out, "{INDENT}the run failed: {message}");
        }
        Failure::Error { expected, actual } => {
            let _ = writeln!(out, "{INDENT}error differs (-expected +actual):");
            let _ = writeln!(out, "{INDENT}- {expected}");
            let _ = writeln!(out, "{INDENT}+ {actual}");
        }
        Failure::Commands { mode, expected, actual } => {
            let how = match mode {
                CommandsMatch::Exact => "commands differ (-expected +actual):",
                CommandsMatch::InOrder => {
                    "commands differ (-expected, not run in this order; +actual, others allowed):"
                }
            };
            let _ = writeln!(out, "{INDENT}{how}");
            out.push_str(&line_diff(expected, actual));
        }
        Failure::Steps { expected, actual } => {
            let _ = writeln!(out, "{INDENT}progress steps differ (-expected +actual):");
            out.push_str(&line_diff(expected, actual));
        }
        Failure::FileMissing { path, written } => {
            let written = if written.is_empty() {
                "no file was written".to_string()
            } else {
                format!("written: {}", written.join(", "))
            };
            let _ = writeln!(out, "{INDENT}{path} was not written ({written})");
        }
        Failure::FileContents { path, expected, actual } => {
            let _ = writeln!(out, "{INDENT}{path} differs (-expected +actual):");
            out.push_str(&text_diff(expected, actual));
        }
        Failure::FileContains { path, needle, actual } => {
            let _ = writeln!(out, "{INDENT}{path} does not contain {needle:?}; it holds:");
            let lines: Vec<&str> = actual.lines().collect();
            for line in lines.iter().take(MAX_FILE_LINES) {
                let _ = writeln!(out, "{INDENT}| {line}");
            }
            if lines.len() > MAX_FILE_LINES {
                let _ = writeln!(out, "{INDENT}| … ({} more lines)", lines.len() - MAX_FILE_LINES);
            }
        }
        Failure::FileAttribute { path, attribute, expected, actual } => {
            let _ = writeln!(out, "{INDENT}{path}: {attribute} is {actual}, expected {expected}");
        }
        Failure::Result { field, expected, actual } => {
            let _ = writeln!(out, "{INDENT}result.{field} differs (-expected +actual):");
            let _ = writeln!(out, "{INDENT}- {expected}");
            let _ = writeln!(out, "{INDENT}+ {actual}");
        }
        Failure::Expectation { message } => {
            let _ = writeln!(out, "{INDENT}cannot check: {message}");
        }
    }
    out
}

/// A diff of two lists of lines, with `CONTEXT` unchanged lines around each change.
pub fn line_diff(expected: &[String], actual: &[String]) -> String {
    let old: Vec<&str> = expected.iter().map(String::as_str).collect();
    let new: Vec<&str> = actual.iter().map(String::as_str).collect();
    let diff = TextDiff::configure().diff_slices(&old, &new);
    let mut out = String::new();
    for (n, group) in diff.grouped_ops(CONTEXT).iter().enumerate() {
        if n > 0 {
            let _ = writeln!(out, "{INDENT}  …");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let _ = writeln!(out, "{INDENT}{} {}", sign(change.tag()), change.value());
            }
        }
    }
    out
}

/// A line diff of two texts, with `@@` headers giving the line numbers.
pub fn text_diff(expected: &str, actual: &str) -> String {
    let diff = TextDiff::from_lines(expected, actual);
    let mut out = String::new();
    for group in diff.grouped_ops(CONTEXT) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        let _ = writeln!(out, "{INDENT}@@ -{},{} +{},{} @@", old.start + 1, old.len(), new.start + 1, new.len());
        for op in &group {
            for change in diff.iter_changes(op) {
                let value = change.value();
                let line = value.strip_suffix('\n').unwrap_or(value);
                let _ = writeln!(out, "{INDENT}{} {line}", sign(change.tag()));
                if !value.ends_with('\n') {
                    let _ = writeln!(out, "{INDENT}\\ no newline at the end");
                }
            }
        }
    }
    out
}

fn sign(tag: ChangeTag) -> char {
    match tag {
        ChangeTag::Delete => '-',
        ChangeTag::Insert => '+',
        ChangeTag::Equal => ' ',
    }
}

fn indent_lines(out: &mut String, text: &str, extra: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{INDENT}{extra}{line}");
    }
}

fn millis(duration: &std::time::Duration) -> String {
    format!("{} ms", duration.as_millis())
}

fn seconds(duration: &std::time::Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn line_diffs_mark_removed_and_added_lines() {
        let diff = line_diff(&lines(&["a", "b", "c"]), &lines(&["a", "B", "c"]));
        assert_eq!(diff, "      a\n    - b\n    + B\n      c\n");
    }

    #[test]
    fn text_diffs_number_their_hunks() {
        let diff = text_diff("one\ntwo\nthree\n", "one\n2\nthree\n");
        assert!(diff.starts_with("    @@ -1,3 +1,3 @@\n"), "{diff}");
        assert!(diff.contains("    - two\n    + 2\n"), "{diff}");
        let diff = text_diff("x\n", "x");
        assert!(diff.contains("no newline at the end"), "{diff}");
    }
}
