//! The builder's public API, from finding recipes to building a real one.
//!
//! The end-to-end test compiles a tiny throwaway recipe crate with the machine's wasm
//! toolchain (`PROXIMITY_WASM_TOOLCHAIN=debian` exercises the fallback route). Its
//! cargo target dir persists under the test target dir, so only the first run is slow,
//! and only that one needs crates.io.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proximity_builder::{build_recipe, component_path, find_recipe_dirs, BuildOptions, CargoOutput};
use sha2::{Digest, Sha256};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn manifest(id: &str) -> String {
    format!("[recipe]\nid = \"{id}\"\nname = \"Tiny\"\nversion = \"0.1.0\"\n")
}

fn error_text(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

#[test]
fn finds_only_direct_subdirectories_with_a_manifest() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("nginx/recipe.toml"), &manifest("nginx"));
    write(&root.path().join("wordpress/recipe.toml"), &manifest("wordpress"));
    write(&root.path().join("notes/README.md"), "not a recipe");
    write(&root.path().join("deep/nested/recipe.toml"), &manifest("nested"));
    write(&root.path().join("recipe.toml"), &manifest("root-itself"));

    let found = find_recipe_dirs(root.path()).unwrap();
    let expected: Vec<PathBuf> = ["nginx", "wordpress"].iter().map(|d| root.path().join(d)).collect();
    assert_eq!(found, expected);
}

#[test]
fn finding_recipes_in_a_missing_directory_names_it() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nowhere");
    let err = error_text(find_recipe_dirs(&missing));
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn a_directory_without_recipe_toml_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n");
    let err = error_text(build_recipe(dir.path(), &BuildOptions::default()));
    assert!(err.contains("is not a recipe directory: it has no recipe.toml"), "{err}");
}

#[test]
fn a_manifest_without_an_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("recipe.toml"), "[recipe]\nname = \"No id\"\n");
    let err = error_text(build_recipe(dir.path(), &BuildOptions::default()));
    assert!(err.contains("has no recipe id"), "{err}");
}

#[test]
fn a_recipe_without_source_names_the_files_that_would_make_one() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("recipe.toml"), &manifest("no-source"));
    write(&dir.path().join("helpers.py"), "def install(ctx): pass\n");
    let err = error_text(build_recipe(dir.path(), &BuildOptions::default()));
    assert!(err.contains("has no source: add Cargo.toml (Rust), app.py (Python) or recipe.js (JavaScript)"), "{err}");
}

#[test]
fn the_component_lives_in_the_recipes_target_dir() {
    assert_eq!(component_path(Path::new("/r/nginx")), Path::new("/r/nginx/target/recipe.wasm"));
}

/// A recipe crate with its own tiny WIT world, so this test does not depend on the SDK.
fn tiny_recipe(dir: &Path, id: &str, greeting: &str) {
    write(&dir.join("recipe.toml"), &manifest(id));
    write(
        &dir.join("Cargo.toml"),
        &format!(
            r#"[package]
name = "{id}-recipe"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "=0.61.1"

# Not part of any enclosing workspace.
[workspace]
"#
        ),
    );
    write(
        &dir.join("src/lib.rs"),
        &format!(
            r#"wit_bindgen::generate!({{
    inline: "package test:tiny; world tiny {{ export greeting: func() -> string; }}",
}});

struct Tiny;

impl Guest for Tiny {{
    fn greeting() -> String {{
        "{greeting}".to_string()
    }}
}}

export!(Tiny);
"#
        ),
    );
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn builds_a_rust_recipe_into_a_component_and_skips_unchanged_ones() {
    let recipe = tempfile::tempdir().unwrap();
    tiny_recipe(recipe.path(), "tiny", "hello");
    let opts = BuildOptions {
        cargo_target_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("tiny-recipe-build")),
        cargo_output: CargoOutput::Capture,
        toolchain: None,
    };

    let first = build_recipe(recipe.path(), &opts).unwrap();
    assert_eq!(first.id, "tiny");
    assert!(first.rebuilt);
    assert_eq!(first.component, component_path(recipe.path()));
    let bytes = fs::read(&first.component).unwrap();
    assert_eq!(first.digest, hex::encode(Sha256::digest(&bytes)));
    match wit_component::decode(&bytes).expect("a component") {
        wit_component::DecodedWasm::Component(resolve, world) => {
            let exports = &resolve.worlds[world].exports;
            assert!(
                exports.keys().any(|key| resolve.name_world_key(key) == "greeting"),
                "the component exports greeting"
            );
        }
        wit_component::DecodedWasm::WitPackage(..) => {
            panic!("expected a component, got a WIT package")
        }
    }

    let written_at = modified(&first.component);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = build_recipe(recipe.path(), &opts).unwrap();
    assert!(!again.rebuilt, "an unchanged recipe is not rewritten");
    assert_eq!(again.digest, first.digest);
    assert_eq!(modified(&again.component), written_at);

    tiny_recipe(recipe.path(), "tiny", "hello again");
    let changed = build_recipe(recipe.path(), &opts).unwrap();
    assert!(changed.rebuilt);
    assert_ne!(changed.digest, first.digest);
}

#[test]
fn a_compile_error_names_the_recipe_and_shows_the_compiler() {
    let recipe = tempfile::tempdir().unwrap();
    // Its own crate name, so that it never touches the other test's output module.
    tiny_recipe(recipe.path(), "broken", "hello");
    write(&recipe.path().join("src/lib.rs"), "fn broken( {}\n");
    let opts = BuildOptions {
        cargo_target_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("tiny-recipe-build")),
        cargo_output: CargoOutput::Capture,
        toolchain: None,
    };
    let err = error_text(build_recipe(recipe.path(), &opts));
    assert!(err.contains("recipe `broken` did not build"), "{err}");
    assert!(err.contains("error"), "{err}");
}

/// A Python recipe built by the real componentize-py (installed on first use into
/// the repository's `target/toolchains/python`), then left alone until a source changes.
#[test]
fn a_python_recipe_builds_into_a_component_and_rebuilds_only_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("recipe.toml"), &manifest("tiny-py"));
    let app = "import proximity as px\n\nclass Tiny(px.Recipe):\n    def install(self, ctx):\n        return px.AppInfo()\n\nLifecycle = px.export(Tiny)\n";
    write(&dir.path().join("app.py"), app);
    let opts = BuildOptions { cargo_output: CargoOutput::Capture, ..BuildOptions::default() };

    let first = build_recipe(dir.path(), &opts).expect("the Python recipe builds");
    assert!(first.rebuilt);
    let bytes = fs::read(&first.component).unwrap();
    let world = proximity_builder::component_world(&bytes).unwrap();
    assert!(world.exports.iter().any(|e| e == "proximity:recipe/lifecycle@0.1.0"), "{world:?}");
    assert!(world.imports.iter().any(|i| i == "proximity:recipe/lxc@0.1.0"), "{world:?}");

    let second = build_recipe(dir.path(), &opts).unwrap();
    assert!(!second.rebuilt, "nothing changed");
    assert_eq!(second.digest, first.digest);

    write(&dir.path().join("app.py"), &app.replace("AppInfo()", "AppInfo(url='http://x/')"));
    let third = build_recipe(dir.path(), &opts).unwrap();
    assert!(third.rebuilt, "the source changed");
    assert_ne!(third.digest, first.digest);
}
