//! `cargo xtask bundles`: the repository's catalog recipes as signed bundles.
//!
//! Each recipe in `recipes/` (built) is packed into `target/bundles/ID-VERSION.prox`
//! and signed with a development key, `target/dev-keys/proximity-dev.key`,
//! made on first use. A server that trusts `target/dev-keys/proximity-dev.pub`
//! installs them like any publisher's bundles. The key never leaves `target/`:
//! it is for this checkout's demo and tests, not for publishing (the README
//! says how to sign with a real key).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use proximity_builder::find_recipe_dirs;

pub const DEV_KEY_NAME: &str = "proximity-dev";
const KEYS_DIR: &str = "target/dev-keys";
const BUNDLES_DIR: &str = "target/bundles";

/// The development key's public half, for a trusted-keys directory.
pub fn dev_public_key(root: &Path) -> PathBuf {
    root.join(KEYS_DIR).join(format!("{DEV_KEY_NAME}.pub"))
}

/// Packs and signs every catalog recipe (already built) with `proximity`
/// (the binary at `binary`); returns the bundle files.
pub fn run(root: &Path, binary: &Path) -> Result<Vec<PathBuf>> {
    let keys = root.join(KEYS_DIR);
    let secret = keys.join(format!("{DEV_KEY_NAME}.key"));
    if !secret.is_file() {
        println!("xtask: making the development signing key {}", secret.display());
        proximity(binary, root, &["keys", "generate", "--signing", DEV_KEY_NAME, "--force", "--dir"], &[&keys])?;
    }
    // Packed afresh each time (packing is deterministic: an unchanged recipe
    // gives the same bytes), so no bundle of a removed recipe lingers.
    let out_dir = root.join(BUNDLES_DIR);
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).with_context(|| format!("removing {}", out_dir.display()))?;
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for dir in find_recipe_dirs(&root.join("recipes"))? {
        // `recipe pack` names the file ID-VERSION.prox in its working directory.
        proximity(binary, &out_dir, &["recipe", "pack"], &[&dir])?;
    }
    let mut bundles: Vec<PathBuf> =
        std::fs::read_dir(&out_dir)?.map(|entry| entry.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    bundles.sort();
    for bundle in &bundles {
        proximity(binary, root, &["recipe", "sign"], &[bundle, Path::new("--key"), &secret])?;
        println!("xtask: signed {}", bundle.strip_prefix(root).unwrap_or(bundle).display());
    }
    Ok(bundles)
}

fn proximity(binary: &Path, cwd: &Path, args: &[&str], paths: &[&Path]) -> Result<()> {
    let out = Command::new(binary)
        .args(args)
        .args(paths)
        .current_dir(cwd)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !out.status.success() {
        bail!("`proximity {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
