//! One audit record per exec request, whether it ran or was refused.
//!
//! Records go to a [`AuditSink`]: in the server that is [`TracingAudit`],
//! which writes one `tracing` event on the `proximity_proxy::audit` target;
//! tests use [`MemoryAudit`] to see exactly what was recorded.

use std::sync::Mutex;
use std::time::Duration;

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited (or was killed by a signal, as 128+N).
    Exited(i32),
    /// Refused before anything ran; the reason was sent to the client.
    Refused(String),
    /// Killed after the service's timeout.
    TimedOut,
    /// Killed after writing the service's maximum output.
    OutputLimit,
    /// The runner could not start it (container not found, no docker…).
    Failed(String),
    /// The client closed the channel or the connection first.
    Abandoned,
}

impl Outcome {
    /// The exit status reported to the client.
    pub fn exit_status(&self) -> u32 {
        match self {
            Outcome::Exited(code) => *code as u32,
            Outcome::Refused(_) => 126,
            Outcome::TimedOut => 124,
            Outcome::OutputLimit | Outcome::Failed(_) => 125,
            Outcome::Abandoned => 129,
        }
    }
}

/// What one request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// `SHA256:…` of the client's key.
    pub fingerprint: String,
    pub service: String,
    pub peer: String,
    /// The argv as split; for a line that could not be split, the raw line
    /// (lossily decoded) as one element.
    pub argv: Vec<String>,
    pub outcome: Outcome,
    pub duration: Duration,
}

pub trait AuditSink: Send + Sync {
    fn record(&self, record: &AuditRecord);
}

/// Writes each record as one `tracing` event. Values are printed with
/// `Debug` so that quotes and escapes cannot forge a second line or field.
#[derive(Debug, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, r: &AuditRecord) {
        let (exit, reason) = match &r.outcome {
            Outcome::Refused(reason) | Outcome::Failed(reason) => (r.outcome.exit_status(), reason.as_str()),
            Outcome::TimedOut => (r.outcome.exit_status(), "timed out"),
            Outcome::OutputLimit => (r.outcome.exit_status(), "output limit"),
            Outcome::Abandoned => (r.outcome.exit_status(), "abandoned by the client"),
            Outcome::Exited(_) => (r.outcome.exit_status(), ""),
        };
        tracing::info!(
            target: "proximity_proxy::audit",
            fingerprint = %r.fingerprint,
            service = %r.service,
            peer = %r.peer,
            argv = ?r.argv,
            exit,
            reason,
            duration_ms = r.duration.as_millis() as u64,
            "exec"
        );
    }
}

/// Keeps records in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAudit {
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap().clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: &AuditRecord) {
        self.records.lock().unwrap().push(record.clone());
    }
}
