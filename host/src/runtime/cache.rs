//! Compiled recipe components, cached on disk and in memory.
//!
//! Compiling a component with Cranelift takes milliseconds for a Rust recipe
//! and seconds for one that embeds an interpreter, so the host keeps the
//! native code. The disk cache is keyed by (component sha256, engine
//! compatibility hash) and only ever filled by this host: precompiled code
//! is trusted native code and is never taken from outside.

use std::collections::HashMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a component came from on this load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// Compiled now from the component bytes.
    Compiled,
    /// Native code read back from the disk cache.
    Disk,
    /// Already in memory.
    Memory,
}

pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
    in_memory: Mutex<HashMap<String, Component>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    /// `dir`: where native code is kept across restarts; `None` keeps it in memory only.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self> {
        if let Some(dir) = &dir {
            create_private_dir(dir)?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            in_memory: Mutex::new(HashMap::new()),
        })
    }

    /// The compiled component for `bytes`, whose sha256 is `digest`.
    pub fn get(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> Result<(Component, CacheSource)> {
        if let Some(component) = self.in_memory.lock().unwrap_or_else(|e| e.into_inner()).get(digest) {
            return Ok((component.clone(), CacheSource::Memory));
        }
        let (component, source) = self.load_or_compile(engine, digest, bytes)?;
        self.in_memory.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.to_string(), component.clone());
        Ok((component, source))
    }

    fn load_or_compile(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> Result<(Component, CacheSource)> {
        let Some(path) = self.native_path(digest) else {
            return Ok((compile(engine, bytes)?, CacheSource::Compiled));
        };
        // Read the file rather than map it: a mapped file that something
        // truncates under a running host would kill it with SIGBUS.
        if let Ok(native) = fs::read(&path) {
            // SAFETY: files in the cache directory are written only by
            // `store` below, from code this engine compiled, and the file name
            // carries the engine's compatibility hash. A file that is not an
            // artifact of this engine fails deserialize's checks and is
            // compiled again.
            match unsafe { Component::deserialize(engine, &native) } {
                Ok(component) => return Ok((component, CacheSource::Disk)),
                Err(err) => tracing::warn!("recompiling {digest}: cached native code unusable: {err}"),
            }
        }
        let component = compile(engine, bytes)?;
        if let Err(err) = store(&path, &component) {
            // The cache is an optimisation: a read-only or full disk must not fail a run.
            tracing::warn!("could not cache native code at {}: {err:#}", path.display());
        }
        Ok((component, CacheSource::Compiled))
    }

    fn native_path(&self, digest: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes).map_err(anyhow::Error::from).context("not a valid recipe component")
}

fn store(path: &Path, component: &Component) -> Result<()> {
    let native = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, native).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the component cache {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}
