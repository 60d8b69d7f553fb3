//! Docker inside a container: installing the engine and compose, and
//! waiting for the daemon.

use core::time::Duration;

use crate::compose::{Compose, ComposeCommand};
use crate::container::Container;
use crate::error::{Result, ResultExt};
use crate::exec::ExecOptions;
use crate::os::OsFamily;

/// `docker info` attempts before the daemon counts as not starting, and the
/// pause between them: 30 × 2 s.
const READY_ATTEMPTS: u32 = 30;
const READY_PAUSE: Duration = Duration::from_secs(2);
const INFO_TIMEOUT: Duration = Duration::from_secs(30);

/// Docker in one container, with the compose flavour its distribution ships.
#[derive(Debug)]
pub struct Docker<'c> {
    container: &'c Container,
    family: OsFamily,
}

impl Container {
    /// Install Docker and compose, enable and start the daemon, and wait until
    /// `docker info` answers. Each package or service command gets `timeout`.
    ///
    /// Alpine: `docker` + `docker-cli-compose`, `rc-update add docker default`,
    /// `service docker start`. Debian: `docker.io` + `docker-compose` +
    /// `ca-certificates` (a recommend that registry pulls need),
    /// `systemctl enable --now docker`.
    pub fn install_docker(&self, timeout: Duration) -> Result<Docker<'_>> {
        let docker = self.docker()?;
        let options = ExecOptions::new().timeout(timeout);
        match docker.family {
            OsFamily::Alpine => {
                self.install_packages_within(&["docker", "docker-cli-compose"], timeout)?;
                self.run_with(&["rc-update", "add", "docker", "default"], &options)
                    .context("enabling the docker service")?;
                self.run_with(&["service", "docker", "start"], &options).context("starting the docker service")?;
            }
            OsFamily::Debian => {
                self.install_packages_within(&["docker.io", "docker-compose", "ca-certificates"], timeout)?;
                self.run_with(&["systemctl", "enable", "--now", "docker"], &options)
                    .context("starting the docker service")?;
            }
        }
        docker.wait_ready()?;
        Ok(docker)
    }

    /// Docker that is already installed (upgrade, health): only learns the
    /// distribution, which decides the compose command.
    pub fn docker(&self) -> Result<Docker<'_>> {
        Ok(Docker { container: self, family: self.os_family()? })
    }

    /// Docker that is already installed, once its daemon answers (an
    /// upgrade: the daemon may still be starting): [`docker`](Self::docker),
    /// then [`Docker::wait_ready`].
    pub fn running_docker(&self) -> Result<Docker<'_>> {
        let docker = self.docker()?;
        docker.wait_ready()?;
        Ok(docker)
    }
}

impl<'c> Docker<'c> {
    /// Wait until the daemon answers `docker info`, pausing between attempts
    /// (the socket appears a moment after the service starts).
    pub fn wait_ready(&self) -> Result<()> {
        let options = ExecOptions::new().timeout(INFO_TIMEOUT);
        let mut attempt = 1;
        loop {
            match self.container.run_with(&["docker", "info"], &options) {
                Ok(_) => return Ok(()),
                Err(e) if attempt >= READY_ATTEMPTS => return Err(e.context("the docker daemon did not become ready")),
                Err(_) => {
                    attempt += 1;
                    self.container.pause(READY_PAUSE)?;
                }
            }
        }
    }

    /// A compose project whose file lives in `project_dir`.
    pub fn compose(&self, project_dir: impl Into<String>) -> Compose<'c> {
        let command = match self.family {
            OsFamily::Alpine => ComposeCommand::Plugin,
            OsFamily::Debian => ComposeCommand::Standalone,
        };
        Compose::new(self.container, project_dir.into(), command)
    }
}
