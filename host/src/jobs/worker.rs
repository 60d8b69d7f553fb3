//! One job from queue to final state: wait for a slot, run the recipe,
//! record every event, then store what the run made of the app.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::journal::Journal;
use super::{lock, JobError, Jobs};
use crate::api;
use crate::backend::sim::{SimBackend, SimScript};
use crate::backend::{Backend, ExecRequest};
use crate::catalog::CatalogEntry;
use crate::deploy::PreparedDeploy;
use crate::events::{Event, EventKind, EventSink};
use crate::runtime::{Action, ActionResult, LoadedRecipe, RunError, RunFailure, RunOutcome};
use crate::store::{now_rfc3339, AppRecord};

/// A validated job, ready for the pool.
pub(super) struct Work {
    pub job: api::Job,
    pub entry: CatalogEntry,
    pub loaded: Arc<LoadedRecipe>,
    pub prepared: PreparedDeploy,
    /// The app an upgrade or uninstall works on.
    pub app: Option<AppRecord>,
    pub dry_run: bool,
}

/// Numbers a job's events and hands them to the journal, which stores and
/// then broadcasts them.
#[derive(Clone)]
struct Recorder {
    journal: Journal,
    job_id: Arc<str>,
    /// The last seq given out. Held while queueing, so the journal gets
    /// the job's events in seq order.
    seq: Arc<Mutex<u64>>,
    started: Instant,
    live: broadcast::Sender<api::JobEvent>,
}

impl Recorder {
    fn record(&self, kind: &str, fill: impl FnOnce(&mut api::JobEvent)) {
        let mut seq = lock(&self.seq);
        *seq += 1;
        let mut event = api::JobEvent::new(*seq, self.started.elapsed().as_millis() as u64, kind);
        fill(&mut event);
        self.journal.append(&self.job_id, event, &self.live);
    }

    /// Record the job's final state and its `end` event (which carries the
    /// job as stored), and wait until both are stored and the end is sent.
    async fn finish(&self, outcome: (api::JobState, Option<serde_json::Value>, Option<serde_json::Value>)) {
        {
            let mut seq = lock(&self.seq);
            *seq += 1;
            let end = api::JobEvent::new(*seq, self.started.elapsed().as_millis() as u64, "end");
            self.journal.finish(&self.job_id, outcome, end, &self.live);
        }
        self.journal.flush().await;
    }

    fn run_event(&self, event: Event) {
        match event.kind {
            EventKind::Step { name } => self.record("step", |e| e.name = Some(name)),
            EventKind::Log { level, message } => self.record("log", |e| {
                e.level = Some(format!("{level:?}").to_lowercase());
                e.message = Some(message);
            }),
            EventKind::Host { message } => self.record("host", |e| e.message = Some(message)),
        }
    }

    fn host(&self, message: &str) {
        self.record("host", |e| e.message = Some(message.to_string()));
    }
}

impl Jobs {
    pub(super) async fn run(&self, work: Work, events: broadcast::Sender<api::JobEvent>, cancel: CancellationToken) {
        let recorder = Recorder {
            journal: self.inner.journal.clone(),
            job_id: work.job.id.as_str().into(),
            seq: Arc::default(),
            started: Instant::now(),
            live: events,
        };
        let kind = work.job.kind;
        let node = work.prepared.subject.node.clone().unwrap_or_else(|| "default".into());
        let node_slots = self.node_slots(&node);
        let global = self.inner.slots.clone();
        let permits = tokio::select! {
            permits = async {
                let a = global.acquire_owned().await;
                let b = node_slots.acquire_owned().await;
                (a, b)
            } => Some(permits),
            () = cancel.cancelled() => None,
        };
        let (state, result, error) = match permits {
            None => {
                recorder.host("cancelled before it started");
                (
                    api::JobState::Cancelled,
                    None,
                    Some(json!({"kind": "cancelled", "message": "cancelled while queued"})),
                )
            }
            Some(_permits) => {
                // Stored with the job's first events, in their transaction.
                recorder.journal.running(&recorder.job_id);
                self.metrics().job_started();
                let started = Instant::now();
                let (state, result, error) = self.execute(&work, &recorder, cancel).await;
                self.metrics().job_finished(&format!("{kind:?}").to_lowercase(), state.as_str(), started.elapsed());
                (state, result, error)
            }
        };
        // Stored and sent before the job stops being live: a reader that
        // finds no live job finds the end in the store.
        recorder.finish((state, result, error)).await;
        lock(&self.inner.live).remove(&work.job.id);
    }

    /// Run the recipe; (final state, result, error).
    async fn execute(
        &self,
        work: &Work,
        recorder: &Recorder,
        cancel: CancellationToken,
    ) -> (api::JobState, Option<serde_json::Value>, Option<serde_json::Value>) {
        let services = &self.inner.services;
        let sim = if work.dry_run {
            match SimScript::for_recipe(&work.entry.dir) {
                Ok(script) => Some(SimBackend::new(script)),
                Err(err) => {
                    let message = format!("the recipe's simulator script is invalid: {err:#}");
                    return (api::JobState::Failed, None, Some(json!({"kind": "invalid-recipe", "message": message})));
                }
            }
        } else {
            None
        };
        let backend: Arc<dyn Backend> = match &sim {
            Some(sim) => Arc::new(sim.clone()),
            None => services.backend.clone(),
        };
        let (sink, mut rx) = EventSink::channel(work.prepared.redactor());
        let forward = {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    recorder.run_event(event);
                }
            })
        };
        let containers = work.app.as_ref().map(|a| a.container_refs.clone()).unwrap_or_default();
        let proxy = services.proxy.clone();
        let mut request = match (work.job.kind, &work.app) {
            (api::JobKind::Upgrade, Some(app)) => work.prepared.request(
                Action::Upgrade { from_version: app.app.version.clone() },
                containers,
                backend,
                proxy,
                sink,
            ),
            (api::JobKind::Uninstall, _) => work.prepared.uninstall_request(containers, backend, proxy, sink),
            _ => work.prepared.install_request(backend, proxy, sink),
        };
        request.cancel = cancel;
        let outcome = services.runtime.run(&work.loaded, request).await;
        // The run has dropped its sinks: the forwarder drains and ends.
        let _ = forward.await;
        match outcome {
            Ok(outcome) => match self.record_success(work, &outcome, sim.as_ref()) {
                Ok(result) => (api::JobState::Succeeded, Some(result), None),
                Err(err) => {
                    recorder.host(&format!("the run succeeded but could not be recorded: {err}"));
                    (api::JobState::Failed, None, Some(json!({"kind": "store", "message": err.to_string()})))
                }
            },
            Err(err) => {
                let state = if matches!(err.failure, RunFailure::Cancelled) {
                    api::JobState::Cancelled
                } else {
                    api::JobState::Failed
                };
                self.record_failure(work, &err);
                (state, None, Some(error_json(&err)))
            }
        }
    }

    /// Store the app as the run left it; the job's result JSON.
    fn record_success(
        &self,
        work: &Work,
        outcome: &RunOutcome,
        sim: Option<&SimBackend>,
    ) -> Result<serde_json::Value, JobError> {
        let mut result = serde_json::to_value(&outcome.result).map_err(|e| JobError::Internal(e.to_string()))?;
        if let Some(sim) = sim {
            // The plan holds file texts and argv: secrets are replaced as everywhere else.
            let plan = serde_json::to_string(&sim.plan()).map_err(|e| JobError::Internal(e.to_string()))?;
            let plan = work.prepared.redactor().redact(&plan);
            result["plan"] = serde_json::from_str(&plan).map_err(|e| JobError::Internal(e.to_string()))?;
            return Ok(result);
        }
        let store = self.store();
        match (&outcome.result, &work.app) {
            (ActionResult::Installed { app: info }, None) => {
                let record = self.new_app_record(work, info, outcome);
                store.put_app(&record)?;
                let secrets = secret_values(&work.prepared);
                if !secrets.is_empty() {
                    store.put_secrets(&record.app.id, &secrets)?;
                }
            }
            (ActionResult::Upgraded { app: info }, Some(old)) => {
                let mut record = old.clone();
                let app = &mut record.app;
                app.version = work.job.version.clone();
                app.digest = work.loaded.digest.clone();
                app.state = api::AppState::Running;
                app.url = info.url.clone();
                app.address = info.address.clone();
                app.ports = info.ports.clone();
                app.outputs = info.outputs.iter().cloned().collect();
                app.deployment_id = work.job.id.clone();
                app.updated_at = now_rfc3339();
                record.container_refs.extend(outcome.created.iter().cloned());
                record.app.containers = record.container_refs.iter().map(|c| c.id.clone()).collect();
                store.put_app(&record)?;
            }
            (ActionResult::Uninstalled, Some(old)) => {
                store.delete_app(&old.app.id)?;
            }
            _ => {}
        }
        Ok(result)
    }

    fn new_app_record(&self, work: &Work, info: &crate::bindings::types::AppInfo, outcome: &RunOutcome) -> AppRecord {
        let params = &work.prepared.subject.params;
        let now = now_rfc3339();
        let shown: BTreeMap<String, String> = params
            .values
            .iter()
            .map(|(name, value)| {
                let text = if params.is_secret(name) { format!("«secret:{name}»") } else { value.to_string() };
                (name.clone(), text)
            })
            .collect();
        let clear: BTreeMap<String, String> = params
            .values
            .iter()
            .filter(|(name, _)| !params.is_secret(name))
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect();
        AppRecord {
            app: api::App {
                id: work.job.app_id.clone(),
                recipe: work.job.recipe.clone(),
                version: work.job.version.clone(),
                digest: work.loaded.digest.clone(),
                state: api::AppState::Running,
                url: info.url.clone(),
                address: info.address.clone(),
                ports: info.ports.clone(),
                outputs: info.outputs.iter().cloned().collect(),
                containers: outcome.created.iter().map(|c| c.id.clone()).collect(),
                params: shown,
                secrets: params.secret_names.iter().cloned().collect(),
                node: outcome.created.first().and_then(|c| c.node.clone()).or(work.prepared.subject.node.clone()),
                deployment_id: work.job.id.clone(),
                created_at: now.clone(),
                updated_at: now,
            },
            backend: self.backend_name().to_string(),
            container_refs: outcome.created.clone(),
            param_values: clear,
        }
    }

    /// A failed upgrade or uninstall leaves the app marked failed.
    fn record_failure(&self, work: &Work, _err: &RunError) {
        if let Some(app) = &work.app {
            if let Err(err) = self.store().set_app_state(&app.app.id, api::AppState::Failed) {
                tracing::error!(app = %app.app.id, "cannot mark the app failed: {err}");
            }
        }
    }
}

fn secret_values(prepared: &PreparedDeploy) -> BTreeMap<String, String> {
    let params = &prepared.subject.params;
    params
        .values
        .iter()
        .filter(|(name, _)| params.is_secret(name))
        .map(|(name, value)| (name.clone(), value.to_string()))
        .collect()
}

fn error_json(err: &RunError) -> serde_json::Value {
    let mut value = serde_json::to_value(err).unwrap_or_else(|_| json!({}));
    value["message"] = json!(err.to_string());
    value
}

/// How many journal lines `GET /apps/{id}/logs` returns.
const LOG_LINES: &str = "200";

pub(super) async fn app_logs(jobs: &Jobs, app_id: &str) -> Result<api::AppLogs, JobError> {
    let record = jobs.store().app(app_id)?.ok_or_else(|| JobError::NotFound(format!("no app `{app_id}`")))?;
    let backend = jobs.inner.services.backend.clone();
    let health = health_report(jobs, &record).await;
    let mut lines = Vec::new();
    if let Some(main) = record.container_refs.first() {
        let request = ExecRequest {
            argv: ["journalctl", "--no-pager", "-o", "short-iso", "-n", LOG_LINES].map(String::from).to_vec(),
            timeout: Duration::from_secs(15),
            ..Default::default()
        };
        if let Ok(out) = backend.exec(main, &request).await {
            if out.status == 0 {
                lines = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
            }
        }
    }
    if lines.is_empty() {
        // No journal (or a simulator): the app's last job tells what happened.
        let events = jobs.store().events_after(&record.app.deployment_id, 0)?;
        lines = events.iter().filter(|e| e.kind != "end").map(format_event).collect();
    }
    Ok(api::AppLogs { health, lines })
}

fn format_event(event: &api::JobEvent) -> String {
    let secs = event.elapsed_ms as f64 / 1000.0;
    let text = event.name.as_deref().or(event.message.as_deref()).unwrap_or_default();
    format!("[{secs:7.2}s] {}: {text}", event.kind)
}

/// The recipe's own health report, when it answers.
async fn health_report(jobs: &Jobs, record: &AppRecord) -> Option<serde_json::Value> {
    let (entry, loaded) = jobs.recipe(&record.app.recipe).await.ok()?;
    let mut params = record.param_values.clone();
    params.extend(jobs.store().secrets(&record.app.id).ok()?);
    let input = crate::deploy::DeployInput {
        params,
        app_id: Some(record.app.id.clone()),
        node: record.app.node.clone(),
        ..Default::default()
    };
    let prepared = crate::deploy::prepare(entry.manifest.clone(), input).ok()?;
    let services = &jobs.inner.services;
    let request = prepared.request(
        Action::Health,
        record.container_refs.clone(),
        services.backend.clone(),
        services.proxy.clone(),
        EventSink::discard(),
    );
    match services.runtime.run(&loaded, request).await {
        Ok(RunOutcome { result: ActionResult::Health { report }, .. }) => serde_json::to_value(report).ok(),
        Ok(_) => None,
        Err(err) => Some(json!({"healthy": false, "error": err.to_string()})),
    }
}
