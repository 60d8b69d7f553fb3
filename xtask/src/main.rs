//! `cargo xtask …`: build and test orchestration for the Proximity workspace.
//!
//! Every task that runs tests or the host builds the recipes first, because the
//! host's tests and demos load their components from `<recipe>/target/recipe.wasm`.

mod build_recipes;
mod bundles;
mod cargo;
mod demo;
mod packages;
mod web;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [args…]

tasks:
  build-recipes    build every recipe in recipes/ and tests/recipes/ into its component
  bundles          build-recipes, then pack recipes/ into target/bundles/*.prox, signed with the
                   development key target/dev-keys/proximity-dev.key (made when missing)
  test [args…]     build-recipes, install LXC and OpenSSH's server when missing (root), Chromium
                   and tests/web's npm packages for the browser tests, then
                   `cargo test --workspace [args…]` (all tests)
  web-deps         install what the browser tests need (part of `test`): Chromium (apt, as root),
                   node and npm when missing, and `npm ci` in tests/web when its lockfile changed
  demo [--keep]    the main job: serve the catalog, deploy nginx through the API on the default
                   backend (LXC), list apps, show WordPress as a plan; --keep goes on serving
  bench [args…]    build-recipes, then `cargo bench -p proximity -p proximity-tests [args…]`";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "build-recipes" => no_args(task, rest).and_then(|()| build_recipes::run(&repo_root())),
        "bundles" => no_args(task, rest).and_then(|()| make_bundles(&repo_root())),
        "web-deps" => no_args(task, rest).and_then(|()| web::ensure(&repo_root())),
        "test" => test(&repo_root(), rest),
        "demo" => match rest {
            [] => demo::run(&repo_root(), false),
            [flag] if flag == "--keep" => demo::run(&repo_root(), true),
            _ => Err(anyhow::anyhow!("`demo` takes only --keep")),
        },
        "bench" => bench(&repo_root(), rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives in `<root>/xtask`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits inside the workspace").to_path_buf()
}

fn no_args(task: &str, rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`{task}` takes no arguments (got: {})", rest.join(" "));
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    build_recipes::run(root)?;
    // The real-container, SSH and Docker tests need these; without them they
    // fail (never skip in CI), saying what is missing.
    // One `apt-get update` for all of them: the browser tests' Chromium (and
    // node, when there is none) come along.
    let mut needed = [packages::LXC, packages::SSH_SERVER, packages::DOCKER, packages::DATABASE_CLIENTS].concat();
    needed.extend(web::system_packages());
    if let Err(why) = packages::ensure(&needed, "the real-container, SSH, Docker and browser tests") {
        println!("xtask: {why:#}; those tests will fail and say what is missing");
    }
    // The browser tests: what is still missing, node's version, tests/web's npm packages.
    if let Err(why) = web::ensure(root) {
        println!("xtask: the browser tests cannot run: {why:#}; they will fail (in CI) and say what is missing");
    }
    let totals = cargo::test(root, &["--workspace", "--no-fail-fast"], extra)?;
    // The plain closing line: every test binary's results added up.
    println!("tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    if totals.failed > 0 {
        bail!("{} test(s) failed", totals.failed);
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

fn make_bundles(root: &Path) -> Result<()> {
    build_recipes::run(root)?;
    cargo::run(root, &["build", "-p", "proximity"], &[])?;
    bundles::run(root, &root.join("target/debug/proximity")).map(drop)
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    build_recipes::run(root)?;
    cargo::run(root, &["bench", "-p", "proximity", "-p", "proximity-tests"], extra)
}
