//! What the benchmarks share: finding built recipes, and medians.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use proximity::catalog::CatalogEntry;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A repository recipe, which must be built (exits with a hint otherwise).
pub fn entry(rel: &str) -> CatalogEntry {
    let entry = CatalogEntry::load(&repo().join(rel)).expect("recipe manifest loads");
    if !entry.component_path().is_file() {
        eprintln!("{} is not built: run `cargo xtask bench`", entry.component_path().display());
        std::process::exit(2);
    }
    entry
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
