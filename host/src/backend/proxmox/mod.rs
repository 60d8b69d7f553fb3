//! The `proxmox` backend: containers on a Proxmox VE node or cluster,
//! created and managed through the REST API (`api`, `tls`), entered through
//! SSH with `pct` (through [`crate::ssh`]).

pub mod api;
pub mod settings;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use serde_json::Value;

use self::api::{PveAuth, PveClient};
use self::tls::PveTls;
use super::{
    Backend, BackendError, ContainerRef, ContainerSpec, ExecOutput, ExecRequest, FileWrite, HttpProbe, IpConfig,
    Ownership,
};
use crate::ssh::{HostKeyPolicy, SshAuth, SshPool, SshTarget};

/// Tries at a fresh VMID when `/cluster/nextid`'s answer was taken meanwhile.
const CREATE_ATTEMPTS: usize = 5;
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// How Proximity reaches a Proxmox cluster.
#[derive(Clone, Debug)]
pub struct ProxmoxConfig {
    /// `https://HOST:8006/api2/json`
    pub api_url: String,
    pub auth: PveAuth,
    pub tls: PveTls,
    /// Always place containers here; otherwise the node with the most free memory that fits.
    pub node: Option<String>,
    /// Storage for root filesystems (e.g. `local-lvm`).
    pub storage: String,
    /// Storage holding container templates (e.g. `local`).
    pub template_storage: String,
    pub bridge: String,
    /// OS template name (`debian-12`) → template file (`debian-12-standard_12.7-1_amd64.tar.zst`).
    pub templates: BTreeMap<String, String>,
    /// How `pct` is run on the nodes; without it, exec and files are unavailable.
    pub ssh: Option<SshConfig>,
    /// Longest a Proxmox task (create, start, destroy) may take.
    pub task_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct SshConfig {
    pub user: String,
    pub port: u16,
    pub auth: SshAuth,
    pub host_key: HostKeyPolicy,
    /// Node name → address; a node not listed is reached by its name.
    pub hosts: BTreeMap<String, String>,
}

pub struct ProxmoxBackend {
    config: ProxmoxConfig,
    api: PveClient,
    ssh: SshPool,
}

impl ProxmoxBackend {
    pub fn new(config: ProxmoxConfig) -> Result<Self, BackendError> {
        let api = PveClient::new(&config.api_url, config.auth.clone(), &config.tls, Duration::from_secs(60))?;
        Ok(ProxmoxBackend { config, api, ssh: SshPool::new(Default::default()) })
    }

    pub fn api(&self) -> &PveClient {
        &self.api
    }

    fn ssh_target(&self, node: &str) -> Result<SshTarget, BackendError> {
        let ssh = self.config.ssh.as_ref().ok_or_else(|| {
            BackendError::Failed(
                "running commands in Proxmox containers needs SSH to the nodes (`pct exec`); configure [proxmox.ssh]"
                    .into(),
            )
        })?;
        Ok(SshTarget {
            host: ssh.hosts.get(node).cloned().unwrap_or_else(|| node.to_string()),
            port: ssh.port,
            user: ssh.user.clone(),
            auth: ssh.auth.clone(),
            host_key: ssh.host_key.clone(),
        })
    }

    /// Run `argv` on a node over SSH.
    async fn on_node(
        &self,
        node: &str,
        argv: Vec<String>,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, BackendError> {
        let target = self.ssh_target(node)?;
        let out = self.ssh.exec(&target, &argv, stdin, timeout).await.map_err(|err| ssh_error(node, &argv, err))?;
        Ok(ExecOutput { status: out.status, stdout: out.stdout, stderr: out.stderr })
    }

    async fn pct(&self, c: &ContainerRef, args: &[&str], timeout: Duration) -> Result<ExecOutput, BackendError> {
        let node = node_of(c)?;
        let argv: Vec<String> = ["pct"].iter().chain(args).map(|s| s.to_string()).collect();
        let out = self.on_node(node, argv.clone(), None, timeout).await?;
        if out.status != 0 {
            return Err(BackendError::Failed(format!(
                "`{}` on {node} exited with {}: {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out)
    }

    /// The node a new container goes to: the configured one, or the online
    /// node with the largest share of free memory that fits the container.
    async fn place(&self, memory_mb: u32) -> Result<String, BackendError> {
        if let Some(node) = &self.config.node {
            return Ok(node.clone());
        }
        let nodes = self.api.get("/nodes", &[]).await?;
        let need = u64::from(memory_mb) * 1024 * 1024;
        let mut best: Option<(f64, String)> = None;
        for node in nodes.as_array().into_iter().flatten() {
            if node["status"].as_str() != Some("online") {
                continue;
            }
            let (max, used) = (node["maxmem"].as_u64().unwrap_or(0), node["mem"].as_u64().unwrap_or(0));
            let free = max.saturating_sub(used);
            if free < need || max == 0 {
                continue;
            }
            let ratio = free as f64 / max as f64;
            let name = node["node"].as_str().unwrap_or_default().to_string();
            if best.as_ref().is_none_or(|(r, _)| ratio > *r) {
                best = Some((ratio, name));
            }
        }
        best.map(|(_, name)| name)
            .ok_or_else(|| BackendError::Failed(format!("no online Proxmox node has {memory_mb} MiB of memory free")))
    }

    /// The template's volume id, downloading it through `aplinfo` when the storage lacks it.
    async fn ensure_template(&self, node: &str, os_template: &str) -> Result<String, BackendError> {
        let file = self.config.templates.get(os_template).cloned().ok_or_else(|| {
            let known: Vec<&String> = self.config.templates.keys().collect();
            BackendError::InvalidInput(format!(
                "no Proxmox template is configured for `{os_template}` (known: {known:?})"
            ))
        })?;
        let storage = &self.config.template_storage;
        let volid = format!("{storage}:vztmpl/{file}");
        let path = format!("/nodes/{node}/storage/{storage}/content");
        let content = self.api.get(&path, &[("content", "vztmpl".into())]).await?;
        if content.as_array().into_iter().flatten().any(|v| v["volid"].as_str() == Some(&volid)) {
            return Ok(volid);
        }
        let upid = self
            .api
            .post(&format!("/nodes/{node}/aplinfo"), &[("storage", storage.clone()), ("template", file.clone())])
            .await?;
        self.api.wait_task(upid.as_str().unwrap_or_default(), self.config.task_timeout).await?;
        Ok(volid)
    }

    fn create_params(&self, vmid: u32, owner: &Ownership, spec: &ContainerSpec, template: &str) -> Vec<(&str, String)> {
        let bridge = spec.network.bridge.clone().unwrap_or_else(|| self.config.bridge.clone());
        let ip = match &spec.network.ip {
            IpConfig::Dhcp => "ip=dhcp".to_string(),
            IpConfig::Static { cidr, gateway: Some(gw) } => format!("ip={cidr},gw={gw}"),
            IpConfig::Static { cidr, gateway: None } => format!("ip={cidr}"),
        };
        let mut features = Vec::new();
        if spec.features.nesting {
            features.push("nesting=1");
        }
        // keyctl is root@pam's alone: with a token it is set afterwards with `pct set`.
        if spec.features.keyctl && self.api.auth().is_root_pam() {
            features.push("keyctl=1");
        }
        if spec.features.fuse && self.api.auth().is_root_pam() {
            features.push("fuse=1");
        }
        let mut params = vec![
            ("vmid", vmid.to_string()),
            ("ostemplate", template.to_string()),
            ("hostname", spec.hostname.clone()),
            ("cores", spec.cores.to_string()),
            ("memory", spec.memory_mb.to_string()),
            ("swap", spec.swap_mb.to_string()),
            ("rootfs", format!("{}:{}", self.config.storage, spec.disk_gb)),
            ("net0", format!("name=eth0,bridge={bridge},{ip}")),
            // Always sent: its default changed between Proxmox releases.
            ("unprivileged", if spec.unprivileged { "1" } else { "0" }.into()),
            ("tags", tags(owner, spec)),
            ("description", labels::describe(owner)),
            ("onboot", "0".into()),
        ];
        if !features.is_empty() {
            params.push(("features", features.join(",")));
        }
        params
    }

    /// Features that only root@pam may set through the API, set with `pct set` over SSH.
    async fn set_root_features(&self, c: &ContainerRef, spec: &ContainerSpec) -> Result<(), BackendError> {
        if self.api.auth().is_root_pam() || !(spec.features.keyctl || spec.features.fuse) {
            return Ok(());
        }
        if self.config.ssh.is_none() {
            return Err(BackendError::Failed(
                "keyctl/fuse can only be set by root@pam: use root@pam password login, or configure SSH so that \
                 Proximity can run `pct set --features` on the node"
                    .into(),
            ));
        }
        let mut features = Vec::new();
        if spec.features.nesting {
            features.push("nesting=1");
        }
        if spec.features.keyctl {
            features.push("keyctl=1");
        }
        if spec.features.fuse {
            features.push("fuse=1");
        }
        self.pct(c, &["set", &c.id, "--features", &features.join(",")], Duration::from_secs(60)).await.map(|_| ())
    }

    async fn create_inner(&self, c: &ContainerRef, spec: &ContainerSpec) -> Result<(), BackendError> {
        self.set_root_features(c, spec).await
    }

    async fn status(&self, c: &ContainerRef) -> Result<String, BackendError> {
        let node = node_of(c)?;
        let status = self.api.get(&format!("/nodes/{node}/lxc/{}/status/current", c.id), &[]).await?;
        Ok(status["status"].as_str().unwrap_or("unknown").to_string())
    }

    async fn task(&self, result: Result<Value, api::ApiError>) -> Result<(), BackendError> {
        let upid = result?;
        self.api.wait_task(upid.as_str().unwrap_or_default(), self.config.task_timeout).await
    }
}

fn node_of(c: &ContainerRef) -> Result<&str, BackendError> {
    c.node.as_deref().ok_or_else(|| BackendError::Failed(format!("container {} has no node", c.id)))
}

fn ssh_error(node: &str, argv: &[String], err: crate::ssh::SshError) -> BackendError {
    let shown = argv.iter().take(4).cloned().collect::<Vec<_>>().join(" ");
    let message = format!("SSH to node {node} (`{shown} …`): {err}");
    match err {
        crate::ssh::SshError::Timeout { .. } => BackendError::Timeout(message),
        crate::ssh::SshError::Quote(_) => BackendError::InvalidInput(message),
        _ => BackendError::Failed(message),
    }
}

/// `proximity;app-NAME` (pve-tag-list takes `;`-separated tags).
fn tags(owner: &Ownership, spec: &ContainerSpec) -> String {
    let mut tags: Vec<String> = spec.tags.iter().map(|t| sanitize_tag(t)).collect();
    for tag in ["proximity".to_string(), sanitize_tag(&format!("app-{}", owner.app_id))] {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags.join(";")
}

fn sanitize_tag(tag: &str) -> String {
    tag.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_+.".contains(c) { c.to_ascii_lowercase() } else { '-' })
        .collect()
}

/// Ownership labels in a container's description, where Proximity finds them after a restart.
pub mod labels {
    use crate::backend::Ownership;

    const PREFIX: &str = "proximity-";

    pub fn describe(owner: &Ownership) -> String {
        format!(
            "Managed by Proximity.\n{PREFIX}recipe: {}\n{PREFIX}app: {}\n{PREFIX}deployment: {}\n",
            owner.recipe_id, owner.app_id, owner.deployment_id
        )
    }

    pub fn parse(description: &str) -> Option<Ownership> {
        let field = |name: &str| {
            description
                .lines()
                .find_map(|line| line.trim().strip_prefix(&format!("{PREFIX}{name}: ")).map(str::to_string))
        };
        Some(Ownership { recipe_id: field("recipe")?, app_id: field("app")?, deployment_id: field("deployment")? })
    }
}

#[async_trait]
impl Backend for ProxmoxBackend {
    fn name(&self) -> &'static str {
        "proxmox"
    }

    async fn owned(&self) -> Result<Vec<(ContainerRef, Ownership)>, BackendError> {
        let resources = self.api.get("/cluster/resources", &[("type", "vm".into())]).await?;
        let mut found = Vec::new();
        for r in resources.as_array().into_iter().flatten() {
            let tagged = r["tags"].as_str().is_some_and(|t| t.split([';', ',', ' ']).any(|t| t == "proximity"));
            if r["type"].as_str() != Some("lxc") || !tagged {
                continue;
            }
            let (Some(node), Some(vmid)) = (r["node"].as_str(), r["vmid"].as_u64()) else { continue };
            let config = self.api.get(&format!("/nodes/{node}/lxc/{vmid}/config"), &[]).await?;
            if let Some(owner) = config["description"].as_str().and_then(labels::parse) {
                let hostname = config["hostname"].as_str().unwrap_or_default().to_string();
                found.push((ContainerRef { id: vmid.to_string(), hostname, node: Some(node.to_string()) }, owner));
            }
        }
        Ok(found)
    }

    async fn create(&self, owner: &Ownership, spec: &ContainerSpec) -> Result<ContainerRef, BackendError> {
        let node = self.place(spec.memory_mb).await?;
        let template = self.ensure_template(&node, &spec.os_template).await?;
        let mut last = None;
        for _ in 0..CREATE_ATTEMPTS {
            // nextid does not reserve: another client may take it first.
            let vmid: u32 = match self.api.get("/cluster/nextid", &[]).await? {
                Value::String(s) => s.parse().map_err(|_| BackendError::Failed(format!("nextid answered `{s}`")))?,
                other => other.as_u64().unwrap_or(0) as u32,
            };
            let params = self.create_params(vmid, owner, spec, &template);
            match self.api.post(&format!("/nodes/{node}/lxc"), &params).await {
                Ok(upid) => {
                    let c = ContainerRef { id: vmid.to_string(), hostname: spec.hostname.clone(), node: Some(node) };
                    let made = async {
                        self.api.wait_task(upid.as_str().unwrap_or_default(), self.config.task_timeout).await?;
                        self.create_inner(&c, spec).await
                    };
                    if let Err(err) = made.await {
                        // A half-made container is removed; the original cause is reported.
                        let _ = self.destroy(&c).await;
                        return Err(err);
                    }
                    return Ok(c);
                }
                Err(err) if err.message.contains("already exists") => {
                    last = Some(err);
                    let jitter = rand::rng().random_range(10..100);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(BackendError::Failed(format!(
            "no free VMID after {CREATE_ATTEMPTS} tries: {}",
            last.map(|e| e.message).unwrap_or_default()
        )))
    }

    async fn start(&self, c: &ContainerRef) -> Result<(), BackendError> {
        let node = node_of(c)?;
        self.task(self.api.post(&format!("/nodes/{node}/lxc/{}/status/start", c.id), &[]).await).await
    }

    async fn stop(&self, c: &ContainerRef) -> Result<(), BackendError> {
        let node = node_of(c)?;
        if self.status(c).await? == "stopped" {
            return Ok(());
        }
        let timeout = SHUTDOWN_TIMEOUT.as_secs().to_string();
        let path = format!("/nodes/{node}/lxc/{}/status/shutdown", c.id);
        let shutdown = self.task(self.api.post(&path, &[("timeout", timeout)]).await).await;
        if shutdown.is_ok() && self.status(c).await? == "stopped" {
            return Ok(());
        }
        // A container that does not shut down cleanly is stopped hard.
        self.task(self.api.post(&format!("/nodes/{node}/lxc/{}/status/stop", c.id), &[]).await).await
    }

    async fn destroy(&self, c: &ContainerRef) -> Result<(), BackendError> {
        let node = node_of(c)?;
        match self.status(c).await {
            Err(BackendError::NotFound(_)) => return Ok(()),
            Err(err) if err.to_string().contains("does not exist") => return Ok(()),
            Ok(status) if status == "running" => self.stop(c).await?,
            _ => {}
        }
        let params = [("purge", "1".to_string()), ("destroy-unreferenced-disks", "1".to_string())];
        self.task(self.api.delete(&format!("/nodes/{node}/lxc/{}", c.id), &params).await).await
    }

    async fn address(&self, c: &ContainerRef, timeout: Duration) -> Result<String, BackendError> {
        let node = node_of(c)?;
        let deadline = Instant::now() + timeout;
        loop {
            let interfaces = self.api.get(&format!("/nodes/{node}/lxc/{}/interfaces", c.id), &[]).await?;
            for iface in interfaces.as_array().into_iter().flatten() {
                if iface["name"].as_str() == Some("lo") {
                    continue;
                }
                if let Some(inet) = iface["inet"].as_str() {
                    return Ok(inet.split('/').next().unwrap_or(inet).to_string());
                }
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Timeout(format!(
                    "container {} on {node} got no IPv4 address within {}s",
                    c.id,
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn exec(&self, c: &ContainerRef, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        if request.argv.is_empty() {
            return Err(BackendError::InvalidInput("exec needs a program to run (argv is empty)".into()));
        }
        let node = node_of(c)?;
        let mut argv: Vec<String> = vec!["pct".into(), "exec".into(), c.id.clone(), "--".into()];
        // pct exec takes neither env nor cwd: `env` and a tiny sh prologue carry them.
        if !request.env.is_empty() {
            argv.push("env".into());
            argv.extend(request.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        if let Some(cwd) = &request.cwd {
            argv.extend(["sh".into(), "-c".into(), "cd \"$0\" || exit 127; exec \"$@\"".into(), cwd.clone()]);
        }
        argv.extend(request.argv.iter().cloned());
        self.on_node(node, argv, request.stdin.as_deref(), request.timeout).await
    }

    async fn write_file(&self, c: &ContainerRef, file: &FileWrite) -> Result<(), BackendError> {
        let node = node_of(c)?;
        let target = self.ssh_target(node)?;
        let suffix: u64 = rand::rng().random();
        let temp = format!("/tmp/proximity-upload-{suffix:016x}");
        self.ssh
            .upload(&target, &file.contents, &temp, 0o600, Duration::from_secs(300))
            .await
            .map_err(|err| ssh_error(node, &["upload".to_string()], err))?;
        let mode = format!("{:o}", file.mode);
        let mut args = vec!["push", &c.id, &temp, &file.path, "--perms", &mode];
        if let Some(user) = &file.owner {
            args.extend(["--user", user]);
        }
        if let Some(group) = &file.group {
            args.extend(["--group", group]);
        }
        let pushed = self.pct(c, &args, Duration::from_secs(120)).await;
        let _ = self.on_node(node, vec!["rm".into(), "-f".into(), temp.clone()], None, Duration::from_secs(30)).await;
        pushed.map(|_| ())
    }

    async fn read_file(&self, c: &ContainerRef, path: &str) -> Result<Vec<u8>, BackendError> {
        let node = node_of(c)?;
        let argv = ["pct", "exec", &c.id, "--", "cat", "--", path].map(String::from).to_vec();
        let out = self.on_node(node, argv, None, Duration::from_secs(60)).await?;
        if out.status != 0 {
            return Err(BackendError::NotFound(format!(
                "{path} in container {}: {}",
                c.id,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    async fn wait_tcp(&self, c: &ContainerRef, port: u16, timeout: Duration) -> Result<(), BackendError> {
        let deadline = Instant::now() + timeout;
        let ip = self.address(c, timeout).await?;
        super::probe::wait_tcp(&ip, port, deadline, timeout).await
    }

    async fn wait_http(&self, c: &ContainerRef, probe: &HttpProbe, timeout: Duration) -> Result<u16, BackendError> {
        let deadline = Instant::now() + timeout;
        let ip = self.address(c, timeout).await?;
        super::probe::wait_http(&ip, probe.port, &probe.path, probe.expect_status, deadline, timeout).await
    }
}

/// For tests and tools: the backend behind an `Arc`, as the runtime takes it.
pub fn shared(backend: ProxmoxBackend) -> Arc<dyn Backend> {
    Arc::new(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_the_description() {
        let owner = Ownership { recipe_id: "nginx".into(), app_id: "web-1".into(), deployment_id: "dep-x".into() };
        assert_eq!(labels::parse(&labels::describe(&owner)), Some(owner));
        assert_eq!(labels::parse("some container"), None);
    }

    #[test]
    fn tags_always_carry_proximity_and_the_app() {
        let owner = Ownership { recipe_id: "r".into(), app_id: "Web 1".into(), deployment_id: "d".into() };
        let spec = ContainerSpec {
            hostname: "h".into(),
            os_template: "debian-12".into(),
            cores: 1,
            memory_mb: 512,
            swap_mb: 0,
            disk_gb: 4,
            features: Default::default(),
            unprivileged: true,
            network: super::super::NetworkSpec { bridge: None, ip: IpConfig::Dhcp },
            tags: vec!["proximity".into()],
        };
        assert_eq!(tags(&owner, &spec), "proximity;app-web-1");
    }
}
