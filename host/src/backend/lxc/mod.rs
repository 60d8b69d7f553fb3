//! `lxc`: real containers on this host, through the `lxc-*` tools.
//!
//! Each app container is an overlay snapshot clone (`lxc-copy -s -B overlay`)
//! of a cached base image ([`base`]), configured from the spec ([`config`]),
//! reached with `lxc-attach` ([`process`]), on a bridge made usable first
//! ([`bridge`]), and found by the address DHCP gave it ([`net`]).
//! Proximity keeps its containers in its own lxcpath, so `-P` goes with
//! every call. No liblxc crate is used: the `lxc` crate on crates.io is
//! unmaintained and binds an old liblxc, while the tools are stable and
//! what operators already know.

mod base;
mod bridge;
pub mod config;
mod net;
mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;

pub use self::bridge::{remove_own as remove_own_bridge, Bridge, OWN_BRIDGE};
use self::config::{Cgroups, HostSettings, IdRange};
use self::process::{last_lines, tool, Finished};
use super::{
    Backend, BackendError, ContainerRef, ContainerSpec, ExecOutput, ExecRequest, FileWrite, HttpProbe, Ownership,
};

/// How to get a host ready, shown whenever something is missing.
pub const SETUP_HINT: &str = "as root: `apt-get install -y lxc lxc-templates debootstrap dnsmasq-base bridge-utils \
     iptables uidmap rsync` (the backend starts lxc-net itself), or use `--backend sim`";

/// Default path in the container for `PATH`, as Debian's login shells set it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT_SECS: u64 = 10;
const FILE_TIMEOUT: Duration = Duration::from_secs(60);
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
pub struct LxcConfig {
    /// Proximity's own lxcpath: app containers and base images live here.
    pub lxcpath: PathBuf,
    /// The bridge containers join unless their spec names another.
    pub bridge: Bridge,
    /// Where the cgroup hierarchy is mounted (for detection).
    pub cgroup_root: PathBuf,
}

impl Default for LxcConfig {
    fn default() -> Self {
        LxcConfig {
            lxcpath: PathBuf::from("/var/lib/proximity/lxc"),
            bridge: Bridge::Auto,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// The local LXC backend. Cheap to clone.
#[derive(Clone)]
pub struct LxcBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: LxcConfig,
    host: HostSettings,
}

impl LxcBackend {
    /// Check the host (root, tools, cgroups, id ranges, bridge) and prepare
    /// the lxcpath. Every failure says how to fix it.
    pub async fn new(mut config: LxcConfig) -> Result<Self, BackendError> {
        // lxc-create fails on a relative lxcpath ("Bad file descriptor"), and
        // the container configs it writes must not depend on the working directory.
        config.lxcpath = std::path::absolute(&config.lxcpath).map_err(io_error("resolving the lxcpath"))?;
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err(BackendError::Failed(format!("the lxc backend needs root; {SETUP_HINT}")));
        }
        for program in ["lxc-create", "lxc-copy", "lxc-attach", "lxc-start", "debootstrap"] {
            if which(program).is_none() {
                return Err(BackendError::Failed(format!("`{program}` is not installed; {SETUP_HINT}")));
            }
        }
        let cgroups = Cgroups::detect(&config.cgroup_root)?;
        let uid_range = ensure_subids(Path::new("/etc/subuid")).await?;
        let gid_range = ensure_subids(Path::new("/etc/subgid")).await?;
        let bridge = bridge::ensure(&config.bridge).await?;
        create_lxcpath(&config.lxcpath).await?;
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        tracing::debug!(?cgroups, lxcpath = %config.lxcpath.display(), "lxc backend ready");
        let host = HostSettings { cgroups, host_cpus, bridge, uid_range, gid_range };
        Ok(LxcBackend { inner: Arc::new(Inner { config, host }) })
    }

    pub fn lxcpath(&self) -> &Path {
        &self.inner.config.lxcpath
    }

    pub fn cgroups(&self) -> Cgroups {
        self.inner.host.cgroups
    }

    /// Build the base image for `os_template` now rather than on first use.
    pub async fn prepare_base(&self, os_template: &str, unprivileged: bool) -> Result<String, BackendError> {
        let host = &self.inner.host;
        base::ensure(self.lxcpath(), os_template, unprivileged, (host.uid_range, host.gid_range)).await
    }

    /// Whether a container of this name exists in the lxcpath.
    pub fn exists(&self, name: &str) -> bool {
        self.lxcpath().join(name).join("config").is_file()
    }

    fn p(&self) -> String {
        self.lxcpath().to_string_lossy().into_owned()
    }

    async fn state(&self, name: &str) -> Result<String, BackendError> {
        let out = tool("lxc-info", ["-P", &self.p(), "-n", name, "-sH"], TOOL_TIMEOUT).await?;
        Ok(out.trim().to_string())
    }

    fn check_exists(&self, container: &ContainerRef) -> Result<(), BackendError> {
        if valid_name(&container.id) && self.exists(&container.id) {
            Ok(())
        } else {
            Err(BackendError::NotFound(format!("container {} does not exist", container.id)))
        }
    }

    /// `lxc-attach` argv for running `argv` in the container, environment cleared.
    fn attach_argv(&self, name: &str, env: &[(String, String)], cwd: Option<&str>, argv: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec!["-P".into(), self.p(), "-n".into(), name.into(), "--clear-env".into()];
        let mut vars: Vec<(String, String)> = vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("HOME".into(), "/root".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        for (key, value) in env {
            vars.retain(|(k, _)| k != key);
            vars.push((key.clone(), value.clone()));
        }
        for (key, value) in vars {
            args.push("-v".into());
            args.push(format!("{key}={value}"));
        }
        args.push("--".into());
        if let Some(dir) = cwd {
            // lxc-attach has no working-directory flag; coreutils' env has one.
            args.extend(["env".into(), format!("--chdir={dir}"), "--".into()]);
        }
        args.extend(argv.iter().cloned());
        args
    }

    async fn attach(
        &self,
        name: &str,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Finished, BackendError> {
        process::run("lxc-attach", argv, stdin, timeout).await.map(|finished| match finished {
            Finished::Exited(out) if attach_failed(&out) => Finished::Exited(ExecOutput {
                status: out.status,
                stdout: out.stdout,
                stderr: format!("container {name} is not running: {}", last_lines(&out.stderr, &[])).into_bytes(),
            }),
            other => other,
        })
    }

    async fn start_inner(&self, name: &str) -> Result<(), BackendError> {
        if self.state(name).await? == "RUNNING" {
            return Ok(());
        }
        let log = self.lxcpath().join(name).join("proximity-start.log");
        let _ = tokio::fs::remove_file(&log).await;
        // Foreground, as this process's child: it is waited for when the
        // container stops (this host's PID 1 reaps nothing), and its own
        // process group keeps a terminal's Ctrl-C away from it.
        let mut child = tokio::process::Command::new("lxc-start")
            .args(["-P", &self.p(), "-n", name, "-F", "-l", "ERROR", "-o"])
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|err| BackendError::Failed(format!("could not run lxc-start: {err}")))?;
        let (exited_tx, mut exited) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = exited_tx.send(child.wait().await);
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(status) = exited.try_recv() {
                let log = tokio::fs::read_to_string(&log).await.unwrap_or_default();
                return Err(BackendError::Failed(format!(
                    "container {name} failed to start ({}): {}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    last_lines(log.as_bytes(), &[])
                )));
            }
            if self.state(name).await? == "RUNNING" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BackendError::Timeout(format!(
                    "container {name} was not running after {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop_inner(&self, name: &str, kill: bool) -> Result<(), BackendError> {
        if self.state(name).await? == "STOPPED" {
            return Ok(());
        }
        let p = self.p();
        let clean = if kill {
            Err(BackendError::Failed("skipped".into()))
        } else {
            let secs = STOP_TIMEOUT_SECS.to_string();
            tool("lxc-stop", ["-P", &p, "-n", name, "-t", &secs], Duration::from_secs(STOP_TIMEOUT_SECS + 10))
                .await
                .map(drop)
        };
        if clean.is_err() {
            tool("lxc-stop", ["-P", &p, "-n", name, "-k"], TOOL_TIMEOUT).await?;
        }
        Ok(())
    }

    async fn destroy_name(&self, name: &str) -> Result<(), BackendError> {
        if !self.exists(name) {
            return Ok(());
        }
        self.stop_inner(name, true).await?;
        tool("lxc-destroy", ["-P", &self.p(), "-n", name], TOOL_TIMEOUT).await?;
        Ok(())
    }

    async fn create_inner(&self, name: &str, owner: &Ownership, spec: &ContainerSpec) -> Result<(), BackendError> {
        let base = self.prepare_base(&spec.os_template, spec.unprivileged).await?;
        let p = self.p();
        let mut copy = vec!["-P", &p, "-n", &base, "-N", name];
        if !spec.unprivileged {
            copy.extend(["-s", "-B", "overlay"]);
        }
        // Unprivileged containers get a full copy of the shifted base: LXC
        // mounts their overlay with `redirect_dir=nofollow`, and dpkg then
        // fails with EXDEV renaming directories (measured: `apt-get install
        // nginx` breaks). A copy takes ~3 s and the base's ~300 MB.
        tool("lxc-copy", copy, COPY_TIMEOUT).await?;
        let path = self.lxcpath().join(name).join("config");
        let cloned = tokio::fs::read_to_string(&path).await.map_err(io_error("reading the clone's config"))?;
        let text = config::render(&cloned, owner, spec, &self.inner.host, &random_mac())?;
        tokio::fs::write(&path, text).await.map_err(io_error("writing the container config"))?;
        Ok(())
    }
}

/// Destroys a half-created container if `create` is dropped or fails.
struct CreateGuard {
    backend: LxcBackend,
    name: Option<String>,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let backend = self.backend.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(err) = backend.destroy_name(&name).await {
                        tracing::warn!(container = name, "could not remove a half-created container: {err}");
                    }
                });
            }
        }
    }
}

#[async_trait]
impl Backend for LxcBackend {
    fn name(&self) -> &'static str {
        "lxc"
    }

    async fn owned(&self) -> Result<Vec<(ContainerRef, Ownership)>, BackendError> {
        let mut found = Vec::new();
        let mut dir = tokio::fs::read_dir(self.lxcpath()).await.map_err(io_error("listing the lxcpath"))?;
        while let Some(entry) = dir.next_entry().await.map_err(io_error("listing the lxcpath"))? {
            let Ok(text) = tokio::fs::read_to_string(entry.path().join("config")).await else { continue };
            if let Some(owner) = config::labels(&text) {
                let id = entry.file_name().to_string_lossy().into_owned();
                let hostname = config::hostname(&text).unwrap_or_else(|| id.clone());
                found.push((ContainerRef { id, hostname, node: None }, owner));
            }
        }
        found.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(found)
    }

    async fn create(&self, owner: &Ownership, spec: &ContainerSpec) -> Result<ContainerRef, BackendError> {
        config::check_hostname(&spec.hostname)?;
        base::base_for(&spec.os_template)?;
        // Hostnames are only unique per deployment; the name must be unique here.
        let suffix: u32 = rand::rng().random();
        let name = format!("{}-{:08x}", spec.hostname, suffix);
        let mut guard = CreateGuard { backend: self.clone(), name: Some(name.clone()) };
        let result = self.create_inner(&name, owner, spec).await;
        if let Err(err) = result {
            guard.name = None;
            let _ = self.destroy_name(&name).await;
            return Err(err);
        }
        guard.name = None;
        tracing::info!(container = name, recipe = owner.recipe_id, app = owner.app_id, "created container");
        Ok(ContainerRef { id: name, hostname: spec.hostname.clone(), node: None })
    }

    async fn start(&self, container: &ContainerRef) -> Result<(), BackendError> {
        self.check_exists(container)?;
        self.start_inner(&container.id).await
    }

    async fn stop(&self, container: &ContainerRef) -> Result<(), BackendError> {
        self.check_exists(container)?;
        self.stop_inner(&container.id, false).await
    }

    async fn destroy(&self, container: &ContainerRef) -> Result<(), BackendError> {
        if !valid_name(&container.id) {
            return Ok(()); // no such name can exist here
        }
        self.destroy_name(&container.id).await
    }

    async fn address(&self, container: &ContainerRef, timeout: Duration) -> Result<String, BackendError> {
        self.check_exists(container)?;
        net::poll_address(self.lxcpath(), &container.id, timeout).await
    }

    async fn exec(&self, container: &ContainerRef, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        let Some(program) = request.argv.first().filter(|p| !p.is_empty()) else {
            return Err(BackendError::InvalidInput("exec needs a program to run (argv is empty)".into()));
        };
        if let Some(cwd) = &request.cwd {
            if !cwd.starts_with('/') {
                return Err(BackendError::InvalidInput(format!("cwd `{cwd}` is not absolute")));
            }
            // `env` would take such a program name for a variable.
            if program.contains('=') {
                return Err(BackendError::InvalidInput(format!("program `{program}` cannot contain `=`")));
            }
        }
        self.check_exists(container)?;
        let argv = self.attach_argv(&container.id, &request.env, request.cwd.as_deref(), &request.argv);
        match self.attach(&container.id, &argv, request.stdin.as_deref(), request.timeout).await? {
            Finished::Exited(output) => Ok(output),
            Finished::TimedOut { stdout, stderr } => Err(BackendError::Timeout(format!(
                "`{}` did not finish within {}s and was killed; its last output: {}",
                request.argv.join(" "),
                request.timeout.as_secs(),
                last_lines(&stderr, &stdout)
            ))),
        }
    }

    async fn write_file(&self, container: &ContainerRef, file: &FileWrite) -> Result<(), BackendError> {
        check_path(&file.path)?;
        self.check_exists(container)?;
        let owner = match (&file.owner, &file.group) {
            (Some(user), Some(group)) => format!("{user}:{group}"),
            (Some(user), None) => user.clone(),
            (None, Some(group)) => format!(":{group}"),
            (None, None) => String::new(),
        };
        // Runs in the container's namespaces, so its symlinks resolve inside
        // it. Path, mode and owner are positional parameters, never code.
        let script = r#"umask 022 && mkdir -p -- "$(dirname -- "$1")" && umask 077 && cat > "$1" && chmod -- "$2" "$1" && { [ -z "$3" ] || chown -- "$3" "$1"; }"#;
        let argv: Vec<String> = ["sh", "-c", script, "sh", &file.path, &format!("{:o}", file.mode & 0o7777), &owner]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let argv = self.attach_argv(&container.id, &[], None, &argv);
        match self.attach(&container.id, &argv, Some(&file.contents), FILE_TIMEOUT).await? {
            Finished::Exited(out) if out.status == 0 => Ok(()),
            Finished::Exited(out) => Err(BackendError::Failed(format!(
                "writing {} in {}: {}",
                file.path,
                container.id,
                last_lines(&out.stderr, &out.stdout)
            ))),
            Finished::TimedOut { .. } => {
                Err(BackendError::Timeout(format!("writing {} took over {}s", file.path, FILE_TIMEOUT.as_secs())))
            }
        }
    }

    async fn read_file(&self, container: &ContainerRef, path: &str) -> Result<Vec<u8>, BackendError> {
        check_path(path)?;
        self.check_exists(container)?;
        let argv = self.attach_argv(&container.id, &[], None, &["cat".into(), "--".into(), path.into()]);
        match self.attach(&container.id, &argv, None, FILE_TIMEOUT).await? {
            Finished::Exited(out) if out.status == 0 => Ok(out.stdout),
            Finished::Exited(out) if String::from_utf8_lossy(&out.stderr).contains("No such file") => {
                Err(BackendError::NotFound(format!("{path}: no such file in container {}", container.id)))
            }
            Finished::Exited(out) => {
                Err(BackendError::Failed(format!("reading {path}: {}", last_lines(&out.stderr, &out.stdout))))
            }
            Finished::TimedOut { .. } => {
                Err(BackendError::Timeout(format!("reading {path} took over {}s", FILE_TIMEOUT.as_secs())))
            }
        }
    }

    async fn wait_tcp(&self, container: &ContainerRef, port: u16, timeout: Duration) -> Result<(), BackendError> {
        let deadline = Instant::now() + timeout;
        let ip = self.address(container, timeout).await?;
        super::probe::wait_tcp(&ip, port, deadline, timeout).await
    }

    async fn wait_http(
        &self,
        container: &ContainerRef,
        probe: &HttpProbe,
        timeout: Duration,
    ) -> Result<u16, BackendError> {
        let deadline = Instant::now() + timeout;
        let ip = self.address(container, timeout).await?;
        super::probe::wait_http(&ip, probe.port, &probe.path, probe.expect_status, deadline, timeout).await
    }
}

/// `lxc-attach` itself failed (the container is not running), not the command.
fn attach_failed(out: &ExecOutput) -> bool {
    out.status != 0 && String::from_utf8_lossy(&out.stderr).contains("Failed to get init pid")
}

fn check_path(path: &str) -> Result<(), BackendError> {
    if path.starts_with('/') && !path.contains('\0') && path.len() > 1 {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!("path `{path}` is not an absolute file path")))
    }
}

/// Container names this backend makes: a hostname and a hex suffix.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
}

/// A locally administered unicast MAC in LXC's own 00:16:3e prefix.
fn random_mac() -> String {
    let bytes: [u8; 3] = rand::rng().random();
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2])
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> BackendError {
    move |err| BackendError::Failed(format!("{what}: {err}"))
}

async fn create_lxcpath(path: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(path).await.map_err(io_error("creating the lxcpath"))?;
    // Unprivileged containers mount their overlay from inside a user
    // namespace, which must be able to traverse to the base.
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(io_error("opening the lxcpath"))
}

/// root's subordinate id range in `/etc/subuid` or `/etc/subgid`, added
/// (`root:100000:65536`) when missing.
async fn ensure_subids(file: &Path) -> Result<IdRange, BackendError> {
    let text = tokio::fs::read_to_string(file).await.unwrap_or_default();
    let found = text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        match (parts.next(), parts.next().and_then(|s| s.parse().ok()), parts.next().and_then(|s| s.parse().ok())) {
            (Some("root" | "0"), Some(start), Some(count)) if count >= 65536 => Some(IdRange { start, count }),
            _ => None,
        }
    });
    if let Some(range) = found {
        return Ok(range);
    }
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("root:100000:65536\n");
    tracing::info!("adding root:100000:65536 to {}", file.display());
    tokio::fs::write(file, text).await.map_err(io_error("writing the subordinate id file"))?;
    Ok(IdRange { start: 100000, count: 65536 })
}
