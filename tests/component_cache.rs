//! Compiled components are cached on disk by (digest, engine) and reused.

use proximity::runtime::cache::CacheSource;
use proximity::runtime::{Runtime, RuntimeConfig};
use proximity_tests::recipe;

#[tokio::test]
async fn native_code_is_compiled_once_then_read_back() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().join("native")), ..Default::default() };
    let component = recipe("recipes/nginx").component_path();

    let first = Runtime::new(config.clone()).unwrap();
    let loaded = first.load(&component).await.unwrap();
    assert_eq!(loaded.source, CacheSource::Compiled);
    assert_eq!(first.load(&component).await.unwrap().source, CacheSource::Memory);

    let files: Vec<_> = std::fs::read_dir(cache.path().join("native")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with(&loaded.digest) && name.ends_with(".cwasm"), "keyed by the component digest: {name}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache.path().join("native")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache directory is private");

    // A new host process (a new runtime) reads the native code back.
    let second = Runtime::new(config.clone()).unwrap();
    assert_eq!(second.load(&component).await.unwrap().source, CacheSource::Disk);

    // Damaged native code is not trusted: the component is compiled again.
    std::fs::write(&files[0], b"not native code").unwrap();
    let third = Runtime::new(config).unwrap();
    assert_eq!(third.load(&component).await.unwrap().source, CacheSource::Compiled);
}

#[tokio::test]
async fn a_file_that_is_not_a_recipe_component_is_refused_clearly() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let err = runtime.load_bytes(b"\0asm\x01\0\0\0".to_vec()).await.err().expect("a core module is not a component");
    assert!(format!("{err:#}").contains("not a valid recipe component"), "{err:#}");
    let err = runtime.load_bytes(b"hello".to_vec()).await.err().expect("garbage is refused");
    assert!(format!("{err:#}").contains("not a valid recipe component"), "{err:#}");
}
