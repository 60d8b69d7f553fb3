//! Recipes available to deploy: directories holding a `recipe.toml` and the
//! component built from them, either recipe sources (an author's `recipes/`)
//! or installed bundles (a server's `DATA_DIR/recipes`, see `bundle::install`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

pub use crate::manifest::is_recipe_id;
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

    /// The component: `recipe.wasm` beside the manifest in an installed
    /// bundle, else where the builder puts it in a source directory (it may
    /// not be built yet).
    pub fn component_path(&self) -> PathBuf {
        let installed = self.dir.join(crate::bundle::COMPONENT_NAME);
        if installed.is_file() {
            installed
        } else {
            proximity_builder::component_path(&self.dir)
        }
    }

    /// Whether this entry is an installed bundle rather than a source directory.
    pub fn is_installed_bundle(&self) -> bool {
        self.dir.join(crate::bundle::install::PROVENANCE_FILE).is_file()
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

    /// A recipe by id, or by path to its directory: what an author at the
    /// command line means. The server takes ids only ([`Catalog::by_id`]).
    pub fn find(&self, recipe: &str) -> Result<CatalogEntry> {
        let as_path = Path::new(recipe);
        if as_path.join("recipe.toml").is_file() {
            return CatalogEntry::load(as_path);
        }
        self.by_id(recipe)
    }

    /// A catalog recipe by id; never a directory elsewhere, whatever the
    /// current directory holds.
    pub fn by_id(&self, recipe: &str) -> Result<CatalogEntry> {
        if !is_recipe_id(recipe) {
            bail!("`{recipe}` is not a recipe id (lowercase letters, digits and dashes)");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catalog_ids_name_recipes() {
        for id in ["nginx", "home-assistant", "0x", &"a".repeat(63)] {
            assert!(is_recipe_id(id), "{id}");
        }
        for id in ["", "-x", "Nginx", "/etc/proximity", "../recipes/nginx", "a/b", "a.b", "a b", &"a".repeat(64)] {
            assert!(!is_recipe_id(id), "{id}");
        }
    }

    #[test]
    fn by_id_never_leaves_the_catalog() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let catalog = Catalog::new(repo.join("recipes"));
        assert_eq!(catalog.by_id("nginx").unwrap().manifest.recipe.id, "nginx");
        // A path finds the recipe through `find` (the CLI), never through `by_id`.
        let path = repo.join("recipes/nginx").to_string_lossy().into_owned();
        assert_eq!(catalog.find(&path).unwrap().manifest.recipe.id, "nginx");
        for outside in [path.as_str(), "../recipes/nginx", "/etc"] {
            let err = catalog.by_id(outside).unwrap_err().to_string();
            assert!(err.contains("is not a recipe id"), "{outside}: {err}");
        }
    }
}
