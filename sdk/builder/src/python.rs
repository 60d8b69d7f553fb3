//! The Python route: componentize-py turns `app.py` plus the Python SDK
//! (`sdk/python/proximity`) into a finished component of world `recipe`.
//!
//! componentize-py is installed by the build itself, into a virtual environment
//! at `<sdk root>/target/toolchains/python` (`python3 -m venv` + pip, the version
//! pinned in `sdk/python/requirements.txt`). A marker file records the
//! requirements it was installed from, so the install runs again only when they change.
//!
//! componentize-py runs the module's top level at build time and snapshots the
//! interpreter, so `open(...)` at import time reads the recipe's assets into the
//! component; at run time a recipe has no files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::command::{output_of, run_captured};
use crate::polyglot::{digest_inputs, read_marker, run_tool, SdkRoot};
use crate::source::PYTHON_ENTRY;
use crate::CargoOutput;

/// The SDK's directory under `sdk/`.
pub const SDK_DIR: &str = "python";
/// The file pinning componentize-py, under `sdk/python`.
pub const REQUIREMENTS: &str = "requirements.txt";
/// The Python interpreter that makes the virtual environment.
pub const PYTHON_ENV: &str = "PROXIMITY_PYTHON";
const MARKER: &str = ".proximity-requirements";

/// componentize-py, installed and answering `--version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonToolchain {
    pub componentize_py: PathBuf,
    /// What `componentize-py --version` printed, e.g. `componentize-py 0.25.1`.
    pub version: String,
}

/// Installs componentize-py into the toolchain venv unless it already holds the
/// pinned version. Safe to call for every recipe.
pub fn ensure_toolchain(sdk: &SdkRoot) -> Result<PythonToolchain> {
    static SETUP: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());

    let venv = sdk.toolchain_dir("python");
    let requirements = sdk.sdk(SDK_DIR).join(REQUIREMENTS);
    let wanted = fs::read_to_string(&requirements)
        .with_context(|| format!("could not read {}", requirements.display()))?
        .trim()
        .to_string();
    let componentize_py = venv.join("bin").join("componentize-py");
    let marker = venv.join(MARKER);

    if read_marker(&marker).as_deref() != Some(wanted.as_str()) || !componentize_py.is_file() {
        install(&venv, &requirements, &marker, &wanted)?;
    }
    let out = run_captured(Command::new(&componentize_py).arg("--version"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PythonToolchain { componentize_py, version })
}

fn install(venv: &Path, requirements: &Path, marker: &Path, wanted: &str) -> Result<()> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_string());
    let pip = venv.join("bin").join("pip");
    if !pip.is_file() {
        eprintln!("proximity-builder: creating the Python toolchain venv: {python} -m venv {}", venv.display());
        let made = output_of(Command::new(&python).arg("-m").arg("venv").arg(venv))
            .with_context(|| format!("Python recipes need python3 ({PYTHON_ENV} names another interpreter)"))?;
        if !made.status.success() {
            let _ = fs::remove_dir_all(venv);
            bail!(
                "`{python} -m venv {}` failed: {}\nOn Debian, install the venv module: apt-get install -y python3-venv",
                venv.display(),
                String::from_utf8_lossy(&made.stderr).trim()
            );
        }
    }
    eprintln!("proximity-builder: installing {} into {}", wanted.replace('\n', ", "), venv.display());
    let _ = fs::remove_file(marker);
    run_captured(
        Command::new(&pip)
            .args(["install", "--disable-pip-version-check", "--no-input", "--quiet", "-r"])
            .arg(requirements),
    )
    .context("could not install componentize-py (PyPI must be reachable)")?;
    fs::write(marker, wanted).with_context(|| format!("could not write {}", marker.display()))?;
    Ok(())
}

/// What the component of the recipe in `recipe_dir` is made from: the recipe's
/// files, the SDK, the WIT package and the tool's version.
pub fn inputs_digest(recipe_dir: &Path, sdk: &SdkRoot, toolchain: &PythonToolchain) -> Result<String> {
    let sdk_dir = sdk.sdk(SDK_DIR);
    digest_inputs(
        &toolchain.version,
        &[recipe_dir, &sdk_dir.join("proximity"), &sdk_dir.join(REQUIREMENTS), &sdk.wit_dir()],
    )
}

/// Runs componentize-py for the recipe in `recipe_dir`, writing the component to `out`.
pub fn build_component(
    recipe_dir: &Path,
    sdk: &SdkRoot,
    toolchain: &PythonToolchain,
    out: &Path,
    output: CargoOutput,
) -> Result<()> {
    let module = PYTHON_ENTRY.trim_end_matches(".py");
    let recipe_dir = std::path::absolute(recipe_dir)?;
    // The tool runs in another directory: a relative `out` would land there.
    let out = std::path::absolute(out)?;
    let mut cmd = Command::new(&toolchain.componentize_py);
    if output == CargoOutput::Capture {
        cmd.arg("--quiet");
    }
    cmd.arg("-d")
        .arg(sdk.wit_dir())
        .args(["-w", "recipe", "componentize"])
        .arg("-p")
        .arg(&recipe_dir)
        .arg("-p")
        .arg(sdk.sdk(SDK_DIR))
        .arg("-o")
        .arg(out)
        .arg(module)
        // The recipe's module path only: no site-packages from whatever venv is active.
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .current_dir(&recipe_dir);
    run_tool(&mut cmd, output)
}
