//! The server's job manager: deployments, upgrades and uninstalls run as
//! jobs on a bounded worker pool; their events are stored (for late readers
//! and restarts) and broadcast (for live ones); a restarted server finds the
//! jobs a crash interrupted and cleans up after them.

mod journal;
mod metrics;
mod recovery;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::backend::{Backend, ProxyExecutor};
use crate::catalog::{Catalog, CatalogEntry};
use crate::runtime::{LoadedRecipe, Runtime};
use crate::store::Store;

pub use metrics::{Metered, Metrics};
pub use recovery::RecoveryReport;

/// Limits of the worker pool.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Jobs running at once, over all nodes.
    pub concurrency: usize,
    /// Jobs running at once on one node.
    pub per_node: usize,
    /// How long a shutdown waits for running jobs before cancelling them.
    pub shutdown_grace: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig { concurrency: 8, per_node: 4, shutdown_grace: Duration::from_secs(30) }
    }
}

/// What jobs run with.
pub struct Services {
    pub runtime: Arc<Runtime>,
    pub catalog: Catalog,
    pub backend: Arc<dyn Backend>,
    pub proxy: Arc<dyn ProxyExecutor>,
    pub store: Arc<Store>,
}

/// Why a request for a job (or about one) was refused. The server maps
/// each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Unknown recipe, version, job or app (404).
    #[error("{0}")]
    NotFound(String),
    /// Parameters or resources that do not validate (422), one entry per problem.
    #[error("invalid parameters: {}", .0.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; "))]
    InvalidParams(Vec<api::FieldProblem>),
    /// The app id is taken, or another job is working on the app (409).
    #[error("{0}")]
    Conflict(String),
    /// The server is shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Anything else: store, backend, recipe component (500).
    #[error("{0}")]
    Internal(String),
}

impl From<crate::store::StoreError> for JobError {
    fn from(err: crate::store::StoreError) -> Self {
        JobError::Internal(err.to_string())
    }
}

/// A job that is queued or running in this process.
struct Live {
    events: broadcast::Sender<api::JobEvent>,
    cancel: CancellationToken,
    app_id: String,
}

/// Start, stop or restart an app's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppAction {
    Start,
    Stop,
    Restart,
}

/// A job's events so far and, while it runs, the live rest.
pub struct Subscription {
    /// Stored events after the requested sequence number, in order.
    pub replay: Vec<api::JobEvent>,
    /// Events after `replay` (skip any whose seq is not greater than the last replayed),
    /// ending with the `end` event; `None` when the job has already finished.
    pub live: Option<broadcast::Receiver<api::JobEvent>>,
}

/// The job manager. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    services: Services,
    config: JobsConfig,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    node_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    live: Mutex<HashMap<String, Live>>,
    /// Stores, then broadcasts, the jobs' events.
    journal: journal::Journal,
    /// Catalog entries by recipe id, read again when their `recipe.toml` changes.
    entries: Mutex<HashMap<String, (FileStamp, CatalogEntry)>>,
    /// Loaded components by path, reloaded when the file's digest changes.
    recipes: Mutex<HashMap<PathBuf, (std::time::SystemTime, Arc<LoadedRecipe>)>>,
    /// One load at a time: simultaneous first requests compile once.
    loading: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    /// Set when a shutdown begins: no new jobs.
    closed: std::sync::atomic::AtomicBool,
    /// Cancelled when the grace period is over: running jobs stop.
    shutting_down: CancellationToken,
}

/// What a file looked like: a changed file has another mtime or length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: std::time::SystemTime,
    len: u64,
}

impl FileStamp {
    fn of(path: &std::path::Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp { modified: meta.modified().ok()?, len: meta.len() })
    }
}

/// The job id doubles as the deployment id that labels its containers.
fn job_url(id: &str) -> String {
    format!("{}/deployments/{id}", api::PREFIX)
}

fn accepted(job: &api::Job) -> api::JobAccepted {
    api::JobAccepted {
        id: job.id.clone(),
        app_id: job.app_id.clone(),
        url: job_url(&job.id),
        events_url: format!("{}/events", job_url(&job.id)),
    }
}

/// JSON parameter values as the text the manifest validates, and the
/// values that are neither text, number nor boolean.
fn param_texts(
    params: &std::collections::BTreeMap<String, serde_json::Value>,
) -> (std::collections::BTreeMap<String, String>, Vec<api::FieldProblem>) {
    let mut texts = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    for (name, value) in params {
        match value {
            serde_json::Value::String(s) => {
                texts.insert(name.clone(), s.clone());
            }
            serde_json::Value::Number(n) => {
                texts.insert(name.clone(), n.to_string());
            }
            serde_json::Value::Bool(b) => {
                texts.insert(name.clone(), b.to_string());
            }
            _ => problems.push(api::FieldProblem {
                field: name.clone(),
                problem: "must be a string, a number or a boolean".into(),
            }),
        }
    }
    (texts, problems)
}

fn field_problems(errors: crate::manifest::ParamErrors) -> Vec<api::FieldProblem> {
    errors.0.into_iter().map(|p| api::FieldProblem { field: p.name, problem: p.message }).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps behind these locks stay consistent between statements.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Jobs {
    pub fn new(services: Services, config: JobsConfig, metrics: Arc<Metrics>) -> Jobs {
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let journal = journal::Journal::start(services.store.clone());
        Jobs {
            inner: Arc::new(Inner {
                services,
                config,
                metrics,
                slots,
                node_slots: Mutex::default(),
                live: Mutex::default(),
                journal,
                entries: Mutex::default(),
                recipes: Mutex::default(),
                loading: tokio::sync::Mutex::default(),
                tasks: TaskTracker::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
                shutting_down: CancellationToken::new(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.services.store
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.services.runtime
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.services.catalog
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.services.backend.name()
    }

    pub fn proxy(&self) -> &Arc<dyn ProxyExecutor> {
        &self.inner.services.proxy
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// A catalog recipe and its loaded component (compiled once, then cached
    /// until the component file changes).
    pub async fn recipe(&self, id: &str) -> Result<(crate::catalog::CatalogEntry, Arc<LoadedRecipe>), JobError> {
        let entry = self.catalog_entry(id)?;
        let path = entry.component_path();
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(|err| {
            JobError::Internal(format!("recipe `{id}` has no built component at {}: {err}", path.display()))
        })?;
        let cached =
            || lock(&self.inner.recipes).get(&path).filter(|(when, _)| *when == modified).map(|(_, l)| l.clone());
        if let Some(loaded) = cached() {
            return Ok((entry, loaded));
        }
        let _loading = self.inner.loading.lock().await;
        if let Some(loaded) = cached() {
            return Ok((entry, loaded));
        }
        let loaded = self
            .inner
            .services
            .runtime
            .load(&path)
            .await
            .map_err(|err| JobError::Internal(format!("recipe `{id}`: {err:#}")))?;
        lock(&self.inner.recipes).insert(path, (modified, loaded.clone()));
        Ok((entry, loaded))
    }

    /// A catalog recipe by id; its manifest is parsed and validated again
    /// only when its `recipe.toml` changed since the last request.
    fn catalog_entry(&self, id: &str) -> Result<CatalogEntry, JobError> {
        let cached = lock(&self.inner.entries).get(id).cloned();
        if let Some((stamp, entry)) = cached {
            if FileStamp::of(&entry.dir.join("recipe.toml")) == Some(stamp) {
                return Ok(entry);
            }
        }
        // Stamped before reading: a change in between is read again next time.
        let stamp = FileStamp::of(&self.catalog().root().join(id).join("recipe.toml"));
        // Catalog ids only: `Catalog::find` also takes paths, which is right
        // for the local CLI and wrong for anything a client sends.
        let entry =
            self.catalog().by_id(id).map_err(|_| JobError::NotFound(format!("no recipe `{id}` in the catalog")))?;
        if let Some(stamp) = stamp {
            lock(&self.inner.entries).insert(id.to_string(), (stamp, entry.clone()));
        }
        Ok(entry)
    }

    /// Validate a deployment and queue its install job.
    pub async fn install(&self, request: api::DeployRequest) -> Result<api::JobAccepted, JobError> {
        self.refuse_when_shutting_down()?;
        let (entry, loaded) = self.recipe(&request.recipe).await?;
        let manifest = entry.manifest.clone();
        if let Some(version) = &request.version {
            if *version != manifest.recipe.version.to_string() {
                return Err(JobError::NotFound(format!(
                    "recipe `{}` has no version {version} here (this server has {})",
                    request.recipe, manifest.recipe.version
                )));
            }
        }
        if let Some(app_id) = &request.app_id {
            crate::backend::lxc::config::check_hostname(app_id).map_err(|err| {
                JobError::InvalidParams(vec![api::FieldProblem { field: "app_id".into(), problem: err.to_string() }])
            })?;
        }
        let (params, mut problems) = param_texts(&request.params);
        let input = crate::deploy::DeployInput {
            params,
            resources: crate::manifest::ResourceOverrides {
                cores: request.resources.cores,
                memory_mb: request.resources.memory_mb,
                swap_mb: None,
                disk_gb: request.resources.disk_gb,
            },
            node: request.target.node.clone(),
            app_id: request.app_id.clone(),
            keep_failed: false,
        };
        // Every problem at once: the JSON types above and the manifest's checks.
        let prepared = match crate::deploy::prepare(manifest.clone(), input) {
            Ok(prepared) if problems.is_empty() => prepared,
            Ok(_) => return Err(JobError::InvalidParams(problems)),
            Err(errors) => {
                problems.extend(field_problems(errors));
                return Err(JobError::InvalidParams(problems));
            }
        };
        let app_id = prepared.subject.app_id.clone();
        if !request.dry_run && self.store().app(&app_id)?.is_some() {
            return Err(JobError::Conflict(format!("an app named `{app_id}` already exists")));
        }
        let job = api::Job::queued(
            &prepared.subject.deployment_id,
            api::JobKind::Install,
            &manifest.recipe.id,
            &manifest.recipe.version.to_string(),
            &app_id,
            request.dry_run,
        );
        let work = worker::Work { job, entry, loaded, prepared, app: None, dry_run: request.dry_run };
        self.enqueue(work)
    }

    /// Queue an upgrade of an app to the catalog's version of its recipe.
    pub async fn upgrade(&self, app_id: &str, request: api::UpgradeRequest) -> Result<api::JobAccepted, JobError> {
        self.app_job(app_id, api::JobKind::Upgrade, request.version).await
    }

    /// Queue the uninstall of an app: its recipe's `uninstall`, then its containers go.
    pub async fn uninstall(&self, app_id: &str) -> Result<api::JobAccepted, JobError> {
        self.app_job(app_id, api::JobKind::Uninstall, None).await
    }

    async fn app_job(
        &self,
        app_id: &str,
        kind: api::JobKind,
        version: Option<String>,
    ) -> Result<api::JobAccepted, JobError> {
        self.refuse_when_shutting_down()?;
        let record = self.store().app(app_id)?.ok_or_else(|| JobError::NotFound(format!("no app `{app_id}`")))?;
        let (entry, loaded) = self.recipe(&record.app.recipe).await?;
        let manifest = entry.manifest.clone();
        if let Some(version) = &version {
            if *version != manifest.recipe.version.to_string() {
                return Err(JobError::NotFound(format!(
                    "recipe `{}` has no version {version} here (this server has {})",
                    record.app.recipe, manifest.recipe.version
                )));
            }
        }
        // The app's own parameters, secrets included, validated again
        // against the manifest that will run.
        let mut params = record.param_values.clone();
        params.extend(self.store().secrets(app_id)?);
        let input = crate::deploy::DeployInput {
            params,
            app_id: Some(app_id.to_string()),
            node: record.app.node.clone(),
            ..Default::default()
        };
        let prepared = crate::deploy::prepare(manifest.clone(), input)
            .map_err(|errors| JobError::InvalidParams(field_problems(errors)))?;
        let job = api::Job::queued(
            &prepared.subject.deployment_id,
            kind,
            &manifest.recipe.id,
            &manifest.recipe.version.to_string(),
            app_id,
            false,
        );
        let work = worker::Work { job, entry, loaded, prepared, app: Some(record), dry_run: false };
        self.enqueue(work)
    }

    fn refuse_when_shutting_down(&self) -> Result<(), JobError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            Err(JobError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Record the job and hand it to the pool; one job per app at a time.
    fn enqueue(&self, work: worker::Work) -> Result<api::JobAccepted, JobError> {
        let (events, _) = broadcast::channel(1024);
        let cancel = self.inner.shutting_down.child_token();
        {
            let mut live = lock(&self.inner.live);
            if !work.dry_run {
                if let Some((id, _)) = live.iter().find(|(_, l)| l.app_id == work.job.app_id) {
                    return Err(JobError::Conflict(format!(
                        "job {id} is already working on app `{}`",
                        work.job.app_id
                    )));
                }
            }
            let app_id = if work.dry_run { String::new() } else { work.job.app_id.clone() };
            live.insert(work.job.id.clone(), Live { events: events.clone(), cancel: cancel.clone(), app_id });
        }
        // The recipe version is recorded as seen with the job, in one commit.
        if let Err(err) = self.store().insert_job_of_recipe(&work.job, &work.loaded.digest) {
            lock(&self.inner.live).remove(&work.job.id);
            return Err(err.into());
        }
        if let (Some(_), api::JobKind::Upgrade) = (&work.app, work.job.kind) {
            self.store().set_app_state(&work.job.app_id, api::AppState::Deploying)?;
        }
        if let (Some(_), api::JobKind::Uninstall) = (&work.app, work.job.kind) {
            self.store().set_app_state(&work.job.app_id, api::AppState::Removing)?;
        }
        let reply = accepted(&work.job);
        let jobs = self.clone();
        self.inner.tasks.spawn(async move { jobs.run(work, events, cancel).await });
        Ok(reply)
    }

    /// Ask a queued or running job to stop; what it created is cleaned up.
    pub fn cancel(&self, job_id: &str) -> Result<api::Job, JobError> {
        let job = self.store().job(job_id)?.ok_or_else(|| JobError::NotFound(format!("no job `{job_id}`")))?;
        if job.state.is_finished() {
            return Err(JobError::Conflict(format!("job {job_id} has already finished ({})", job.state.as_str())));
        }
        match lock(&self.inner.live).get(job_id) {
            Some(live) => live.cancel.cancel(),
            None => return Err(JobError::Conflict(format!("job {job_id} is not running in this server"))),
        }
        Ok(job)
    }

    /// A job's events after `after_seq`, then the live rest while it runs.
    pub fn subscribe(&self, job_id: &str, after_seq: u64) -> Result<Subscription, JobError> {
        // Subscribe before reading the store, so nothing falls between the two.
        let live = lock(&self.inner.live).get(job_id).map(|l| l.events.subscribe());
        if self.store().job(job_id)?.is_none() {
            return Err(JobError::NotFound(format!("no job `{job_id}`")));
        }
        let replay = self.store().events_after(job_id, after_seq)?;
        let finished = replay.last().is_some_and(|e| e.kind == "end");
        Ok(Subscription { replay, live: if finished { None } else { live } })
    }

    /// Start, stop or restart every container of an app.
    pub async fn app_action(&self, app_id: &str, action: AppAction) -> Result<api::App, JobError> {
        let record = self.store().app(app_id)?.ok_or_else(|| JobError::NotFound(format!("no app `{app_id}`")))?;
        if lock(&self.inner.live).values().any(|l| l.app_id == app_id) {
            return Err(JobError::Conflict(format!("a job is working on app `{app_id}`")));
        }
        let backend = &self.inner.services.backend;
        let fail = |err: crate::backend::BackendError| JobError::Internal(format!("app `{app_id}`: {err}"));
        if matches!(action, AppAction::Stop | AppAction::Restart) {
            for c in record.container_refs.iter().rev() {
                backend.stop(c).await.map_err(fail)?;
            }
        }
        if matches!(action, AppAction::Start | AppAction::Restart) {
            for c in &record.container_refs {
                backend.start(c).await.map_err(fail)?;
            }
        }
        let state = if action == AppAction::Stop { api::AppState::Stopped } else { api::AppState::Running };
        self.store().set_app_state(app_id, state)?;
        let record = self.store().app(app_id)?.ok_or_else(|| JobError::NotFound(format!("no app `{app_id}`")))?;
        Ok(record.app)
    }

    /// The app's health report (its recipe's `health`) and the last lines of
    /// its main container's journal.
    pub async fn app_logs(&self, app_id: &str) -> Result<api::AppLogs, JobError> {
        worker::app_logs(self, app_id).await
    }

    /// Stop taking jobs; let running ones finish within the grace period,
    /// then cancel them (their containers are cleaned up) and wait.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.tasks.close();
        let grace = self.inner.config.shutdown_grace;
        if tokio::time::timeout(grace, self.inner.tasks.wait()).await.is_err() {
            tracing::warn!("jobs still running after {}s: cancelling them", grace.as_secs());
            self.inner.shutting_down.cancel();
            self.inner.tasks.wait().await;
        }
        self.inner.shutting_down.cancel();
    }

    /// The semaphore limiting jobs on one node.
    fn node_slots(&self, node: &str) -> Arc<Semaphore> {
        lock(&self.inner.node_slots)
            .entry(node.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.config.per_node.max(1))))
            .clone()
    }
}
