//! One SSH connection, and running one command over it.
//!
//! [`SshConnection::connect`] opens and authenticates a connection and checks
//! the server's host key against a [`HostKeyPolicy`]; [`SshConnection::exec`]
//! runs a [`RemoteCommand`] with optional stdin. [`super::SshPool`] keeps
//! connections open between commands.
//!
//! # Running an argv ([`RemoteCommand::Argv`])
//! The argv is quoted for the remote login shell with [`super::quote`], and
//! prefixed so that the remote side can be killed: the line sent is
//! `echo $$; exec 'ARGV0' 'ARGV1' ...`. The login shell prints its own pid and
//! replaces itself with the command, which so keeps that pid. OpenSSH's sshd
//! runs every non-pty command in a new session (`setsid`), so the pid is also
//! the command's process group. The first stdout line is taken off the output
//! and remembered; when the command outlives its timeout, a second channel
//! runs `kill -9 -PID` (the whole group: the command and the children it did
//! not move to their own group), falling back to `kill -9 PID`, and, should
//! the connection have no room for another channel, over a new connection.
//! Closing the channel alone would not do: sshd leaves a non-pty command
//! running when its channel goes away.
//!
//! `argv[0]` must so be a program (`exec` cannot run a shell builtin or
//! function), and the login shell must be a POSIX shell (bash, dash), as
//! root's is on Proxmox VE. Bash reads `~/.bashrc` before every command sshd
//! starts: on a node whose root has a slow one, every command pays for it.
//!
//! # Running a line for a forced command ([`RemoteCommand::Forced`])
//! A forced-command server (Proximity's proxy, or sshd with `command=` in
//! `authorized_keys`) splits the line itself and runs no shell, so nothing is
//! prefixed and there is no pid to kill: a command that outlives its timeout
//! has its channel closed, and the proxy stops the command when its client
//! goes away.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Sig};
use tokio::time::Instant;

use super::quote::{command_line, QuoteError};

/// Where and as whom to run commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    pub host_key: HostKeyPolicy,
}

/// How to log in.
#[derive(Clone, PartialEq, Eq)]
pub enum SshAuth {
    /// An unencrypted private key in OpenSSH format (ED25519, or ECDSA).
    KeyFile(PathBuf),
    /// The keys of the agent at `$SSH_AUTH_SOCK`, tried in turn.
    Agent,
    /// A password (sshd's `PasswordAuthentication`). Never printed.
    Password(String),
}

impl fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshAuth::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
            SshAuth::Agent => f.write_str("Agent"),
            SshAuth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// Which host keys to accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only a key recorded for this host (and port) in this OpenSSH
    /// `known_hosts` file (`[host]:port` for ports other than 22; hashed
    /// entries are understood).
    KnownHosts(PathBuf),
    /// Only the key with this fingerprint, as `ssh-keygen -lf` prints it
    /// (`SHA256:` and unpadded base64).
    Fingerprint(String),
    /// A key recorded in this `known_hosts` file; when the file has no key
    /// for the host, the first key seen is accepted and appended to it.
    TrustOnFirstUse(PathBuf),
}

/// What a command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit status; `128 + N` when the command was killed by signal N.
    pub status: i32,
    /// The last [`OUTPUT_LIMIT`] bytes (at most) the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// The last [`OUTPUT_LIMIT`] bytes (at most) the command wrote to stderr.
    pub stderr: Vec<u8>,
}

/// How long opening a channel on an open connection may take.
const CHANNEL_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of each output stream [`ExecResult`] keeps: the last 4 MiB.
pub const OUTPUT_LIMIT: usize = 4 << 20;

/// Why a command could not be run over SSH. Messages name the node and user,
/// never a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {user}@{host}:{port}: {reason}")]
    Connect { host: String, port: u16, user: String, reason: String },
    #[error("refusing {user}@{host}:{port}: its host key {fingerprint} {reason}; {hint}")]
    HostKey { host: String, port: u16, user: String, fingerprint: String, reason: String, hint: String },
    #[error("cannot log in as {user}@{host}:{port}: {reason}")]
    Auth { host: String, port: u16, user: String, reason: String },
    #[error("{user}@{host}:{port}: {what} timed out after {after:?}")]
    Timeout { host: String, port: u16, user: String, what: String, after: Duration },
    #[error("{user}@{host}:{port}: {reason}")]
    Channel { host: String, port: u16, user: String, reason: String },
    #[error(transparent)]
    Quote(#[from] QuoteError),
    #[error("{user}@{host}:{port}: `{command}` failed with status {status}: {stderr}")]
    Command { host: String, port: u16, user: String, command: String, status: i32, stderr: String },
}

impl SshTarget {
    pub(crate) fn connect_error(&self, reason: impl fmt::Display) -> SshError {
        SshError::Connect {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn auth_error(&self, reason: impl fmt::Display) -> SshError {
        SshError::Auth { host: self.host.clone(), port: self.port, user: self.user.clone(), reason: reason.to_string() }
    }

    pub(crate) fn channel_error(&self, reason: impl fmt::Display) -> SshError {
        SshError::Channel {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn timeout_error(&self, what: impl fmt::Display, after: Duration) -> SshError {
        SshError::Timeout {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            what: what.to_string(),
            after,
        }
    }

    fn host_key_error(&self, fingerprint: &str, reason: String, hint: String) -> SshError {
        SshError::HostKey {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            fingerprint: fingerprint.to_string(),
            reason,
            hint,
        }
    }

    /// The name `known_hosts` files use for this host.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// What to run: how it is sent, and how it is stopped after its timeout.
#[derive(Clone, Copy, Debug)]
pub enum RemoteCommand<'a> {
    /// A program and its arguments, for the remote login shell.
    Argv(&'a [String]),
    /// A command line for a forced-command server, sent as it is.
    Forced(&'a str),
}

impl RemoteCommand<'_> {
    /// The command as messages show it.
    pub fn display(&self) -> String {
        match self {
            RemoteCommand::Argv(argv) => display_argv(argv),
            RemoteCommand::Forced(line) => shorten(line.to_string()),
        }
    }

    /// Whether the command can be sent at all (no NUL, not empty).
    pub fn check(&self) -> Result<(), QuoteError> {
        self.request().map(|_| ())
    }

    /// The bytes of the `exec` request, and whether the first stdout line
    /// is the remote shell's pid.
    fn request(&self) -> Result<(String, bool), QuoteError> {
        match self {
            RemoteCommand::Argv(argv) => Ok((format!("echo $$; exec {}", command_line(argv)?), true)),
            RemoteCommand::Forced(line) => {
                if line.trim().is_empty() {
                    return Err(QuoteError::Empty);
                }
                if line.contains('\0') {
                    return Err(QuoteError::Nul { index: 0 });
                }
                Ok((line.to_string(), false))
            }
        }
    }
}

/// A command that did not finish, and whether it may have started: a command
/// that cannot have started can be tried again on another connection.
#[derive(Debug)]
pub struct RunFailure {
    pub error: SshError,
    pub started: bool,
    /// The connection is gone (or unusable) and must not be used again.
    pub broken: bool,
}

/// Keeps the last `limit` bytes written to it.
struct Tail {
    buf: Vec<u8>,
    limit: usize,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Tail { buf: Vec::new(), limit }
    }

    fn push(&mut self, data: &[u8]) {
        if data.len() >= self.limit {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - self.limit..]);
            return;
        }
        self.buf.extend_from_slice(data);
        // Drop the front in chunks, not on every write.
        if self.buf.len() > self.limit.saturating_mul(2).max(64 << 10) {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
        self.buf
    }
}

/// Takes the remote shell's pid (`echo $$`) off the front of stdout.
enum PidLine {
    Reading(Vec<u8>),
    Done(Option<u32>),
}

impl PidLine {
    /// Feeds stdout bytes; returns the bytes that are the command's output.
    fn feed<'a>(&mut self, data: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self {
            PidLine::Done(_) => std::borrow::Cow::Borrowed(data),
            PidLine::Reading(head) => {
                if let Some(nl) = data.iter().position(|b| *b == b'\n') {
                    head.extend_from_slice(&data[..nl]);
                    let pid = std::str::from_utf8(head).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if pid > 1 => {
                            *self = PidLine::Done(Some(pid));
                            std::borrow::Cow::Borrowed(&data[nl + 1..])
                        }
                        _ => {
                            // Not our line (a login script printed first?):
                            // keep everything as output, and know no pid.
                            let mut all = std::mem::take(head);
                            all.extend_from_slice(&data[nl..]);
                            *self = PidLine::Done(None);
                            std::borrow::Cow::Owned(all)
                        }
                    }
                } else {
                    head.extend_from_slice(data);
                    if head.len() > 32 {
                        let all = std::mem::take(head);
                        *self = PidLine::Done(None);
                        std::borrow::Cow::Owned(all)
                    } else {
                        std::borrow::Cow::Borrowed(&[])
                    }
                }
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            PidLine::Done(pid) => *pid,
            PidLine::Reading(_) => None,
        }
    }

    /// Output held back while waiting for a newline that never came.
    fn leftover(&mut self) -> Vec<u8> {
        match self {
            PidLine::Reading(head) => std::mem::take(head),
            PidLine::Done(_) => Vec::new(),
        }
    }
}

/// Linux's number for a signal, as `exit-signal` names it.
fn signal_number(sig: &Sig) -> i32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(name) => match name.as_str() {
            "BUS" => 7,
            "USR2" => 12,
            "STKFLT" => 16,
            "CHLD" => 17,
            "CONT" => 18,
            "STOP" => 19,
            "TSTP" => 20,
            "TTIN" => 21,
            "TTOU" => 22,
            "URG" => 23,
            "XCPU" => 24,
            "XFSZ" => 25,
            "VTALRM" => 26,
            "PROF" => 27,
            "WINCH" => 28,
            "IO" => 29,
            "PWR" => 30,
            "SYS" => 31,
            _ => 127,
        },
    }
}

/// The russh handler: checks the host key against the target's policy and
/// leaves the reason for a refusal where `connect` finds it.
struct Client {
    target: SshTarget,
    refusal: Arc<Mutex<Option<SshError>>>,
}

impl Client {
    fn check(&self, key: &PublicKey) -> Result<(), SshError> {
        let target = &self.target;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let name = target.known_hosts_name();
        let keyscan = format!("ssh-keyscan -p {} -t {} {}", target.port, key.algorithm(), target.host);
        match &target.host_key {
            HostKeyPolicy::Fingerprint(expected) => {
                if expected.trim() == fingerprint {
                    Ok(())
                } else {
                    Err(target.host_key_error(
                        &fingerprint,
                        format!("does not match the configured fingerprint {}", expected.trim()),
                        format!(
                            "if you have checked on the node (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`) that this \
                             is its key, configure the fingerprint {fingerprint}",
                            key_file_kind(key)
                        ),
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) | HostKeyPolicy::TrustOnFirstUse(path) => {
                let tofu = matches!(target.host_key, HostKeyPolicy::TrustOnFirstUse(_));
                let known =
                    russh::keys::known_hosts::known_host_keys_path(&target.host, target.port, path).map_err(|e| {
                        target.host_key_error(
                            &fingerprint,
                            format!("cannot be checked: cannot read {}: {e}", path.display()),
                            "fix or remove the known_hosts file".to_string(),
                        )
                    })?;
                if known.iter().any(|(_, k)| k.key_data() == key.key_data()) {
                    return Ok(());
                }
                if let Some((line, _)) = known.first() {
                    return Err(target.host_key_error(
                        &fingerprint,
                        format!(
                            "does not match the key recorded for {name} in {} (line {line}): the key changed, or \
                             someone is intercepting the connection",
                            path.display()
                        ),
                        format!(
                            "if the node's key was changed on purpose, check the new fingerprint on the node, remove \
                             the old entry with `ssh-keygen -R '{name}' -f {}` and add the new one with `{keyscan} >> {}`",
                            path.display(),
                            path.display()
                        ),
                    ));
                }
                if tofu {
                    learn_host_key(path, &name, key).map_err(|e| {
                        target.host_key_error(
                            &fingerprint,
                            format!("could not be recorded in {}: {e}", path.display()),
                            "make the known_hosts file writable".to_string(),
                        )
                    })?;
                    tracing::info!(host = %name, %fingerprint, file = %path.display(), "trusted new SSH host key on first use");
                    return Ok(());
                }
                Err(target.host_key_error(
                    &fingerprint,
                    format!("is unknown: {} has no key for {name}", path.display()),
                    format!(
                        "check the fingerprint on the node (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then \
                         trust it with `{keyscan} >> {}` (or configure the fingerprint {fingerprint})",
                        key_file_kind(key),
                        path.display()
                    ),
                ))
            }
        }
    }
}

/// Appends `name key` to a known_hosts file (made with its directory if
/// need be), unless an equal entry appeared meanwhile: first connections to
/// one node at once record its key once.
fn learn_host_key(path: &std::path::Path, name: &str, key: &PublicKey) -> std::io::Result<()> {
    use std::io::Write;
    static LEARNING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LEARNING.lock().unwrap_or_else(|e| e.into_inner());
    let line = key.to_openssh().map_err(std::io::Error::other)?;
    let existing = match std::fs::read(path) {
        Ok(existing) => existing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let entry = format!("{name} {}", line.trim());
    if existing.split(|b| *b == b'\n').any(|l| l == entry.as_bytes()) {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let separator = if existing.is_empty() || existing.ends_with(b"\n") { "" } else { "\n" };
    file.write_all(format!("{separator}{entry}\n").as_bytes())?;
    file.sync_all()
}

/// The middle of the host key file's name for a key (`ed25519`, `ecdsa`, `rsa`).
fn key_file_kind(key: &PublicKey) -> &'static str {
    use russh::keys::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 => "ed25519",
        Algorithm::Ecdsa { .. } => "ecdsa",
        Algorithm::Rsa { .. } => "rsa",
        _ => "*",
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_public_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        match self.check(&server_public_key.public_key()) {
            Ok(()) => Ok(true),
            Err(refusal) => {
                *self.refusal.lock().unwrap() = Some(refusal);
                Ok(false)
            }
        }
    }
}

/// One authenticated SSH connection.
pub struct SshConnection {
    handle: Arc<client::Handle<Client>>,
    target: SshTarget,
}

impl fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConnection")
            .field("target", &format_args!("{}@{}:{}", self.target.user, self.target.host, self.target.port))
            .field("closed", &self.is_closed())
            .finish()
    }
}

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // A connection whose peer vanished without a word is noticed
        // and closed in the background.
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    })
}

impl SshConnection {
    /// Connects, checks the host key and logs in, all within `timeout`.
    pub async fn connect(target: &SshTarget, timeout: Duration) -> Result<SshConnection, SshError> {
        let refusal = Arc::new(Mutex::new(None));
        let client = Client { target: target.clone(), refusal: refusal.clone() };
        let attempt = async {
            let mut handle = client::connect(client_config(), (target.host.as_str(), target.port), client)
                .await
                .map_err(|e| match refusal.lock().unwrap().take() {
                    Some(refusal) => refusal,
                    None => target.connect_error(e),
                })?;
            SshConnection::authenticate(&mut handle, target).await?;
            let connection = SshConnection { handle: Arc::new(handle), target: target.clone() };
            Ok(connection)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(target.timeout_error("connecting", timeout)),
        }
    }

    async fn authenticate(handle: &mut client::Handle<Client>, target: &SshTarget) -> Result<(), SshError> {
        let user = target.user.clone();
        let result = match &target.auth {
            SshAuth::KeyFile(path) => {
                let key = russh::keys::load_secret_key(path, None)
                    .map_err(|e| target.auth_error(format!("cannot load the private key {}: {e}", path.display())))?;
                let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
                let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
                let result = handle
                    .authenticate_publickey(user, key)
                    .await
                    .map_err(|e| target.auth_error(format!("public key authentication failed: {e}")))?;
                if !result.success() {
                    return Err(target.auth_error(format!("the server refused the key {}", path.display())));
                }
                result
            }
            SshAuth::Agent => {
                let mut agent = russh::keys::agent::client::AgentClient::connect_env()
                    .await
                    .map_err(|e| target.auth_error(format!("cannot reach the SSH agent ($SSH_AUTH_SOCK): {e}")))?;
                let identities = agent
                    .request_identities()
                    .await
                    .map_err(|e| target.auth_error(format!("cannot list the SSH agent's keys: {e}")))?;
                if identities.is_empty() {
                    return Err(target.auth_error("the SSH agent holds no keys"));
                }
                let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
                let mut accepted = false;
                for identity in &identities {
                    let key = identity.public_key().into_owned();
                    match handle.authenticate_publickey_with(user.clone(), key, hash, &mut agent).await {
                        Ok(result) if result.success() => {
                            accepted = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!("SSH agent could not sign: {e}"),
                    }
                }
                if !accepted {
                    return Err(target
                        .auth_error(format!("the server refused all {} key(s) of the SSH agent", identities.len())));
                }
                return Ok(());
            }
            SshAuth::Password(password) => {
                let result = handle
                    .authenticate_password(user, password.clone())
                    .await
                    .map_err(|e| target.auth_error(format!("password authentication failed: {e}")))?;
                if !result.success() {
                    return Err(target.auth_error("the server refused the password"));
                }
                result
            }
        };
        debug_assert!(result.success());
        Ok(())
    }

    /// Whether the connection is gone (the server closed it, or it broke).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Says goodbye to the server. The connection cannot be used afterwards.
    pub async fn disconnect(&self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }

    /// Runs `command`, feeding it `stdin` (or nothing: the command sees end
    /// of file), stopping it when it outlives `timeout`.
    pub async fn exec(
        &self,
        command: RemoteCommand<'_>,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecResult, SshError> {
        self.run(command, stdin, Instant::now() + timeout, timeout, OUTPUT_LIMIT).await.map_err(|f| f.error)
    }

    /// [`Self::exec`] with a deadline, telling whether a failed command may
    /// have started. `timeout` is only for the message.
    pub(crate) async fn run(
        &self,
        command: RemoteCommand<'_>,
        stdin: Option<&[u8]>,
        deadline: Instant,
        timeout: Duration,
        output_limit: usize,
    ) -> Result<ExecResult, RunFailure> {
        let target = &self.target;
        let not_started = |error: SshError, broken: bool| RunFailure { error, started: false, broken };
        let (line, pid_first) = command.request().map_err(|e| not_started(e.into(), false))?;

        // A connection whose peer vanished silently answers nothing: give up
        // on it well before a long command's deadline.
        let open_deadline = deadline.min(Instant::now() + CHANNEL_OPEN_TIMEOUT);
        let channel = match tokio::time::timeout_at(open_deadline, self.handle.channel_open_session()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                let broken = self.is_closed();
                let reason = if broken {
                    format!("the connection is closed: {e}")
                } else {
                    format!("cannot open a session channel: {e}")
                };
                return Err(not_started(target.channel_error(reason), broken));
            }
            // A connection that cannot open a channel in time is not trusted
            // again, but the command never started.
            Err(_) => {
                let waited = if open_deadline < deadline { CHANNEL_OPEN_TIMEOUT } else { timeout };
                return Err(not_started(target.timeout_error("opening a session channel", waited), true));
            }
        };
        if let Err(e) = channel.exec(true, line.into_bytes()).await {
            return Err(not_started(target.channel_error(format!("cannot send the command: {e}")), self.is_closed()));
        }
        let (mut reader, writer) = channel.split();
        let writer = Arc::new(writer);
        let mut guard = KillOnDrop {
            handle: self.handle.clone(),
            target: target.clone(),
            pid: None,
            writer: (!pid_first).then(|| writer.clone()),
            armed: true,
        };

        let feed = async {
            if let Some(data) = stdin {
                writer.data(data).await?;
            }
            writer.eof().await
        };
        tokio::pin!(feed);
        let mut fed = false;
        let mut confirmed = false;
        let mut pid = if pid_first { PidLine::Reading(Vec::new()) } else { PidLine::Done(None) };
        let mut stdout = Tail::new(output_limit);
        let mut stderr = Tail::new(output_limit);
        let mut status: Option<i32> = None;

        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                fed_result = &mut feed, if !fed => {
                    fed = true;
                    if let Err(e) = fed_result {
                        // The command may have exited without reading its
                        // input; its exit status will tell.
                        tracing::debug!("SSH stdin not fully delivered: {e}");
                    }
                }
                message = reader.wait() => match message {
                    Some(ChannelMsg::Data { data }) => {
                        stdout.push(&pid.feed(&data));
                        guard.pid = pid.pid();
                    }
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.push(&data),
                    Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status as i32),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => status = Some(128 + signal_number(&signal_name)),
                    Some(ChannelMsg::Success) => confirmed = true,
                    Some(ChannelMsg::Failure) if !confirmed => {
                        let _ = writer.close().await;
                        return Err(not_started(target.channel_error("the server refused to run the command"), false));
                    }
                    Some(ChannelMsg::Close) | None => {
                        guard.armed = false;
                        break;
                    }
                    Some(_) => {}
                },
                _ = &mut sleep => {
                    guard.armed = false;
                    match pid.pid() {
                        Some(pid) => kill_remote(self.handle.clone(), target.clone(), pid).await,
                        None if pid_first => tracing::warn!(
                            host = %target.host,
                            "SSH command timed out before it reported its pid; closing its channel"
                        ),
                        None => {}
                    }
                    let _ = writer.close().await;
                    return Err(RunFailure {
                        error: target.timeout_error(format!("`{}`", command.display()), timeout),
                        started: true,
                        broken: false,
                    });
                }
            }
        }
        stdout.push(&pid.leftover());
        match status {
            Some(status) => Ok(ExecResult { status, stdout: stdout.finish(), stderr: stderr.finish() }),
            None => {
                let broken = self.is_closed();
                let reason = if broken {
                    "the connection was lost before the command finished"
                } else {
                    "the channel closed without an exit status"
                };
                Err(RunFailure { error: target.channel_error(reason), started: true, broken })
            }
        }
    }

    /// Runs a command line as it is, waiting for its exit status.
    pub(crate) async fn run_plain(&self, line: &str, deadline: Instant) -> Result<(), SshError> {
        let run = async {
            let mut channel = self.handle.channel_open_session().await.map_err(|e| self.target.channel_error(e))?;
            channel.exec(false, line.as_bytes().to_vec()).await.map_err(|e| self.target.channel_error(e))?;
            while let Some(message) = channel.wait().await {
                if let ChannelMsg::ExitStatus { .. } = message {
                    break;
                }
            }
            Ok(())
        };
        tokio::time::timeout_at(deadline, run).await.unwrap_or(Ok(()))
    }
}

/// Kills the remote process group `pid` (and `pid` itself) over a second
/// channel of `handle`, or over a new connection when that one has no room
/// for it or is gone.
async fn kill_remote(handle: Arc<client::Handle<Client>>, target: SshTarget, pid: u32) {
    let budget = Duration::from_secs(5);
    let Ok(line) = command_line(&kill_argv(pid)) else { return };
    let on_this = async {
        let mut channel = handle.channel_open_session().await.ok()?;
        channel.exec(false, line.clone().into_bytes()).await.ok()?;
        while let Some(message) = channel.wait().await {
            if let ChannelMsg::ExitStatus { .. } = message {
                return Some(());
            }
        }
        Some(())
    };
    if let Ok(Some(())) = tokio::time::timeout(budget, on_this).await {
        return;
    }
    tracing::debug!(host = %target.host, pid, "killing over a new SSH connection");
    match SshConnection::connect(&target, budget).await {
        Ok(fresh) => {
            if let Err(e) = fresh.run_plain(&line, Instant::now() + budget).await {
                tracing::warn!(host = %target.host, pid, "could not kill timed-out remote command: {e}");
            }
            fresh.disconnect().await;
        }
        Err(e) => tracing::warn!(host = %target.host, pid, "could not kill timed-out remote command: {e}"),
    }
}

/// Stops the remote command when the future running it is dropped before it
/// finished (the caller gave up: a run's deadline passed), in the background:
/// kills it by pid, or closes the channel of a forced command.
struct KillOnDrop {
    handle: Arc<client::Handle<Client>>,
    target: SshTarget,
    pid: Option<u32>,
    writer: Option<Arc<russh::ChannelWriteHalf<client::Msg>>>,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if let Some(pid) = self.pid {
            tracing::debug!(host = %self.target.host, pid, "SSH command abandoned; killing it");
            runtime.spawn(kill_remote(self.handle.clone(), self.target.clone(), pid));
        } else if let Some(writer) = self.writer.take() {
            tracing::debug!(host = %self.target.host, "forced SSH command abandoned; closing its channel");
            runtime.spawn(async move {
                let _ = writer.close().await;
            });
        }
    }
}

/// The command that kills a timed-out command: its process group first (as
/// sshd made it a session leader), then the process alone in case it is not.
fn kill_argv(pid: u32) -> Vec<String> {
    vec![
        "sh".to_string(),
        "-c".to_string(),
        "kill -9 -\"$1\" 2>/dev/null || kill -9 \"$1\" 2>/dev/null; exit 0".to_string(),
        "sh".to_string(),
        pid.to_string(),
    ]
}

/// An argv for messages: shell-quoted where needed, shortened.
pub(crate) fn display_argv(argv: &[String]) -> String {
    let text = argv
        .iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                super::quote::quote_arg(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    shorten(text)
}

/// At most 200 characters of a command, for messages.
fn shorten(text: String) -> String {
    if text.chars().count() > 200 {
        text.chars().take(200).collect::<String>() + "…"
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(10);
        for i in 0..1000u32 {
            tail.push(i.to_string().as_bytes());
        }
        assert_eq!(tail.finish(), b"6997998999");
        let mut tail = Tail::new(4);
        tail.push(b"abcdefgh");
        tail.push(b"ij");
        assert_eq!(tail.finish(), b"ghij");
    }

    #[test]
    fn pid_line_is_taken_off_stdout() {
        let mut pid = PidLine::Reading(Vec::new());
        assert_eq!(&*pid.feed(b"12"), b"");
        assert_eq!(&*pid.feed(b"34\nhello"), b"hello");
        assert_eq!(pid.pid(), Some(1234));
        assert_eq!(&*pid.feed(b"\nmore"), b"\nmore");

        let mut pid = PidLine::Reading(Vec::new());
        assert_eq!(&*pid.feed(b"motd\nout"), b"motd\nout");
        assert_eq!(pid.pid(), None);
    }

    #[test]
    fn password_is_never_printed() {
        let target = SshTarget {
            host: "pve1".into(),
            port: 22,
            user: "root".into(),
            auth: SshAuth::Password("hunter2".into()),
            host_key: HostKeyPolicy::Fingerprint("SHA256:x".into()),
        };
        assert!(!format!("{target:?}").contains("hunter2"));
        let error = target.auth_error("the server refused the password");
        assert_eq!(error.to_string(), "cannot log in as root@pve1:22: the server refused the password");
    }

    #[test]
    fn messages_name_the_argv() {
        let argv = vec!["pct".to_string(), "exec".to_string(), "100".to_string(), "it's".to_string()];
        assert_eq!(display_argv(&argv), "pct exec 100 'it'\\''s'");
    }
}
