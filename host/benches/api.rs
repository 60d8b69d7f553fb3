//! HTTP API benchmark: prints figures and how they compare with the target.
//!
//! An in-process `proximity serve` (sim backend, the repo's `recipes/` catalog,
//! a store in a temporary directory) on 127.0.0.1:0, driven by reqwest clients
//! over loopback at 1, 10 and 100 concurrent clients. Per level:
//!
//! - POST: latency of `POST /api/v1/deployments` until its 202 arrives;
//! - full: POST, then `GET /api/v1/deployments/{id}/events` read until the
//!   stream ends after its `end` event (which must say `succeeded`);
//! - direct: the same nginx deploy (`prepare` and `Runtime::run` on a sim,
//!   no HTTP, no store, no job manager) by as many concurrent tasks on the
//!   server's runtime, so that it queues on the same cores as the API does;
//! - overhead p99: full p99 minus direct p99 at the same concurrency: what
//!   the API, store and job manager add on top of running the recipe;
//! - deploys/s, and CPU per deploy: of the server (the process minus the
//!   client threads), of the clients, and of a direct deploy.
//!
//! The server and the direct runs share one 2-thread tokio runtime; the
//! clients have their own 2-thread runtime, whose threads' CPU clocks are
//! read to separate their cost. The machine's cores are shared by all of it.
//! No timing is asserted; every deploy must succeed.
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

/// CPU time (user + system) of this process so far, exited threads included.
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

/// The CPU clocks of the client runtime's threads, registered as they start.
static CLIENT_CLOCKS: std::sync::Mutex<Vec<libc::clockid_t>> = std::sync::Mutex::new(Vec::new());

fn register_client_thread() {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_getcpuclockid writes one clockid_t for the calling thread.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0 {
        CLIENT_CLOCKS.lock().unwrap().push(clock);
    }
}

/// CPU time of the client threads so far (their runtime keeps them alive).
fn client_cpu_time() -> Duration {
    let clocks = CLIENT_CLOCKS.lock().unwrap();
    clocks
        .iter()
        .map(|&clock| {
            // SAFETY: clock_gettime only writes the timespec it is given.
            let ts = unsafe {
                let mut ts: libc::timespec = std::mem::zeroed();
                libc::clock_gettime(clock, &mut ts);
                ts
            };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        })
        .sum()
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

/// Runs the same deploy as the API would, minus the API: `prepare` (the
/// parameters checked against the manifest) and `Runtime::run` on a sim.
#[derive(Clone)]
struct Direct {
    runtime: Arc<Runtime>,
    loaded: Arc<LoadedRecipe>,
    entry: CatalogEntry,
    sim: Arc<SimBackend>,
}

impl Direct {
    async fn deploy(&self, app_id: String) -> Duration {
        let start = Instant::now();
        let input = DeployInput { app_id: Some(app_id), ..Default::default() };
        let prepared = prepare(self.entry.manifest.clone(), input).unwrap();
        let request = prepared.install_request(self.sim.clone(), self.sim.clone(), EventSink::discard());
        self.runtime.run(&self.loaded, request).await.expect("nginx runs");
        start.elapsed()
    }
}

/// Latencies of one way of deploying at one concurrency.
struct Run {
    /// (POST, full) for the API; (full, full) for direct runs.
    samples: Vec<(Duration, Duration)>,
    wall: Duration,
    /// CPU of the whole process and of the client threads.
    cpu: Duration,
    client_cpu: Duration,
}

impl Run {
    fn sorted(&self, pick: impl Fn(&(Duration, Duration)) -> Duration) -> Vec<Duration> {
        let mut values: Vec<Duration> = self.samples.iter().map(pick).collect();
        values.sort();
        values
    }

    fn per_deploy(&self, cpu: Duration) -> Duration {
        cpu / self.samples.len() as u32
    }

    fn per_second(&self) -> f64 {
        self.samples.len() as f64 / self.wall.as_secs_f64()
    }
}

/// `tasks` concurrent tasks, each doing its share of `total` deploys one
/// after the other, spawned on `on`.
async fn measure<F, Fut>(on: &tokio::runtime::Handle, tasks: usize, total: usize, deploy: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (Duration, Duration)> + Send,
{
    let per_task = total / tasks;
    let (cpu, client_cpu) = (cpu_time(), client_cpu_time());
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let deploy = deploy.clone();
            on.spawn(async move {
                let mut samples = Vec::with_capacity(per_task);
                for n in 0..per_task {
                    samples.push(deploy(t, n).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    for handle in handles {
        samples.extend(handle.await.expect("a deploy task panicked"));
    }
    let wall = started.elapsed();
    Run { samples, wall, cpu: cpu_time() - cpu, client_cpu: client_cpu_time() - client_cpu }
}

fn main() {
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .unwrap();
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .on_thread_start(register_client_thread)
        // Blocking threads too stay alive, so their clocks stay readable.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .unwrap();
    let clients = client_runtime.handle().clone();
    server_runtime.block_on(bench(clients));
}

async fn bench(clients: tokio::runtime::Handle) {
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
    let server =
        tokio::spawn(serve(listener, ServerState { jobs, installer: None, api_allow_untrusted: false }, async move {
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
        "{DEPLOYS_PER_LEVEL} deploys per level, split across the clients (one reqwest client each, on their own \
         2-thread runtime); server and direct runs on another 2-thread runtime; {} CPU(s) for all of it",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Warm-up: compile and cache the component, open connections, fill caches.
    let warm = {
        let target = target.clone();
        clients.spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..5 {
                api_deploy(&http, &target, &format!("warm-{n}")).await;
            }
        })
    };
    warm.await.expect("the warm-up deploys");
    let entry = entries.iter().find(|e| e.manifest.recipe.id == RECIPE).expect("nginx is in the catalog").clone();
    let direct = Direct {
        loaded: runtime.load(&entry.component_path()).await.unwrap(),
        runtime,
        entry,
        sim: Arc::new(sim_backend(&entries)),
    };
    for n in 0..5 {
        direct.deploy(format!("warm-direct-{n}")).await;
    }
    let here = tokio::runtime::Handle::current();

    // Direct runs, one at a time: the recipe's own cost.
    let serial = {
        let direct = direct.clone();
        measure(&here, 1, DEPLOYS_PER_LEVEL, move |_, n| {
            let direct = direct.clone();
            async move {
                let took = direct.deploy(format!("serial-{n}")).await;
                (took, took)
            }
        })
        .await
    };
    let serial_full = serial.sorted(|s| s.1);
    println!(
        "direct deploy (prepare + Runtime::run), serial, {} runs: p50 {}, p99 {}, CPU/deploy {}",
        serial.samples.len(),
        fmt(pct(&serial_full, 50.0)),
        fmt(pct(&serial_full, 99.0)),
        fmt(serial.per_deploy(serial.cpu))
    );

    let mut levels = Vec::new();
    for tasks in LEVELS {
        let direct_run = {
            let direct = direct.clone();
            measure(&here, tasks, DEPLOYS_PER_LEVEL, move |t, n| {
                let direct = direct.clone();
                async move {
                    let took = direct.deploy(format!("d{tasks}-t{t}-{n}")).await;
                    (took, took)
                }
            })
            .await
        };
        let api_run = {
            let target = target.clone();
            let http: Vec<reqwest::Client> = (0..tasks)
                .map(|_| reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap())
                .collect();
            let http = Arc::new(http);
            measure(&clients, tasks, DEPLOYS_PER_LEVEL, move |c, n| {
                let (target, http) = (target.clone(), http.clone());
                async move { api_deploy(&http[c], &target, &format!("b{tasks}-c{c}-{n}")).await }
            })
            .await
        };
        levels.push((tasks, direct_run, api_run));
    }

    println!();
    println!(
        "{:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9} | {:>12} | {:>9} | {:>10} {:>10} {:>10}",
        "clients",
        "POST p50",
        "POST p99",
        "full p50",
        "full p99",
        "direct50",
        "direct99",
        "overhead p99",
        "deploys/s",
        "CPU server",
        "CPU client",
        "CPU direct"
    );
    for (tasks, direct_run, api_run) in &levels {
        let post = api_run.sorted(|s| s.0);
        let full = api_run.sorted(|s| s.1);
        let direct_full = direct_run.sorted(|s| s.1);
        let overhead = pct(&full, 99.0).saturating_sub(pct(&direct_full, 99.0));
        println!(
            "{:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9} | {:>12} | {:>9.1} | {:>10} {:>10} {:>10}",
            tasks,
            fmt(pct(&post, 50.0)),
            fmt(pct(&post, 99.0)),
            fmt(pct(&full, 50.0)),
            fmt(pct(&full, 99.0)),
            fmt(pct(&direct_full, 50.0)),
            fmt(pct(&direct_full, 99.0)),
            fmt(overhead),
            api_run.per_second(),
            fmt(api_run.per_deploy(api_run.cpu.saturating_sub(api_run.client_cpu))),
            fmt(api_run.per_deploy(api_run.client_cpu)),
            fmt(direct_run.per_deploy(direct_run.cpu)),
        );
    }
    println!();
    println!(
        "full = POST + event stream until its end event (all {} API deploys succeeded); direct = the same deploy by \
         as many concurrent tasks without the API;",
        levels.len() * DEPLOYS_PER_LEVEL
    );
    println!(
        "overhead p99 = full p99 - direct p99 at that concurrency; CPU per deploy: server = the process minus the \
         client threads (API level), client = the reqwest clients, direct = the process (direct level)."
    );

    let (tasks, direct_run, api_run) = levels.last().unwrap();
    let full = api_run.sorted(|s| s.1);
    let direct_full = direct_run.sorted(|s| s.1);
    let overhead = pct(&full, 99.0).saturating_sub(pct(&direct_full, 99.0));
    let met = overhead < TARGET_OVERHEAD;
    println!(
        "{tasks}-client p99 host overhead: {} - {} = {} (target < {}): {}",
        fmt(pct(&full, 99.0)),
        fmt(pct(&direct_full, 99.0)),
        fmt(overhead),
        fmt(TARGET_OVERHEAD),
        if met { "met" } else { "MISSED" }
    );
    if !met {
        // Why: with this many deploys in flight, latency is queueing behind
        // CPU, so the extra CPU per deploy is what sets it (Little's law).
        let server = api_run.per_deploy(api_run.cpu.saturating_sub(api_run.client_cpu));
        let client = api_run.per_deploy(api_run.client_cpu);
        let direct = direct_run.per_deploy(direct_run.cpu);
        println!(
            "why: {tasks} deploys in flight at {:.0} deploys/s put the mean full latency at {} (Little's law), \
             against {} for direct runs at {:.0}/s; per deploy the server spends {} of CPU and the clients {} \
             on the same cores, where a direct deploy takes {}",
            api_run.per_second(),
            fmt(Duration::from_secs_f64(*tasks as f64 / api_run.per_second())),
            fmt(Duration::from_secs_f64(*tasks as f64 / direct_run.per_second())),
            direct_run.per_second(),
            fmt(server),
            fmt(client),
            fmt(direct),
        );
    }

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
