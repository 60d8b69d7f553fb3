//! The SSH side: who may log in, which requests are answered, and running
//! an `exec` request through the policy and the service's runner.
//!
//! Only `publickey` authentication with an `ssh-ed25519` key listed in a
//! service's authorized keys succeeds. Only session channels open, and on
//! them only one `exec` request each is honoured: shells, PTYs, subsystems
//! (SFTP), environment variables, X11, agent and port forwarding are all
//! refused. A refused command line is answered with a one-line reason on
//! stderr and exit status 126, as a shell would for "cannot execute".

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditRecord, AuditSink, Outcome};
use crate::config::ProxyConfig;
use crate::limits::Limiter;
use crate::runner::Chunk;
use crate::service::Service;

/// Session channels one connection may have open at once.
const MAX_CHANNELS_PER_CONNECTION: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

fn key_error(path: &Path, message: impl ToString) -> ServerError {
    ServerError::Key { path: path.to_owned(), message: message.to_string() }
}

/// A service and the keys that may log in to it.
#[derive(Debug)]
struct Served {
    service: Service,
    keys: Vec<PublicKey>,
}

/// Everything the connections share.
pub struct Proxy {
    services: Vec<Served>,
    limiter: Limiter,
    audit: Arc<dyn AuditSink>,
}

impl Proxy {
    /// Reads the authorized keys and compiles the rules of every service.
    pub fn from_config(config: &ProxyConfig, audit: Arc<dyn AuditSink>) -> Result<Proxy, ServerError> {
        config.validate()?;
        let mut services = Vec::new();
        for (name, service) in &config.services {
            let keys = read_authorized_keys(&service.authorized_keys)?;
            if keys.is_empty() {
                tracing::warn!(service = %name, "no ssh-ed25519 key in {}", service.authorized_keys.display());
            }
            if let crate::config::RunnerConfig::Docker { user: None, .. } = &service.runner {
                tracing::warn!(service = %name, "commands run as the container's default user; set runner.user");
            }
            services.push(Served { service: Service::from_config(name, service)?, keys });
        }
        Ok(Proxy { services, limiter: Limiter::new(), audit })
    }

    /// The service `key` may use as `user`: the one named `user` when the
    /// key is in several, else the only one it is in.
    fn service_for(&self, user: &str, key: &PublicKey) -> Option<usize> {
        if key.algorithm() != Algorithm::Ed25519 {
            return None;
        }
        let holders: Vec<usize> = (0..self.services.len())
            .filter(|&i| self.services[i].keys.iter().any(|k| k.key_data() == key.key_data()))
            .collect();
        match holders.as_slice() {
            [only] => Some(*only),
            _ => holders.into_iter().find(|&i| self.services[i].service.name == user),
        }
    }

    /// The russh settings of the proxy.
    pub fn ssh_config(host_key: PrivateKey) -> russh::server::Config {
        russh::server::Config {
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            // OpenSSH opens with a "none" attempt; answering it at once
            // saves every connection a second.
            auth_rejection_time_initial: Some(Duration::ZERO),
            max_auth_attempts: 6,
            // Commands may be silent for minutes: dead peers are found by
            // keepalives instead of an inactivity timer.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            nodelay: true,
            keys: vec![host_key],
            ..Default::default()
        }
    }

    /// Serves SSH on `listener` until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, host_key: PrivateKey) -> std::io::Result<()> {
        use russh::server::Server as _;
        let config = Arc::new(Proxy::ssh_config(host_key));
        let mut acceptor = Acceptor { proxy: self };
        acceptor.run_on_socket(config, &listener).await
    }

    /// Commands running for a key (by fingerprint) in a service.
    pub fn running(&self, service: &str, fingerprint: &str) -> u32 {
        self.limiter.running(&limit_key(service, fingerprint))
    }
}

/// What the limiter counts by: each service limits each of its keys on its
/// own, so that one service's traffic never uses up another's allowance.
fn limit_key(service: &str, fingerprint: &str) -> String {
    format!("{service} {fingerprint}")
}

/// Accepts and closes TCP connections: a health check that needs no SSH.
pub async fn serve_health(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (socket, _) = listener.accept().await?;
        drop(socket);
    }
}

/// Loads the ED25519 host key at `path`, or generates one there (0600) when
/// the file does not exist.
pub fn load_or_generate_host_key(path: &Path) -> Result<PrivateKey, ServerError> {
    if path.exists() {
        let key = russh::keys::load_secret_key(path, None).map_err(|e| key_error(path, e))?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(key_error(path, "the host key must be ssh-ed25519"));
        }
        return Ok(key);
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| key_error(path, e))?;
    let text = key.to_openssh(LineEnding::LF).map_err(|e| key_error(path, e))?;
    // create_new: never overwrite a key that appeared in the meantime.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_error(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| key_error(path, e))?;
    tracing::info!("generated host key {} at {}", key.public_key().fingerprint(HashAlg::Sha256), path.display());
    Ok(key)
}

/// The `ssh-ed25519` keys of an OpenSSH `authorized_keys` file. Keys of
/// other types are skipped with a warning; lines with options are refused,
/// since ignoring a `from=` or `command=` would silently widen access.
pub fn read_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let kind = line.split_whitespace().next().unwrap_or_default();
        if kind == "ssh-ed25519" {
            let key =
                PublicKey::from_openssh(line).map_err(|e| key_error(path, format!("line {}: {e}", number + 1)))?;
            keys.push(key);
        } else if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-") {
            tracing::warn!("{} line {}: {kind} keys are not accepted, only ssh-ed25519", path.display(), number + 1);
        } else {
            return Err(key_error(path, format!("line {}: key options are not supported", number + 1)));
        }
    }
    Ok(keys)
}

struct Acceptor {
    proxy: Arc<Proxy>,
}

impl russh::server::Server for Acceptor {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<std::net::SocketAddr>) -> Connection {
        Connection {
            proxy: self.proxy.clone(),
            peer: peer.map(|p| p.to_string()).unwrap_or_default(),
            login: None,
            channels: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!("SSH session ended with an error: {error}");
    }
}

/// Who logged in on a connection.
#[derive(Debug, Clone)]
struct Login {
    service: usize,
    fingerprint: String,
}

/// One client connection.
struct Connection {
    proxy: Arc<Proxy>,
    peer: String,
    login: Option<Login>,
    /// Open session channels; `Some` once a command was started on it.
    /// Dropping the sender (channel closed, connection gone) stops the command.
    channels: HashMap<ChannelId, Option<oneshot::Sender<()>>>,
}

impl Connection {
    fn refuse_request(channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        session.channel_failure(channel)
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(match self.proxy.service_for(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.proxy.service_for(user, key.public_key) {
            Some(service) => {
                tracing::debug!(peer = %self.peer, %fingerprint, service = %self.proxy.services[service].service.name, "logged in");
                self.login = Some(Login { service, fingerprint });
                Ok(Auth::Accept)
            }
            None => {
                tracing::info!(peer = %self.peer, %fingerprint, user, "refused key");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel whose command finished was closed by its task, and russh
        // drops the client's answering close without telling this handler:
        // a finished command's task has dropped its cancel receiver.
        self.channels.retain(|_, stop| !stop.as_ref().is_some_and(|stop| stop.is_closed()));
        if self.login.is_none() || self.channels.len() >= MAX_CHANNELS_PER_CONNECTION {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // The command's stdin is not used: only the id is kept, and the
        // channel's own buffer is dropped with it.
        self.channels.insert(channel.id(), None);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Connection::refuse_request(channel, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Connection::refuse_request(channel, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Connection::refuse_request(channel, session)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        Connection::refuse_request(channel, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Connection::refuse_request(channel, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(login), Some(slot @ None)) = (self.login.clone(), self.channels.get_mut(&channel)) else {
            // Unknown channel, or a second command on the same channel.
            return Connection::refuse_request(channel, session);
        };
        let (stop, cancel) = oneshot::channel();
        *slot = Some(stop);
        session.channel_success(channel)?;
        let request = Request {
            proxy: self.proxy.clone(),
            handle: session.handle(),
            channel,
            login,
            peer: self.peer.clone(),
            line: data.to_vec(),
        };
        tokio::spawn(request.execute(cancel));
        Ok(())
    }
}

/// One `exec` request, run in its own task.
struct Request {
    proxy: Arc<Proxy>,
    handle: Handle,
    channel: ChannelId,
    login: Login,
    peer: String,
    line: Vec<u8>,
}

impl Request {
    async fn execute(self, cancel: oneshot::Receiver<()>) {
        let started = Instant::now();
        let service = &self.proxy.services[self.login.service].service;
        let limit_key = limit_key(&service.name, &self.login.fingerprint);
        let admit = |limits| self.proxy.limiter.acquire(&limit_key, limits);
        let (tx, rx) = mpsc::channel(8);
        let ((argv, outcome), ()) = tokio::join!(service.execute(&self.line, admit, tx, cancel), self.forward(rx));
        if let Some(line) = service.stderr_line(&outcome) {
            let _ = self.handle.extended_data(self.channel, 1, line.into_bytes()).await;
        }
        if outcome != Outcome::Abandoned {
            let _ = self.handle.exit_status_request(self.channel, outcome.exit_status()).await;
            let _ = self.handle.eof(self.channel).await;
            let _ = self.handle.close(self.channel).await;
        }
        self.proxy.audit.record(&AuditRecord {
            fingerprint: self.login.fingerprint.clone(),
            service: service.name.clone(),
            peer: self.peer.clone(),
            argv,
            outcome,
            duration: started.elapsed(),
        });
    }

    /// Sends the command's output to the channel.
    async fn forward(&self, mut output: mpsc::Receiver<Chunk>) {
        while let Some(chunk) = output.recv().await {
            let sent = match chunk {
                Chunk::Stdout(data) => self.handle.data(self.channel, data).await,
                Chunk::Stderr(data) => self.handle.extended_data(self.channel, 1, data).await,
            };
            // The connection is gone: dropping the receiver ends the run.
            if sent.is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_take_only_plain_ed25519_lines() {
        let dir = tempfile::tempdir().unwrap();
        let a = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let path = dir.path().join("keys");
        let line = a.public_key().to_openssh().unwrap();
        std::fs::write(&path, format!("# comment\n\n{line} me@host\nssh-rsa AAAAB3NzaC1yc2E= old\n")).unwrap();
        let keys = read_authorized_keys(&path).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_data(), a.public_key().key_data());

        std::fs::write(&path, format!("from=\"10.0.0.1\" {line}\n")).unwrap();
        assert!(read_authorized_keys(&path).unwrap_err().to_string().contains("options are not supported"));
    }

    #[test]
    fn host_key_is_generated_once_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_key");
        let first = load_or_generate_host_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let second = load_or_generate_host_key(&path).unwrap();
        assert_eq!(first.public_key().key_data(), second.public_key().key_data());
        assert_eq!(second.algorithm(), Algorithm::Ed25519);
    }
}
