//! The Rust route: a recipe crate compiled by cargo to a core wasm module.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::command::{display, output_of, run_inherited, tail};
use crate::toolchain::{Toolchain, WASM_TARGET};
use crate::CargoOutput;

/// Runs cargo for the recipe crate in `crate_dir` and returns the core module it made.
pub fn build_core_module(
    crate_dir: &Path,
    target_dir: &Path,
    toolchain: &Toolchain,
    output: CargoOutput,
) -> Result<PathBuf> {
    let manifest = crate_dir.join("Cargo.toml");
    let lib = lib_name(crate_dir)?;
    let mut cargo = toolchain.cargo_build();
    cargo.arg("--manifest-path").arg(&manifest).arg("--target-dir").arg(target_dir);
    match output {
        CargoOutput::Inherit => run_inherited(&mut cargo)?,
        CargoOutput::Capture => {
            let out = output_of(&mut cargo)?;
            if !out.status.success() {
                bail!(
                    "`{}` failed ({}):\n{}",
                    display(&cargo),
                    out.status,
                    tail(&compiler_messages(&String::from_utf8_lossy(&out.stderr)), 60)
                );
            }
        }
    }
    let module = core_module_path(target_dir, &lib);
    if !module.is_file() {
        bail!("cargo succeeded but {} is missing: is `{lib}` the crate's library name?", module.display());
    }
    Ok(module)
}

/// Cargo's stderr without its progress lines (`Compiling …`, `Downloaded …`), which
/// would push the compiler's diagnostics out of an error message.
fn compiler_messages(stderr: &str) -> String {
    const PROGRESS: [&str; 6] = ["Compiling ", "Checking ", "Downloading ", "Downloaded ", "Locking ", "Adding "];
    stderr
        .lines()
        .filter(|line| !PROGRESS.iter().any(|word| line.trim_start().starts_with(word)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where cargo leaves the core module of library `lib`.
pub fn core_module_path(target_dir: &Path, lib: &str) -> PathBuf {
    target_dir.join(WASM_TARGET).join("release").join(format!("{lib}.wasm"))
}

/// The crate's library name: `[lib] name`, else the package name with `-` made `_`.
/// Also checks that the library is a `cdylib`, the only kind that yields a `.wasm`.
pub fn lib_name(crate_dir: &Path) -> Result<String> {
    let manifest = crate_dir.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).with_context(|| format!("could not read {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let lib = doc.get("lib").and_then(|lib| lib.as_table());

    let is_cdylib = lib
        .and_then(|lib| lib.get("crate-type"))
        .and_then(|types| types.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    if !is_cdylib {
        bail!("{}: a recipe crate must be a cdylib: add `crate-type = [\"cdylib\"]` under `[lib]`", manifest.display());
    }

    if let Some(name) = lib.and_then(|lib| lib.get("name")).and_then(|name| name.as_str()) {
        return Ok(name.to_string());
    }
    match doc.get("package").and_then(|package| package.get("name")).and_then(|name| name.as_str()) {
        Some(package) => Ok(package.replace('-', "_")),
        None => bail!("{} has no `[package] name`", manifest.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with_manifest(manifest: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
        dir
    }

    #[test]
    fn lib_name_is_the_package_name_with_underscores() {
        let dir = crate_with_manifest(
            "[package]\nname = \"my-recipe\"\nversion = \"0.1.0\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n",
        );
        assert_eq!(lib_name(dir.path()).unwrap(), "my_recipe");
    }

    #[test]
    fn lib_name_prefers_the_lib_section() {
        let dir = crate_with_manifest(
            "[package]\nname = \"my-recipe\"\nversion = \"0.1.0\"\n\n[lib]\nname = \"wordpress\"\ncrate-type = [\"cdylib\", \"rlib\"]\n",
        );
        assert_eq!(lib_name(dir.path()).unwrap(), "wordpress");
    }

    #[test]
    fn a_crate_that_is_not_a_cdylib_is_refused_with_the_fix() {
        let dir = crate_with_manifest("[package]\nname = \"my-recipe\"\nversion = \"0.1.0\"\n");
        let err = lib_name(dir.path()).unwrap_err().to_string();
        assert!(err.contains("crate-type = [\"cdylib\"]"), "{err}");
    }

    #[test]
    fn captured_errors_keep_diagnostics_and_drop_progress() {
        let stderr = "   Compiling core v0.0.0\n   Compiling broken v0.1.0\nerror[E0308]: mismatched types\n --> src/lib.rs:1:21\n";
        assert_eq!(compiler_messages(stderr), "error[E0308]: mismatched types\n --> src/lib.rs:1:21");
    }

    #[test]
    fn core_module_sits_in_the_release_dir_of_the_wasm_target() {
        assert_eq!(
            core_module_path(Path::new("/t"), "nginx"),
            Path::new("/t/wasm32-unknown-unknown/release/nginx.wasm")
        );
    }
}
