//! Running an allowed argv: where ([`Runner`]) and how ([`run`]).
//!
//! A runner only turns the argv into a program and its arguments (an
//! [`Invocation`]); [`run`] then starts it directly with `execve` (no
//! shell), streams its output, and enforces the timeout and output limit.
//! The command runs in its own process group so that a kill reaches the
//! children it started too.

use std::fmt::Debug;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::audit::Outcome;
use crate::config::RunnerConfig;
use crate::pipe::OutputPipe;

/// A program and its whole argument list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Decides how an allowed argv is started.
#[async_trait::async_trait]
pub trait Runner: Send + Sync + Debug {
    /// The invocation for `argv`, or a one-line reason it cannot run.
    async fn prepare(&self, argv: &[String]) -> Result<Invocation, String>;
}

/// Builds the runner a service's configuration describes.
pub fn from_config(config: &RunnerConfig) -> Box<dyn Runner> {
    match config {
        RunnerConfig::Docker { container, label, user, docker } => Box::new(DockerCli {
            docker: docker.clone(),
            target: match (container, label) {
                (Some(name), _) => Container::Name(name.clone()),
                (None, Some(label)) => Container::Label(label.clone()),
                // Refused by `ProxyConfig::validate`.
                (None, None) => Container::Name(String::new()),
            },
            user: user.clone(),
        }),
        RunnerConfig::Command { program, args } => {
            Box::new(CommandRunner { program: program.clone(), args: args.clone() })
        }
    }
}

/// Which container `docker exec` goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Container {
    Name(String),
    /// `key=value`: the first running container with that label, looked up
    /// for every command (Swarm moves and replaces tasks).
    Label(String),
}

/// `docker exec [--user U] CONTAINER ARGV…` through the Docker CLI.
#[derive(Debug, Clone)]
pub struct DockerCli {
    pub docker: PathBuf,
    pub target: Container,
    pub user: Option<String>,
}

/// How long a label lookup (`docker ps`) may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

impl DockerCli {
    async fn resolve(&self) -> Result<String, String> {
        let label = match &self.target {
            Container::Name(name) => return Ok(name.clone()),
            Container::Label(label) => label,
        };
        let lookup = Command::new(&self.docker)
            .args(["ps", "--no-trunc", "--filter", "status=running", "--filter"])
            .arg(format!("label={label}"))
            .args(["--format", "{{.ID}}"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(format!("cannot run {}: {e}", self.docker.display())),
            Err(_) => return Err("looking up the container timed out".into()),
        };
        if !output.status.success() {
            return Err(format!("docker ps failed with {}", output.status));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Ids are hex; anything else (or nothing) is not a container to exec into.
        match stdout.lines().map(str::trim).find(|id| !id.is_empty()) {
            Some(id) if id.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(id.to_owned()),
            Some(_) => Err("docker ps printed an unexpected container id".into()),
            None => Err(format!("no running container has the label {label}")),
        }
    }
}

#[async_trait::async_trait]
impl Runner for DockerCli {
    async fn prepare(&self, argv: &[String]) -> Result<Invocation, String> {
        let container = self.resolve().await?;
        let mut args = vec!["exec".to_owned()];
        if let Some(user) = &self.user {
            args.extend(["--user".to_owned(), user.clone()]);
        }
        // `docker exec` stops reading its own options at the container name,
        // so the argv after it cannot add docker flags.
        args.push(container);
        args.extend(argv.iter().cloned());
        Ok(Invocation { program: self.docker.clone(), args })
    }
}

/// `PROGRAM ARGS… ARGV…` on the proxy's own host.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[async_trait::async_trait]
impl Runner for CommandRunner {
    async fn prepare(&self, argv: &[String]) -> Result<Invocation, String> {
        let mut args = self.args.clone();
        args.extend(argv.iter().cloned());
        Ok(Invocation { program: self.program.clone(), args })
    }
}

/// Output of a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// Limits for one run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub timeout: Duration,
    /// Bytes of stdout and stderr together.
    pub max_output: u64,
}

/// Runs `invocation`, sending its output to `out`, until it exits, the
/// limits are hit, `cancel` resolves (or its sender is dropped), or `out` is
/// closed.
pub async fn run(
    invocation: &Invocation,
    limits: RunLimits,
    out: mpsc::Sender<Chunk>,
    mut cancel: oneshot::Receiver<()>,
) -> Outcome {
    let mut child = match Command::new(&invocation.program)
        .args(&invocation.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", invocation.program.display())),
    };
    let group = child.id().map(|pid| pid as libc::pid_t);
    let pipes = (child.stdout.take().map(|p| p.into_owned_fd()), child.stderr.take().map(|p| p.into_owned_fd()));
    let (mut stdout, mut stderr) = match pipes {
        (Some(Ok(stdout)), Some(Ok(stderr))) => match (OutputPipe::new(stdout), OutputPipe::new(stderr)) {
            (Ok(stdout), Ok(stderr)) => (Some(stdout), Some(stderr)),
            (Err(e), _) | (_, Err(e)) => return Outcome::Failed(format!("cannot read the output: {e}")),
        },
        _ => return Outcome::Failed("cannot read the output".into()),
    };
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    let mut left = limits.max_output;

    // Read both pipes until they close or a limit ends the run.
    let stopped = loop {
        if stdout.is_none() && stderr.is_none() {
            break None;
        }
        tokio::select! {
            read = read_some(&mut stdout) => {
                if let Some(data) = read {
                    if let Err(outcome) = forward(&out, Chunk::Stdout, data, &mut left).await {
                        break Some(outcome);
                    }
                }
            }
            read = read_some(&mut stderr) => {
                if let Some(data) = read {
                    if let Err(outcome) = forward(&out, Chunk::Stderr, data, &mut left).await {
                        break Some(outcome);
                    }
                }
            }
            _ = &mut deadline => break Some(Outcome::TimedOut),
            _ = &mut cancel => break Some(Outcome::Abandoned),
        }
    };
    let outcome = match stopped {
        Some(outcome) => outcome,
        None => tokio::select! {
            status = child.wait() => match status {
                Ok(status) => Outcome::Exited(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))),
                Err(e) => Outcome::Failed(format!("cannot wait for the command: {e}")),
            },
            _ = &mut deadline => Outcome::TimedOut,
            _ = &mut cancel => Outcome::Abandoned,
        },
    };
    // Also after a normal exit: nothing the command left behind outlives it.
    if let Some(group) = group {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it touches no memory.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    outcome
}

/// Reads from a pipe that is still open; `None` (and the pipe forgotten)
/// at its end. A closed pipe never resolves, so `select!` skips it.
async fn read_some(pipe: &mut Option<OutputPipe>) -> Option<Vec<u8>> {
    let Some(reader) = pipe.as_ref() else {
        return std::future::pending().await;
    };
    let data = reader.read().await;
    if data.is_none() {
        *pipe = None;
    }
    data
}

/// Sends what fits in the output allowance; an `Err` ends the run.
async fn forward(
    out: &mpsc::Sender<Chunk>,
    kind: fn(Vec<u8>) -> Chunk,
    mut data: Vec<u8>,
    left: &mut u64,
) -> Result<(), Outcome> {
    let read = data.len();
    let fits = read.min(usize::try_from(*left).unwrap_or(usize::MAX));
    data.truncate(fits);
    if fits > 0 && out.send(kind(data)).await.is_err() {
        return Err(Outcome::Abandoned);
    }
    *left -= fits as u64;
    if fits < read {
        return Err(Outcome::OutputLimit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Invocation {
        // Only the tests use a shell, to make small fixture commands.
        Invocation { program: "/bin/sh".into(), args: vec!["-c".into(), script.into()] }
    }

    async fn collect(invocation: Invocation, limits: RunLimits) -> (Outcome, Vec<u8>, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel(4);
        let (_keep, cancel) = oneshot::channel();
        let run = tokio::spawn(async move { run(&invocation, limits, tx, cancel).await });
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Stdout(d) => stdout.extend(d),
                Chunk::Stderr(d) => stderr.extend(d),
            }
        }
        (run.await.unwrap(), stdout, stderr)
    }

    const LIMITS: RunLimits = RunLimits { timeout: Duration::from_secs(30), max_output: 1 << 20 };

    #[tokio::test]
    async fn streams_output_and_exit_status() {
        let (outcome, stdout, stderr) = collect(sh("echo out; echo err >&2; exit 7"), LIMITS).await;
        assert_eq!(outcome, Outcome::Exited(7));
        assert_eq!(stdout, b"out\n");
        assert_eq!(stderr, b"err\n");
    }

    #[tokio::test]
    async fn output_limit_kills_the_command() {
        let limits = RunLimits { max_output: 1000, ..LIMITS };
        let (outcome, stdout, _) = collect(sh("while :; do echo 0123456789; done"), limits).await;
        assert_eq!(outcome, Outcome::OutputLimit);
        assert_eq!(stdout.len(), 1000);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The background child would create the marker if it outlived the kill.
        let script = format!("(sleep 2; touch {}) & sleep 60", marker.display());
        let limits = RunLimits { timeout: Duration::from_millis(300), ..LIMITS };
        let (outcome, _, _) = collect(sh(&script), limits).await;
        assert_eq!(outcome, Outcome::TimedOut);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn cancel_stops_the_command() {
        let (tx, _rx) = mpsc::channel(4);
        let (stop, cancel) = oneshot::channel();
        let run = tokio::spawn(async move { run(&sh("sleep 60"), LIMITS, tx, cancel).await });
        drop(stop);
        assert_eq!(run.await.unwrap(), Outcome::Abandoned);
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_start() {
        let invocation = Invocation { program: "/nonexistent/program".into(), args: vec![] };
        let (outcome, _, _) = collect(invocation, LIMITS).await;
        assert!(matches!(outcome, Outcome::Failed(reason) if reason.contains("/nonexistent/program")));
    }

    #[tokio::test]
    async fn docker_invocation_by_name_and_user() {
        let runner = DockerCli {
            docker: "docker".into(),
            target: Container::Name("nextcloud".into()),
            user: Some("www-data".into()),
        };
        let argv: Vec<String> = ["php", "occ", "files:scan", "--all"].map(String::from).into();
        let invocation = runner.prepare(&argv).await.unwrap();
        assert_eq!(invocation.program, PathBuf::from("docker"));
        assert_eq!(invocation.args, ["exec", "--user", "www-data", "nextcloud", "php", "occ", "files:scan", "--all"]);
    }

    /// A fake `docker` that answers `ps` with an id, to check the lookup by
    /// label and what is asked of docker.
    #[tokio::test]
    async fn docker_container_by_label() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("docker");
        let log = dir.path().join("calls");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\necho 0123abcdef\necho 4567abcdef\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let runner = DockerCli {
            docker: fake.clone(),
            target: Container::Label("com.docker.swarm.service.name=nc_app".into()),
            user: None,
        };
        let invocation = runner.prepare(&["photoprism".into(), "index".into()]).await.unwrap();
        assert_eq!(invocation.args, ["exec", "0123abcdef", "photoprism", "index"]);
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls,
            "ps --no-trunc --filter status=running --filter label=com.docker.swarm.service.name=nc_app --format {{.ID}}\n"
        );

        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        let missing = runner.prepare(&["photoprism".into()]).await.unwrap_err();
        assert!(missing.contains("no running container"), "{missing}");
    }
}
