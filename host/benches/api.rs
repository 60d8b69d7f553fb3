//! HTTP API benchmark: prints figures and how they compare with the target.
//!
//! An in-process `proximity serve` (sim backend, the repo's `recipes/` catalog,
//! a store in a temporary directory) on 127.0.0.1:0, driven by reqwest clients
//! over loopback at 1, 10 and 100 concurrent clients. Per level:
//!
//! - POST: latency of `POST /api/v1/deployments` until its 202 arrives;
//! - full: POST, then `GET /api/v1/deployments/{id}/events` read until the
//!   stream ends after its `end` event (which must say `succeeded`);
//! - deploys/s: full deploys completed per second of wall time;
//! - CPU/deploy: the process's CPU time (server and clients together) per deploy;
//! - overhead: full-deploy p99 through the API minus the p99 of the same
//!   nginx deploy run directly with `Runtime::run` (no HTTP, no store, no
//!   job manager), as `benches/runtime.rs` does.
//!
//! Server, clients and direct runs share one 2-thread tokio runtime. No timing
//! is asserted; every deploy must succeed.
//!
//! The listener is bound as `proximity serve` binds it (the server sets
//! TCP_NODELAY on it: this bench showed ~40 ms delayed-ACK stalls without).
//!
//! Needs the catalog's recipes built: `cargo xtask build-recipes`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proximity::api;
use proximity::backend::sim::{SimBackend, SimScript};
use proximity::backend::Backend;
use proximity::catalog::{Catalog, CatalogEntry};
use proximity::deploy::{prepare, DeployInput};
use proximity::events::EventSink;
use proximity::jobs::{Jobs, JobsConfig, Metered, Metrics, Services};
use proximity::runtime::{LoadedRecipe, Runtime, RuntimeConfig};
use proximity::server::{serve, ServerState};
use proximity::store::Store;

/// Deploys per concurrency level, split evenly across its clients.
const DEPLOYS_PER_LEVEL: usize = 200;
const LEVELS: [usize; 3] = [1, 10, 100];
/// Jobs running at once, overall and per node (`proximity serve` defaults to
/// 8 and 4): high enough that at 1 and 10 clients no job waits for a slot and
/// at 100 the job pool is not the bottleneck (each sim deploy holds its slot
/// for well under a millisecond of CPU), yet bounded as a real server's is.
const CONCURRENCY: usize = 64;
const PER_NODE: usize = 64;
const TARGET_OVERHEAD: Duration = Duration::from_millis(50);
const RECIPE: &str = "nginx";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn sim_backend(entries: &[CatalogEntry]) -> SimBackend {
    let scripts = entries.iter().map(|entry| {
        let script = SimScript::for_recipe(&entry.dir).expect("the recipe's sim script reads");
        (entry.manifest.recipe.id.clone(), script)
    });
    SimBackend::default().with_recipe_scripts(scripts.collect::<Vec<_>>())
}

/// The events of an SSE body, in order.
fn parse_sse(body: &str) -> Vec<api::JobEvent> {
    body.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).expect("event data is a JobEvent"))
        })
        .collect()
}

struct Target {
    base: String,
    token: String,
}

/// One full deploy through the API: (POST latency, full latency).
async fn api_deploy(http: &reqwest::Client, target: &Target, app_id: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let response = http
        .post(format!("{}/deployments", target.base))
        .bearer_auth(&target.token)
        .json(&serde_json::json!({ "recipe": RECIPE, "app_id": app_id }))
        .send()
        .await
        .expect("POST /deployments");
    let status = response.status();
    if status != reqwest::StatusCode::ACCEPTED {
        let body = response.text().await.unwrap_or_default();
        panic!("POST /deployments for {app_id}: {status}: {body}");
    }
    let accepted: api::JobAccepted = response.json().await.expect("a JobAccepted body");
    let posted = start.elapsed();
    let response = http
        .get(format!("{}/deployments/{}/events", target.base, accepted.id))
        .bearer_auth(&target.token)
        .send()
        .await
        .expect("GET /deployments/{id}/events");
    assert!(response.status().is_success(), "events of {}: {}", accepted.id, response.status());
    let body = response.text().await.expect("the event stream ends");
    let full = start.elapsed();
    let events = parse_sse(&body);
    let end = events.last().filter(|e| e.kind == "end").unwrap_or_else(|| panic!("{app_id}: no end event"));
    let job = end.job.as_ref().unwrap_or_else(|| panic!("{app_id}: the end event has no job"));
    if job.state != api::JobState::Succeeded {
        panic!("deploy {app_id} ended {:?}: {}", job.state, serde_json::to_string(&job.error).unwrap());
    }
    (posted, full)
}

/// One nginx deploy straight through `Runtime::run` on a fresh simulator.
async fn direct_deploy(runtime: &Runtime, loaded: &LoadedRecipe, entry: &CatalogEntry, sim: SimBackend) -> Duration {
    let prepared = prepare(entry.manifest.clone(), DeployInput::default()).unwrap();
    let sim = Arc::new(sim);
    let start = Instant::now();
    runtime.run(loaded, prepared.install_request(sim.clone(), sim, EventSink::discard())).await.expect("nginx runs");
    start.elapsed()
}

struct Level {
    clients: usize,
    post: Vec<Duration>,
    full: Vec<Duration>,
    per_second: f64,
    cpu: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let recipes = repo().join("recipes");
    let nginx_component = recipes.join("nginx/target/recipe.wasm");
    if !nginx_component.is_file() {
        eprintln!("{} is not built: run `cargo xtask build-recipes`", nginx_component.display());
        std::process::exit(2);
    }
    let catalog = Catalog::new(&recipes);
    let entries = catalog.entries().expect("the catalog reads");
    for entry in &entries {
        if !entry.component_path().is_file() {
            eprintln!("{} is not built: run `cargo xtask build-recipes`", entry.component_path().display());
            std::process::exit(2);
        }
    }

    // The wiring of `proximity serve --backend sim`.
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&data.path().join("proximity.db"), &data.path().join("secret.key")).unwrap());
    let (_, token) = store.create_token("bench").unwrap();
    let metrics = Arc::new(Metrics::new());
    let sim = sim_backend(&entries);
    let backend: Arc<dyn Backend> = Arc::new(Metered::new(Arc::new(sim.clone()), metrics.clone()));
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig { cache_dir: Some(data.path().join("native")), ..Default::default() }).unwrap(),
    );
    let jobs_config =
        JobsConfig { concurrency: CONCURRENCY, per_node: PER_NODE, shutdown_grace: Duration::from_secs(30) };
    let services = Services { runtime: runtime.clone(), catalog, backend, proxy: Arc::new(sim), store: store.clone() };
    let jobs = Jobs::new(services, jobs_config, metrics);
    jobs.recover().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ServerState { jobs }, async move {
        let _ = stop_rx.await;
    }));
    let target = Arc::new(Target { base: format!("http://{address}{}", api::PREFIX), token });

    println!(
        "proximity API benchmark: in-process server on {address}, sim backend, {} recipe(s), deploying `{RECIPE}`",
        entries.len()
    );
    println!(
        "jobs: concurrency {CONCURRENCY}, per-node {PER_NODE} (serve's defaults are 8/4): no job waits for a slot \
         at 1 or 10 clients, and at 100 the pool, not the defaults' short queue, is what the API is measured with"
    );
    println!(
        "{DEPLOYS_PER_LEVEL} deploys per level, split across the clients; one reqwest client each; 2 tokio threads"
    );

    // Warm-up: compile and cache the component, open connections, fill caches.
    let warm = reqwest::Client::new();
    for n in 0..5 {
        api_deploy(&warm, &target, &format!("warm-{n}")).await;
    }
    let entry = entries.iter().find(|e| e.manifest.recipe.id == RECIPE).expect("nginx is in the catalog").clone();
    let loaded = runtime.load(&entry.component_path()).await.unwrap();
    for _ in 0..5 {
        direct_deploy(&runtime, &loaded, &entry, sim_backend(&entries)).await;
    }

    // Direct runs alone, one at a time: the baseline the target is about.
    let mut serial = Vec::new();
    let cpu = cpu_time();
    for _ in 0..DEPLOYS_PER_LEVEL {
        serial.push(direct_deploy(&runtime, &loaded, &entry, sim_backend(&entries)).await);
    }
    let direct_cpu = (cpu_time() - cpu) / serial.len() as u32;
    serial.sort();
    println!(
        "direct Runtime::run (serial, {} runs): p50 {}, p99 {}, CPU/deploy {}",
        serial.len(),
        fmt(pct(&serial, 50.0)),
        fmt(pct(&serial, 99.0)),
        fmt(direct_cpu)
    );

    let mut levels = Vec::new();
    for clients in LEVELS {
        let per_client = DEPLOYS_PER_LEVEL / clients;

        // Through the API.
        let cpu = cpu_time();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
                let mut samples = Vec::with_capacity(per_client);
                for n in 0..per_client {
                    samples.push(api_deploy(&http, &target, &format!("b{clients}-c{c}-{n}")).await);
                }
                samples
            }));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.expect("a client panicked"));
        }
        let wall = started.elapsed();
        let cpu = (cpu_time() - cpu) / samples.len() as u32;
        let per_second = samples.len() as f64 / wall.as_secs_f64();
        let (mut post, mut full): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
        post.sort();
        full.sort();
        levels.push(Level { clients, post, full, per_second, cpu });
    }

    let direct_p99 = pct(&serial, 99.0);
    println!();
    println!(
        "{:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>9} | {:>10} | {:>12}",
        "clients", "POST p50", "POST p99", "full p50", "full p99", "deploys/s", "CPU/deploy", "overhead p99"
    );
    let mut last = None;
    for level in &levels {
        let overhead = pct(&level.full, 99.0).saturating_sub(direct_p99);
        println!(
            "{:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>9.1} | {:>10} | {:>12}",
            level.clients,
            fmt(pct(&level.post, 50.0)),
            fmt(pct(&level.post, 99.0)),
            fmt(pct(&level.full, 50.0)),
            fmt(pct(&level.full, 99.0)),
            level.per_second,
            fmt(level.cpu),
            fmt(overhead)
        );
        last = Some((level, overhead));
    }
    println!();
    println!(
        "full = POST + event stream until its end event (all {} deploys succeeded); CPU/deploy = the process's",
        levels.len() * DEPLOYS_PER_LEVEL
    );
    println!(
        "CPU time (server + clients) per deploy, {} for a direct run; overhead p99 = full p99 - direct p99 ({}).",
        fmt(direct_cpu),
        fmt(direct_p99)
    );
    let (level, overhead) = last.unwrap();
    let verdict = if overhead < TARGET_OVERHEAD { "met" } else { "MISSED" };
    println!(
        "{}-client p99 host overhead: {} (target < {}: {verdict}); with {} clients in flight at {:.0} deploys/s, \
         Little's law puts the mean full latency at {} here",
        level.clients,
        fmt(overhead),
        fmt(TARGET_OVERHEAD),
        level.clients,
        level.per_second,
        fmt(Duration::from_secs_f64(level.clients as f64 / level.per_second))
    );

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
