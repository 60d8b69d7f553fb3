//! A proxy on 127.0.0.1 with a runner that records the exact argv it gets,
//! and a russh client to talk to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proximity_proxy::audit::MemoryAudit;
use proximity_proxy::config::ProxyConfig;
use proximity_proxy::server::{load_or_generate_host_key, Proxy};
use russh::client;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tempfile::TempDir;

/// Writes an executable file in one go (rename), so that no test forks
/// while it is still open for writing.
pub fn write_executable(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The runner: records its argv NUL-separated (an argv cannot hold NUL, so
/// the record is exact) in a new file per call, moved into `calls/` only once
/// written (a test may kill the runner at any point), then acts on its third
/// argument, the first one after the `app run` prefix.
fn recorder_script(dir: &Path) -> String {
    format!(
        r#"#!/bin/sh
f=$(mktemp "{dir}/call.XXXXXX")
printf '%s\0' "$@" > "$f"
mv "$f" "{dir}/calls/"
echo "ran $#"
case "$3" in
  fail) echo failing >&2; exit 3 ;;
  slow) touch "{dir}/started"; exec sleep 60 ;;
  chatty) while :; do echo 0123456789; done ;;
esac
exit 0
"#,
        dir = dir.display()
    )
}

/// The whitelist of the tests: `app` is roomy, `tight` (same key, picked by
/// user name) has small limits.
pub fn config_text(dir: &Path, listen: &str) -> String {
    let runner = dir.join("record.sh");
    let keys = dir.join("authorized_keys");
    format!(
        r#"
listen = "{listen}"
host_key = "{host_key}"
health_listen = "127.0.0.1:0"

[services.app]
authorized_keys = "{keys}"
runner = {{ kind = "command", program = "{runner}" }}
rate_per_minute = 6000
burst = 1000
max_sessions = 2

[[services.app.commands]]
prefix = "app run"
max_args = 3
flags = ["--all", "--quiet"]
options = {{ "--path" = "/[A-Za-z0-9_./-]+" }}
positional = "[a-z]+"

[[services.app.commands]]
prefix = "app echo"
max_args = 8
positional = ".*"

[services.tight]
authorized_keys = "{keys}"
runner = {{ kind = "command", program = "{runner}" }}
timeout_secs = 1
max_output_bytes = 1000
rate_per_minute = 1
burst = 3
max_sessions = 1

[[services.tight.commands]]
prefix = "app run"
max_args = 1
positional = "[a-z]+"
"#,
        host_key = dir.join("host_key").display(),
        keys = keys.display(),
        runner = runner.display(),
    )
}

/// A directory with a client key, its authorized_keys, the recorder and a
/// config file.
pub struct Workspace {
    pub dir: TempDir,
    pub key: PrivateKey,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        std::fs::create_dir(dir.path().join("calls")).unwrap();
        let public = key.public_key().to_openssh().unwrap();
        std::fs::write(dir.path().join("authorized_keys"), format!("{public} test\n")).unwrap();
        let private = key.to_openssh(LineEnding::LF).unwrap();
        let key_path = dir.path().join("client_key");
        std::fs::write(&key_path, private.as_bytes()).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_executable(&dir.path().join("record.sh"), &recorder_script(dir.path()));
        Workspace { dir, key }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn key_path(&self) -> PathBuf {
        self.path().join("client_key")
    }

    pub fn write_config(&self, listen: &str) -> PathBuf {
        let path = self.path().join("proxy.toml");
        std::fs::write(&path, config_text(self.path(), listen)).unwrap();
        path
    }

    /// Every argv the runner was started with (in no particular order).
    pub fn calls(&self) -> Vec<Vec<String>> {
        let mut calls: Vec<Vec<String>> = std::fs::read_dir(self.path().join("calls"))
            .unwrap()
            .map(|entry| {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                let mut words: Vec<String> =
                    bytes.split(|b| *b == 0).map(|w| String::from_utf8(w.to_vec()).unwrap()).collect();
                // printf ends every word with NUL, so the last split is empty.
                assert_eq!(words.pop().as_deref(), Some(""));
                words
            })
            .collect();
        calls.sort();
        calls
    }

    pub fn fingerprint(&self) -> String {
        self.key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }
}

/// A proxy served in this process, on a port of 127.0.0.1.
pub struct TestServer {
    pub workspace: Workspace,
    pub addr: SocketAddr,
    pub host_key: PublicKey,
    pub audit: Arc<MemoryAudit>,
    pub proxy: Arc<Proxy>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|dir| config_text(dir, "127.0.0.1:0")).await
    }

    /// A server whose config file is `config(workspace directory)`.
    pub async fn start_with(config: impl FnOnce(&Path) -> String) -> TestServer {
        let workspace = Workspace::new();
        let path = workspace.path().join("proxy.toml");
        std::fs::write(&path, config(workspace.path())).unwrap();
        let config = ProxyConfig::load(&path).unwrap();
        let host_key = load_or_generate_host_key(&config.host_key).unwrap();
        let audit = Arc::new(MemoryAudit::default());
        let proxy = Arc::new(Proxy::from_config(&config, audit.clone()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public = host_key.public_key().clone();
        tokio::spawn(proxy.clone().serve(listener, host_key));
        TestServer { workspace, addr, host_key: public, audit, proxy }
    }

    /// Logs in as `user` with the workspace's key.
    pub async fn connect(&self, user: &str) -> client::Handle<Client> {
        self.connect_with(user, &self.workspace.key).await.expect("login refused")
    }

    /// Logs in with any key; `None` when the server refuses it.
    pub async fn connect_with(&self, user: &str, key: &PrivateKey) -> Option<client::Handle<Client>> {
        let mut handle =
            client::connect(Arc::new(client::Config::default()), self.addr, Client { expected: self.host_key.clone() })
                .await
                .unwrap();
        let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
        let result = handle.authenticate_publickey(user, key).await.unwrap();
        result.success().then_some(handle)
    }
}

/// Accepts only the test server's host key.
pub struct Client {
    expected: PublicKey,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(key.public_key().key_data() == self.expected.key_data())
    }
}

/// What one exec request produced.
#[derive(Debug, Default)]
pub struct Output {
    pub accepted: bool,
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs one command line on a new channel and reads until the channel closes.
pub async fn exec(handle: &client::Handle<Client>, line: &[u8]) -> Output {
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.exec(true, line.to_vec()).await.unwrap();
    let mut output = Output::default();
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Success => output.accepted = true,
            ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => output.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    output
}

/// Waits for a condition the test itself cannot await (a file appearing, a
/// count dropping), giving up after a generous bound.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if condition() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    condition()
}
