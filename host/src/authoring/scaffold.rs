//! `proximity recipe new NAME`: a new recipe directory from a language's
//! template, ready to build and passing its own tests.
//!
//! Each SDK keeps its template in `sdk/<lang>/template/`; the files are
//! compiled into the binary and written with `{{id}}`, `{{name}}`,
//! `{{crate}}` and `{{sdk_dependency}}` filled in (any other `{{…}}` is left
//! for the recipe's own templates and tests). Adding a language is an entry
//! in [`TEMPLATES`].

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// A language recipes are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// One file of a template: where it goes in the recipe, and its text.
pub struct TemplateFile {
    pub path: &'static str,
    pub text: &'static str,
}

/// The templates in this build, by language.
pub const TEMPLATES: &[(Lang, &[TemplateFile])] =
    &[(Lang::Rust, RUST_TEMPLATE), (Lang::Python, PYTHON_TEMPLATE), (Lang::Js, JS_TEMPLATE)];

macro_rules! template_file {
    ($lang:literal, $path:literal, $source:literal) => {
        TemplateFile { path: $path, text: include_str!(concat!("../../../sdk/", $lang, "/template/", $source)) }
    };
}

const RUST_TEMPLATE: &[TemplateFile] = &[
    template_file!("rust", "Cargo.toml", "Cargo.toml.tmpl"),
    template_file!("rust", "recipe.toml", "recipe.toml.tmpl"),
    template_file!("rust", "src/lib.rs", "src/lib.rs.tmpl"),
    template_file!("rust", "sim.toml", "sim.toml"),
    template_file!("rust", "recipe.test.toml", "recipe.test.toml.tmpl"),
    template_file!("rust", ".gitignore", "gitignore"),
];

// The simulator script is the same whatever the language.
const PYTHON_TEMPLATE: &[TemplateFile] = &[
    template_file!("python", "recipe.toml", "recipe.toml"),
    template_file!("python", "app.py", "app.py"),
    template_file!("python", "index.html", "index.html"),
    template_file!("rust", "sim.toml", "sim.toml"),
    template_file!("python", "recipe.test.toml", "recipe.test.toml"),
];

const JS_TEMPLATE: &[TemplateFile] = &[
    template_file!("js", "recipe.toml", "recipe.toml"),
    template_file!("js", "recipe.js", "recipe.js"),
    template_file!("js", "index.html", "index.html"),
    template_file!("rust", "sim.toml", "sim.toml"),
    template_file!("js", "recipe.test.toml", "recipe.test.toml"),
];

/// The files of `lang`'s template, or why there are none.
pub fn template(lang: Lang) -> Result<&'static [TemplateFile]> {
    match TEMPLATES.iter().find(|(l, _)| *l == lang) {
        Some((_, files)) => Ok(files),
        None => bail!(
            "--lang {}: not available in this build (its SDK and template are not part of it yet); \
             available: {}",
            lang.name(),
            TEMPLATES.iter().map(|(l, _)| l.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The SDK of `lang` in the source tree this binary was built from.
pub fn default_sdk_dir(lang: Lang) -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().unwrap_or(host).join("sdk").join(lang.name())
}

pub struct NewRecipe {
    /// The recipe id, and the directory's name.
    pub id: String,
    pub lang: Lang,
    /// Where the recipe directory is made.
    pub parent: PathBuf,
    /// The SDK to depend on (default: [`default_sdk_dir`]).
    pub sdk_dir: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Scaffolded {
    pub dir: PathBuf,
    /// Relative to `dir`.
    pub files: Vec<&'static str>,
    /// Things the author must know or do (e.g. where the SDK is).
    pub notes: Vec<String>,
}

/// Write a new recipe directory `parent/id` from the template of `lang`.
pub fn scaffold(request: &NewRecipe) -> Result<Scaffolded> {
    let id = &request.id;
    if !crate::manifest::is_recipe_id(id) {
        bail!("`{id}` is not a recipe id: lowercase letters, digits and `-`, starting with a letter or digit");
    }
    let files = template(request.lang)?;
    let dir = std::path::absolute(request.parent.join(id))
        .with_context(|| format!("bad directory {}", request.parent.display()))?;
    if dir.exists() {
        bail!("{} already exists: choose another name or --dir", dir.display());
    }

    let mut notes = Vec::new();
    let sdk_dir = request.sdk_dir.clone().unwrap_or_else(|| default_sdk_dir(request.lang));
    let sdk_dir = std::path::absolute(&sdk_dir).unwrap_or(sdk_dir);
    if !sdk_dir.is_dir() {
        notes.push(format!(
            "the {} SDK is not at {}: point the SDK dependency at a Proximity checkout's sdk/{} (or pass --sdk)",
            request.lang.name(),
            sdk_dir.display(),
            request.lang.name()
        ));
    }
    let values = [
        ("id", id.clone()),
        ("name", display_name(id)),
        ("crate", crate_name(id)),
        ("sdk_dependency", sdk_dependency(request.lang, &sdk_path_from(&dir, &sdk_dir))),
    ];

    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(file.text, &values)).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(file.path);
    }
    Ok(Scaffolded { dir, files: written, notes })
}

/// `text` with each `{{key}}` of `values` replaced; other braces stay.
fn fill(text: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(text.to_string(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value))
}

/// `my-app` → `My app`.
fn display_name(id: &str) -> String {
    let words = id.replace('-', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// A cargo package name for the recipe: its id, unless that starts with a digit.
fn crate_name(id: &str) -> String {
    if id.starts_with(|c: char| c.is_ascii_digit()) {
        format!("recipe-{id}")
    } else {
        id.to_string()
    }
}

/// The line (or lines) of the recipe's build file that bring in the SDK.
fn sdk_dependency(lang: Lang, sdk: &Path) -> String {
    match lang {
        // A TOML basic string: backslashes and quotes escaped.
        Lang::Rust => format!("proximity-sdk = {{ path = {} }}", toml::Value::String(sdk.display().to_string())),
        Lang::Python | Lang::Js => String::new(),
    }
}

/// The SDK as the recipe should name it: relative when the recipe lives in
/// the SDK's own repository (so the repository can move), else absolute.
fn sdk_path_from(recipe_dir: &Path, sdk_dir: &Path) -> PathBuf {
    let repo = sdk_dir.parent().and_then(Path::parent);
    match repo {
        Some(repo) if recipe_dir.starts_with(repo) => relative(recipe_dir, sdk_dir),
        _ => sdk_dir.to_path_buf(),
    }
}

/// `to` relative to `from` (both absolute, without `..`).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(display_name("my-app"), "My app");
        assert_eq!(crate_name("2048"), "recipe-2048");
        assert_eq!(crate_name("ghost"), "ghost");
        let sdk = Path::new("/src/proximity/sdk/rust");
        assert_eq!(sdk_path_from(Path::new("/src/proximity/recipes/ghost"), sdk), Path::new("../../sdk/rust"));
        assert_eq!(sdk_path_from(Path::new("/home/me/ghost"), sdk), sdk);
        let line = sdk_dependency(Lang::Rust, Path::new(r#"C:\my "sdk""#));
        let parsed: toml::Table = toml::from_str(&line).unwrap();
        assert_eq!(parsed["proximity-sdk"]["path"].as_str(), Some(r#"C:\my "sdk""#), "{line}");
    }

    #[test]
    fn every_language_has_a_template_with_a_manifest_and_a_test_file() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let files = template(lang).unwrap();
            for needed in ["recipe.toml", "recipe.test.toml", "sim.toml"] {
                assert!(files.iter().any(|f| f.path == needed), "{} template has {needed}", lang.name());
            }
        }
    }

    #[test]
    fn placeholders_of_the_recipe_itself_survive() {
        let text = fill("{{id}} {{param.x}} {{address}}", &[("id", "ghost".to_string())]);
        assert_eq!(text, "ghost {{param.x}} {{address}}");
    }
}
