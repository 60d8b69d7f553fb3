//! Running host processes (`lxc-*` tools) with a timeout, captured output,
//! and a kill that reaches the whole process group.
//!
//! This machine's PID 1 does not reap orphans, so every child is waited for;
//! a child whose future is dropped is killed and left to tokio's reaper.

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::super::{BackendError, ExecOutput};

/// How a command ended.
pub(super) enum Finished {
    Exited(ExecOutput),
    TimedOut { stdout: Vec<u8>, stderr: Vec<u8> },
}

/// Kills the child's process group when dropped, unless disarmed.
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            kill_group(pgid);
        }
    }
}

fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Run `program args` in its own process group, feeding `stdin`, bounded by `timeout`.
pub(super) async fn run<I, S>(
    program: &str,
    args: I,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Finished, BackendError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a timeout kills the tool and everything it started,
        // and a terminal's Ctrl-C does not reach it.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|err| spawn_error(program, err))?;
    let mut guard = GroupKill(child.id().map(|pid| pid as i32));
    let result = tokio::time::timeout(timeout, collect(&mut child, stdin)).await;
    match result {
        Ok(Ok(output)) => {
            // Finished: whatever it deliberately left running stays.
            guard.0 = None;
            Ok(Finished::Exited(output))
        }
        Ok(Err(err)) => Err(BackendError::Failed(format!("`{program}`: {err}"))),
        Err(_) => {
            if let Some(pgid) = guard.0.take() {
                kill_group(pgid);
            }
            let _ = child.wait().await;
            let (stdout, stderr) = drain(&mut child).await;
            Ok(Finished::TimedOut { stdout, stderr })
        }
    }
}

/// Run a host tool that must succeed; its stderr becomes the error.
pub(super) async fn tool<I, S>(program: &str, args: I, timeout: Duration) -> Result<String, BackendError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = || {
        std::iter::once(program.to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match run(program, &args, None, timeout).await? {
        Finished::Exited(out) if out.status == 0 => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Finished::Exited(out) => Err(BackendError::Failed(format!(
            "`{}` exited with status {}: {}",
            shown(),
            out.status,
            last_lines(&out.stderr, &out.stdout)
        ))),
        Finished::TimedOut { .. } => {
            Err(BackendError::Timeout(format!("`{}` did not finish within {}s", shown(), timeout.as_secs())))
        }
    }
}

fn spawn_error(program: &str, err: std::io::Error) -> BackendError {
    if err.kind() == std::io::ErrorKind::NotFound {
        BackendError::Failed(format!("`{program}` is not installed: {}", super::SETUP_HINT))
    } else {
        BackendError::Failed(format!("could not run `{program}`: {err}"))
    }
}

async fn collect(child: &mut Child, stdin: Option<&[u8]>) -> std::io::Result<ExecOutput> {
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let feed = async {
        if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
            // A command that exits without reading its input is not an error.
            let _ = pipe.write_all(bytes).await;
            let _ = pipe.shutdown().await;
        }
        Ok::<_, std::io::Error>(())
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (fed, read_out, read_err) = tokio::join!(feed, out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
    fed?;
    read_out?;
    read_err?;
    let status = child.wait().await?;
    Ok(ExecOutput { status: exit_code(status), stdout, stderr })
}

async fn drain(child: &mut Child) -> (Vec<u8>, Vec<u8>) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut out) = child.stdout.take() {
        let _ = tokio::time::timeout(Duration::from_secs(1), out.read_to_end(&mut stdout)).await;
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(1), err.read_to_end(&mut stderr)).await;
    }
    (stdout, stderr)
}

/// The shell convention: a signal becomes 128 + its number (137 for SIGKILL).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The end of a command's error output, for messages.
pub(super) fn last_lines(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.iter().all(u8::is_ascii_whitespace) { stdout } else { stderr });
    let lines: Vec<&str> = text.trim().lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    if tail.is_empty() {
        "(no output)".to_string()
    } else {
        tail
    }
}

/// An exclusive flock(2), held until the value is dropped; it serialises this
/// process's tasks and other processes alike.
pub(super) struct FileLock(#[allow(dead_code)] std::fs::File);

pub(super) async fn lock_file(path: &std::path::Path) -> Result<FileLock, BackendError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&owned)?;
        // SAFETY: flock(2) on a descriptor this function owns; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(file))
    })
    .await
    .map_err(|err| BackendError::Failed(format!("lock {}: {err}", path.display())))?
    .map_err(|err| BackendError::Failed(format!("locking {}: {err}", path.display())))
}
