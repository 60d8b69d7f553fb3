//! After a crash: jobs the store says were queued or running belong to a
//! server that is gone. Each is marked interrupted; the containers labelled
//! with its id are destroyed, unless its install had already been recorded
//! as an app, which then keeps them. What was done is written to the job's
//! own events, so the operator reads it where they look for the job.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{JobError, Jobs};
use crate::api;
use crate::store::now_rfc3339;

/// How long one container may take to stop and be destroyed during recovery.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoveryReport {
    /// Jobs marked interrupted.
    pub interrupted: Vec<String>,
    /// Containers destroyed.
    pub destroyed: Vec<String>,
    /// Containers kept because an app owns them.
    pub adopted: Vec<String>,
    /// Containers that could not be destroyed, with the reason.
    pub failed: Vec<String>,
}

impl Jobs {
    /// Run once at start, before the server takes requests.
    pub async fn recover(&self) -> Result<RecoveryReport, JobError> {
        let store = self.store();
        let stale = store.jobs_in_states(&[api::JobState::Queued, api::JobState::Running])?;
        let mut report = RecoveryReport::default();
        if stale.is_empty() {
            return Ok(report);
        }
        let owned = self
            .inner
            .services
            .backend
            .owned()
            .await
            .map_err(|err| JobError::Internal(format!("listing the backend's containers: {err}")))?;
        for job in stale {
            let mut notes = vec![format!("the server stopped while this job was {}", job.state.as_str())];
            let app = store.app(&job.app_id)?;
            let app_containers: Vec<String> = app.as_ref().map(|a| a.app.containers.clone()).unwrap_or_default();
            for (container, owner) in owned.iter().filter(|(_, owner)| owner.deployment_id == job.id) {
                if app_containers.contains(&container.id) {
                    notes.push(format!("kept container {}: app `{}` owns it", container.id, job.app_id));
                    report.adopted.push(container.id.clone());
                    continue;
                }
                let backend = &self.inner.services.backend;
                let _ = tokio::time::timeout(DESTROY_TIMEOUT, backend.stop(container)).await;
                match tokio::time::timeout(DESTROY_TIMEOUT, backend.destroy(container)).await {
                    Ok(Ok(())) => {
                        notes.push(format!("destroyed container {} (app `{}`)", container.id, owner.app_id));
                        report.destroyed.push(container.id.clone());
                    }
                    Ok(Err(err)) => {
                        notes.push(format!("could not destroy container {}: {err}", container.id));
                        report.failed.push(format!("{}: {err}", container.id));
                    }
                    Err(_) => {
                        notes.push(format!("could not destroy container {}: no answer in time", container.id));
                        report.failed.push(format!("{}: timeout", container.id));
                    }
                }
            }
            if job.kind != api::JobKind::Install && app.is_some() {
                // An upgrade or uninstall stopped halfway: the app needs a look.
                store.set_app_state(&job.app_id, api::AppState::Failed)?;
                notes.push(format!("app `{}` marked failed: its {:?} was cut short", job.app_id, job.kind));
            }
            let mut seq = store.last_seq(&job.id)?;
            let mut events = Vec::new();
            for note in &notes {
                seq += 1;
                let message = Some(format!("recovery at {}: {note}", now_rfc3339()));
                events.push(api::JobEvent { message, ..api::JobEvent::new(seq, 0, "host") });
            }
            let error = json!({"kind": "interrupted", "message": notes.join("; ")});
            store.set_job_state(&job.id, api::JobState::Interrupted, None, Some(&error))?;
            seq += 1;
            let finished = store.job(&job.id)?.map(Box::new);
            events.push(api::JobEvent { job: finished, ..api::JobEvent::new(seq, 0, "end") });
            store.append_events(&job.id, &events)?;
            tracing::warn!(job = %job.id, "recovered an interrupted job: {}", notes.join("; "));
            report.interrupted.push(job.id);
        }
        Ok(report)
    }
}
