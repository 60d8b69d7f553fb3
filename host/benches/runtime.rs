//! Recipe runtime benchmark: prints figures and how they compare with targets.
//!
//! - first load: compile a component with Cranelift (no cache);
//! - cached load: read native code back from the disk cache in a new runtime;
//! - warm instantiate: a fresh sandbox (store + instance) from a loaded recipe;
//! - capability-call overhead: per call, against the sim backend.
//!
//! Needs the bench and nginx recipes built: `cargo xtask bench` builds them first.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use proximity::backend::sim::SimBackend;
use proximity::catalog::CatalogEntry;
use proximity::deploy::{prepare, DeployInput};
use proximity::events::EventSink;
use proximity::runtime::{Runtime, RuntimeConfig};

use common::{entry, median};

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.2} µs")
    }
}

fn verdict(value: Duration, target: Duration) -> String {
    let ratio = target.as_secs_f64() / value.as_secs_f64();
    if value <= target {
        format!("target {} met, {ratio:.1}x under", fmt(target))
    } else {
        format!("target {} MISSED by {:.1}x", fmt(target), 1.0 / ratio)
    }
}

/// Time one full `install` of the bench recipe making `calls` calls of `kind`.
async fn install_time(runtime: &Runtime, entry: &CatalogEntry, kind: &str, calls: u64) -> Duration {
    let recipe = runtime.load(&entry.component_path()).await.unwrap();
    let input = DeployInput {
        params: [("kind".to_string(), kind.to_string()), ("calls".to_string(), calls.to_string())].into(),
        ..Default::default()
    };
    let prepared = prepare(entry.manifest.clone(), input).unwrap();
    let sim = Arc::new(SimBackend::default());
    let request = prepared.install_request(sim.clone(), sim, EventSink::discard());
    let start = Instant::now();
    runtime.run(&recipe, request).await.expect("bench recipe runs");
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = entry("tests/recipes/bench");
    let nginx = entry("recipes/nginx");
    let component = bench.component_path();
    let size = std::fs::metadata(&component).unwrap().len();
    println!("proximity runtime benchmark (component {} bytes)", size);

    // First load: compile, no cache.
    let mut compile = Vec::new();
    for _ in 0..5 {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let start = Instant::now();
        runtime.load(&component).await.unwrap();
        compile.push(start.elapsed());
    }
    println!("first load (compile):        {:>10}  median of 5", fmt(median(compile)));

    // Cached load: native code from disk, in a new runtime each time.
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    Runtime::new(config.clone()).unwrap().load(&component).await.unwrap();
    let mut cached = Vec::new();
    for _ in 0..20 {
        let runtime = Runtime::new(config.clone()).unwrap();
        let start = Instant::now();
        runtime.load(&component).await.unwrap();
        cached.push(start.elapsed());
    }
    println!("cached load (disk):          {:>10}  median of 20", fmt(median(cached)));

    // Warm instantiate, with fresh mappings per run and with the pooling allocator.
    let mut by_strategy = Vec::new();
    for pooling in [false, true] {
        let runtime = Runtime::new(RuntimeConfig { pooling, ..Default::default() }).unwrap();
        let recipe = runtime.load(&component).await.unwrap();
        let mut inst = Vec::new();
        for _ in 0..2000 {
            let start = Instant::now();
            runtime.instantiate_only(&recipe, &bench.manifest).await.unwrap();
            inst.push(start.elapsed());
        }
        let inst = median(inst);
        let name = if pooling { "pooling" } else { "on-demand" };
        println!(
            "warm instantiate ({name:>9}): {:>10}  median of 2000; {}",
            fmt(inst),
            verdict(inst, Duration::from_micros(100))
        );
        by_strategy.push(inst);
    }
    println!("pooling allocator speed-up:  {:>9.1}x", by_strategy[0].as_secs_f64() / by_strategy[1].as_secs_f64());
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();

    // A whole run that does nothing: instantiate + context + call + cleanup.
    let mut empty = Vec::new();
    for _ in 0..500 {
        empty.push(install_time(&runtime, &bench, "log", 0).await);
    }
    println!("empty install run:           {:>10}  median of 500", fmt(median(empty)));

    // Capability-call overhead: (N calls − 0 calls) / N, median of 5.
    const N: u64 = 100_000;
    for kind in ["id", "log", "exec", "write"] {
        let mut per_call = Vec::new();
        for _ in 0..5 {
            let base = install_time(&runtime, &bench, kind, 0).await;
            let full = install_time(&runtime, &bench, kind, N).await;
            per_call.push(full.saturating_sub(base) / N as u32);
        }
        let per_call = median(per_call);
        println!(
            "call overhead ({kind:>5}):       {:>10}  per call, {N} calls; {}",
            fmt(per_call),
            verdict(per_call, Duration::from_micros(2))
        );
    }

    // For scale: a full simulated nginx deploy.
    let mut deploys = Vec::new();
    for _ in 0..50 {
        let recipe = runtime.load(&nginx.component_path()).await.unwrap();
        let prepared = prepare(nginx.manifest.clone(), DeployInput::default()).unwrap();
        let sim = Arc::new(SimBackend::default());
        let start = Instant::now();
        runtime.run(&recipe, prepared.install_request(sim.clone(), sim, EventSink::discard())).await.unwrap();
        deploys.push(start.elapsed());
    }
    println!("nginx deploy on sim:         {:>10}  median of 50", fmt(median(deploys)));
}
