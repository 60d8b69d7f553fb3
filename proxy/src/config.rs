//! The proxy's TOML configuration, read once at start.
//!
//! See the crate documentation for an example file. Everything that can be
//! checked without running a command (regexes, prefixes, limits) is checked
//! here, so that a bad file stops the server at start rather than refusing
//! commands later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::{CommandRule, PolicyError};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where the SSH server listens, e.g. `0.0.0.0:2222`.
    pub listen: SocketAddr,
    /// The server's ED25519 host key (OpenSSH format). Generated (0600) when
    /// the file does not exist.
    pub host_key: PathBuf,
    /// An extra TCP port that only accepts and closes connections, for
    /// health checks that should not speak SSH.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// A file every audit line is also appended to. In OpenSSH
    /// forced-command mode it replaces syslog.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// Services by name; the SSH user name selects one when a key belongs
    /// to several.
    pub services: BTreeMap<String, ServiceConfig>,
}

/// One service: who may connect and what they may run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// An OpenSSH `authorized_keys` file (a Docker secret is such a file
    /// under `/run/secrets/`). Only `ssh-ed25519` lines are used.
    pub authorized_keys: PathBuf,
    /// Where matched commands run.
    pub runner: RunnerConfig,
    /// Seconds a command may run before it is killed (exit status 124).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Bytes of stdout and stderr together; past that the command is killed
    /// (exit status 125).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: u64,
    /// Commands each key may start per minute, on average.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    /// Commands a key may start at once after being idle.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Commands a key may have running at the same time.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
    /// The whitelist.
    pub commands: Vec<CommandConfig>,
}

/// One whitelist entry as written in the file; compiled into a [`CommandRule`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The fixed start of the argv, split with POSIX word rules
    /// (`"php occ files:scan"`).
    pub prefix: String,
    /// How many arguments may follow the prefix.
    #[serde(default)]
    pub max_args: usize,
    /// Flags allowed without a value (`--all`, `-v`).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Flags that take a value, with the regex the whole value must match.
    /// The value may be given as `--path=VALUE` or `--path VALUE`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The regex every positional argument must match in full; without it
    /// no positional argument is allowed.
    #[serde(default)]
    pub positional: Option<String>,
}

/// How a matched argv is run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RunnerConfig {
    /// `docker exec [--user U] CONTAINER ARGV…` through the Docker CLI.
    Docker {
        /// The container's name or id.
        #[serde(default)]
        container: Option<String>,
        /// Or a label (`key=value`) that picks the first running container
        /// carrying it, e.g. `com.docker.swarm.service.name=nextcloud_app`.
        #[serde(default)]
        label: Option<String>,
        /// The user inside the container; set it to run as non-root.
        #[serde(default)]
        user: Option<String>,
        /// The Docker CLI to run.
        #[serde(default = "default_docker")]
        docker: PathBuf,
    },
    /// A local program run as `PROGRAM ARGS… ARGV…`, never through a shell.
    Command {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
    },
}

fn default_timeout_secs() -> u64 {
    300
}
fn default_max_output() -> u64 {
    4 * 1024 * 1024
}
fn default_rate() -> u32 {
    60
}
fn default_burst() -> u32 {
    10
}
fn default_max_sessions() -> u32 {
    4
}
fn default_docker() -> PathBuf {
    PathBuf::from("docker")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("service {service}: {message}")]
    Service { service: String, message: String },
    #[error("service {service}, command {prefix:?}: {source}")]
    Command { service: String, prefix: String, source: PolicyError },
}

impl ProxyConfig {
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: ProxyConfig = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: runner choices, limits, and that every
    /// command compiles.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.services.is_empty() {
            return Err(ConfigError::Service { service: "*".into(), message: "no service is configured".into() });
        }
        for (name, service) in &self.services {
            service.compile_rules(name)?;
            let fail = |message: &str| Err(ConfigError::Service { service: name.clone(), message: message.into() });
            if let RunnerConfig::Docker { container, label, .. } = &service.runner {
                match (container, label) {
                    (Some(_), Some(_)) | (None, None) => {
                        return fail("the docker runner needs exactly one of container, label")
                    }
                    (None, Some(label)) if !label.contains('=') => return fail("label must be key=value"),
                    _ => {}
                }
            }
            if service.timeout_secs == 0 || service.max_output_bytes == 0 {
                return fail("timeout_secs and max_output_bytes must be positive");
            }
            if service.rate_per_minute == 0 || service.burst == 0 || service.max_sessions == 0 {
                return fail("rate_per_minute, burst and max_sessions must be positive");
            }
        }
        Ok(())
    }
}

impl ServiceConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn compile_rules(&self, service: &str) -> Result<Vec<CommandRule>, ConfigError> {
        if self.commands.is_empty() {
            return Err(ConfigError::Service { service: service.into(), message: "no command is allowed".into() });
        }
        self.commands
            .iter()
            .map(|c| {
                CommandRule::compile(c).map_err(|source| ConfigError::Command {
                    service: service.into(),
                    prefix: c.prefix.clone(),
                    source,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
listen = "127.0.0.1:2222"
host_key = "/tmp/host_key"

[services.nextcloud]
authorized_keys = "/run/secrets/nextcloud_keys"
runner = { kind = "docker", label = "com.docker.swarm.service.name=nc_app", user = "www-data" }
timeout_secs = 60

[[services.nextcloud.commands]]
prefix = "php occ files:scan"
max_args = 3
flags = ["--all", "--quiet"]
options = { "--path" = "/[A-Za-z0-9_./-]+" }
positional = "[A-Za-z0-9_.@-]{1,64}"
"#;

    #[test]
    fn example_parses_and_validates() {
        let config: ProxyConfig = toml::from_str(EXAMPLE).unwrap();
        config.validate().unwrap();
        let service = &config.services["nextcloud"];
        assert_eq!(service.timeout(), Duration::from_secs(60));
        assert_eq!(service.max_sessions, 4);
        assert!(matches!(&service.runner, RunnerConfig::Docker { user: Some(u), .. } if u == "www-data"));
        assert_eq!(service.compile_rules("nextcloud").unwrap()[0].prefix(), ["php", "occ", "files:scan"]);
    }

    #[test]
    fn docker_runner_needs_one_target() {
        let text = EXAMPLE.replace("label = \"com.docker.swarm.service.name=nc_app\", ", "");
        let config: ProxyConfig = toml::from_str(&text).unwrap();
        assert!(config.validate().unwrap_err().to_string().contains("exactly one of container, label"));
    }

    #[test]
    fn bad_regex_is_refused_at_load() {
        let text = EXAMPLE.replace("[A-Za-z0-9_.@-]{1,64}", "([unclosed");
        let config: ProxyConfig = toml::from_str(&text).unwrap();
        assert!(config.validate().unwrap_err().to_string().contains("php occ files:scan"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = EXAMPLE.replace("timeout_secs = 60", "timeout_sec = 60");
        assert!(toml::from_str::<ProxyConfig>(&text).is_err());
    }
}
