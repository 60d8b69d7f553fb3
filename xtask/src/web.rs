//! What the browser tests (`host/tests/web.rs`) need: Debian's Chromium,
//! node and npm, and the pinned npm packages of `tests/web` (playwright-core,
//! which downloads no browser of its own).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::packages;

/// Beside the installed packages: the `package-lock.json` they were installed
/// from, so that `npm ci` runs again only when the lockfile changes.
const MARKER: &str = "node_modules/.proximity-installed-lock.json";

/// Installs what is missing, saying what it does; an error says what is
/// still missing (the tests then fail, in CI, naming it).
pub fn ensure(root: &Path) -> Result<()> {
    let chromium = packages::ensure(packages::BROWSER, "the browser tests");
    let node = ensure_node();
    let modules = node.as_ref().map_err(|err| anyhow::anyhow!("{err:#}")).and_then(|()| npm_ci_if_stale(root));
    let problems: Vec<String> =
        [chromium, node, modules].into_iter().filter_map(|r| r.err()).map(|e| format!("{e:#}")).collect();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

fn answers(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|out| out.status.success())
}

fn ensure_node() -> Result<()> {
    if answers("node") && answers("npm") {
        return Ok(());
    }
    packages::ensure(packages::NODE, "the browser tests' Playwright script")?;
    if !(answers("node") && answers("npm")) {
        bail!("node and npm are still not on PATH after installing {}", packages::NODE.join(" "));
    }
    Ok(())
}

/// `npm ci` in `tests/web` unless its `node_modules` was installed from the
/// current lockfile.
fn npm_ci_if_stale(root: &Path) -> Result<()> {
    let dir = root.join("tests/web");
    let lock_path = dir.join("package-lock.json");
    let lock = fs::read(&lock_path).with_context(|| format!("reading {}", lock_path.display()))?;
    let marker = dir.join(MARKER);
    let installed = dir.join("node_modules/playwright-core/package.json").is_file();
    if installed && fs::read(&marker).is_ok_and(|seen| seen == lock) {
        return Ok(());
    }
    println!("xtask: installing the browser tests' npm packages: npm ci in {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .context("could not run npm")?;
    if !status.success() {
        bail!("`npm ci` in {} failed ({status}): the npm registry must be reachable", dir.display());
    }
    fs::write(&marker, &lock).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}
