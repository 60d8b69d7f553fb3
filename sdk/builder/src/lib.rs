//! Builds Proximity recipes from source into WebAssembly components.
//!
//! A recipe directory holds a `recipe.toml` manifest and the recipe's source.
//! Building one takes three steps, each in its own module:
//!
//! 1. [`source`] tells which language the recipe is written in: `Cargo.toml` (Rust),
//!    `app.py` (Python) or `recipe.js` (JavaScript);
//! 2. the language's route builds it: [`rust_crate`] runs cargo for
//!    `wasm32-unknown-unknown` with the toolchain from [`toolchain`] and yields a core
//!    module; [`python`] (componentize-py) and [`js`] (rolldown + componentize-js)
//!    yield a finished component, with toolchains they install themselves under
//!    `target/toolchains/` ([`polyglot`] holds what those two share);
//! 3. [`component`] wraps a core module into a component, in process, or checks a
//!    finished one, and writes it to [`component_path`] only when what it is made
//!    from changed (for Python and JavaScript the tool does not even run then).
//!
//! The host's `proximity recipe build DIR` and `cargo xtask build-recipes` both call
//! [`build_recipe`].

mod command;
mod component;
mod js;
mod polyglot;
mod python;
mod recipe;
mod rust_crate;
mod source;
mod toolchain;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use component::{component_path, component_world, ComponentWorld};
pub use polyglot::{SDK_ROOT_ENV, TOOLCHAINS_ENV};
pub use recipe::{find_recipe_dirs, read_recipe_id, RECIPE_MANIFEST};
pub use source::{detect_language, Language};
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
    let component = component_path(recipe_dir);
    let installed = match detect_language(recipe_dir)? {
        Language::Rust => {
            let toolchain = match &opts.toolchain {
                Some(toolchain) => toolchain.clone(),
                None => ensure_wasm_toolchain()?,
            };
            let target_dir = cargo_target_dir(recipe_dir, opts)?;
            let core_module = rust_crate::build_core_module(recipe_dir, &target_dir, &toolchain, opts.cargo_output)
                .with_context(|| format!("recipe `{id}` did not build"))?;
            component::install_component(&core_module, &component)
                .with_context(|| format!("recipe `{id}`: could not make its component"))?
        }
        Language::Python => {
            let sdk = polyglot::SdkRoot::find(recipe_dir, python::SDK_DIR)?;
            let toolchain = python::ensure_toolchain(&sdk).context("the Python recipe toolchain is not ready")?;
            let digest = python::inputs_digest(recipe_dir, &sdk, &toolchain)?;
            component::install_prebuilt_component(&digest, &toolchain.version, &component, |out| {
                python::build_component(recipe_dir, &sdk, &toolchain, out, opts.cargo_output)
            })
            .with_context(|| format!("recipe `{id}` (Python) did not build"))?
        }
        Language::JavaScript => {
            let sdk = polyglot::SdkRoot::find(recipe_dir, js::SDK_DIR)?;
            let toolchain = js::ensure_toolchain(&sdk).context("the JavaScript recipe toolchain is not ready")?;
            let digest = js::inputs_digest(recipe_dir, &sdk, &toolchain)?;
            component::install_prebuilt_component(&digest, &toolchain.version, &component, |out| {
                js::build_component(recipe_dir, &sdk, &toolchain, out, opts.cargo_output)
            })
            .with_context(|| format!("recipe `{id}` (JavaScript) did not build"))?
        }
    };
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
