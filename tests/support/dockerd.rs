//! A private Docker engine for tests: Debian's `dockerd` started by hand with
//! its own data root (kept under the target directory, so the imported test
//! image survives between runs), exec root and socket (under /tmp), and
//! published ports bound to 127.0.0.1 only.
//!
//! Dropping it removes every service, secret and network made through it,
//! leaves the swarm, stops the daemon, and removes what dockerd leaves behind
//! on the host: the `docker0` and `docker_gwbridge` links and the `DOCKER*`
//! iptables chains and the rules that jump to them (only those that did not
//! exist before it started). A lock file keeps two test runs on one machine
//! from starting two engines at once.
//!
//! A missing dockerd, docker client or iptables fails the test under
//! `CI=true` and skips it elsewhere, saying what is missing.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DOCKERD: &str = "/usr/sbin/dockerd";
const INSTALL: &str = "apt-get install -y docker.io";
/// The test image: a Debian rootfs, imported once and kept in the data root.
pub const IMAGE: &str = "proximity-test/debian:bookworm";
/// Where the LXC tests' Debian template keeps its rootfs: imported if present.
const LXC_ROOTFS: &str = "/var/cache/lxc/debian/rootfs-bookworm-amd64";
const LOCK: &str = "/tmp/proximity-dockerd.lock";
/// Links dockerd creates on the host.
const LINKS: [&str; 2] = ["docker0", "docker_gwbridge"];

/// Whether the test can run: `false` (after printing what is missing) when a
/// part is missing outside CI; a panic when one is missing in CI.
pub fn docker_available() -> bool {
    let mut missing = Vec::new();
    if !Path::new(DOCKERD).exists() {
        missing.push(format!("{DOCKERD} (`{INSTALL}`)"));
    }
    if Command::new("docker").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        missing.push(format!("the docker client (`{INSTALL}`)"));
    }
    if Command::new("iptables").arg("--version").stdout(Stdio::null()).status().is_err() {
        missing.push("iptables (`apt-get install -y iptables`)".into());
    }
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (dockerd runs as root)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("the Docker tests need {}", missing.join(", "));
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message} (CI=true: this test may not be skipped)");
    eprintln!("SKIPPED: {message}");
    false
}

pub struct Dockerd {
    exec_root: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Host links and iptables chains that existed before: never removed.
    links_before: Vec<String>,
    chains_before: Vec<(String, String)>,
    _lock: File,
}

impl Dockerd {
    /// Starts the engine (not yet in Swarm mode) and makes sure [`IMAGE`] is
    /// there. `cache` keeps the data root (and a debootstrapped rootfs, if one
    /// is needed) between runs: the test's `CARGO_TARGET_TMPDIR`.
    pub fn start(cache: &Path) -> Dockerd {
        let lock = File::create(LOCK).expect("create the dockerd lock file");
        // Waits while another test run has its engine up.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0, "lock {LOCK}");
        let data_root = cache.join("dockerd-data");
        // Short: the exec root holds unix sockets, whose paths are limited to 108 bytes.
        let exec_root = PathBuf::from("/tmp/proximity-dockerd");
        stop_stale(&exec_root);
        std::fs::create_dir_all(&exec_root).unwrap();
        std::fs::create_dir_all(&data_root).unwrap();
        let socket = exec_root.join("docker.sock");
        let log = exec_root.join("dockerd.log");
        // With no other engine running, what dockerd leaves on the host is
        // a dead run's and goes too; with one, its links and chains stay.
        let (links_before, chains_before) = if other_dockerd_running() {
            (LINKS.iter().filter(|l| link_exists(l)).map(|l| l.to_string()).collect(), docker_chains())
        } else {
            (Vec::new(), Vec::new())
        };
        let child = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(exec_root.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            // Published ports on loopback only.
            .args(["--ip", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DOCKERD}: {e}"));
        let mut dockerd =
            Dockerd { exec_root, socket, log, child: Some(child), links_before, chains_before, _lock: lock };
        dockerd.wait_until_ready();
        // A run that died midway may have left its swarm in the data root.
        if dockerd.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).trim() != "inactive" {
            dockerd.docker(&["swarm", "leave", "--force"]);
        }
        dockerd.ensure_image(cache);
        dockerd
    }

    /// `unix:///…/docker.sock`
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn init_swarm(&self) {
        self.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"]);
    }

    /// Runs the docker client against this engine; panics (with its output) if it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = self.try_docker(args);
        assert!(
            output.status.success(),
            "docker {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn try_docker(&self, args: &[&str]) -> Output {
        Command::new("docker").args(args).env("DOCKER_HOST", self.host()).output().expect("run the docker client")
    }

    /// Waits (up to `limit`) until `ready` holds, panicking with `what` and the engine's log tail otherwise.
    pub fn wait_for(&self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ready() {
            if Instant::now() > deadline {
                panic!("{what}: not within {limit:?}; dockerd log ends with:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited ({status}); its log ends with:\n{}", self.log_tail());
            }
            if self.socket.exists() && self.try_docker(&["version"]).status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "dockerd did not answer within 30 s:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ensure_image(&self, cache: &Path) {
        if self.try_docker(&["image", "inspect", IMAGE]).status.success() {
            return;
        }
        let rootfs = if Path::new(LXC_ROOTFS).join("usr/bin/perl").exists() {
            PathBuf::from(LXC_ROOTFS)
        } else {
            let rootfs = cache.join("debian-rootfs");
            if !rootfs.join("usr/bin/perl").exists() {
                let status = Command::new("debootstrap")
                    .args(["--variant=minbase", "bookworm"])
                    .arg(&rootfs)
                    .status()
                    .expect("run debootstrap (apt-get install -y debootstrap)");
                assert!(status.success(), "debootstrap of a Debian rootfs for the test image failed");
            }
            rootfs
        };
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tar");
        let imported = Command::new("docker")
            .args(["import", "-", IMAGE])
            .env("DOCKER_HOST", self.host())
            .stdin(tar.stdout.take().unwrap())
            .output()
            .expect("run docker import");
        let archived = tar.wait().expect("wait for tar");
        assert!(archived.success(), "tar of {} failed ({archived})", rootfs.display());
        assert!(imported.status.success(), "docker import failed: {}", String::from_utf8_lossy(&imported.stderr));
    }

    /// Removes the services (and so their containers), then leaves the swarm,
    /// which discards its secrets and networks.
    fn clear_swarm(&self) {
        let services = self.try_docker(&["service", "ls", "-q"]);
        let services: Vec<String> =
            String::from_utf8_lossy(&services.stdout).split_whitespace().map(String::from).collect();
        if !services.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(services.iter().map(String::as_str));
            self.try_docker(&args);
        }
        // Task containers go away shortly after their service.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && !String::from_utf8_lossy(&self.try_docker(&["ps", "-aq"]).stdout).trim().is_empty()
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.try_docker(&["swarm", "leave", "--force"]);
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the stopped daemon leaves on the host.
    fn remove_host_leftovers(&self) {
        for link in LINKS {
            if !self.links_before.iter().any(|l| l == link) && link_exists(link) {
                run_quietly("ip", &["link", "delete", link]);
            }
        }
        let before = &self.chains_before;
        for table in ["filter", "nat"] {
            let new_chains: Vec<String> = docker_chains()
                .into_iter()
                .filter(|(t, chain)| t == table && !before.iter().any(|(bt, bc)| bt == t && bc == chain))
                .map(|(_, chain)| chain)
                .collect();
            if new_chains.is_empty() {
                continue;
            }
            // Rules in other chains that jump to these chains or name dockerd's links.
            for rule in iptables_rules(table) {
                let words: Vec<&str> = rule.split_whitespace().collect();
                let [_, chain, rest @ ..] = words.as_slice() else { continue };
                let about_docker = rest.iter().any(|w| new_chains.iter().any(|c| c == w) || LINKS.contains(w));
                if !new_chains.iter().any(|c| c == chain) && about_docker {
                    let mut args = vec!["-t", table, "-D", chain];
                    args.extend_from_slice(rest);
                    run_quietly("iptables", &args);
                }
            }
            for chain in &new_chains {
                run_quietly("iptables", &["-t", table, "-F", chain]);
            }
            for chain in &new_chains {
                run_quietly("iptables", &["-t", table, "-X", chain]);
            }
        }
        unmount_below(&self.exec_root);
        let _ = std::fs::remove_dir_all(&self.exec_root);
        // dockerd makes /run/docker/plugins whatever its exec root; empty, it goes.
        let _ = std::fs::remove_dir("/run/docker/plugins");
        let _ = std::fs::remove_dir("/run/docker");
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.clear_swarm();
        self.stop();
        self.remove_host_leftovers();
    }
}

/// A process that has not exited (a zombie has).
fn is_live(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_some_and(|state| state != "Z")
}

fn other_dockerd_running() -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { return false };
        std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == "dockerd") && is_live(pid)
    })
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// `(table, chain)` of every iptables chain whose name starts with DOCKER.
fn docker_chains() -> Vec<(String, String)> {
    let mut chains = Vec::new();
    for table in ["filter", "nat"] {
        for rule in iptables_rules_raw(table) {
            if let Some(chain) = rule.strip_prefix("-N ").filter(|c| c.starts_with("DOCKER")) {
                chains.push((table.to_string(), chain.trim().to_string()));
            }
        }
    }
    chains
}

/// The `-A` lines of `iptables -t TABLE -S`.
fn iptables_rules(table: &str) -> Vec<String> {
    iptables_rules_raw(table).into_iter().filter(|l| l.starts_with("-A ")).collect()
}

fn iptables_rules_raw(table: &str) -> Vec<String> {
    let output = Command::new("iptables").args(["-t", table, "-S"]).output();
    output.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect()).unwrap_or_default()
}

fn run_quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// Unmounts whatever is mounted below `dir` (network namespaces, a stale
/// daemon's mounts), deepest first.
fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|p| p.starts_with(&prefix)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(point).status();
    }
}

/// A dockerd left running from this exec root by a run that died: stop it.
/// The lock is held, so it cannot belong to a run in progress.
fn stop_stale(exec_root: &Path) {
    let Ok(pid) = std::fs::read_to_string(exec_root.join("dockerd.pid")) else { return };
    let Ok(pid) = pid.trim().parse::<i32>() else { return };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "dockerd" {
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while is_live(pid as u32) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    unmount_below(exec_root);
}
