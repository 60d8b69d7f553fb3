//! `cargo xtask build-recipes`: every recipe of the repository, built into its component.

use std::path::{Path, PathBuf};

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use proximity_builder::{
    build_recipe, detect_language, ensure_wasm_toolchain, find_recipe_dirs, BuildOptions, BuiltRecipe, Language,
};

use crate::packages;

/// Where recipes live, relative to the repository root.
const RECIPE_ROOTS: [&str; 2] = ["recipes", "tests/recipes"];
/// One cargo target dir for all recipes, so their shared dependencies compile once.
const SHARED_TARGET_DIR: &str = "target/recipes-build";

pub fn run(root: &Path) -> Result<()> {
    let recipe_dirs = all_recipe_dirs(root)?;
    if recipe_dirs.is_empty() {
        println!("xtask: no recipes found in {}", RECIPE_ROOTS.join(" or "));
        return Ok(());
    }

    let toolchain = ensure_wasm_toolchain()?;
    println!("xtask: building {} recipes with {toolchain}", recipe_dirs.len());
    if recipe_dirs.iter().any(|dir| detect_language(dir).ok() == Some(Language::Python)) {
        ensure_python_venv();
    }
    let opts = BuildOptions {
        cargo_target_dir: Some(root.join(SHARED_TARGET_DIR)),
        toolchain: Some(toolchain),
        ..BuildOptions::default()
    };

    // Build them all, then report every failure: one broken recipe should not hide
    // the state of the others.
    let mut failed = Vec::new();
    for dir in &recipe_dirs {
        let shown = dir.strip_prefix(root).unwrap_or(dir).display().to_string();
        let started = Instant::now();
        match build_recipe(dir, &opts) {
            Ok(built) => println!("xtask: {}  {:.1}s", summary(&built, &shown), started.elapsed().as_secs_f64()),
            Err(err) => {
                eprintln!("xtask: {shown} failed: {err:#}");
                failed.push(shown);
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} recipes failed to build: {}", failed.len(), recipe_dirs.len(), failed.join(", "));
    }
    Ok(())
}

/// The Python toolchain is a venv: Debian's python3 makes one only with
/// python3-venv. Installed here when missing (as root); otherwise the builder's
/// own error says what to install.
fn ensure_python_venv() {
    let has_venv =
        Command::new("python3").args(["-c", "import ensurepip, venv"]).output().is_ok_and(|out| out.status.success());
    if !has_venv {
        if let Err(why) = packages::ensure(packages::PYTHON_VENV, "building Python recipes") {
            println!("xtask: {why:#}");
        }
    }
}

fn all_recipe_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for recipe_root in RECIPE_ROOTS {
        let path = root.join(recipe_root);
        if path.is_dir() {
            dirs.extend(find_recipe_dirs(&path)?);
        }
    }
    Ok(dirs)
}

/// `nginx  recipes/nginx  rebuilt     20.3 KiB  sha256:1f2e3d4c5b6a`
fn summary(built: &BuiltRecipe, shown_dir: &str) -> String {
    let state = if built.rebuilt { "rebuilt" } else { "up to date" };
    let size = std::fs::metadata(&built.component).map(|m| m.len()).unwrap_or(0);
    format!(
        "{:<16} {:<28} {:<10} {:>9}  sha256:{}",
        built.id,
        shown_dir,
        state,
        human_size(size),
        &built.digest[..12.min(built.digest.len())]
    )
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}
