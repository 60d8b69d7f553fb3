//! Recipes available to deploy: directories holding a `recipe.toml` and the
//! component built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use crate::manifest::Manifest;

/// One recipe: where it lives and what its manifest says.
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    pub dir: PathBuf,
    pub manifest: Arc<Manifest>,
}

impl CatalogEntry {
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        Ok(CatalogEntry { dir: dir.to_path_buf(), manifest: Arc::new(manifest) })
    }

    /// The built component (it may not exist yet).
    pub fn component_path(&self) -> PathBuf {
        proximity_builder::component_path(&self.dir)
    }
}

/// A directory of recipe directories, e.g. the repository's `recipes/`.
pub struct Catalog {
    root: PathBuf,
}

impl Catalog {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Catalog { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entries(&self) -> Result<Vec<CatalogEntry>> {
        proximity_builder::find_recipe_dirs(&self.root)?.iter().map(|dir| CatalogEntry::load(dir)).collect()
    }

    /// A recipe by id, or by path to its directory.
    pub fn find(&self, recipe: &str) -> Result<CatalogEntry> {
        let as_path = Path::new(recipe);
        if as_path.join("recipe.toml").is_file() {
            return CatalogEntry::load(as_path);
        }
        let dir = self.root.join(recipe);
        if dir.join("recipe.toml").is_file() {
            let entry = CatalogEntry::load(&dir)?;
            if entry.manifest.recipe.id != recipe {
                bail!(
                    "{} declares id `{}`, not `{recipe}`",
                    dir.join("recipe.toml").display(),
                    entry.manifest.recipe.id
                );
            }
            return Ok(entry);
        }
        let known: Vec<String> = self
            .entries()
            .with_context(|| format!("reading the catalog {}", self.root.display()))?
            .into_iter()
            .map(|e| e.manifest.recipe.id.clone())
            .collect();
        bail!(
            "no recipe `{recipe}` in the catalog {} (known: {})",
            self.root.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )
    }
}
