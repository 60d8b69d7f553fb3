//! OpenSSH forced-command mode: Debian's `sshd` authenticates the key and
//! starts `proximity-proxy forced-command --config FILE --service NAME`
//! (from `command="…"` in `authorized_keys`) with the client's command line
//! in `SSH_ORIGINAL_COMMAND`. That line goes through the same
//! [`Service::execute`] as in the SSH server: same splitting, refusals,
//! whitelist, runner, timeout and output limit, same exit statuses and the
//! same audit line.
//!
//! Differences that come with sshd:
//! - stdout and stderr are the client's, so nothing but the command's output
//!   and the proxy's one-line messages is written there; the audit line goes
//!   to `audit_log` when set, else to syslog (facility `auth`).
//! - The key's fingerprint is read from `SSH_USER_AUTH` when sshd has
//!   `ExposeAuthInfo yes`; otherwise the record says `openssh`. The peer is
//!   taken from `SSH_CONNECTION`.
//! - Each command is its own process, so the proxy's per-key rate limit and
//!   session cap do not apply; sshd's `MaxStartups` and `MaxSessions` (and
//!   `PerSourceMaxStartups`) bound the load instead.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use russh::keys::{HashAlg, PublicKey};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditRecord, AuditSink, LineAudit, Outcome};
use crate::config::{ConfigError, ProxyConfig};
use crate::policy::Refusal;
use crate::runner::Chunk;
use crate::service::{Service, STDERR_TAG};

/// The fingerprint recorded when sshd does not say which key logged in.
pub const UNKNOWN_KEY: &str = "openssh";

/// Exit status when the proxy itself cannot be set up (bad configuration,
/// unknown service): as for a command that could not be started.
const SETUP_FAILED: i32 = 125;

/// What sshd tells the forced command about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshRequest {
    /// `SSH_ORIGINAL_COMMAND`; `None` when the client asked for a shell.
    pub command: Option<Vec<u8>>,
    /// The client's address, from `SSH_CONNECTION`.
    pub peer: String,
    /// `SHA256:…` of the key, from `SSH_USER_AUTH`, or [`UNKNOWN_KEY`].
    pub fingerprint: String,
}

impl SshRequest {
    /// Reads the request from the environment sshd set.
    pub fn from_env() -> SshRequest {
        SshRequest {
            command: std::env::var_os("SSH_ORIGINAL_COMMAND").map(|line| line.as_bytes().to_vec()),
            peer: peer_from_connection(std::env::var_os("SSH_CONNECTION")),
            fingerprint: std::env::var_os("SSH_USER_AUTH")
                .and_then(|path| fingerprint_from_user_auth(Path::new(&path)))
                .unwrap_or_else(|| UNKNOWN_KEY.to_owned()),
        }
    }
}

/// `SSH_CONNECTION` is `CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT`.
fn peer_from_connection(value: Option<OsString>) -> String {
    let value = value.map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
    let mut words = value.split_whitespace();
    match (words.next().and_then(|ip| ip.parse::<IpAddr>().ok()), words.next().and_then(|p| p.parse().ok())) {
        (Some(ip), Some(port)) => SocketAddr::new(ip, port).to_string(),
        _ => "unknown".to_owned(),
    }
}

/// The key of the first `publickey` line of sshd's `SSH_USER_AUTH` file.
fn fingerprint_from_user_auth(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let key = text.lines().find_map(|line| line.strip_prefix("publickey "))?;
    let key = PublicKey::from_openssh(key.trim()).ok()?;
    Some(key.fingerprint(HashAlg::Sha256).to_string())
}

#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no service {0:?} in the configuration")]
    UnknownService(String),
    #[error("cannot open the audit log {path}: {source}")]
    AuditLog { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// `proximity proxy forced-command --config PATH --service NAME`: runs the
/// command sshd was asked for (`SSH_ORIGINAL_COMMAND`) if `service`'s
/// whitelist allows it, passing its output through, and returns the exit
/// status for the process: the command's own, or 126 refused, 124 timed
/// out, 125 output limit or could not start. Blocks the calling thread,
/// which must not be inside a tokio runtime; installs no logger, and the
/// caller must not log to stderr either, since stderr is the client's.
pub fn run_forced_command(config_path: &Path, service: &str) -> i32 {
    run_request(config_path, service, SshRequest::from_env())
}

/// [`run_forced_command`] for a request given in full.
pub fn run_request(config_path: &Path, service: &str, request: SshRequest) -> i32 {
    match setup(config_path, service) {
        Ok((service, audit, runtime)) => runtime.block_on(execute(&service, &*audit, request)),
        Err(e) => {
            eprintln!("{STDERR_TAG}: cannot run the command: {e}");
            SETUP_FAILED
        }
    }
}

fn setup(config_path: &Path, name: &str) -> Result<(Service, Box<dyn AuditSink>, tokio::runtime::Runtime), SetupError> {
    let config = ProxyConfig::load(config_path)?;
    let service_config = config.services.get(name).ok_or_else(|| SetupError::UnknownService(name.to_owned()))?;
    let service = Service::from_config(name, service_config)?;
    let audit: Box<dyn AuditSink> = match &config.audit_log {
        Some(path) => {
            Box::new(LineAudit::append_to(path).map_err(|source| SetupError::AuditLog { path: path.clone(), source })?)
        }
        None => Box::new(LineAudit::syslog()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(SetupError::Runtime)?;
    Ok((service, audit, runtime))
}

async fn execute(service: &Service, audit: &dyn AuditSink, request: SshRequest) -> i32 {
    let started = Instant::now();
    let (argv, outcome) = match &request.command {
        None => (Vec::new(), Outcome::Refused(Refusal::NoCommand.to_string())),
        Some(line) => {
            let (tx, rx) = mpsc::channel(8);
            let (stop, cancel) = oneshot::channel();
            // One process per command: nothing to share a limit with.
            let admit = |_| Ok::<(), Refusal>(());
            let (result, ()) = tokio::join!(service.execute(line, admit, tx, cancel), pass_through(rx, stop));
            result
        }
    };
    if let Some(line) = service.stderr_line(&outcome) {
        let mut stderr = tokio::io::stderr();
        let _ = stderr.write_all(line.as_bytes()).await;
        let _ = stderr.flush().await;
    }
    audit.record(&AuditRecord {
        fingerprint: request.fingerprint,
        service: service.name.clone(),
        peer: request.peer,
        argv,
        outcome: outcome.clone(),
        duration: started.elapsed(),
    });
    outcome.exit_status() as i32
}

/// Copies the command's output to stdout and stderr. Stops the command
/// (by dropping `stop`) when the client is gone: a write fails, or sshd
/// hangs up or terminates the proxy.
async fn pass_through(mut output: mpsc::Receiver<Chunk>, stop: oneshot::Sender<()>) {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::hangup()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without the handlers a signal would still end the proxy, and
        // the command's process group would be left running.
        drop(stop);
        return;
    };
    loop {
        tokio::select! {
            chunk = output.recv() => {
                let written = match chunk {
                    None => break,
                    Some(Chunk::Stdout(data)) => write_all(&mut stdout, &data).await,
                    Some(Chunk::Stderr(data)) => write_all(&mut stderr, &data).await,
                };
                if written.is_err() {
                    break;
                }
            }
            _ = hangup.recv() => break,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(stop);
}

async fn write_all(out: &mut (impl AsyncWriteExt + Unpin), data: &[u8]) -> std::io::Result<()> {
    out.write_all(data).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_comes_from_ssh_connection() {
        let peer = |v: &str| peer_from_connection(Some(v.into()));
        assert_eq!(peer("192.0.2.7 51234 10.0.0.1 22"), "192.0.2.7:51234");
        assert_eq!(peer("2001:db8::7 51234 2001:db8::1 22"), "[2001:db8::7]:51234");
        assert_eq!(peer("garbage"), "unknown");
        assert_eq!(peer_from_connection(None), "unknown");
    }

    #[test]
    fn fingerprint_comes_from_ssh_user_auth() {
        let dir = tempfile::tempdir().unwrap();
        let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, format!("publickey {}\n", key.public_key().to_openssh().unwrap())).unwrap();
        let expected = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        assert_eq!(fingerprint_from_user_auth(&path), Some(expected));
        std::fs::write(&path, "password\n").unwrap();
        assert_eq!(fingerprint_from_user_auth(&path), None);
        assert_eq!(fingerprint_from_user_auth(&dir.path().join("missing")), None);
    }
}
