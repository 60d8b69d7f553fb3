//! A private OpenSSH sshd for tests: its own keys (made with `ssh-keygen`)
//! and config (`fixtures/sshd_config.in`) in a temporary directory, on a free
//! loopback port; it and every process it started are killed on drop. The
//! system's sshd is never touched. The login user is the one running the
//! tests (root in CI, as on a Proxmox node). A missing sshd fails the test,
//! in CI and elsewhere, with the command that installs it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proximity::backend::proxmox::ssh_pool::{HostKeyPolicy, SshAuth, SshTarget};

const SSHD: &str = "/usr/sbin/sshd";
const INSTALL: &str = "apt-get install -y openssh-server openssh-client";

pub fn user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Requires sshd and ssh-keygen: a missing one fails the test (in CI and
/// elsewhere), saying how to install them.
pub fn require_openssh() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing (CI={}): these tests need OpenSSH's server; install it with `{INSTALL}`",
        std::env::var("CI").unwrap_or_default()
    );
    let keygen = Command::new("ssh-keygen").arg("-?").stderr(Stdio::null()).status();
    assert!(keygen.is_ok(), "ssh-keygen is missing: install it with `{INSTALL}`");
}

pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "proximity-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// `SHA256:...` of a public key file, as `ssh-keygen -lf` prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let output = Command::new("ssh-keygen").arg("-lf").arg(public_key).output().expect("run ssh-keygen -lf");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().split_whitespace().nth(1).unwrap().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The pids of `root` and of every process below it.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut seen: HashSet<u32> = found.iter().copied().collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (pid, ppid) in &parents {
            if *ppid == parent && seen.insert(*pid) {
                found.push(*pid);
            }
        }
        i += 1;
    }
    found
}

/// Processes whose argv is exactly `argv`.
pub fn processes_with_argv(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == wanted) {
            // A zombie keeps its cmdline only while being reaped; count live ones.
            let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let state = state.rfind(')').and_then(|i| state[i + 1..].split_whitespace().next()).unwrap_or("");
            if state != "Z" {
                found.push(pid);
            }
        }
    }
    found
}

/// A private sshd on loopback, killed (with everything it started) on drop.
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Sshd {
    /// Keys and config, but no server yet.
    pub fn prepare() -> Sshd {
        Self::prepare_with("")
    }

    /// Keys and config with `extra` lines appended (e.g. `SetEnv`), but no server yet.
    pub fn prepare_with(extra: &str) -> Sshd {
        require_openssh();
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd (sshd's privilege separation directory)");
        let dir = tempfile::Builder::new().prefix("proximity-sshd-").tempdir().unwrap();
        keygen(&dir.path().join("ssh_host_ed25519_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(dir.path().join("client_key.pub"), dir.path().join("authorized_keys")).unwrap();
        let port = free_port();
        let template = include_str!("fixtures/sshd_config.in");
        let mut config_text = template
            .replace("@DIR@", dir.path().to_str().unwrap())
            .replace("@PORT@", &port.to_string())
            .replace("@USER@", &user())
            + extra;
        let config = dir.path().join("sshd_config");
        // Newer sshd (9.8+) penalises sources that fail to log in, as some
        // tests do on purpose; older ones do not know the option.
        std::fs::write(&config, format!("{config_text}PerSourcePenalties no\n")).unwrap();
        let check = Command::new(SSHD).arg("-t").arg("-f").arg(&config).stderr(Stdio::null()).status().unwrap();
        if !check.success() {
            std::fs::write(&config, &config_text).unwrap();
        } else {
            config_text.push_str("PerSourcePenalties no\n");
        }
        let check = Command::new(SSHD).arg("-t").arg("-f").arg(&config).output().unwrap();
        assert!(check.status.success(), "sshd rejects its config: {}", String::from_utf8_lossy(&check.stderr));
        let log = dir.path().join("sshd.log");
        Sshd { dir, port, config, log, child: None }
    }

    pub fn start_with(extra: &str) -> Sshd {
        let mut sshd = Sshd::prepare_with(extra);
        sshd.spawn();
        sshd
    }

    pub fn start() -> Sshd {
        let mut sshd = Sshd::prepare();
        sshd.spawn();
        sshd
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&self.config)
            .arg("-E")
            .arg(&self.log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited ({status}) at start: {}", self.log_text());
            }
            assert!(started.elapsed() < Duration::from_secs(10), "sshd did not listen: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the listener and every connection's process, as a crash or a
    /// reboot of the node would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            for pid in descendants(child.id()).into_iter().rev() {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.path("ssh_host_ed25519_key.pub"))
    }

    /// A target that logs in with the client key and trusts the host key by
    /// its fingerprint.
    pub fn target(&self) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: user(),
            auth: SshAuth::KeyFile(self.path("client_key")),
            host_key: HostKeyPolicy::Fingerprint(self.host_fingerprint()),
        }
    }
}

impl Sshd {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> String {
        user()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
