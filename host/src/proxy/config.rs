//! The `[proxy]` table of the server's configuration: how the `proxy-exec`
//! capability reaches each proxy service.
//!
//! ```toml
//! [proxy]
//! max_connections_per_host = 5     # SSH connections to one proxy
//! idle_timeout_secs = 300
//! retries = 3                      # further attempts when a connection fails
//! breaker_failures = 5             # failed calls in a row that open the breaker
//! breaker_cooldown_secs = 30
//! discovery_ttl_secs = 60
//!
//! [proxy.services.nextcloud-proxy]
//! key = "/etc/proximity/keys/nextcloud-proxy"     # from `proximity keys generate`
//! host_fingerprint = "SHA256:..."                 # or known_hosts = "/path"
//! discovery = { static = ["10.0.0.5:2222"] }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breaker::BreakerConfig;
use super::discovery::{DiscoveryConfig, Source};
use crate::ssh::{HostKeyPolicy, PoolConfig, SshAuth};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    pub max_connections_per_host: usize,
    /// Commands at once on one connection (sessions); keep it at or below
    /// the proxy's `max_sessions` per key, and at most 32 (the channels the
    /// proxy opens on one connection).
    pub max_sessions_per_connection: usize,
    pub idle_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    pub retries: u32,
    pub backoff_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_secs: u64,
    pub discovery_ttl_secs: u64,
    pub health_timeout_ms: u64,
    /// Failed calls in a row through one proxy before discovery drops it.
    pub max_errors: u32,
    pub services: BTreeMap<String, ServiceSettings>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            max_connections_per_host: 5,
            max_sessions_per_connection: 4,
            idle_timeout_secs: 300,
            connect_timeout_secs: 10,
            retries: 3,
            backoff_ms: 200,
            breaker_failures: 5,
            breaker_cooldown_secs: 30,
            discovery_ttl_secs: 60,
            health_timeout_ms: 2000,
            max_errors: 3,
            services: BTreeMap::new(),
        }
    }
}

/// One proxy service, named as recipes' `[[grants.proxy]]` name it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The SSH user: the proxy picks the service by it when a key serves
    /// several [default: the service name].
    pub user: Option<String>,
    /// The private key (OpenSSH format, unencrypted).
    pub key: PathBuf,
    /// The proxies' host key fingerprint (`SHA256:...`); replicas share one key.
    pub host_fingerprint: Option<String>,
    /// Or an OpenSSH known_hosts file with their keys.
    pub known_hosts: Option<PathBuf>,
    /// With `known_hosts`: record a proxy's key the first time it is seen.
    #[serde(default)]
    pub trust_on_first_use: bool,
    pub discovery: Source,
}

/// Why the `[proxy]` table cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("proxy.services.{service}: {problem}")]
pub struct SettingsError {
    pub service: String,
    pub problem: String,
}

/// One service's settings, checked and in the shapes the client uses.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub name: String,
    pub user: String,
    pub auth: SshAuth,
    pub host_key: HostKeyPolicy,
    pub source: Source,
}

impl ProxySettings {
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_sessions_per_connection: self.max_sessions_per_connection,
            max_connections_per_host: self.max_connections_per_host,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
            ..PoolConfig::default()
        }
    }

    pub fn breaker(&self) -> BreakerConfig {
        BreakerConfig { failures: self.breaker_failures, cooldown: Duration::from_secs(self.breaker_cooldown_secs) }
    }

    pub fn discovery(&self) -> DiscoveryConfig {
        DiscoveryConfig {
            ttl: Duration::from_secs(self.discovery_ttl_secs),
            health_timeout: Duration::from_millis(self.health_timeout_ms),
            max_errors: self.max_errors,
        }
    }

    /// Every service, checked: a key that exists, one way to trust the
    /// proxies' host key.
    pub fn services(&self) -> Result<Vec<ServiceConfig>, SettingsError> {
        self.services
            .iter()
            .map(|(name, service)| {
                let problem = |problem: String| SettingsError { service: name.clone(), problem };
                if !service.key.is_file() {
                    return Err(problem(format!(
                        "the key {} does not exist (make one with `proximity keys generate --service {name}`)",
                        service.key.display()
                    )));
                }
                let host_key = match (&service.host_fingerprint, &service.known_hosts, service.trust_on_first_use) {
                    (Some(fingerprint), None, false) => HostKeyPolicy::Fingerprint(fingerprint.clone()),
                    (None, Some(file), false) => HostKeyPolicy::KnownHosts(file.clone()),
                    (None, Some(file), true) => HostKeyPolicy::TrustOnFirstUse(file.clone()),
                    _ => {
                        return Err(problem(
                            "set host_fingerprint, or known_hosts (optionally with trust_on_first_use)".into(),
                        ))
                    }
                };
                Ok(ServiceConfig {
                    name: name.clone(),
                    user: service.user.clone().unwrap_or_else(|| name.clone()),
                    auth: SshAuth::KeyFile(service.key.clone()),
                    host_key,
                    source: service.discovery.clone(),
                })
            })
            .collect()
    }
}
