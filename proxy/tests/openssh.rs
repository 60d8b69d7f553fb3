//! The `proximity-proxy` binary against the stock OpenSSH client (`ssh`).
//!
//! Skipped, with a message, where no `ssh` is installed; in CI (`CI=true`)
//! a missing `ssh` fails the tests instead.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::Workspace;

/// The proxy binary, killed when the test ends.
struct Proxy {
    child: Child,
    ssh_port: u16,
    health: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl Proxy {
    fn start(workspace: &Workspace) -> Proxy {
        let config = workspace.write_config("127.0.0.1:0");
        let mut child = Command::new(env!("CARGO_BIN_EXE_proximity-proxy"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log goes on being read so that the proxy never blocks on it.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("proxy: {line}");
                let _ = tx.send(line);
            }
        });
        let (mut ssh, mut health) = (None, None);
        while ssh.is_none() || health.is_none() {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("the proxy did not start");
            ssh = ssh.or(address_after(&line, "listening on "));
            health = health.or(address_after(&line, "health checks on "));
        }
        Proxy { child, ssh_port: ssh.unwrap().port(), health: health.unwrap() }
    }

    /// `ssh` with only the options given here: no user config, no agent,
    /// the workspace's key, and the proxy's host key as the only known one.
    fn ssh(&self, workspace: &Workspace, extra: &[&str], command: Option<&str>) -> Output {
        let dir = workspace.path();
        let mut ssh = Command::new("ssh");
        ssh.args(["-F", "/dev/null", "-i"])
            .arg(workspace.key_path())
            .args(["-p", &self.ssh_port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "PasswordAuthentication=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", dir.join("known_hosts").display()))
            .args(extra)
            .arg("app@127.0.0.1");
        if let Some(command) = command {
            ssh.arg(command);
        }
        ssh.stdin(Stdio::null()).output().unwrap()
    }
}

/// Whether `ssh` can run. Locally its absence skips a test; in CI it must
/// be there, so a missing client fails instead of passing unnoticed.
fn have_ssh() -> bool {
    let found = Command::new("ssh").arg("-V").output().is_ok();
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but no ssh client is installed");
        eprintln!("skipped: no ssh client installed");
    }
    found
}

/// Records the generated host key as the only known host for the port.
fn trust_host_key(workspace: &Workspace, port: u16) {
    let key = russh::keys::load_secret_key(workspace.path().join("host_key"), None).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    std::fs::write(workspace.path().join("known_hosts"), format!("[127.0.0.1]:{port} {public}\n")).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn stock_ssh_client_runs_allowed_commands_and_gets_refusals() {
    if !have_ssh() {
        return;
    }
    let workspace = Workspace::new();
    let proxy = Proxy::start(&workspace);
    trust_host_key(&workspace, proxy.ssh_port);
    // The host key was generated with the private mode.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(workspace.path().join("host_key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let out = proxy.ssh(&workspace, &["-T"], Some("app run --all"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran 3\n");

    let out = proxy.ssh(&workspace, &["-T"], Some("app run fail"));
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("failing"));

    // ssh joins its arguments with spaces; the proxy re-splits them, quotes
    // and all, and no shell sees them.
    let pwned = workspace.path().join("pwned");
    let line = format!("app echo 'a; touch {0}' $(touch {0}) `touch {0}`", pwned.display());
    let out = proxy.ssh(&workspace, &["-T"], Some(&line));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!pwned.exists());

    let out = proxy.ssh(&workspace, &["-T"], Some("app run --all; rm -rf /"));
    assert_eq!(out.status.code(), Some(126));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("proximity-proxy: refused: ") && stderr.lines().count() == 1, "{stderr}");

    let p = pwned.display().to_string();
    assert_eq!(
        workspace.calls(),
        [
            vec![
                "app".to_string(),
                "echo".into(),
                format!("a; touch {p}"),
                "$(touch".into(),
                format!("{p})"),
                "`touch".into(),
                format!("{p}`")
            ],
            vec!["app".into(), "run".into(), "--all".into()],
            vec!["app".into(), "run".into(), "fail".into()],
        ]
    );
}

#[test]
fn stock_ssh_client_gets_no_shell_pty_sftp_or_forwarding() {
    if !have_ssh() {
        return;
    }
    let workspace = Workspace::new();
    let proxy = Proxy::start(&workspace);
    trust_host_key(&workspace, proxy.ssh_port);

    // No command: a shell is asked for and refused.
    let out = proxy.ssh(&workspace, &["-T"], None);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("shell request failed"), "{}", text(&out.stderr));

    // A PTY is refused. ssh -tt treats that as fatal and closes the
    // channel, which stops the command if it had started.
    let out = proxy.ssh(&workspace, &["-tt"], Some("app run --quiet"));
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("PTY allocation request failed"), "{}", text(&out.stderr));

    let out = proxy.ssh(&workspace, &["-s"], Some("sftp"));
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("subsystem request failed"), "{}", text(&out.stderr));

    // Stdio forwarding opens a direct-tcpip channel, which is refused.
    let target = format!("127.0.0.1:{}", proxy.ssh_port);
    let out = proxy.ssh(&workspace, &["-W", &target], None);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("prohibited"), "{}", text(&out.stderr));

    // Only the -tt command may have started, before ssh closed its channel.
    let quiet = vec!["app".to_string(), "run".into(), "--quiet".into()];
    assert!(workspace.calls().iter().all(|call| *call == quiet), "{:?}", workspace.calls());
}

#[test]
fn stock_ssh_client_with_a_foreign_key_or_host_key_is_refused() {
    if !have_ssh() {
        return;
    }
    let workspace = Workspace::new();
    let proxy = Proxy::start(&workspace);

    // No known host key: ssh refuses the server itself.
    std::fs::write(workspace.path().join("known_hosts"), "").unwrap();
    let out = proxy.ssh(&workspace, &["-T"], Some("app run --all"));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Host key verification failed"), "{}", text(&out.stderr));

    // A key that is not authorized.
    trust_host_key(&workspace, proxy.ssh_port);
    std::fs::write(workspace.path().join("authorized_keys"), "").unwrap();
    // Keys are read at start: a fresh proxy sees the emptied file.
    drop(proxy);
    let proxy = Proxy::start(&workspace);
    trust_host_key(&workspace, proxy.ssh_port);
    let out = proxy.ssh(&workspace, &["-T"], Some("app run --all"));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied (publickey)"), "{}", text(&out.stderr));
    drop(proxy);

    // Only ED25519: an ECDSA key in the authorized keys is not accepted.
    let ecdsa = workspace.path().join("client_key");
    std::fs::remove_file(&ecdsa).unwrap();
    let made = Command::new("ssh-keygen").args(["-q", "-t", "ecdsa", "-N", "", "-f"]).arg(&ecdsa).status().unwrap();
    assert!(made.success());
    std::fs::copy(ecdsa.with_extension("pub"), workspace.path().join("authorized_keys")).unwrap();
    let proxy = Proxy::start(&workspace);
    trust_host_key(&workspace, proxy.ssh_port);
    let out = proxy.ssh(&workspace, &["-T"], Some("app run --all"));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied (publickey)"), "{}", text(&out.stderr));
    assert!(workspace.calls().is_empty());
}

#[test]
fn health_port_accepts_connections() {
    let workspace = Workspace::new();
    let proxy = Proxy::start(&workspace);
    TcpStream::connect_timeout(&proxy.health, Duration::from_secs(10)).unwrap();
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], proxy.ssh_port)), Duration::from_secs(10)).unwrap();
}
