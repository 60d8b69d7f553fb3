//! The JavaScript route: `sdk/js/build.mjs` bundles `recipe.js`, the JavaScript SDK
//! (imported as `proximity`) and the assets it imports with `?raw` into one ES
//! module (rolldown), then componentize-js makes a finished component of world
//! `recipe` from it.
//!
//! The npm packages are installed by the build itself: `sdk/js/package.json` and
//! its lockfile are copied to `<sdk root>/target/toolchains/js` and `npm ci` runs
//! there, again only when the lockfile changes. `build.mjs` is copied beside
//! `node_modules` so that node resolves the packages from there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::command::run_captured;
use crate::polyglot::{digest_inputs, read_marker, run_tool, SdkRoot};
use crate::source::JS_ENTRY;
use crate::CargoOutput;

/// The SDK's directory under `sdk/`.
pub const SDK_DIR: &str = "js";
const PACKAGE_FILES: [&str; 2] = ["package.json", "package-lock.json"];
const BUILD_SCRIPT: &str = "build.mjs";
const MARKER: &str = ".proximity-lockfile";
/// Oldest node the tools support.
const MIN_NODE_MAJOR: u32 = 20;

/// node and the npm packages, installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsToolchain {
    /// The directory holding `node_modules` and `build.mjs`.
    pub dir: PathBuf,
    /// `node vX, componentize-js Y, rolldown Z`.
    pub version: String,
}

/// Installs the pinned npm packages unless the toolchain directory already holds
/// them. Safe to call for every recipe.
pub fn ensure_toolchain(sdk: &SdkRoot) -> Result<JsToolchain> {
    static SETUP: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());

    let node = run_captured(Command::new("node").arg("--version"))
        .context("JavaScript recipes need node (20 or newer) and npm")?;
    let node_version = String::from_utf8_lossy(&node.stdout).trim().to_string();
    let major: u32 = node_version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < MIN_NODE_MAJOR {
        bail!("node {node_version} is too old for componentize-js: install node {MIN_NODE_MAJOR} or newer");
    }

    let source = sdk.sdk(SDK_DIR);
    let dir = sdk.toolchain_dir("js");
    fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let lockfile = fs::read(source.join("package-lock.json"))
        .with_context(|| format!("could not read {}", source.join("package-lock.json").display()))?;
    let wanted = crate::component::sha256_hex(&lockfile);
    let marker = dir.join(MARKER);
    if read_marker(&marker).as_deref() != Some(wanted.as_str()) || !dir.join("node_modules").is_dir() {
        for file in PACKAGE_FILES {
            copy_if_changed(&source.join(file), &dir.join(file))?;
        }
        eprintln!("proximity-builder: installing the JavaScript recipe tools: npm ci in {}", dir.display());
        let _ = fs::remove_file(&marker);
        run_captured(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir))
            .context("could not install the npm packages (the npm registry must be reachable)")?;
        fs::write(&marker, &wanted).with_context(|| format!("could not write {}", marker.display()))?;
    }
    copy_if_changed(&source.join(BUILD_SCRIPT), &dir.join(BUILD_SCRIPT))?;

    let componentize_js = package_version(&dir, "@bytecodealliance/componentize-js")?;
    let rolldown = package_version(&dir, "rolldown")?;
    Ok(JsToolchain {
        dir,
        version: format!("node {node_version}, componentize-js {componentize_js}, rolldown {rolldown}"),
    })
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("could not read {}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        fs::write(to, &bytes).with_context(|| format!("could not write {}", to.display()))?;
    }
    Ok(())
}

/// `version` from an installed package's package.json.
fn package_version(dir: &Path, package: &str) -> Result<String> {
    let manifest = dir.join("node_modules").join(package).join("package.json");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("{package} is not installed in {}", dir.display()))?;
    let version = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("\"version\":"))
        .map(|v| v.trim().trim_end_matches(',').trim_matches('"').to_string());
    version.with_context(|| format!("{} has no version", manifest.display()))
}

/// What the component of the recipe in `recipe_dir` is made from: the recipe's
/// files, the SDK, the build script, the lockfile, the WIT package and the tools.
pub fn inputs_digest(recipe_dir: &Path, sdk: &SdkRoot, toolchain: &JsToolchain) -> Result<String> {
    let sdk_dir = sdk.sdk(SDK_DIR);
    digest_inputs(
        &toolchain.version,
        &[
            recipe_dir,
            &sdk_dir.join("proximity"),
            &sdk_dir.join(BUILD_SCRIPT),
            &sdk_dir.join("package-lock.json"),
            &sdk.wit_dir(),
        ],
    )
}

/// Bundles and componentizes the recipe in `recipe_dir`, writing the component to `out`.
pub fn build_component(
    recipe_dir: &Path,
    sdk: &SdkRoot,
    toolchain: &JsToolchain,
    out: &Path,
    output: CargoOutput,
) -> Result<()> {
    let recipe_dir = std::path::absolute(recipe_dir)?;
    // The tool runs in another directory: a relative `out` would land there.
    let out = std::path::absolute(out)?;
    let work = recipe_dir.join("target").join("js");
    let mut cmd = Command::new("node");
    cmd.arg(toolchain.dir.join(BUILD_SCRIPT))
        .arg("--recipe")
        .arg(&recipe_dir)
        .args(["--entry", JS_ENTRY])
        .arg("--sdk")
        .arg(sdk.sdk(SDK_DIR))
        .arg("--wit")
        .arg(sdk.wit_dir())
        .arg("--work")
        .arg(&work)
        .arg("--out")
        .arg(out)
        .current_dir(&toolchain.dir);
    run_tool(&mut cmd, output)
}
