//! Running cargo for the workspace, with the user told what runs.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `cargo <args> <extra>` in `root`, its output going straight to the terminal.
pub fn run(root: &Path, args: &[&str], extra: &[String]) -> Result<()> {
    let line: Vec<&str> = args
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
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

/// The cargo that runs xtask (so the same toolchain runs the tasks), else `cargo`.
fn cargo_program() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}
