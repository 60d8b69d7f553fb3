//! A Docker Compose project in a container: its file, pull, up and status.

use core::time::Duration;

use crate::container::Container;
use crate::context::Context;
use crate::error::{Error, Result, ResultExt};
use crate::exec::ExecOptions;
use crate::report::HealthCheck;

/// The file name `Compose::write_file` uses inside the project directory.
pub const COMPOSE_FILE_NAME: &str = "docker-compose.yml";

/// Bound on one `ps` call made by `wait_running`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// Seconds compose gives a service to stop before killing it, on `down`:
/// databases get time to flush.
pub const STOP_GRACE_SECS: u32 = 30;

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

    /// `up -d --remove-orphans`: bring the project to what the file says
    /// now, recreating the services whose image or settings changed and
    /// removing services the file no longer has.
    pub fn up_changed(&self, timeout: Duration) -> Result<()> {
        self.run(&["up", "-d", "--remove-orphans"], timeout).map(drop)
    }

    /// `down --remove-orphans --timeout 30`: stop and remove the project's
    /// containers and networks, giving each service [`STOP_GRACE_SECS`] to
    /// stop. With `volumes`, its named volumes go too (`--volumes`).
    pub fn down(&self, volumes: bool, timeout: Duration) -> Result<()> {
        let grace = STOP_GRACE_SECS.to_string();
        let mut args = vec!["down", "--remove-orphans", "--timeout", grace.as_str()];
        if volumes {
            args.push("--volumes");
        }
        self.run(&args, timeout).map(drop)
    }

    /// Run `argv` in the running `service` (`exec -T [--user U] SERVICE …`),
    /// without a terminal; returns stdout. Secrets belong in
    /// `options.stdin`, not in `argv`.
    pub fn exec(&self, service: &str, user: Option<&str>, argv: &[&str], options: &ExecOptions) -> Result<String> {
        let mut args = vec!["exec", "-T"];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        args.push(service);
        args.extend_from_slice(argv);
        self.run_with(&args, options)
    }

    /// `up -d` (bounded by `timeouts.start`), then [`wait_running`](Self::wait_running)
    /// with `timeouts`' checks: a first install's start, after [`pull`](Self::pull).
    /// Upgrades use [`roll_out`](Self::roll_out).
    pub fn up_and_wait(&self, services: &[&str], timeouts: &RollOut) -> Result<()> {
        self.up(timeouts.start).context("starting the services")?;
        self.wait_running(services, timeouts.running_checks, timeouts.running_pause)
    }

    /// Write `yaml` as the project's file, pull its images, bring it up with
    /// [`up_changed`](Self::up_changed) and wait until `services` run: the
    /// whole of an upgrade of a compose app, before its own probes.
    pub fn roll_out(&self, yaml: &str, services: &[&str], timeouts: &RollOut) -> Result<()> {
        self.write_file(yaml)?;
        self.pull(timeouts.pull).context("pulling images")?;
        self.up_changed(timeouts.start).context("starting the services")?;
        self.wait_running(services, timeouts.running_checks, timeouts.running_pause)
    }

    /// Take the project down before the host destroys its container (an
    /// uninstall): `down` without `--volumes`, so services stop cleanly (a
    /// database flushes) and nothing writes while the disk goes; the volumes
    /// live on that disk and go with it. A container that no longer answers
    /// (stopped, Docker broken) is no reason to keep the app: the failure is
    /// logged as a warning and `Ok` returned.
    pub fn stop_for_removal(&self, timeout: Duration) -> Result<()> {
        if let Err(e) = self.down(false, timeout) {
            crate::log::warn(format!("could not take the compose project in {} down: {e}", self.dir));
        }
        Ok(())
    }

    /// A health check named `services` that passes when every one of
    /// `services` runs, and names the ones that do not.
    pub fn services_check(&self, services: &[&str], timeout: Duration) -> HealthCheck {
        match self.not_running(services, timeout) {
            Ok(missing) if missing.is_empty() => HealthCheck::pass("services", services.join(", ")),
            Ok(missing) => HealthCheck::fail("services", format!("not running: {}", missing.join(", "))),
            Err(e) => HealthCheck::fail("services", e.to_string()),
        }
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
        self.run_with(args, &ExecOptions::new().timeout(timeout))
    }

    /// [`run`](Self::run) with options (stdin, environment); the working
    /// directory is always the project's.
    pub fn run_with(&self, args: &[&str], options: &ExecOptions) -> Result<String> {
        let file = self.file_path();
        let argv = [self.command.argv_prefix(), &["-f", file.as_str()], args].concat();
        let options = options.clone().cwd(self.dir.as_str());
        self.container.run_with(&argv, &options)
    }
}

/// What a compose app's `uninstall` does before the host destroys its
/// containers: the project in `project_dir` of the app's first container is
/// taken down with [`Compose::stop_for_removal`]. Never fails for want of a
/// running container or Docker: those are logged as warnings.
pub fn uninstall_app_project(project_dir: &str, timeout: Duration) -> Result<()> {
    let Some(container) = crate::container::app_containers().into_iter().next() else {
        crate::log::warn("this app has no container left: nothing to take down");
        return Ok(());
    };
    match container.docker() {
        Ok(docker) => docker.compose(project_dir).stop_for_removal(timeout),
        Err(e) => {
            crate::log::warn(format!("could not reach Docker in container {}: {e}", container.id()));
            Ok(())
        }
    }
}

/// Time allowed for each part of [`Compose::roll_out`].
#[derive(Clone, Debug)]
pub struct RollOut {
    /// `pull`.
    pub pull: Duration,
    /// `up`.
    pub start: Duration,
    /// `ps` checks until every service runs, and the pause between them.
    pub running_checks: u32,
    pub running_pause: Duration,
}

impl RollOut {
    /// Pull and start bounds, with 10 status checks 3 s apart.
    pub fn new(pull: Duration, start: Duration) -> Self {
        RollOut { pull, start, running_checks: 10, running_pause: Duration::from_secs(3) }
    }
}

/// The time bounds a compose app's operator sets, read from the parameters
/// every compose recipe declares under these names:
/// `docker-install-timeout-secs`, `pull-timeout-secs`, `start-timeout-secs`.
#[derive(Clone, Debug)]
pub struct ComposeTimeouts {
    /// Each step of installing and starting Docker.
    pub docker_install: Duration,
    /// Pulling the images.
    pub pull: Duration,
    /// Starting the services, and the app answering afterwards.
    pub start: Duration,
}

impl ComposeTimeouts {
    pub fn from_context(ctx: &Context) -> Result<Self> {
        Ok(ComposeTimeouts {
            docker_install: ctx.param_secs("docker-install-timeout-secs")?,
            pull: ctx.param_secs("pull-timeout-secs")?,
            start: ctx.param_secs("start-timeout-secs")?,
        })
    }

    /// The pull and start bounds for [`Compose::roll_out`] and
    /// [`Compose::up_and_wait`], with [`RollOut::new`]'s status checks.
    pub fn roll_out(&self) -> RollOut {
        RollOut::new(self.pull, self.start)
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
