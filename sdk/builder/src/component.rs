//! From a core wasm module (Rust), or from a tool that emits a finished component
//! (Python, JavaScript), to the recipe's component file, written only when it changes.
//!
//! A stamp beside the component (`recipe.wasm.stamp`) records what it was made from
//! (the core module's digest, or the digest of every source file, SDK file and tool
//! version for the prebuilt routes), the component's own digest and the encoder or
//! tool. When all three still match, the component is left untouched (same bytes,
//! same mtime) and, for the prebuilt routes, the tool does not even run, so that
//! anything keyed on the file — caches, bundles, `make`-style tools — sees no change.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifies what turned core modules into components: a new encoder re-encodes.
/// Keep the wit-component version in step with the workspace's pin.
const ENCODER: &str = concat!("proximity-builder ", env!("CARGO_PKG_VERSION"), ", wit-component 0.263.0");

/// `<recipe_dir>/target/recipe.wasm`: where a recipe's component lives.
pub fn component_path(recipe_dir: &Path) -> PathBuf {
    recipe_dir.join("target").join("recipe.wasm")
}

/// The stamp file kept beside a component.
pub fn stamp_path(component: &Path) -> PathBuf {
    let mut name = component.file_name().unwrap_or_default().to_os_string();
    name.push(".stamp");
    component.with_file_name(name)
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    /// Rust route: the core module the component wraps.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    core_module_sha256: String,
    /// Prebuilt routes: everything the tool read (see `polyglot::digest_inputs`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sources_sha256: String,
    component_sha256: String,
    encoder: String,
}

/// A component on disk and whether this call wrote it.
#[derive(Debug)]
pub struct InstalledComponent {
    pub path: PathBuf,
    pub digest: String,
    pub rebuilt: bool,
}

/// Makes the component for `core_module` at `component`, unless the one there is
/// already made from the same core module.
pub fn install_component(core_module: &Path, component: &Path) -> Result<InstalledComponent> {
    let core =
        fs::read(core_module).with_context(|| format!("could not read the core module {}", core_module.display()))?;
    let core_digest = sha256_hex(&core);
    let stamp_file = stamp_path(component);

    if let Some(digest) = up_to_date_digest(&stamp_file, component, &core_digest) {
        return Ok(InstalledComponent { path: component.to_path_buf(), digest, rebuilt: false });
    }

    let bytes =
        encode_component(&core).with_context(|| format!("{} is not a valid recipe module", core_module.display()))?;
    let digest = sha256_hex(&bytes);
    write_atomically(component, &bytes)?;
    let stamp = Stamp {
        core_module_sha256: core_digest,
        sources_sha256: String::new(),
        component_sha256: digest.clone(),
        encoder: ENCODER.to_string(),
    };
    // Written after the component: a crash in between leaves a stale stamp, which
    // simply causes one more encode next time.
    write_atomically(&stamp_file, toml::to_string(&stamp)?.as_bytes())?;
    Ok(InstalledComponent { path: component.to_path_buf(), digest, rebuilt: true })
}

/// The component's digest, if the stamp shows it was made from `core_digest` by this
/// encoder and the file has not changed since.
fn up_to_date_digest(stamp_file: &Path, component: &Path, core_digest: &str) -> Option<String> {
    let stamp: Stamp = toml::from_str(&fs::read_to_string(stamp_file).ok()?).ok()?;
    if stamp.core_module_sha256 != core_digest || stamp.encoder != ENCODER {
        return None;
    }
    let digest = sha256_hex(&fs::read(component).ok()?);
    (digest == stamp.component_sha256).then_some(digest)
}

/// Installs a component that a tool builds whole (componentize-py, componentize-js).
///
/// `sources_digest` covers everything the tool reads, `tool` names it with its
/// version. When the stamp shows the component at `component` was made from the
/// same sources by the same tool and is unchanged, `build` does not run. Otherwise
/// `build` writes the component to the path it is given (beside `component`), which
/// is checked to be a recipe component and then moved into place.
pub fn install_prebuilt_component(
    sources_digest: &str,
    tool: &str,
    component: &Path,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<InstalledComponent> {
    let stamp_file = stamp_path(component);
    if let Some(digest) = prebuilt_up_to_date(&stamp_file, component, sources_digest, tool) {
        return Ok(InstalledComponent { path: component.to_path_buf(), digest, rebuilt: false });
    }

    let dir = component.parent().context("a component path needs a parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let fresh = dir.join(format!(
        ".{}.{}.new",
        component.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&fresh);
    let built = build(&fresh).and_then(|()| {
        let bytes = fs::read(&fresh).with_context(|| format!("the build left no component at {}", fresh.display()))?;
        check_recipe_component(&bytes)?;
        Ok(bytes)
    });
    let _ = fs::remove_file(&fresh);
    let bytes = built?;

    let digest = sha256_hex(&bytes);
    write_atomically(component, &bytes)?;
    let stamp = Stamp {
        core_module_sha256: String::new(),
        sources_sha256: sources_digest.to_string(),
        component_sha256: digest.clone(),
        encoder: tool.to_string(),
    };
    write_atomically(&stamp_file, toml::to_string(&stamp)?.as_bytes())?;
    Ok(InstalledComponent { path: component.to_path_buf(), digest, rebuilt: true })
}

fn prebuilt_up_to_date(stamp_file: &Path, component: &Path, sources_digest: &str, tool: &str) -> Option<String> {
    let stamp: Stamp = toml::from_str(&fs::read_to_string(stamp_file).ok()?).ok()?;
    if stamp.sources_sha256.is_empty() || stamp.sources_sha256 != sources_digest || stamp.encoder != tool {
        return None;
    }
    let digest = sha256_hex(&fs::read(component).ok()?);
    (digest == stamp.component_sha256).then_some(digest)
}

/// The interface every recipe component must export.
pub const LIFECYCLE_EXPORT: &str = "proximity:recipe/lifecycle@0.1.0";

/// Checks that `bytes` is a component exporting `lifecycle`.
pub fn check_recipe_component(bytes: &[u8]) -> Result<()> {
    let imports_exports = component_world(bytes)?;
    if !imports_exports.exports.iter().any(|name| name == LIFECYCLE_EXPORT) {
        anyhow::bail!(
            "the component does not export {LIFECYCLE_EXPORT} (exports: {})",
            imports_exports.exports.join(", ")
        );
    }
    Ok(())
}

/// The interfaces a component imports and exports, by their full names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentWorld {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Reads the imports and exports of a component (validating it on the way).
pub fn component_world(bytes: &[u8]) -> Result<ComponentWorld> {
    let decoded = wit_component::decode(bytes).context("not a valid WebAssembly component")?;
    let wit_component::DecodedWasm::Component(resolve, world_id) = decoded else {
        anyhow::bail!("a WIT package, not a component");
    };
    let world = &resolve.worlds[world_id];
    Ok(ComponentWorld {
        imports: world.imports.keys().map(|key| resolve.name_world_key(key)).collect(),
        exports: world.exports.keys().map(|key| resolve.name_world_key(key)).collect(),
    })
}

/// Wraps a core module into a component, using the WIT metadata that wit-bindgen
/// embedded in it, and validates the result.
pub fn encode_component(core_module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default().module(core_module)?.validate(true).encode()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes via a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a component path needs a parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid core module: just the header.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn module_with_custom_section(content: &[u8]) -> Vec<u8> {
        // A custom section (id 0) named "x" makes a different but still valid module.
        let mut module = EMPTY_MODULE.to_vec();
        module.push(0);
        module.push((2 + content.len()) as u8);
        module.extend([1, b'x']);
        module.extend(content);
        module
    }

    fn setup(core: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let core_path = dir.path().join("core.wasm");
        fs::write(&core_path, core).unwrap();
        let component = dir.path().join("target").join("recipe.wasm");
        (dir, core_path, component)
    }

    fn mtime(path: &Path) -> std::time::SystemTime {
        fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn first_install_writes_a_component_and_its_stamp() {
        let (_dir, core, component) = setup(EMPTY_MODULE);
        let installed = install_component(&core, &component).unwrap();
        assert!(installed.rebuilt);
        let bytes = fs::read(&component).unwrap();
        assert_eq!(installed.digest, sha256_hex(&bytes));
        // Component binaries share the magic with modules but carry layer 1.
        assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0");
        assert!(stamp_path(&component).is_file());
    }

    #[test]
    fn an_unchanged_core_module_leaves_the_component_untouched() {
        let (_dir, core, component) = setup(EMPTY_MODULE);
        let first = install_component(&core, &component).unwrap();
        let before = mtime(&component);
        std::thread::sleep(std::time::Duration::from_millis(20));

        let second = install_component(&core, &component).unwrap();
        assert!(!second.rebuilt);
        assert_eq!(second.digest, first.digest);
        assert_eq!(mtime(&component), before);
    }

    #[test]
    fn a_changed_core_module_rewrites_the_component() {
        let (_dir, core, component) = setup(EMPTY_MODULE);
        let first = install_component(&core, &component).unwrap();
        fs::write(&core, module_with_custom_section(b"v2")).unwrap();

        let second = install_component(&core, &component).unwrap();
        assert!(second.rebuilt);
        assert_ne!(second.digest, first.digest);
    }

    #[test]
    fn a_component_changed_by_hand_is_made_again() {
        let (_dir, core, component) = setup(EMPTY_MODULE);
        let first = install_component(&core, &component).unwrap();
        fs::write(&component, b"tampered").unwrap();

        let second = install_component(&core, &component).unwrap();
        assert!(second.rebuilt);
        assert_eq!(second.digest, first.digest);
        assert_eq!(sha256_hex(&fs::read(&component).unwrap()), first.digest);
    }

    #[test]
    fn an_invalid_core_module_is_a_clear_error() {
        let (_dir, core, component) = setup(b"not wasm");
        let err = format!("{:#}", install_component(&core, &component).unwrap_err());
        assert!(err.contains("is not a valid recipe module"), "{err}");
        assert!(!component.exists());
    }

    #[test]
    fn a_prebuilt_component_without_lifecycle_is_refused_and_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("target").join("recipe.wasm");
        let not_a_recipe = encode_component(EMPTY_MODULE).unwrap();
        let err = install_prebuilt_component("d1", "tool 1", &component, |out| Ok(fs::write(out, &not_a_recipe)?))
            .unwrap_err();
        assert!(format!("{err:#}").contains("does not export proximity:recipe/lifecycle@0.1.0"), "{err:#}");
        assert!(!component.exists() && !stamp_path(&component).exists());
        let leftovers: Vec<_> = fs::read_dir(component.parent().unwrap()).unwrap().collect();
        assert!(leftovers.is_empty(), "the tool's output is removed: {leftovers:?}");
    }

    #[test]
    fn a_failing_tool_is_the_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("target").join("recipe.wasm");
        let err = install_prebuilt_component("d1", "tool 1", &component, |_| anyhow::bail!("componentize failed"))
            .unwrap_err();
        assert!(err.to_string().contains("componentize failed"));
        assert!(!component.exists());
    }

    #[test]
    fn the_stamp_sits_beside_the_component() {
        assert_eq!(stamp_path(Path::new("/r/target/recipe.wasm")), Path::new("/r/target/recipe.wasm.stamp"));
    }
}
