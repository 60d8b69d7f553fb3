//! Packing a built recipe directory into an unsigned bundle.
//!
//! What goes in: `recipe.toml`, the built component as `recipe.wasm`, and
//! every other regular file of the recipe directory (assets such as compose
//! files, templates and the icon, and the sources the component was built
//! from, so a reviewer can read them), except the build directory `target/`
//! and hidden files. Entries are sorted by name and written with fixed
//! metadata, so packing the same directory twice gives the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use super::archive::RawEntry;
use super::index::{check_content_name, Index, IndexEntry, IndexRecipe, FORMAT_VERSION};
use super::open::assemble;
use super::{BundleError, ReadLimits, COMPONENT_NAME, MANIFEST_NAME};
use crate::catalog::CatalogEntry;

/// The build directory inside a recipe directory, never packed.
const BUILD_DIR: &str = "target";

/// An unsigned bundle, ready to be written or signed.
#[derive(Debug)]
pub struct PackedBundle {
    pub index: Index,
    /// Sha256 of the index, hex: the bundle's identity.
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl PackedBundle {
    /// `ID-VERSION.prox`.
    pub fn file_name(&self) -> String {
        self.index.file_name()
    }
}

/// Packs the recipe in `recipe_dir`, which must be built.
pub fn pack(recipe_dir: &Path) -> Result<PackedBundle, BundleError> {
    let recipe = CatalogEntry::load(recipe_dir).map_err(|e| BundleError::InvalidRecipe(e.to_string()))?;
    let component = recipe.component_path();
    if !component.is_file() {
        return Err(BundleError::NotBuilt { dir: recipe_dir.to_owned(), component });
    }
    let mut entries = vec![RawEntry {
        name: COMPONENT_NAME.into(),
        data: fs::read(&component).map_err(BundleError::io(&component))?,
    }];
    for (name, path) in recipe_files(recipe_dir)? {
        entries.push(RawEntry { name, data: fs::read(&path).map_err(BundleError::io(&path))? });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));

    let limits = ReadLimits::default();
    for entry in &entries {
        if entry.data.len() as u64 > limits.max_entry_bytes {
            return Err(BundleError::EntryTooLarge {
                name: entry.name.clone(),
                size: entry.data.len() as u64,
                limit: limits.max_entry_bytes,
            });
        }
    }
    let index = Index {
        format: FORMAT_VERSION,
        recipe: IndexRecipe {
            id: recipe.manifest.recipe.id.clone(),
            version: recipe.manifest.recipe.version.to_string(),
        },
        entries: entries.iter().map(|e| IndexEntry::describe(&e.name, &e.data)).collect(),
    };
    let index_bytes = index.to_bytes();
    let bytes = assemble(&index_bytes, &entries, &[])?;
    if bytes.len() as u64 > limits.max_bundle_bytes {
        return Err(BundleError::BundleTooLarge { size: bytes.len() as u64, limit: limits.max_bundle_bytes });
    }
    Ok(PackedBundle { digest: hex::encode(Index::digest_of(&index_bytes)), index, bytes })
}

/// The recipe directory's files to pack, as (entry name, path), the manifest
/// included. Anything a bundle cannot hold is refused rather than left out, so
/// that what is packed is never a surprise.
fn recipe_files(recipe_dir: &Path) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let refuse =
        |path: &Path, reason: &str| BundleError::Unpackable { path: path.to_owned(), reason: reason.to_owned() };
    let mut found = Vec::new();
    let mut pending = vec![(recipe_dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for item in fs::read_dir(&dir).map_err(BundleError::io(&dir))? {
            let item = item.map_err(BundleError::io(&dir))?;
            let path = item.path();
            let Some(file_name) = item.file_name().to_str().map(str::to_owned) else {
                return Err(refuse(&path, "the name is not UTF-8"));
            };
            if file_name.starts_with('.') || (prefix.is_empty() && file_name == BUILD_DIR) {
                continue;
            }
            let name = format!("{prefix}{file_name}");
            let kind = item.file_type().map_err(BundleError::io(&path))?;
            if kind.is_dir() {
                pending.push((path, format!("{name}/")));
            } else if kind.is_symlink() {
                return Err(refuse(&path, "it is a symbolic link; a bundle holds regular files only"));
            } else if !kind.is_file() {
                return Err(refuse(&path, "it is not a regular file"));
            } else if name == COMPONENT_NAME {
                return Err(refuse(&path, "`recipe.wasm` is reserved for the built component"));
            } else {
                check_content_name(&name).map_err(|e| refuse(&path, &e.to_string()))?;
                found.push((name, path));
            }
        }
    }
    debug_assert!(found.iter().any(|(name, _)| name == MANIFEST_NAME));
    Ok(found)
}
