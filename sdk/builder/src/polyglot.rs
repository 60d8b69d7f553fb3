//! What the Python and JavaScript routes share: where the SDKs, the WIT package and
//! the installed toolchains are, and the digest of everything a component is built from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::command::{display, output_of, run_inherited, tail};
use crate::CargoOutput;

/// Points at the repository (or unpacked SDK) holding `wit/` and `sdk/`.
pub const SDK_ROOT_ENV: &str = "PROXIMITY_SDK_ROOT";
/// Where toolchains are installed; `<sdk root>/target/toolchains` otherwise.
pub const TOOLCHAINS_ENV: &str = "PROXIMITY_TOOLCHAINS_DIR";

/// Directories never part of a digest: build output, installed packages, caches.
const SKIPPED_DIRS: [&str; 4] = ["target", "node_modules", "__pycache__", ".git"];

/// The tree with `wit/recipe.wit` and the language SDKs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkRoot {
    pub root: PathBuf,
}

impl SdkRoot {
    /// `$PROXIMITY_SDK_ROOT`; else the nearest ancestor of `recipe_dir` holding
    /// `wit/recipe.wit` and `sdk/<sdk_dir>`; else the repository this builder was
    /// compiled from.
    pub fn find(recipe_dir: &Path, sdk_dir: &str) -> Result<SdkRoot> {
        let holds_sdk = |dir: &Path| dir.join("wit/recipe.wit").is_file() && dir.join("sdk").join(sdk_dir).is_dir();
        if let Some(root) = std::env::var_os(SDK_ROOT_ENV) {
            let root = PathBuf::from(root);
            if !holds_sdk(&root) {
                bail!("{SDK_ROOT_ENV}={} holds no wit/recipe.wit and sdk/{sdk_dir}", root.display());
            }
            return Ok(SdkRoot { root });
        }
        let start = std::path::absolute(recipe_dir).unwrap_or_else(|_| recipe_dir.to_path_buf());
        if let Some(root) = start.ancestors().find(|dir| holds_sdk(dir)) {
            return Ok(SdkRoot { root: root.to_path_buf() });
        }
        let compiled_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if holds_sdk(&compiled_from) {
            let root = compiled_from.canonicalize().unwrap_or(compiled_from);
            return Ok(SdkRoot { root });
        }
        bail!(
            "cannot find the Proximity SDK (wit/recipe.wit and sdk/{sdk_dir}) above {}: set {SDK_ROOT_ENV}",
            recipe_dir.display()
        )
    }

    pub fn wit_dir(&self) -> PathBuf {
        self.root.join("wit")
    }

    pub fn sdk(&self, name: &str) -> PathBuf {
        self.root.join("sdk").join(name)
    }

    /// `$PROXIMITY_TOOLCHAINS_DIR/<name>` or `<root>/target/toolchains/<name>`.
    pub fn toolchain_dir(&self, name: &str) -> PathBuf {
        match std::env::var_os(TOOLCHAINS_ENV) {
            Some(dir) => PathBuf::from(dir).join(name),
            None => self.root.join("target").join("toolchains").join(name),
        }
    }
}

/// sha256 over `label`, then every file under `paths` (directories walked in name
/// order, build output and caches skipped): each file's path relative to its
/// root and its bytes. Renaming, adding, removing or editing a file changes it.
pub fn digest_inputs(label: &str, paths: &[&Path]) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update([0]);
    for path in paths {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update([0]);
        if path.is_dir() {
            digest_dir(&mut hasher, path, path)?;
        } else {
            digest_file(&mut hasher, path, path)?;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn digest_dir(hasher: &mut Sha256, root: &Path, dir: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("could not list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                digest_dir(hasher, root, &path)?;
            }
        } else if path.is_file() && !name.ends_with(".pyc") {
            digest_file(hasher, root, &path)?;
        }
    }
    Ok(())
}

fn digest_file(hasher: &mut Sha256, root: &Path, file: &Path) -> Result<()> {
    let relative = file.strip_prefix(root).unwrap_or(file);
    let bytes = fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
    hasher.update(relative.to_string_lossy().as_bytes());
    hasher.update([0]);
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(&bytes);
    Ok(())
}

/// Runs a build tool: its output streams to the terminal, or is kept back and
/// shown (its tail) only in the error.
pub fn run_tool(cmd: &mut Command, output: CargoOutput) -> Result<()> {
    match output {
        CargoOutput::Inherit => run_inherited(cmd),
        CargoOutput::Capture => {
            let out = output_of(cmd)?;
            if !out.status.success() {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                bail!("`{}` failed ({}):\n{}", display(cmd), out.status, tail(&text, 60));
            }
            Ok(())
        }
    }
}

/// A marker file's content, if present: what an installed toolchain was made from.
pub fn read_marker(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|text| text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_content_and_names_but_not_build_output() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("app.py"), "print('a')").unwrap();
        let first = digest_inputs("tool 1", &[dir.path()]).unwrap();
        assert_eq!(digest_inputs("tool 1", &[dir.path()]).unwrap(), first, "stable");
        assert_ne!(digest_inputs("tool 2", &[dir.path()]).unwrap(), first, "the tool counts");

        fs::create_dir_all(dir.path().join("target")).unwrap();
        fs::write(dir.path().join("target/recipe.wasm"), "x").unwrap();
        fs::create_dir_all(dir.path().join("__pycache__")).unwrap();
        fs::write(dir.path().join("__pycache__/app.cpython-311.pyc"), "x").unwrap();
        assert_eq!(digest_inputs("tool 1", &[dir.path()]).unwrap(), first, "build output is ignored");

        fs::write(dir.path().join("app.py"), "print('b')").unwrap();
        let edited = digest_inputs("tool 1", &[dir.path()]).unwrap();
        assert_ne!(edited, first);
        fs::rename(dir.path().join("app.py"), dir.path().join("other.py")).unwrap();
        assert_ne!(digest_inputs("tool 1", &[dir.path()]).unwrap(), edited, "a rename counts");
    }

    #[test]
    fn the_sdk_root_is_found_above_the_recipe() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("wit")).unwrap();
        fs::write(root.path().join("wit/recipe.wit"), "").unwrap();
        fs::create_dir_all(root.path().join("sdk/python")).unwrap();
        fs::create_dir_all(root.path().join("recipes/adminer")).unwrap();
        let found = SdkRoot::find(&root.path().join("recipes/adminer"), "python").unwrap();
        assert_eq!(found.root, root.path());
        assert_eq!(found.sdk("python"), root.path().join("sdk/python"));
    }
}
