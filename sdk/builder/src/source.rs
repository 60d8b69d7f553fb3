//! Which language a recipe is written in, told by the files in its directory.
//!
//! Each language has its own route to a component: Rust makes a core module that
//! `component` wraps ([`crate::rust_crate`]); Python ([`crate::python`], componentize-py)
//! and JavaScript ([`crate::js`], componentize-js) emit a finished component that
//! `component` installs as it is.

use std::path::Path;

use anyhow::{bail, Result};

/// The file that makes a recipe a Rust crate.
pub const RUST_MANIFEST: &str = "Cargo.toml";
/// The module a Python recipe keeps its `Lifecycle` export in.
pub const PYTHON_ENTRY: &str = "app.py";
/// The ES module a JavaScript recipe exports `lifecycle` from.
pub const JS_ENTRY: &str = "recipe.js";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A cargo crate with a `cdylib` target.
    Rust,
    /// `app.py`, built by componentize-py.
    Python,
    /// `recipe.js`, bundled and built by componentize-js.
    JavaScript,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }

    /// The file whose presence names this language.
    pub fn marker(self) -> &'static str {
        match self {
            Language::Rust => RUST_MANIFEST,
            Language::Python => PYTHON_ENTRY,
            Language::JavaScript => JS_ENTRY,
        }
    }
}

/// The recipe's language: exactly one of `Cargo.toml`, `app.py` and `recipe.js`
/// must be in its directory.
pub fn detect_language(recipe_dir: &Path) -> Result<Language> {
    let found: Vec<Language> = [Language::Rust, Language::Python, Language::JavaScript]
        .into_iter()
        .filter(|language| recipe_dir.join(language.marker()).is_file())
        .collect();
    match found.as_slice() {
        [language] => Ok(*language),
        [] => bail!(
            "recipe in {} has no source: add {RUST_MANIFEST} (Rust), {PYTHON_ENTRY} (Python) or {JS_ENTRY} (JavaScript)",
            recipe_dir.display()
        ),
        several => bail!(
            "recipe in {} is ambiguous: it has {}; keep exactly one",
            recipe_dir.display(),
            several.iter().map(|l| format!("{} ({})", l.marker(), l.name())).collect::<Vec<_>>().join(" and ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        dir
    }

    #[test]
    fn each_marker_names_its_language() {
        assert_eq!(detect_language(dir_with(&["Cargo.toml", "recipe.toml"]).path()).unwrap(), Language::Rust);
        assert_eq!(detect_language(dir_with(&["app.py", "recipe.toml"]).path()).unwrap(), Language::Python);
        assert_eq!(detect_language(dir_with(&["recipe.js", "compose.yml"]).path()).unwrap(), Language::JavaScript);
    }

    #[test]
    fn other_python_or_js_files_do_not_count() {
        let err = detect_language(dir_with(&["helpers.py", "util.js", "recipe.toml"]).path()).unwrap_err().to_string();
        assert!(
            err.contains("has no source: add Cargo.toml (Rust), app.py (Python) or recipe.js (JavaScript)"),
            "{err}"
        );
    }

    #[test]
    fn two_markers_are_refused() {
        let err = detect_language(dir_with(&["app.py", "recipe.js"]).path()).unwrap_err().to_string();
        assert!(err.contains("ambiguous") && err.contains("app.py (Python) and recipe.js (JavaScript)"), "{err}");
    }
}
