//! Loads recipe components and runs their exports in a sandbox.
//!
//! One [`Runtime`] per host: it owns the wasmtime engine, the linker with
//! every capability, and the compiled-component cache. Each run gets its own
//! `Store` with the recipe's memory limit and deadline, its own resource
//! table, and a [`RunContext`] that outlives the store so that whatever the
//! run created can be destroyed when it fails.

pub mod cache;
pub mod limits;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

use crate::backend::{Backend, BackendError, ContainerRef, Ownership, ProxyExecutor};
use crate::bindings::{types, Recipe, RecipePre};
use crate::capabilities::{RunContext, RunState};
use crate::events::EventSink;
use crate::manifest::{Manifest, ParamValue, ResolvedParams, ResolvedResources};
use cache::{sha256_hex, CacheSource, ComponentCache};
use limits::{DeadlineExceeded, MemoryLimitExceeded};

/// How often the engine's epoch advances: the granularity of deadlines, and
/// how often a busy recipe yields its thread to other runs.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How long cleanup may spend stopping and destroying one container.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Operator settings that bound every recipe, whatever its manifest asks.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Native code cache; `None` keeps compiled components in memory only.
    pub cache_dir: Option<PathBuf>,
    pub max_memory_mb: u32,
    pub max_timeout: Duration,
    /// Runs that can be in flight at once. With the pooling allocator this
    /// sizes the pools; a run beyond it fails to start with a clear error.
    pub max_concurrent_runs: u32,
    /// Reuse memories, tables and async stacks from pools instead of mapping
    /// fresh ones for every run (see `cargo xtask bench` for what it saves).
    pub pooling: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_memory_mb: 512,
            max_timeout: Duration::from_secs(3600),
            max_concurrent_runs: 128,
            pooling: true,
        }
    }
}

/// A recipe component ready to instantiate.
pub struct LoadedRecipe {
    /// sha256 of the component bytes: the recipe code's identity.
    pub digest: String,
    pub source: CacheSource,
    pre: RecipePre<RunState>,
}

/// Which export to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Install,
    Uninstall,
    Upgrade { from_version: String },
    Health,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Uninstall => "uninstall",
            Action::Upgrade { .. } => "upgrade",
            Action::Health => "health",
        }
    }
}

/// What a run is about: the recipe's manifest, the operator's validated
/// input, and the names of the app and of the job.
#[derive(Clone)]
pub struct RunSubject {
    pub manifest: Arc<Manifest>,
    pub params: ResolvedParams,
    pub resources: ResolvedResources,
    pub app_id: String,
    pub deployment_id: String,
    pub node: Option<String>,
}

/// Everything one run needs besides the recipe code.
pub struct RunRequest {
    pub action: Action,
    pub subject: RunSubject,
    pub backend: Arc<dyn Backend>,
    pub proxy: Arc<dyn ProxyExecutor>,
    pub events: EventSink,
    /// Containers of the existing app (uninstall, upgrade, health).
    pub app_containers: Vec<ContainerRef>,
    /// Leave a failed run's containers in place for debugging.
    pub keep_failed: bool,
    /// Stops the run when cancelled (an operator's cancel, a server shutdown):
    /// the recipe is dropped mid-call and what it created is destroyed.
    pub cancel: CancellationToken,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ActionResult {
    Installed { app: types::AppInfo },
    Uninstalled,
    Upgraded { app: types::AppInfo },
    Health { report: types::HealthReport },
}

#[derive(Debug, Serialize)]
pub struct RunOutcome {
    pub result: ActionResult,
    /// Containers this run created.
    pub created: Vec<ContainerRef>,
    /// Containers destroyed after a successful `uninstall`.
    pub destroyed: Vec<String>,
}

/// Why a run failed, and what was cleaned up after it.
#[derive(Debug, thiserror::Error, Serialize)]
#[error("{failure}{}", step.as_deref().map(|s| format!(" (during step `{s}`)")).unwrap_or_default())]
pub struct RunError {
    pub failure: RunFailure,
    /// The last step the recipe announced before failing.
    pub step: Option<String>,
    /// Containers destroyed after the failure.
    pub destroyed: Vec<String>,
    /// Containers that could not be destroyed (or were kept on request).
    pub left_behind: Vec<String>,
}

#[derive(Debug, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum RunFailure {
    /// The recipe returned an error from its export.
    #[error("{0}")]
    Recipe(RecipeError),
    #[error("the recipe ran past its deadline of {}s and was stopped", .0.as_secs())]
    Deadline(#[serde(serialize_with = "secs")] Duration),
    #[error("the recipe tried to use more than its memory limit of {0} MiB and was stopped")]
    MemoryLimit(u32),
    #[error("the recipe crashed: {0}")]
    Crashed(String),
    #[error("the recipe could not be started: {0}")]
    Instantiate(String),
    #[error("the run was cancelled")]
    Cancelled,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The WIT `error` a recipe returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{kind}: {message}")]
pub struct RecipeError {
    pub kind: &'static str,
    pub message: String,
}

impl From<types::Error> for RecipeError {
    fn from(err: types::Error) -> Self {
        let (kind, message) = match err {
            types::Error::Denied(m) => ("denied", m),
            types::Error::InvalidInput(m) => ("invalid-input", m),
            types::Error::Timeout(m) => ("timeout", m),
            types::Error::NotFound(m) => ("not-found", m),
            types::Error::Backend(m) => ("backend", m),
        };
        RecipeError { kind, message }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: Arc<ComponentCache>,
    config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        if config.pooling {
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(&config)));
        }
        let engine = Engine::new(&wasm).map_err(anyhow::Error::from)?;
        let mut linker = Linker::new(&engine);
        Recipe::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)?;
        crate::capabilities::wasi::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        let cache = Arc::new(ComponentCache::new(&engine, config.cache_dir.clone())?);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        Ok(Runtime { engine, linker, cache, config, ticker_stop })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Load a component file, compiling it or taking it from the cache.
    pub async fn load(&self, path: &Path) -> Result<Arc<LoadedRecipe>> {
        let bytes =
            tokio::fs::read(path).await.with_context(|| format!("reading recipe component {}", path.display()))?;
        self.load_bytes(bytes).await.with_context(|| format!("loading {}", path.display()))
    }

    pub async fn load_bytes(&self, bytes: Vec<u8>) -> Result<Arc<LoadedRecipe>> {
        let digest = sha256_hex(&bytes);
        // Compiling is CPU work that can take seconds: keep it off the async threads.
        let (cache, engine, key) = (self.cache.clone(), self.engine.clone(), digest.clone());
        let (component, source) = tokio::task::spawn_blocking(move || cache.get(&engine, &key, &bytes))
            .await
            .context("the compiler thread failed")??;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component does not fit the proximity:recipe world")?;
        let pre = RecipePre::new(pre).map_err(anyhow::Error::from)?;
        Ok(Arc::new(LoadedRecipe { digest, source, pre }))
    }

    /// Run one export of a recipe. On failure, every container the run
    /// created is stopped and destroyed (unless `keep_failed`).
    pub async fn run(&self, recipe: &LoadedRecipe, request: RunRequest) -> Result<RunOutcome, RunError> {
        let subject = &request.subject;
        let limits = &subject.manifest.limits;
        let timeout = Duration::from_secs(limits.timeout_secs).min(self.config.max_timeout);
        let memory_mb = limits.memory_mb.min(self.config.max_memory_mb);
        let run = Arc::new(RunContext::new(
            subject.manifest.grants.clone(),
            Ownership {
                recipe_id: subject.manifest.recipe.id.clone(),
                app_id: subject.app_id.clone(),
                deployment_id: subject.deployment_id.clone(),
            },
            request.backend.clone(),
            request.proxy.clone(),
            request.events.clone(),
            timeout,
            request.app_containers.clone(),
        ));
        let ctx = guest_context(&request);

        let result = tokio::select! {
            result = self.call(recipe, &request.action, &ctx, run.clone(), memory_mb, timeout) => result,
            () = request.cancel.cancelled() => {
                run.events.host("cancelled: stopping the recipe");
                Err(RunFailure::Cancelled)
            }
        };
        match result {
            Ok(ActionResult::Uninstalled) => {
                // The recipe has had its say; now the app's containers go.
                let (destroyed, left_behind) = destroy_all(&run, &request.app_containers).await;
                if !left_behind.is_empty() {
                    let failure = RunFailure::Recipe(RecipeError {
                        kind: "backend",
                        message: format!("uninstall could not destroy container(s) {}", left_behind.join(", ")),
                    });
                    return Err(RunError { failure, step: run.last_step(), destroyed, left_behind });
                }
                Ok(RunOutcome { result: ActionResult::Uninstalled, created: run.created(), destroyed })
            }
            Ok(result) => Ok(RunOutcome { result, created: run.created(), destroyed: Vec::new() }),
            Err(failure) => Err(self.clean_up_after(failure, &run, request.keep_failed).await),
        }
    }

    async fn call(
        &self,
        recipe: &LoadedRecipe,
        action: &Action,
        ctx: &types::Context,
        run: Arc<RunContext>,
        memory_mb: u32,
        timeout: Duration,
    ) -> Result<ActionResult, RunFailure> {
        let mut store = self.new_store(run.clone(), memory_mb, timeout);

        let instance = match recipe.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(err) => return Err(classify_trap(err, &store, run.last_error(), memory_mb, timeout, true)),
        };
        let lifecycle = instance.proximity_recipe_lifecycle();
        // Host calls already stop at the deadline; this outer bound is a
        // backstop for anything that does not.
        let bound = run.deadline + Duration::from_secs(1);
        let outcome = tokio::time::timeout_at(bound, async {
            Ok::<_, wasmtime::Error>(match action {
                Action::Install => {
                    lifecycle.call_install(&mut store, ctx).await?.map(|app| ActionResult::Installed { app })
                }
                Action::Uninstall => {
                    lifecycle.call_uninstall(&mut store, ctx).await?.map(|()| ActionResult::Uninstalled)
                }
                Action::Upgrade { from_version } => lifecycle
                    .call_upgrade(&mut store, ctx, from_version)
                    .await?
                    .map(|app| ActionResult::Upgraded { app }),
                Action::Health => {
                    lifecycle.call_health(&mut store, ctx).await?.map(|report| ActionResult::Health { report })
                }
            })
        })
        .await;
        match outcome {
            Err(_elapsed) => Err(RunFailure::Deadline(timeout)),
            Ok(Err(trap)) => Err(classify_trap(trap, &store, run.last_error(), memory_mb, timeout, false)),
            Ok(Ok(Err(recipe_error))) => Err(RunFailure::Recipe(recipe_error.into())),
            Ok(Ok(Ok(result))) => Ok(result),
        }
    }

    /// A store for one run: the memory limit, and a deadline enforced by epochs.
    fn new_store(&self, run: Arc<RunContext>, memory_mb: u32, timeout: Duration) -> Store<RunState> {
        let mut store = Store::new(&self.engine, RunState::new(run, memory_mb as usize * 1024 * 1024));
        store.limiter(|state| &mut state.limiter);
        let deadline = Instant::now() + timeout;
        // At every epoch tick a running recipe yields its thread (so a busy
        // loop cannot starve other runs) until the deadline, then traps.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(DeadlineExceeded(timeout).into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Instantiate a recipe in a fresh sandbox and drop it: the fixed cost of
    /// every run, measured by the benchmark.
    #[doc(hidden)]
    pub async fn instantiate_only(&self, recipe: &LoadedRecipe, manifest: &Manifest) -> Result<()> {
        let run = Arc::new(RunContext::new(
            manifest.grants.clone(),
            Ownership { recipe_id: manifest.recipe.id.clone(), app_id: "bench".into(), deployment_id: "bench".into() },
            Arc::new(crate::backend::sim::SimBackend::default()),
            Arc::new(crate::backend::NoProxies),
            EventSink::discard(),
            Duration::from_secs(60),
            Vec::new(),
        ));
        let mut store = self.new_store(run, manifest.limits.memory_mb, Duration::from_secs(60));
        recipe.pre.instantiate_async(&mut store).await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    async fn clean_up_after(&self, failure: RunFailure, run: &RunContext, keep_failed: bool) -> RunError {
        let mut error = RunError { failure, step: run.last_step(), destroyed: Vec::new(), left_behind: Vec::new() };
        let created = run.created();
        if keep_failed {
            if !created.is_empty() {
                run.events.host("keeping the failed run's containers, as asked");
            }
            error.left_behind = created.into_iter().map(|c| c.id).collect();
            return error;
        }
        let (destroyed, left_behind) = destroy_all(run, &created).await;
        error.destroyed = destroyed;
        error.left_behind = left_behind;
        error
    }
}

/// Stop and destroy `containers`, last first, each within [`CLEANUP_TIMEOUT`]:
/// (ids destroyed, ids that could not be).
async fn destroy_all(run: &RunContext, containers: &[ContainerRef]) -> (Vec<String>, Vec<String>) {
    let (mut destroyed, mut left_behind) = (Vec::new(), Vec::new());
    for container in containers.iter().rev() {
        // A container that will not stop is destroyed all the same.
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, run.backend.stop(container)).await;
        let result = tokio::time::timeout(CLEANUP_TIMEOUT, run.backend.destroy(container))
            .await
            .unwrap_or_else(|_| Err(BackendError::Timeout(format!("no answer within {}s", CLEANUP_TIMEOUT.as_secs()))));
        match result {
            Ok(()) => {
                run.events.host(&format!("destroyed container {}", container.id));
                destroyed.push(container.id.clone());
            }
            Err(err) => {
                run.events.host(&format!("could not destroy container {}: {err}", container.id));
                left_behind.push(container.id.clone());
            }
        }
    }
    (destroyed, left_behind)
}

/// Pools sized for `max_concurrent_runs` sandboxes. A component brings a few
/// core instances (its module plus adapter shims; interpreters more), so
/// those pools are larger than the component pool.
fn pooling_config(config: &RuntimeConfig) -> PoolingAllocationConfig {
    let runs = config.max_concurrent_runs;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(runs)
        // Interpreted recipes bring many core modules (a Python one: 14, plus
        // adapter shims); Rust ones a few.
        .total_core_instances(runs.saturating_mul(16))
        .total_memories(runs.saturating_mul(2))
        .total_tables(runs.saturating_mul(4))
        .total_stacks(runs)
        .max_core_instances_per_component(limits::MAX_INSTANCES as u32)
        .max_memories_per_component(limits::MAX_MEMORIES as u32)
        .max_memory_size(config.max_memory_mb as usize * 1024 * 1024);
    pool
}

/// Name a trap: the deadline, the memory limit, a rejected handle, or a crash.
fn classify_trap(
    trap: wasmtime::Error,
    store: &Store<RunState>,
    last_error: Option<String>,
    memory_mb: u32,
    timeout: Duration,
    instantiating: bool,
) -> RunFailure {
    if trap.is::<DeadlineExceeded>() {
        return RunFailure::Deadline(timeout);
    }
    if trap.is::<MemoryLimitExceeded>() || store.data().limiter.exceeded {
        return RunFailure::MemoryLimit(memory_mb);
    }
    let mut message = format!("{trap:#}");
    if let Some(last) = last_error {
        message.push_str(&format!(" (its last error message: {last})"));
    }
    if instantiating {
        RunFailure::Instantiate(message)
    } else {
        RunFailure::Crashed(message)
    }
}

/// The `context` record the recipe receives.
fn guest_context(request: &RunRequest) -> types::Context {
    let subject = &request.subject;
    types::Context {
        deployment_id: subject.deployment_id.clone(),
        app_id: subject.app_id.clone(),
        recipe_version: subject.manifest.recipe.version.to_string(),
        params: subject
            .params
            .values
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    ParamValue::Text(s) => types::ParamValue::Text(s.clone()),
                    ParamValue::Integer(i) => types::ParamValue::Integer(*i),
                    ParamValue::Boolean(b) => types::ParamValue::Boolean(*b),
                };
                (name.clone(), value)
            })
            .collect(),
        resources: types::Resources {
            cores: subject.resources.cores,
            memory_mb: subject.resources.memory_mb,
            swap_mb: subject.resources.swap_mb,
            disk_gb: subject.resources.disk_gb,
        },
        target: types::Target { backend: request.backend.name().to_string(), node: subject.node.clone() },
    }
}

/// Advances the engine's epoch until the runtime is dropped.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("proximity-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}
