//! One audit record per exec request, whether it ran or was refused.
//!
//! Records go to a [`AuditSink`]: in the server that is [`TracingAudit`],
//! which writes one `tracing` event on the `proximity_proxy::audit` target;
//! [`LineAudit`] writes that same line to a file or to syslog, whatever the
//! process's own logging is (OpenSSH forced-command mode, where stderr
//! belongs to the client); tests use [`MemoryAudit`] to see exactly what was
//! recorded.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::config::ProxyConfig;

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

/// Where a [`LineAudit`] writes.
#[derive(Debug, Clone)]
enum Destination {
    /// Appended to a file opened with `O_APPEND`, so that the lines of
    /// several processes do not interleave.
    File(Arc<File>),
    /// Syslog, facility `auth`: next to sshd's own login lines.
    Syslog,
}

/// Writes each record as the line [`TracingAudit`] prints, through a
/// subscriber of its own, so it neither depends on nor goes to the
/// process's log.
#[derive(Debug, Clone)]
pub struct LineAudit {
    destination: Destination,
}

impl LineAudit {
    /// Appends to `path`, created (0640) when missing.
    pub fn append_to(path: &Path) -> std::io::Result<LineAudit> {
        let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o640).open(path)?;
        Ok(LineAudit { destination: Destination::File(Arc::new(file)) })
    }

    /// Sends each line to syslog (facility `auth`, ident `proximity-proxy`).
    pub fn syslog() -> LineAudit {
        LineAudit { destination: Destination::Syslog }
    }
}

impl AuditSink for LineAudit {
    fn record(&self, record: &AuditRecord) {
        let builder = tracing_subscriber::fmt().with_ansi(false);
        match &self.destination {
            Destination::File(file) => {
                let file = file.clone();
                let subscriber = builder.with_writer(move || file.clone()).finish();
                tracing::subscriber::with_default(subscriber, || TracingAudit.record(record));
            }
            // Syslog stamps the time itself.
            Destination::Syslog => {
                let subscriber = builder.without_time().with_writer(|| SyslogLine).finish();
                tracing::subscriber::with_default(subscriber, || TracingAudit.record(record));
            }
        }
    }
}

/// One `write` per formatted event, sent as one syslog message.
struct SyslogLine;

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        static OPEN: Once = Once::new();
        OPEN.call_once(|| {
            // SAFETY: the ident is a static C string, valid for as long as
            // syslog may use it.
            unsafe { libc::openlog(c"proximity-proxy".as_ptr(), libc::LOG_PID, libc::LOG_AUTH) };
        });
        let text = String::from_utf8_lossy(data);
        let line = CString::new(text.trim_end().replace('\0', "")).unwrap_or_default();
        // SAFETY: a constant "%s" format with one NUL-terminated string.
        unsafe { libc::syslog(libc::LOG_INFO, c"%s".as_ptr(), line.as_ptr()) };
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands every record to each sink in turn.
pub struct Tee(pub Vec<Box<dyn AuditSink>>);

impl AuditSink for Tee {
    fn record(&self, record: &AuditRecord) {
        for sink in &self.0 {
            sink.record(record);
        }
    }
}

/// The server's audit: its log, and the `audit_log` file when one is set.
pub fn for_server(config: &ProxyConfig) -> std::io::Result<Arc<dyn AuditSink>> {
    Ok(match &config.audit_log {
        None => Arc::new(TracingAudit),
        Some(path) => Arc::new(Tee(vec![Box::new(TracingAudit), Box::new(LineAudit::append_to(path)?)])),
    })
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(record: &AuditRecord) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).without_time().finish();
        tracing::subscriber::with_default(subscriber, || TracingAudit.record(record));
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn record(argv: &[&str], outcome: Outcome) -> AuditRecord {
        AuditRecord {
            fingerprint: "SHA256:abc".into(),
            service: "nextcloud".into(),
            peer: "127.0.0.1:4000".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            outcome,
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn one_line_with_every_field() {
        let line = logged(&record(&["php", "occ", "files:scan", "--all"], Outcome::Exited(0)));
        assert_eq!(line.lines().count(), 1, "{line}");
        for field in [
            "proximity_proxy::audit",
            "fingerprint=SHA256:abc",
            "service=nextcloud",
            "peer=127.0.0.1:4000",
            r#"argv=["php", "occ", "files:scan", "--all"]"#,
            "exit=0",
            "duration_ms=1500",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }

    /// The line reaches the file even when the process's own subscriber
    /// would drop it.
    #[test]
    fn line_audit_appends_the_same_line_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = LineAudit::append_to(&path).unwrap();
        let quiet = tracing_subscriber::fmt().with_max_level(tracing::Level::ERROR).with_writer(std::io::sink).finish();
        let sample = record(&["php", "occ", "status"], Outcome::Exited(0));
        tracing::subscriber::with_default(quiet, || {
            audit.record(&sample);
            audit.record(&sample);
        });
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 2, "{written}");
        let expected = logged(&sample);
        // The same line, after the timestamp the file adds.
        assert!(written.lines().all(|line| line.ends_with(expected.trim())), "{written}\n{expected}");
    }

    #[test]
    fn a_refused_line_cannot_forge_another_line() {
        let line =
            logged(&record(&["x\nINFO exec service=admin exit=0"], Outcome::Refused("command not allowed".into())));
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains("exit=126") && line.contains(r#"reason="command not allowed""#), "{line}");
    }
}
