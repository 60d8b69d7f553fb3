//! Builds Proximity recipes from source into WebAssembly components.
//!
//! A recipe directory holds a `recipe.toml` manifest and the recipe's source.
//! Building one takes three steps, each in its own module:
//!
//! 1. [`source`] tells which language the recipe is written in (Rust only, for now);
//! 2. the language's route compiles it to a core wasm module ([`rust_crate`] runs
//!    cargo for `wasm32-unknown-unknown` with the toolchain from [`toolchain`]);
//! 3. [`component`] wraps the core module into a component, in process, and writes
//!    it to [`component_path`] only when the core module changed.
//!
//! The host's `proximity recipe build DIR` and `cargo xtask build-recipes` both call
//! [`build_recipe`].

mod command;
mod component;
mod recipe;
mod rust_crate;
mod source;
mod toolchain;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use component::component_path;
pub use recipe::{find_recipe_dirs, read_recipe_id, RECIPE_MANIFEST};
pub use toolchain::{ensure_wasm_toolchain, Toolchain, WasmRoute, TOOLCHAIN_ENV, WASM_TARGET};

/// Where cargo's own output goes while a recipe compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CargoOutput {
    /// Cargo writes its progress to this process's stderr, as it happens.
    #[default]
    Inherit,
    /// Cargo's output is kept back and shown only in the error when the build fails
    /// (for callers that own the terminal, like a server or a test).
    Capture,
}

/// How to build a recipe. `BuildOptions::default()` suits a person at a terminal.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Cargo target directory; otherwise `$CARGO_TARGET_DIR`, otherwise `<recipe>/target`.
    /// Sharing one between recipes compiles their common dependencies once.
    pub cargo_target_dir: Option<PathBuf>,
    /// Where cargo's output goes.
    pub cargo_output: CargoOutput,
    /// A toolchain from [`ensure_wasm_toolchain`], to check it once for many recipes;
    /// `None` checks it on every call.
    pub toolchain: Option<Toolchain>,
}

/// A recipe whose component is up to date on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRecipe {
    /// `[recipe] id` from the manifest.
    pub id: String,
    /// The component file, `<recipe_dir>/target/recipe.wasm`.
    pub component: PathBuf,
    /// sha256 of the component file, lowercase hex.
    pub digest: String,
    /// Whether this call (re)wrote the component; `false` leaves the file untouched.
    pub rebuilt: bool,
}

/// Builds the recipe in `recipe_dir` into its component at [`component_path`].
pub fn build_recipe(recipe_dir: &Path, opts: &BuildOptions) -> Result<BuiltRecipe> {
    let id = read_recipe_id(recipe_dir)?;
    let core_module = match source::detect_language(recipe_dir)? {
        source::Language::Rust => {
            let toolchain = match &opts.toolchain {
                Some(toolchain) => toolchain.clone(),
                None => ensure_wasm_toolchain()?,
            };
            let target_dir = cargo_target_dir(recipe_dir, opts)?;
            rust_crate::build_core_module(recipe_dir, &target_dir, &toolchain, opts.cargo_output)
                .with_context(|| format!("recipe `{id}` did not build"))?
        }
    };
    let installed = component::install_component(&core_module, &component_path(recipe_dir))
        .with_context(|| format!("recipe `{id}`: could not make its component"))?;
    Ok(BuiltRecipe { id, component: installed.path, digest: installed.digest, rebuilt: installed.rebuilt })
}

fn cargo_target_dir(recipe_dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let dir = opts
        .cargo_target_dir
        .clone()
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| recipe_dir.join("target"));
    // Absolute, so that cargo and this crate agree on it whatever the working directory.
    std::path::absolute(&dir).with_context(|| format!("bad cargo target dir {}", dir.display()))
}
