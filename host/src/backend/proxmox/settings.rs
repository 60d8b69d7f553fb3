//! The `[proxmox]` table of Proximity's configuration file, turned into a
//! [`ProxmoxConfig`]. Secrets may come from the environment instead
//! (`PROXIMITY_PROXMOX_TOKEN_SECRET`, `PROXIMITY_PROXMOX_PASSWORD`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::api::PveAuth;
use super::tls::PveTls;
use super::{ProxmoxConfig, SshConfig};
use crate::backend::BackendError;
use crate::ssh::{HostKeyPolicy, SshAuth};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxSettings {
    /// `https://HOST:8006/api2/json`
    pub api_url: String,
    /// API token id, `USER@REALM!TOKENID`, with `token_secret`…
    pub token_id: Option<String>,
    pub token_secret: Option<String>,
    /// …or a user and password (ticket login; `root@pam` may set every container feature).
    pub user: Option<String>,
    pub password: Option<String>,
    /// The API certificate's SHA-256 fingerprint (Datacenter → node → Certificates)…
    pub fingerprint: Option<String>,
    /// …or the CA that signed it (e.g. a copy of `/etc/pve/pve-root-ca.pem`)…
    pub ca_file: Option<PathBuf>,
    /// …or no check at all: warned about on every start.
    #[serde(default)]
    pub insecure: bool,
    pub node: Option<String>,
    #[serde(default = "default_storage")]
    pub storage: String,
    #[serde(default = "default_template_storage")]
    pub template_storage: String,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// OS template name → template file, added to the built-in list.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    #[serde(default = "default_task_timeout")]
    pub task_timeout_secs: u64,
    pub ssh: Option<SshSettings>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    #[serde(default = "default_ssh_user")]
    pub user: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// An ED25519 private key; without it (and without `password`), the SSH agent.
    pub key_file: Option<PathBuf>,
    pub password: Option<String>,
    /// Host keys: a known_hosts file, or one pinned fingerprint (`SHA256:…`).
    pub known_hosts: Option<PathBuf>,
    pub host_fingerprint: Option<String>,
    /// Accept and record a node's key the first time (into `known_hosts`).
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// Node name → address to connect to; others are reached by their name.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

fn default_storage() -> String {
    "local-lvm".into()
}
fn default_template_storage() -> String {
    "local".into()
}
fn default_bridge() -> String {
    "vmbr0".into()
}
fn default_task_timeout() -> u64 {
    600
}
fn default_ssh_user() -> String {
    "root".into()
}
fn default_ssh_port() -> u16 {
    22
}

/// Templates Proximity knows by OS name; `templates` in the settings add to them.
const KNOWN_TEMPLATES: &[(&str, &str)] = &[
    ("debian-12", "debian-12-standard_12.7-1_amd64.tar.zst"),
    ("ubuntu-24.04", "ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
    ("alpine-3.20", "alpine-3.20-default_20240908_amd64.tar.xz"),
];

fn invalid(message: impl Into<String>) -> BackendError {
    BackendError::InvalidInput(format!("[proxmox] {}", message.into()))
}

impl ProxmoxSettings {
    pub fn into_config(self) -> Result<ProxmoxConfig, BackendError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let auth = match (&self.token_id, &self.user) {
            (Some(id), None) => PveAuth::Token {
                id: id.clone(),
                secret: self
                    .token_secret
                    .clone()
                    .or_else(|| env("PROXIMITY_PROXMOX_TOKEN_SECRET"))
                    .ok_or_else(|| invalid("token_id needs token_secret (or PROXIMITY_PROXMOX_TOKEN_SECRET)"))?,
            },
            (None, Some(user)) => PveAuth::Password {
                user: user.clone(),
                password: self
                    .password
                    .clone()
                    .or_else(|| env("PROXIMITY_PROXMOX_PASSWORD"))
                    .ok_or_else(|| invalid("user needs password (or PROXIMITY_PROXMOX_PASSWORD)"))?,
            },
            _ => return Err(invalid("set either token_id (with token_secret) or user (with password)")),
        };
        let tls = match (&self.fingerprint, &self.ca_file, self.insecure) {
            (Some(fingerprint), None, false) => PveTls::Fingerprint(fingerprint.clone()),
            (None, Some(ca), false) => PveTls::CaFile(ca.clone()),
            (None, None, true) => PveTls::Insecure,
            (None, None, false) => PveTls::SystemRoots,
            _ => return Err(invalid("choose one of fingerprint, ca_file and insecure")),
        };
        let ssh = self.ssh.map(SshSettings::into_config).transpose()?;
        let mut templates: BTreeMap<String, String> =
            KNOWN_TEMPLATES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        templates.extend(self.templates);
        Ok(ProxmoxConfig {
            api_url: self.api_url,
            auth,
            tls,
            node: self.node,
            storage: self.storage,
            template_storage: self.template_storage,
            bridge: self.bridge,
            templates,
            ssh,
            task_timeout: Duration::from_secs(self.task_timeout_secs),
        })
    }
}

impl SshSettings {
    fn into_config(self) -> Result<SshConfig, BackendError> {
        let auth = match (self.key_file, self.password) {
            (Some(key), None) => SshAuth::KeyFile(key),
            (None, Some(password)) => SshAuth::Password(password),
            (None, None) => SshAuth::Agent,
            _ => return Err(invalid("ssh: choose key_file or password")),
        };
        let host_key = match (self.known_hosts, self.host_fingerprint, self.trust_on_first_use) {
            (Some(file), None, true) => HostKeyPolicy::TrustOnFirstUse(file),
            (Some(file), None, false) => HostKeyPolicy::KnownHosts(file),
            (None, Some(fingerprint), false) => HostKeyPolicy::Fingerprint(fingerprint),
            _ => {
                return Err(invalid(
                    "ssh: set known_hosts (optionally with trust_on_first_use) or host_fingerprint: \
                     node host keys are always checked",
                ))
            }
        };
        Ok(SshConfig { user: self.user, port: self.port, auth, host_key, hosts: self.hosts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProxmoxConfig, String> {
        let settings: ProxmoxSettings = toml::from_str(text).map_err(|e| e.to_string())?;
        settings.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn a_token_with_a_pinned_fingerprint_and_ssh_with_known_hosts() {
        let config = parse(
            r#"
            api_url = "https://pve:8006/api2/json"
            token_id = "root@pam!proximity"
            token_secret = "s"
            fingerprint = "AB:CD"
            [ssh]
            key_file = "/k"
            known_hosts = "/kh"
            hosts = { pve1 = "10.0.0.1" }
            "#,
        )
        .unwrap();
        assert!(matches!(config.auth, PveAuth::Token { .. }));
        assert!(matches!(config.tls, PveTls::Fingerprint(_)));
        assert_eq!(config.storage, "local-lvm");
        assert!(config.templates.contains_key("debian-12"));
        let ssh = config.ssh.unwrap();
        assert_eq!((ssh.user.as_str(), ssh.port), ("root", 22));
        assert!(matches!(ssh.host_key, HostKeyPolicy::KnownHosts(_)));
    }

    #[test]
    fn ambiguous_or_missing_choices_are_refused_with_the_fix() {
        let base = "api_url = \"https://pve:8006/api2/json\"\n";
        let err = parse(base).unwrap_err();
        assert!(err.contains("token_id"), "{err}");
        let err =
            parse(&format!("{base}user = \"root@pam\"\npassword = \"p\"\nfingerprint = \"x\"\ninsecure = true\n"))
                .unwrap_err();
        assert!(err.contains("choose one"), "{err}");
        let err =
            parse(&format!("{base}user = \"root@pam\"\npassword = \"p\"\n[ssh]\nkey_file = \"/k\"\n")).unwrap_err();
        assert!(err.contains("host keys are always checked"), "{err}");
        assert!(parse(&format!("{base}surprise = 1\n")).unwrap_err().contains("unknown field"));
    }
}
