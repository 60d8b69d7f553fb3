//! Recipes in three languages, and bundles of their size: prints figures and ratios.
//!
//! - per language (Rust nginx, Python adminer, JavaScript n8n): component size,
//!   first load (Cranelift compile, no cache), cached load (native code read back
//!   from the disk cache by a new runtime), and a fresh instance;
//! - a 20 MB bundle: pack, sign and verify.
//!
//! Needs the recipes built: `cargo xtask bench` builds them first.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use proximity::bundle::{self, SigningKeyFile, TrustPolicy};
use proximity::runtime::{Runtime, RuntimeConfig};

use common::{entry, median, repo};

const RECIPES: [(&str, &str); 3] =
    [("Rust", "recipes/nginx"), ("Python", "recipes/adminer"), ("JavaScript", "recipes/n8n")];
const BUNDLE_BYTES: usize = 20 * 1024 * 1024;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Figures {
    language: &'static str,
    size: usize,
    first: Duration,
    cached: Duration,
    instance: Duration,
}

async fn measure(language: &'static str, rel: &str) -> Figures {
    let entry = entry(rel);
    let bytes = std::fs::read(entry.component_path()).unwrap();
    let runs = if bytes.len() > 1 << 20 { 3 } else { 10 };

    let mut first = Vec::new();
    for _ in 0..runs {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let start = Instant::now();
        runtime.load_bytes(bytes.clone()).await.unwrap();
        first.push(start.elapsed());
    }

    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    Runtime::new(config.clone()).unwrap().load_bytes(bytes.clone()).await.unwrap();
    let mut cached = Vec::new();
    let mut instance = Vec::new();
    for _ in 0..runs {
        let runtime = Runtime::new(config.clone()).unwrap();
        let start = Instant::now();
        let loaded = runtime.load_bytes(bytes.clone()).await.unwrap();
        cached.push(start.elapsed());
        let start = Instant::now();
        runtime.instantiate_only(&loaded, &entry.manifest).await.unwrap();
        instance.push(start.elapsed());
    }
    Figures { language, size: bytes.len(), first: median(first), cached: median(cached), instance: median(instance) }
}

/// A recipe directory whose component and asset make a bundle of about 20 MB.
fn big_recipe(dir: &Path) {
    let nginx = repo().join("recipes/nginx");
    std::fs::create_dir_all(dir.join("target")).unwrap();
    for file in ["recipe.toml", "icon.svg"] {
        std::fs::copy(nginx.join(file), dir.join(file)).unwrap();
    }
    let component = std::fs::read(entry("recipes/adminer").component_path()).unwrap();
    let filler = BUNDLE_BYTES.saturating_sub(component.len());
    std::fs::write(dir.join("target/recipe.wasm"), &component).unwrap();
    // Incompressible, like the component itself: a fixed xorshift stream.
    let mut state = 0x9e3779b97f4a7c15u64;
    let asset: Vec<u8> = (0..filler)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(dir.join("assets.bin"), asset).unwrap();
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let figures: Vec<Figures> = tokio.block_on(async {
        let mut all = Vec::new();
        for (language, rel) in RECIPES {
            all.push(measure(language, rel).await);
        }
        all
    });
    let rust = &figures[0];
    println!("recipe load by language (median; ratios against Rust)");
    println!(
        "{:<11} {:>10} {:>22} {:>22} {:>12}",
        "language", "component", "first load (compile)", "cached load", "instance"
    );
    for f in &figures {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "{:<11} {:>7.1} MiB {:>10} ({:>6.0}x) {:>10} ({:>6.1}x) {:>12}",
            f.language,
            mib(f.size),
            ms(f.first),
            ratio(f.first, rust.first),
            ms(f.cached),
            ratio(f.cached, rust.cached),
            ms(f.instance)
        );
    }

    let scratch = tempfile::tempdir().unwrap();
    let recipe = scratch.path().join("big");
    big_recipe(&recipe);
    let key = SigningKeyFile::generate("bench").unwrap();
    let trust = TrustPolicy::trust_nobody().with_key(key.public_key());
    let (mut pack, mut sign, mut verify) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let packed = bundle::pack(&recipe).unwrap();
        pack.push(start.elapsed());
        let start = Instant::now();
        let signed = bundle::sign(&packed.bytes, &key).unwrap();
        sign.push(start.elapsed());
        let start = Instant::now();
        let verified = bundle::verify(&signed, &trust).unwrap();
        verify.push(start.elapsed());
        assert_eq!(verified.signers.len(), 1);
        size = signed.len();
    }
    let rate = |d: Duration| mib(size) / d.as_secs_f64();
    println!();
    println!("a {:.1} MiB bundle (median of 5)", mib(size));
    for (what, samples) in [("pack", pack), ("sign", sign), ("verify", verify)] {
        let d = median(samples);
        println!("{what:<7} {:>10}  {:>7.0} MiB/s", ms(d), rate(d));
    }
}
