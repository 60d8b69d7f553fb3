//! `proximity recipe …`: inspect, build, test, scaffold, pack, sign, verify, install and publish recipes.

mod bundle;
mod install;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::{CatalogArgs, RuntimeArgs};
use crate::authoring::{recipe_test, scaffold};
use crate::catalog::{Catalog, CatalogEntry};
use crate::manifest::ParameterSpec;
pub(crate) use bundle::config_dir;

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
    /// Install a bundle (file or URL) into this host's catalog: DATA_DIR/recipes, what `serve` serves.
    Install(install::InstallArgs),
    /// Send a bundle (file, or a URL the server fetches) to a running server's catalog.
    Publish(install::PublishArgs),
    /// Run the recipe's test cases (DIR/recipe.test.toml) on the simulator, building it first when
    /// its sources changed. Exits non-zero when a case fails.
    Test {
        /// The recipe directory.
        dir: PathBuf,
        /// Run only the cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// The test file [default: DIR/recipe.test.toml].
        #[arg(long)]
        file: Option<PathBuf>,
        /// Build the recipe even when it looks up to date.
        #[arg(long)]
        build: bool,
        /// Test the component as it is, never building it.
        #[arg(long, conflicts_with = "build")]
        no_build: bool,
        /// Print every case's plan: each operation the recipe made.
        #[arg(long)]
        show_plan: bool,
        /// Cargo target directory to share between recipes (default: DIR/target, or $CARGO_TARGET_DIR).
        #[arg(long)]
        cargo_target_dir: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Start a new recipe from a template: sources, recipe.toml, sim.toml and a passing recipe.test.toml.
    New {
        /// The recipe id, and the name of its directory.
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// Where to make the recipe directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK to depend on [default: the one in the source tree this binary was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
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
        RecipeCommand::Install(args) => install::install(args).await?,
        RecipeCommand::Publish(args) => install::publish(args).await?,
        RecipeCommand::Test { dir, filter, file, build, no_build, show_plan, cargo_target_dir, runtime } => {
            let build = match (build, no_build) {
                (true, _) => recipe_test::BuildPolicy::Always,
                (_, true) => recipe_test::BuildPolicy::Never,
                _ => recipe_test::BuildPolicy::IfStale,
            };
            if build == recipe_test::BuildPolicy::Always
                || (build == recipe_test::BuildPolicy::IfStale && recipe_test::is_stale(&dir))
            {
                eprintln!("proximity: building the recipe in {}", dir.display());
            }
            let options = recipe_test::TestOptions { build, cargo_target_dir, filter, test_file: file };
            let runtime = crate::runtime::Runtime::new(runtime.config())?;
            let report = recipe_test::run_tests(&runtime, &dir, &options).await?;
            print!("{}", recipe_test::render(&report, recipe_test::RenderOptions { show_plan }));
            return Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        RecipeCommand::New { name, lang, dir, sdk } => {
            let made = scaffold::scaffold(&scaffold::NewRecipe { id: name, lang, parent: dir, sdk_dir: sdk })?;
            println!("created {} ({} recipe): {}", made.dir.display(), lang.name(), made.files.join(", "));
            for note in &made.notes {
                eprintln!("note: {note}");
            }
            println!("next: proximity recipe test {}", made.dir.display());
        }
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

/// A source file of the recipe modified after `component`, if any (the
/// SDK and WIT outside it are not looked at: `--build` covers those).
fn newer_source(dir: &Path, component: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(component).and_then(|m| m.modified()).ok()?;
    recipe_test::newest_source(dir).filter(|(modified, _)| *modified > built).map(|(_, path)| path)
}
