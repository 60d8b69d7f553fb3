//! Running external programs with errors that say which command failed and why.

use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// The command line as a person would type it, for messages.
pub fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` with its output captured; a non-zero exit is an error that carries stderr.
pub fn run_captured(cmd: &mut Command) -> Result<Output> {
    let output = output_of(cmd)?;
    if !output.status.success() {
        bail!("`{}` failed ({}):\n{}", display(cmd), output.status, tail(&String::from_utf8_lossy(&output.stderr), 40));
    }
    Ok(output)
}

/// Runs `cmd` with its output captured, whatever its exit status.
pub fn output_of(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null()).output().with_context(|| format!("could not run `{}`", display(cmd)))
}

/// Runs `cmd` with its output going to this process's stdout/stderr.
pub fn run_inherited(cmd: &mut Command) -> Result<()> {
    let status = cmd.stdin(Stdio::null()).status().with_context(|| format!("could not run `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// The last `lines` lines of `text`: the end of a compiler's output holds the error.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
