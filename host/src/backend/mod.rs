//! The boundary between capabilities and infrastructure.
//!
//! Capabilities (what a recipe may ask for) are implemented once, in
//! `crate::capabilities`, against the [`Backend`] trait. Each backend (`sim`
//! and `lxc` now; `proxmox` next) turns these calls into real operations. A
//! backend never sees grants or recipes: by the time a call reaches it, the
//! capability layer has already checked that the run may make it.

pub mod lxc;
pub mod probe;
pub mod proxmox;
pub mod sim;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Everything `create-lxc` asks for, already checked against the grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ContainerSpec {
    pub hostname: String,
    pub os_template: String,
    pub cores: u32,
    pub memory_mb: u32,
    pub swap_mb: u32,
    pub disk_gb: u32,
    pub features: Features,
    pub unprivileged: bool,
    pub network: NetworkSpec,
    pub tags: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    pub nesting: bool,
    pub keyctl: bool,
    pub fuse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// `None`: the backend's default bridge.
    pub bridge: Option<String>,
    pub ip: IpConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpConfig {
    Dhcp,
    Static { cidr: String, gateway: Option<String> },
}

/// Who a container belongs to. Backends keep these labels with the container
/// (Proxmox tags, LXC config) so that Proximity can find its own containers
/// again after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Ownership {
    pub recipe_id: String,
    pub app_id: String,
    pub deployment_id: String,
}

/// A container as the backend knows it. Only the host holds these; a recipe
/// sees an opaque resource handle.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerRef {
    /// The backend's id: a VMID on Proxmox, a container name on LXC.
    pub id: String,
    pub hostname: String,
    /// Node the container lives on, where the backend has nodes.
    pub node: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExecRequest {
    /// Program and arguments, passed without a shell.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    #[serde(skip)]
    pub stdin: Option<Vec<u8>>,
    /// Already bounded by the run's deadline.
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWrite {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpProbe {
    pub port: u16,
    pub path: String,
    /// Keep waiting until this status answers; any status counts when `None`.
    pub expect_status: Option<u16>,
}

/// Why the infrastructure could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

/// One kind of infrastructure that runs containers.
///
/// Every method is cancel-safe in the sense that dropping the future leaves no
/// half-made state the backend cannot later destroy: the runtime drops calls
/// when a run's deadline passes and then destroys what the run created.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name shown to users and recipes (`sim`, `lxc`, `proxmox`).
    fn name(&self) -> &'static str;

    /// Proximity's containers on this backend with their labels: how a
    /// restarted server finds what an interrupted job left behind.
    async fn owned(&self) -> Result<Vec<(ContainerRef, Ownership)>, BackendError>;

    async fn create(&self, owner: &Ownership, spec: &ContainerSpec) -> Result<ContainerRef, BackendError>;
    async fn start(&self, container: &ContainerRef) -> Result<(), BackendError>;
    async fn stop(&self, container: &ContainerRef) -> Result<(), BackendError>;
    /// Remove the container and its storage. Destroying a container that no
    /// longer exists succeeds, so that cleanup can be retried.
    async fn destroy(&self, container: &ContainerRef) -> Result<(), BackendError>;
    /// The container's IPv4 address, waiting up to `timeout` for one.
    async fn address(&self, container: &ContainerRef, timeout: Duration) -> Result<String, BackendError>;

    async fn exec(&self, container: &ContainerRef, request: &ExecRequest) -> Result<ExecOutput, BackendError>;
    async fn write_file(&self, container: &ContainerRef, file: &FileWrite) -> Result<(), BackendError>;
    async fn read_file(&self, container: &ContainerRef, path: &str) -> Result<Vec<u8>, BackendError>;

    async fn wait_tcp(&self, container: &ContainerRef, port: u16, timeout: Duration) -> Result<(), BackendError>;
    async fn wait_http(
        &self,
        container: &ContainerRef,
        probe: &HttpProbe,
        timeout: Duration,
    ) -> Result<u16, BackendError>;
}

/// Runs whitelisted commands through a forced-command proxy (`proxy-exec`).
#[async_trait]
pub trait ProxyExecutor: Send + Sync + 'static {
    async fn proxy_exec(
        &self,
        service: &str,
        command: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, BackendError>;

    /// How the executor's proxy services are doing (`GET /proxy/stats`, `/metrics`).
    fn stats(&self) -> crate::api::ProxyStats {
        crate::api::ProxyStats::default()
    }
}

/// The proxy executor of a host that has no proxies configured.
pub struct NoProxies;

#[async_trait]
impl ProxyExecutor for NoProxies {
    async fn proxy_exec(&self, service: &str, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, BackendError> {
        Err(BackendError::NotFound(format!("no proxy is configured for service `{service}`")))
    }
}
