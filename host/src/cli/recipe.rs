//! `proximity recipe …`: inspect, build, pack, sign and verify recipes.

mod bundle;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::CatalogArgs;
use crate::catalog::{Catalog, CatalogEntry};
use crate::manifest::ParameterSpec;

#[derive(Subcommand)]
pub enum RecipeCommand {
    /// Show a recipe's manifest: parameters, resources, ports and the grants it asks for.
    Inspect {
        /// Recipe id in the catalog, or a path to a recipe directory.
        recipe: String,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalog: CatalogArgs,
    },
    /// Build a recipe directory into a WebAssembly component.
    Build {
        dir: PathBuf,
        /// Cargo target directory to share between recipes (default: DIR/target, or $CARGO_TARGET_DIR).
        #[arg(long)]
        cargo_target_dir: Option<PathBuf>,
    },
    /// Pack a built recipe directory into one bundle file (ID-VERSION.prox), unsigned.
    Pack(bundle::PackArgs),
    /// Add a signature to a bundle (replacing this key's earlier one).
    Sign(bundle::SignArgs),
    /// Check a bundle's contents, signatures and trust; print what it holds and the grants it asks for.
    Verify(bundle::VerifyArgs),
    /// Make a signing key pair for bundles: NAME.key (secret) and NAME.pub (trusted-key format).
    Keygen(bundle::KeygenArgs),
}

pub async fn run(command: RecipeCommand) -> Result<ExitCode> {
    match command {
        RecipeCommand::Inspect { recipe, json, catalog } => {
            let entry = Catalog::new(&catalog.catalog).find(&recipe)?;
            inspect(&entry, json)?;
        }
        RecipeCommand::Build { dir, cargo_target_dir } => {
            let built = tokio::task::spawn_blocking(move || {
                proximity_builder::build_recipe(
                    &dir,
                    &proximity_builder::BuildOptions { cargo_target_dir, ..Default::default() },
                )
            })
            .await??;
            println!(
                "{} {} -> {} (sha256 {})",
                built.id,
                if built.rebuilt { "built" } else { "up to date" },
                built.component.display(),
                built.digest
            );
        }
        RecipeCommand::Pack(args) => bundle::pack(args)?,
        RecipeCommand::Sign(args) => bundle::sign(args)?,
        RecipeCommand::Verify(args) => bundle::verify(args)?,
        RecipeCommand::Keygen(args) => bundle::keygen(args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(entry: &CatalogEntry, json: bool) -> Result<()> {
    let m = &entry.manifest;
    if json {
        println!("{}", serde_json::to_string_pretty(m.as_ref())?);
        return Ok(());
    }
    println!("{} {} — {}", m.recipe.name, m.recipe.version, m.recipe.description);
    println!("  id:       {}", m.recipe.id);
    println!("  category: {}", m.recipe.category);
    if let Some(website) = &m.recipe.website {
        println!("  website:  {website}");
    }
    if let Some(notes) = &m.recipe.notes {
        println!("  notes:    {notes}");
    }
    let component = entry.component_path();
    if component.is_file() {
        let bytes = std::fs::read(&component)?;
        println!(
            "  component: {} ({} bytes, sha256 {})",
            component.display(),
            bytes.len(),
            crate::runtime::cache::sha256_hex(&bytes)
        );
    } else {
        println!("  component: not built yet (proximity recipe build {})", entry.dir.display());
    }
    println!("Grants:");
    for line in m.summary_lines() {
        println!("  - {line}");
    }
    println!("Sandbox: {} MiB memory, {}s deadline", m.limits.memory_mb, m.limits.timeout_secs);
    println!("Parameters:");
    for p in &m.parameters {
        println!("  - {}", describe_parameter(p));
    }
    Ok(())
}

/// One line per parameter: name, type, default, rules.
fn describe_parameter(p: &ParameterSpec) -> String {
    let mut line = format!("{} ({})", p.name, p.kind.as_str());
    if p.required {
        line.push_str(", required");
    }
    match &p.default {
        Some(_) if p.is_secret() => line.push_str(", has a default"),
        Some(value) => line.push_str(&format!(", default {}", serde_json::to_string(value).unwrap_or_default())),
        None if p.generate => line.push_str(", generated when not given"),
        None => {}
    }
    if let (Some(min), Some(max)) = (p.min, p.max) {
        line.push_str(&format!(", {min}..={max}"));
    }
    if let Some(choices) = &p.choices {
        line.push_str(&format!(", one of {}", choices.join("|")));
    }
    if let Some(description) = &p.description {
        line.push_str(&format!(" — {description}"));
    }
    line
}

/// The recipe's component: built now when asked or when there is none yet,
/// otherwise the existing one, with a warning when sources are newer.
pub fn ensure_built(dir: &Path, rebuild: bool) -> Result<PathBuf> {
    let component = proximity_builder::component_path(dir);
    if component.is_file() && !rebuild {
        if let Some(newer) = newer_source(dir, &component) {
            eprintln!(
                "warning: {} changed after the component was built; deploying the old build \
                 (pass --build, or run `proximity recipe build {}`)",
                newer.display(),
                dir.display()
            );
        }
        return Ok(component);
    }
    eprintln!("proximity: building the recipe in {}", dir.display());
    let built = proximity_builder::build_recipe(dir, &proximity_builder::BuildOptions::default())
        .with_context(|| format!("building the recipe in {}", dir.display()))?;
    Ok(built.component)
}

/// A file in the recipe directory modified after `component`, if any (the
/// SDK and WIT outside it are not looked at: `--build` covers those).
fn newer_source(dir: &Path, component: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(component).and_then(|m| m.modified()).ok()?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).ok()?.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if entry.file_name() != "target" {
                    pending.push(path);
                }
            } else if meta.modified().is_ok_and(|modified| modified > built) {
                return Some(path);
            }
        }
    }
    None
}
