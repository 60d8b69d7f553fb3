//! Which distribution a container runs, and installing its packages.

use core::time::Duration;

use crate::container::Container;
use crate::error::{Error, Result, ResultExt};
use crate::exec::ExecOptions;
use crate::report::HealthCheck;

/// Where the SDK learns the distribution. Simulated backends must provide it.
pub const OS_RELEASE_PATH: &str = "/etc/os-release";

/// How long a package installation may take unless the recipe says otherwise.
pub const DEFAULT_PACKAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// The distribution families the SDK knows how to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsFamily {
    /// Alpine Linux: `apk`, OpenRC.
    Alpine,
    /// Debian and its derivatives (Ubuntu, ...): `apt-get`, systemd.
    Debian,
}

impl OsFamily {
    /// The family named by an os-release file's `ID`, else by its `ID_LIKE`.
    pub fn from_os_release(text: &str) -> Option<OsFamily> {
        let id = os_release_value(text, "ID").unwrap_or_default();
        let id_like = os_release_value(text, "ID_LIKE").unwrap_or_default();
        core::iter::once(id.as_str()).chain(id_like.split_whitespace()).find_map(|name| match name {
            "alpine" => Some(OsFamily::Alpine),
            "debian" => Some(OsFamily::Debian),
            _ => None,
        })
    }
}

/// The value of `key` in os-release syntax (`KEY=value`, `KEY="value"`).
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

impl Container {
    /// The container's distribution family, read from `/etc/os-release` on
    /// the first call and remembered afterwards.
    pub fn os_family(&self) -> Result<OsFamily> {
        if let Some(family) = self.os_family.get() {
            return Ok(*family);
        }
        let text = self.read_to_string(OS_RELEASE_PATH)?;
        let family = OsFamily::from_os_release(&text).ok_or_else(|| {
            Error::backend(format!(
                "unsupported distribution (ID={:?}, ID_LIKE={:?} in {OS_RELEASE_PATH})",
                os_release_value(&text, "ID").unwrap_or_default(),
                os_release_value(&text, "ID_LIKE").unwrap_or_default(),
            ))
        })?;
        Ok(*self.os_family.get_or_init(|| family))
    }

    /// Install `packages` with the distribution's package manager, each
    /// command bounded by [`DEFAULT_PACKAGE_TIMEOUT`].
    pub fn install_packages<S: AsRef<str>>(&self, packages: &[S]) -> Result<()> {
        self.install_packages_within(packages, DEFAULT_PACKAGE_TIMEOUT)
    }

    /// Install `packages`; each package-manager command gets `timeout`.
    ///
    /// Alpine: `apk add --no-cache …`. Debian: `apt-get update`, then
    /// `apt-get install -y --no-install-recommends …`, both with
    /// `DEBIAN_FRONTEND=noninteractive`.
    pub fn install_packages_within<S: AsRef<str>>(&self, packages: &[S], timeout: Duration) -> Result<()> {
        let names: Vec<&str> = packages.iter().map(AsRef::as_ref).collect();
        let what = format!("installing {}", names.join(" "));
        match self.os_family()? {
            OsFamily::Alpine => {
                let options = ExecOptions::new().timeout(timeout);
                let argv = [&["apk", "add", "--no-cache"][..], &names].concat();
                self.run_with(&argv, &options).context(what)?;
            }
            OsFamily::Debian => {
                let options = ExecOptions::new().env("DEBIAN_FRONTEND", "noninteractive").timeout(timeout);
                self.run_with(&["apt-get", "update"], &options).context(&what)?;
                let argv = [&["apt-get", "install", "-y", "--no-install-recommends"][..], &names].concat();
                self.run_with(&argv, &options).context(what)?;
            }
        }
        Ok(())
    }

    /// Upgrade installed `packages` to the newest the distribution has,
    /// installing nothing new; each command bounded by
    /// [`DEFAULT_PACKAGE_TIMEOUT`].
    pub fn upgrade_packages<S: AsRef<str>>(&self, packages: &[S]) -> Result<()> {
        self.upgrade_packages_within(packages, DEFAULT_PACKAGE_TIMEOUT)
    }

    /// Upgrade `packages`; each package-manager command gets `timeout`.
    ///
    /// Alpine: `apk upgrade --no-cache …`. Debian: `apt-get update -q`, then
    /// `apt-get install -y -q --only-upgrade …`, both with
    /// `DEBIAN_FRONTEND=noninteractive`. dpkg keeps configuration files the
    /// recipe changed (`--force-confdef`, `--force-confold`) instead of
    /// stopping the run with a question; recipes write theirs again anyway.
    pub fn upgrade_packages_within<S: AsRef<str>>(&self, packages: &[S], timeout: Duration) -> Result<()> {
        let names: Vec<&str> = packages.iter().map(AsRef::as_ref).collect();
        let what = format!("upgrading {}", names.join(" "));
        match self.os_family()? {
            OsFamily::Alpine => {
                let options = ExecOptions::new().timeout(timeout);
                let argv = [&["apk", "upgrade", "--no-cache"][..], &names].concat();
                self.run_with(&argv, &options).context(what)?;
            }
            OsFamily::Debian => {
                let options = ExecOptions::new().env("DEBIAN_FRONTEND", "noninteractive").timeout(timeout);
                self.run_with(&["apt-get", "update", "-q"], &options).context(&what)?;
                let upgrade = [
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--only-upgrade",
                    "-o",
                    "Dpkg::Options::=--force-confdef",
                    "-o",
                    "Dpkg::Options::=--force-confold",
                ];
                let argv = [&upgrade[..], &names].concat();
                self.run_with(&argv, &options).context(what)?;
            }
        }
        Ok(())
    }

    /// Stop `service` and keep it from starting again, before the host
    /// destroys the container (an uninstall): a database gets to flush.
    /// Debian: `systemctl disable --now SERVICE`. Alpine: `rc-service SERVICE
    /// stop`, then `rc-update del SERVICE default`.
    ///
    /// Best effort: a container that no longer answers is no reason to keep
    /// the app, so a failure is logged as a warning and never returned.
    pub fn stop_service_for_removal(&self, service: &str) {
        let stopped = self.os_family().and_then(|family| match family {
            OsFamily::Alpine => {
                self.run(&["rc-service", service, "stop"])?;
                self.run(&["rc-update", "del", service, "default"]).map(drop)
            }
            OsFamily::Debian => self.run(&["systemctl", "disable", "--now", service]).map(drop),
        });
        if let Err(err) = stopped {
            crate::log::warn(format!("could not stop {service} in {}: {err}", self.id()));
        }
    }
}

impl Container {
    /// A health check named `service` that passes while `service` runs.
    /// Debian: `systemctl is-active --quiet SERVICE`. Alpine: `rc-service
    /// SERVICE status`.
    pub fn service_check(&self, service: &str) -> HealthCheck {
        let active = self.os_family().and_then(|family| match family {
            OsFamily::Alpine => self.run(&["rc-service", service, "status"]),
            OsFamily::Debian => self.run(&["systemctl", "is-active", "--quiet", service]),
        });
        HealthCheck::from_result("service", &active, format!("{service} is active"))
    }
}

/// What a single-service app's `uninstall` does before the host destroys its
/// containers: [`Container::stop_service_for_removal`] in each of them.
/// Never fails; what cannot be stopped is logged as a warning.
pub fn uninstall_app_service(service: &str) -> Result<()> {
    for container in crate::container::app_containers() {
        container.stop_service_for_removal(service);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_family_from_id_and_id_like() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
        assert_eq!(OsFamily::from_os_release(debian), Some(OsFamily::Debian));
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n";
        assert_eq!(OsFamily::from_os_release(alpine), Some(OsFamily::Alpine));
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\n";
        assert_eq!(OsFamily::from_os_release(ubuntu), Some(OsFamily::Debian));
        let mint = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
        assert_eq!(OsFamily::from_os_release(mint), Some(OsFamily::Debian));
        assert_eq!(OsFamily::from_os_release("ID=fedora\n"), None);
    }
}
