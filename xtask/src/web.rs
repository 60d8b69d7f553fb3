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

/// playwright-core's `engines.node` (Debian bookworm's nodejs is 18).
const MIN_NODE_MAJOR: u32 = 20;

/// The Debian packages the browser tests need that are not there: Chromium,
/// and node with npm when no node is on PATH. `cargo xtask test` installs
/// them with the other tests' packages, in one `apt-get update`.
pub fn system_packages() -> Vec<&'static str> {
    let mut wanted = packages::BROWSER.to_vec();
    if !(answers("node") && answers("npm")) {
        wanted.extend_from_slice(packages::NODE);
    }
    wanted
}

/// Installs what is missing, saying what it does; an error says what is
/// still missing (the tests then fail, in CI, naming it).
pub fn ensure(root: &Path) -> Result<()> {
    let chromium = packages::ensure(&system_packages(), "the browser tests");
    let node = ensure_node();
    // Without a usable node, npm ci is not tried (its error is said once, above).
    let modules = if node.is_ok() { npm_ci_if_stale(root) } else { Ok(()) };
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

/// node and npm on PATH (installed by [`system_packages`] when missing), and
/// a node new enough for playwright-core.
fn ensure_node() -> Result<()> {
    if !(answers("node") && answers("npm")) {
        bail!("node and npm are not on PATH (as root, `apt-get install -y {}`)", packages::NODE.join(" "));
    }
    let out = Command::new("node").arg("--version").output().context("could not run node")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(()),
        _ => bail!(
            "node {version} is too old: playwright-core needs node {MIN_NODE_MAJOR} or later (Debian bookworm's \
             nodejs is 18); install node 20 or later (e.g. from NodeSource) first on PATH"
        ),
    }
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
