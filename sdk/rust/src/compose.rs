//! A Docker Compose project in a container: its file, pull, up and status.

use core::time::Duration;

use crate::container::Container;
use crate::error::{Error, Result, ResultExt};
use crate::exec::ExecOptions;

/// The file name `Compose::write_file` uses inside the project directory.
pub const COMPOSE_FILE_NAME: &str = "docker-compose.yml";

/// Bound on one `ps` call made by `wait_running`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// `value` as a double-quoted YAML string that compose takes literally:
/// YAML escapes for backslash, `"` and control characters, and `$` doubled so
/// compose does not interpolate it. Use it for every operator-supplied value
/// (passwords above all) put into a compose file.
pub fn yaml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How compose is invoked: Alpine ships the CLI plugin, Debian bookworm the
/// standalone `docker-compose`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComposeCommand {
    /// `docker compose …`
    Plugin,
    /// `docker-compose …`
    Standalone,
}

impl ComposeCommand {
    fn argv_prefix(self) -> &'static [&'static str] {
        match self {
            ComposeCommand::Plugin => &["docker", "compose"],
            ComposeCommand::Standalone => &["docker-compose"],
        }
    }
}

/// One compose project. Every command passes `-f DIR/docker-compose.yml`
/// and runs in DIR, so the project name is the directory's name.
#[derive(Debug)]
pub struct Compose<'c> {
    container: &'c Container,
    dir: String,
    command: ComposeCommand,
}

impl<'c> Compose<'c> {
    pub fn new(container: &'c Container, dir: String, command: ComposeCommand) -> Self {
        Compose { container, dir, command }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn command(&self) -> ComposeCommand {
        self.command
    }

    /// Path of the compose file.
    pub fn file_path(&self) -> String {
        format!("{}/{COMPOSE_FILE_NAME}", self.dir.trim_end_matches('/'))
    }

    /// Create the project directory and write the compose file, mode 0600
    /// because compose files usually carry passwords.
    pub fn write_file(&self, yaml: &str) -> Result<()> {
        self.container.run(&["mkdir", "-p", self.dir.as_str()]).context("creating the compose project directory")?;
        self.container.write_file(&self.file_path(), yaml, 0o600)
    }

    /// `pull --quiet`: fetch every image.
    pub fn pull(&self, timeout: Duration) -> Result<()> {
        self.run(&["pull", "--quiet"], timeout).map(drop)
    }

    /// `up -d`: create and start every service in the background.
    pub fn up(&self, timeout: Duration) -> Result<()> {
        self.run(&["up", "-d"], timeout).map(drop)
    }

    /// `ps`: the human-readable status table.
    pub fn ps(&self, timeout: Duration) -> Result<String> {
        self.run(&["ps"], timeout)
    }

    /// `ps --services --filter status=running`: names of running services,
    /// one per line of output.
    pub fn running_services(&self, timeout: Duration) -> Result<Vec<String>> {
        let out = self.run(&["ps", "--services", "--filter", "status=running"], timeout)?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
    }

    /// The names in `services` that `running_services` does not list.
    pub fn not_running(&self, services: &[&str], timeout: Duration) -> Result<Vec<String>> {
        let running = self.running_services(timeout)?;
        Ok(services.iter().filter(|s| !running.iter().any(|r| r == *s)).map(|s| s.to_string()).collect())
    }

    /// Check up to `attempts` times, `pause` apart, that every service in
    /// `services` runs; a service that restarts after `up` gets a moment.
    pub fn wait_running(&self, services: &[&str], attempts: u32, pause: Duration) -> Result<()> {
        let mut attempt = 1;
        loop {
            let missing = self.not_running(services, STATUS_TIMEOUT)?;
            if missing.is_empty() {
                return Ok(());
            }
            if attempt >= attempts {
                return Err(Error::backend(format!(
                    "compose services not running after {attempts} checks: {}",
                    missing.join(", ")
                )));
            }
            attempt += 1;
            self.container.pause(pause)?;
        }
    }

    /// Run a compose subcommand for this project; returns stdout.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let file = self.file_path();
        let argv = [self.command.argv_prefix(), &["-f", file.as_str()], args].concat();
        let options = ExecOptions::new().cwd(self.dir.as_str()).timeout(timeout);
        self.container.run_with(&argv, &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_string_escapes_what_yaml_and_compose_interpret() {
        assert_eq!(yaml_string("plain"), "\"plain\"");
        assert_eq!(yaml_string("a\"b\\c$d"), "\"a\\\"b\\\\c$$d\"");
        assert_eq!(yaml_string("x\ny\u{1}"), "\"x\\ny\\u0001\"");
    }
}
