//! Recipe directories and the one manifest field the builder needs: the id.
//!
//! The host owns the full manifest schema; the builder reads `[recipe] id` only,
//! so that it keeps working while the rest of the manifest evolves.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The file that makes a directory a recipe.
pub const RECIPE_MANIFEST: &str = "recipe.toml";

#[derive(Deserialize)]
struct ManifestHead {
    recipe: Option<RecipeTable>,
}

#[derive(Deserialize)]
struct RecipeTable {
    id: Option<String>,
}

/// Reads `[recipe] id` from `<recipe_dir>/recipe.toml`.
pub fn read_recipe_id(recipe_dir: &Path) -> Result<String> {
    let manifest = recipe_dir.join(RECIPE_MANIFEST);
    if !manifest.is_file() {
        bail!("{} is not a recipe directory: it has no {RECIPE_MANIFEST}", recipe_dir.display());
    }
    let text = fs::read_to_string(&manifest).with_context(|| format!("could not read {}", manifest.display()))?;
    let head: ManifestHead =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    match head.recipe.and_then(|recipe| recipe.id) {
        Some(id) if !id.trim().is_empty() => Ok(id),
        _ => bail!("{} has no recipe id: add `id = \"...\"` under `[recipe]`", manifest.display()),
    }
}

/// The directories directly under `root` that hold a `recipe.toml`, sorted by path.
pub fn find_recipe_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(root).with_context(|| format!("could not list recipes in {}", root.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("could not list recipes in {}", root.display()))?.path();
        if path.is_dir() && path.join(RECIPE_MANIFEST).is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}
