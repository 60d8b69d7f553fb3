//! A private OpenSSH sshd for tests: its own keys (made with `ssh-keygen`)
//! and config (`fixtures/sshd_config.in`) in a temporary directory, on a free
//! loopback port; it and every process it started are killed on drop. The
//! system's sshd is never touched. The login user is the one running the
//! tests (root in CI, as on a Proxmox node), with keys only; the one
//! exception is [`PASSWORD_USER`], a dedicated local user that may log in
//! with the password [`PasswordUser`] sets. A missing sshd fails the test,
//! in CI and elsewhere, with the command that installs it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proximity::ssh::{HostKeyPolicy, SshAuth, SshTarget};

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

fn stat_fields(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let comm = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
    let ppid = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid).map(|(_, ppid)| ppid)
}

fn comm_of(pid: u32) -> Option<String> {
    stat_fields(pid).map(|(comm, _)| comm)
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
        Self::prepare_with(&[], "")
    }

    /// Keys and config, with `env` set in every session (sshd's `SetEnv`)
    /// and `extra` config lines, but no server yet.
    pub fn prepare_with(env: &[(&str, &str)], extra: &str) -> Sshd {
        require_openssh();
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd (sshd's privilege separation directory)");
        let dir = tempfile::Builder::new().prefix("proximity-sshd-").tempdir().unwrap();
        keygen(&dir.path().join("ssh_host_ed25519_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(dir.path().join("client_key.pub"), dir.path().join("authorized_keys")).unwrap();
        let port = free_port();
        let env: String = env
            .iter()
            .map(|(name, value)| {
                assert!(!value.contains(char::is_whitespace) && !value.contains('"'), "SetEnv value {value:?}");
                format!(" {name}={value}")
            })
            .collect();
        let render = |extra: &str| {
            include_str!("fixtures/sshd_config.in")
                .replace("@DIR@", dir.path().to_str().unwrap())
                .replace("@PORT@", &port.to_string())
                .replace("@USER@", &user())
                .replace("@PASSWORD_USER@", PASSWORD_USER)
                .replace("@ENV@", &env)
                .replace("@EXTRA@", extra)
        };
        let config = dir.path().join("sshd_config");
        // Newer sshd (9.8+) penalises sources that fail to log in, as some
        // tests do on purpose; older ones do not know the option.
        std::fs::write(&config, render(&format!("PerSourcePenalties no\n{extra}"))).unwrap();
        let check = Command::new(SSHD).arg("-t").arg("-f").arg(&config).stderr(Stdio::null()).status().unwrap();
        if !check.success() {
            std::fs::write(&config, render(extra)).unwrap();
        }
        let check = Command::new(SSHD).arg("-t").arg("-f").arg(&config).output().unwrap();
        assert!(check.status.success(), "sshd rejects its config: {}", String::from_utf8_lossy(&check.stderr));
        let log = dir.path().join("sshd.log");
        Sshd { dir, port, config, log, child: None }
    }

    /// A running sshd whose sessions have `env` set (e.g. `PATH`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Sshd {
        let mut sshd = Sshd::prepare_with(env, "");
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

    /// Kills the sshd processes serving the connection on which `pid` (a
    /// command's process) runs, as a dropped network link or a crashed
    /// session would end it; the listener and the command itself live on.
    /// Returns the pids killed.
    pub fn kill_connection_of(&self, pid: u32) -> Vec<u32> {
        let listener = self.child.as_ref().expect("sshd is running").id();
        let mut serving = Vec::new();
        let mut current = pid;
        loop {
            let parent = parent_of(current).unwrap_or_else(|| panic!("process {current} vanished"));
            assert!(parent > 1, "process {pid} is not served by this sshd ({listener})");
            if parent == listener {
                break;
            }
            if comm_of(parent).as_deref() == Some("sshd") {
                serving.push(parent);
            }
            current = parent;
        }
        assert!(!serving.is_empty(), "no sshd process serves {pid}");
        for pid in &serving {
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        serving
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

/// The local system user that the private sshd lets log in with a password
/// (its `Match User` block); every other user logs in with keys.
pub const PASSWORD_USER: &str = "proximity-ssh-test";
const PASSWORD_USER_HOME: &str = "/var/lib/proximity-ssh-test";
/// Serialises the password user's use across test processes (another test
/// run on this machine would set another password); in /run/lock.
const PASSWORD_USER_LOCK: &str = "proximity-ssh-test.lock";

/// [`PASSWORD_USER`] with a fresh random password, known only to this test;
/// the password is locked again on drop, so the account cannot be logged into
/// afterwards through any sshd.
pub struct PasswordUser {
    pub name: String,
    pub password: String,
    _lock: std::fs::File,
}

impl PasswordUser {
    /// Creates the user if need be (as root) and sets a new password. Waits
    /// while another test holds the user. `Err` names the missing part.
    pub fn acquire() -> Result<PasswordUser, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err(format!("creating the local user {PASSWORD_USER} needs root"));
        }
        for tool in ["useradd", "chpasswd", "usermod"] {
            if !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|dir| Path::new(dir).join(tool).exists()) {
                return Err(format!("{tool} is missing: install it with `apt-get install -y passwd`"));
            }
        }
        let lock_dir = if Path::new("/run/lock").is_dir() { PathBuf::from("/run/lock") } else { std::env::temp_dir() };
        let lock_path = lock_dir.join(PASSWORD_USER_LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        use std::os::fd::AsRawFd;
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("cannot lock {}: {}", lock_path.display(), std::io::Error::last_os_error()));
        }
        ensure_password_user()?;
        let mut random = [0u8; 18];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut random).unwrap();
        let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(chpasswd.stdin.as_mut().unwrap(), format!("{PASSWORD_USER}:{password}\n").as_bytes())
            .unwrap();
        let output = chpasswd.wait_with_output().unwrap();
        if !output.status.success() {
            return Err(format!("chpasswd failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(PasswordUser { name: PASSWORD_USER.to_string(), password, _lock: lock })
    }
}

impl Drop for PasswordUser {
    fn drop(&mut self) {
        let locked = Command::new("usermod").args(["-L", PASSWORD_USER]).stderr(Stdio::null()).status();
        if !matches!(locked, Ok(s) if s.success()) {
            eprintln!("could not lock the password of {PASSWORD_USER}: {locked:?}");
        }
    }
}

/// Creates [`PASSWORD_USER`] once per process (and only if the system does
/// not have it yet): a system user with a POSIX login shell and its own home.
fn ensure_password_user() -> Result<(), String> {
    static CREATED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CREATED
        .get_or_init(|| {
            let exists = Command::new("id").arg("-u").arg(PASSWORD_USER).output();
            if exists.is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            let output = Command::new("useradd")
                .args(["--system", "--create-home", "--home-dir", PASSWORD_USER_HOME, "--shell", "/bin/sh"])
                .args(["--comment", "Proximity SSH password-login tests", PASSWORD_USER])
                .output()
                .map_err(|e| format!("cannot run useradd: {e}"))?;
            // 9: created meanwhile by another process.
            match output.status.code() {
                Some(0) | Some(9) => Ok(()),
                _ => Err(format!("useradd {PASSWORD_USER} failed: {}", String::from_utf8_lossy(&output.stderr).trim())),
            }
        })
        .clone()
}
