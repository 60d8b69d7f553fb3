//! Which language a recipe is written in, told by the files in its directory.
//!
//! Each language gets its own route to wasm. Rust is the only one today: it makes a
//! core module that `component` wraps. Python (componentize-py) and JavaScript
//! (componentize-js) will get a variant here and a route module beside
//! `rust_crate`; their tools emit a finished component, so those routes will skip
//! the wrapping and install the component as it is.

use std::path::Path;

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A cargo crate with a `cdylib` target.
    Rust,
}

pub fn detect_language(recipe_dir: &Path) -> Result<Language> {
    if recipe_dir.join("Cargo.toml").is_file() {
        return Ok(Language::Rust);
    }
    bail!(
        "recipe in {} is unsupported: no Cargo.toml (Python/JavaScript recipes are not supported yet)",
        recipe_dir.display()
    )
}
