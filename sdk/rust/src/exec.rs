//! Running programs in a container (`exec` grant). Always an argv, never a
//! shell string.

use core::time::Duration;

use crate::bindings::proximity::recipe::exec as wit;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::text::{display_argv, duration_ms, tail_lines};

/// How many trailing lines of output a failed command's error keeps.
const ERROR_TAIL_LINES: usize = 20;

/// Options for one command. `ExecOptions::default()` runs with no extra
/// environment, the container's default directory, no stdin and only the
/// run's deadline.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

impl ExecOptions {
    pub fn new() -> Self {
        ExecOptions::default()
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn to_wit(&self) -> wit::ExecOptions {
        wit::ExecOptions {
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            stdin: self.stdin.clone(),
            timeout_ms: self.timeout.map(duration_ms),
        }
    }
}

/// What a finished command left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl From<wit::ExecOutput> for ExecOutput {
    fn from(o: wit::ExecOutput) -> Self {
        ExecOutput { status: o.status, stdout: o.stdout, stderr: o.stderr }
    }
}

impl Container {
    /// Run `argv` and return its output whatever its exit status.
    pub fn exec<S: AsRef<str>>(&self, argv: &[S]) -> Result<ExecOutput> {
        self.exec_with(argv, &ExecOptions::default())
    }

    /// [`exec`](Self::exec) with options.
    pub fn exec_with<S: AsRef<str>>(&self, argv: &[S], options: &ExecOptions) -> Result<ExecOutput> {
        let argv: Vec<String> = argv.iter().map(|a| a.as_ref().to_string()).collect();
        match wit::container_exec(self.raw(), &argv, &options.to_wit()) {
            Ok(output) => Ok(output.into()),
            Err(e) => Err(Error::from(e).context(format_args!("`{}`", display_argv(&argv)))),
        }
    }

    /// Run `argv`, fail with `backend` unless it exits 0, and return its stdout.
    ///
    /// The error names the command and carries the tail of its stderr (or of
    /// its stdout when stderr is empty), which is what an operator needs.
    pub fn run<S: AsRef<str>>(&self, argv: &[S]) -> Result<String> {
        self.run_with(argv, &ExecOptions::default())
    }

    /// [`run`](Self::run) with options.
    pub fn run_with<S: AsRef<str>>(&self, argv: &[S], options: &ExecOptions) -> Result<String> {
        let output = self.exec_with(argv, options)?;
        if output.success() {
            return Ok(output.stdout_text());
        }
        Err(command_failed(&display_argv(argv), &output))
    }

    /// Wait inside the container (`sleep`), for pauses between retries: the
    /// guest itself has no clock to wait on.
    pub fn pause(&self, duration: Duration) -> Result<()> {
        let secs = duration.as_secs().max(1).to_string();
        self.run(&["sleep", secs.as_str()]).map(drop)
    }
}

pub(crate) fn command_failed(command: &str, output: &ExecOutput) -> Error {
    let stderr = output.stderr_text();
    let stdout;
    let (stream, text) = if stderr.trim().is_empty() {
        stdout = output.stdout_text();
        ("stdout", stdout.as_str())
    } else {
        ("stderr", stderr.as_str())
    };
    let tail = tail_lines(text, ERROR_TAIL_LINES);
    if tail.is_empty() {
        Error::backend(format!("`{command}` exited with status {}", output.status))
    } else {
        Error::backend(format!("`{command}` exited with status {}; {stream}:\n{tail}", output.status))
    }
}
