//! Running cargo for the workspace, with the user told what runs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `cargo <args> <extra>` in `root`, its output going straight to the terminal.
pub fn run(root: &Path, args: &[&str], extra: &[String]) -> Result<()> {
    let line: Vec<&str> = args.iter().copied().chain(extra.iter().map(String::as_str)).collect();
    let shown = format!("cargo {}", line.join(" "));
    println!("xtask: running `{shown}`");
    let status = Command::new(cargo_program())
        .args(&line)
        .current_dir(root)
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Totals of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestTotals {
    /// Add one `test result: ok. 3 passed; 0 failed; 1 ignored; …` line; other lines are ignored.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(count), Some(what)) = (words.next(), words.next()) else { continue };
            let Ok(count) = count.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test <args> <extra>` in `root`, passing its output through and
/// counting what ran, so the run ends on one line with the totals of every
/// test binary (cargo's own last line is often a doc-test run of 0 tests).
pub fn test(root: &Path, args: &[&str], extra: &[String]) -> Result<TestTotals> {
    let line: Vec<&str> = ["test"].iter().chain(args).copied().chain(extra.iter().map(String::as_str)).collect();
    let shown = format!("cargo {}", line.join(" "));
    println!("xtask: running `{shown}`");
    let mut child = Command::new(cargo_program())
        .args(&line)
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the test output")?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait().with_context(|| format!("waiting for `{shown}`"))?;
    if !status.success() && totals.failed == 0 {
        bail!("`{shown}` failed ({status}) before any test failed: see the errors above");
    }
    Ok(totals)
}

/// The cargo that runs xtask (so the same toolchain runs the tasks), else `cargo`.
fn cargo_program() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::TestTotals;

    #[test]
    fn totals_add_up_result_lines_only() {
        let mut totals = TestTotals::default();
        totals
            .add_line("test result: ok. 28 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        totals.add_line(
            "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.5s",
        );
        totals.add_line("test passed_and_failed ... ok");
        totals.add_line("running 5 tests");
        assert_eq!(totals, TestTotals { passed: 31, failed: 2, ignored: 1 });
    }
}
