//! A Proxmox VE API simulator for Proximity's tests.
//!
//! It serves `/api2/json` over HTTPS with a fresh self-signed certificate and
//! keeps nodes, storage, containers and tasks in memory. **Every request is
//! checked against the official API schema** (the `apidoc` tree in
//! `/work/shared/reference/pve-api-schema.json`): an unknown path or method
//! answers 501, a parameter that does not validate answers 400 with PVE's
//! `{"data": null, "errors": {…}}`, and both are recorded so a test can
//! assert that the client under test never sent anything PVE would refuse.
//!
//! Faults (failed requests, failed or slow tasks, id conflicts, expired
//! tickets) are injected from Rust through [`Faults`].

mod formats;
mod schema;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use schema::{Rejection, Resolved, Schema};

/// What a machine operation returns: done, or failed with a message that
/// becomes the task's exit status.
pub type MachineFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Real containers behind the simulated ones (tests that run recipes end to
/// end give the simulator LXC containers of this host). Each operation runs
/// while its task does: the task stops when the operation ends, and fails
/// with its error.
pub trait Machines: Send + Sync + 'static {
    fn create(&self, vmid: u32, config: BTreeMap<String, String>) -> MachineFuture;
    fn start(&self, vmid: u32) -> MachineFuture;
    fn stop(&self, vmid: u32) -> MachineFuture;
    fn destroy(&self, vmid: u32) -> MachineFuture;
    /// The running container's IPv4 address with its prefix (`10.0.3.17/24`).
    fn address(&self, vmid: u32) -> Option<String>;
}
use server::Shared;

/// Where the schema is when no path is given.
pub const DEFAULT_SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/reference/pve-api-schema.json");

/// How the simulated cluster looks at start.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Cluster nodes, e.g. `["pve1", "pve2"]`.
    pub nodes: Vec<String>,
    /// API token: (`USER@REALM!TOKENID`, secret).
    pub token: (String, String),
    /// Password login: (`USER@REALM`, password).
    pub password: (String, String),
    /// The one storage every node has (directory storage; holds templates and root disks).
    pub storage: String,
    /// Installed templates (volids, `local:vztmpl/…`), on every node.
    pub templates: Vec<String>,
    /// Templates `aplinfo` offers for download (file names).
    pub available: Vec<String>,
    /// The API schema; [`DEFAULT_SCHEMA`] when `None`.
    pub schema: Option<PathBuf>,
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// How long every task runs (sim time); zero finishes them on the next request.
    pub task_duration: Duration,
    /// Memory of the nodes named here; the others have [`NodeMemory::default`].
    pub node_memory: BTreeMap<String, NodeMemory>,
}

/// A node's memory, in bytes, before its containers: running containers add
/// a quarter of their configured memory to `used`, as idle ones use little.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeMemory {
    pub total: u64,
    pub used: u64,
}

impl Default for NodeMemory {
    /// 64 GiB, 4 GiB of it used.
    fn default() -> Self {
        NodeMemory { total: 64 << 30, used: 4 << 30 }
    }
}

impl NodeMemory {
    /// `total_mib` MiB, `used_mib` of it used.
    pub fn mib(total_mib: u64, used_mib: u64) -> Self {
        NodeMemory { total: total_mib << 20, used: used_mib << 20 }
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: vec!["pve1".into(), "pve2".into()],
            token: ("root@pam!proximity".into(), "5f0c1b8e-2c7a-4a53-9a1e-7d2f3b4c5d6e".into()),
            password: ("root@pam".into(), "secret".into()),
            storage: "local".into(),
            templates: vec!["local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into()],
            available: vec![
                "debian-12-standard_12.7-1_amd64.tar.zst".into(),
                "ubuntu-24.04-standard_24.04-2_amd64.tar.zst".into(),
                "alpine-3.20-default_20240908_amd64.tar.xz".into(),
            ],
            schema: None,
            port: 0,
            task_duration: Duration::ZERO,
            node_memory: BTreeMap::new(),
        }
    }
}

/// A container as the simulator holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimContainer {
    pub vmid: u32,
    pub node: String,
    /// `running` or `stopped`.
    pub status: String,
    /// The container's config (`hostname`, `net0`, `features`, …), as PVE would store it.
    pub config: BTreeMap<String, String>,
}

/// One request the simulator answered.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Relative to `/api2/json`, percent-decoded, e.g. `/nodes/pve1/lxc`.
    pub path: String,
    /// Query or body parameters (without path variables).
    pub params: BTreeMap<String, String>,
    pub status: u16,
    /// Set when schema validation refused the request (400) or it named no API method (501).
    pub rejected: bool,
    /// The per-parameter errors of a rejection, or `{"path": message}` for a 501.
    pub errors: BTreeMap<String, String>,
}

/// The simulator, serving until dropped.
pub struct PveSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cert_pem: String,
    cert_der: Vec<u8>,
    handle: axum_server::Handle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PveSim {
    /// Load the schema, make a certificate and start serving on 127.0.0.1.
    pub async fn start(options: SimOptions) -> anyhow::Result<PveSim> {
        Self::start_with(options, None).await
    }

    /// [`PveSim::start`], with real containers behind the simulated ones.
    pub async fn start_with_machines(options: SimOptions, machines: Arc<dyn Machines>) -> anyhow::Result<PveSim> {
        Self::start_with(options, Some(machines)).await
    }

    async fn start_with(options: SimOptions, machines: Option<Arc<dyn Machines>>) -> anyhow::Result<PveSim> {
        let schema_path = options.schema.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SCHEMA));
        let schema = Arc::new(Schema::load(&schema_path)?);

        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        let cert_pem = cert.cert.pem();
        let cert_der = cert.cert.der().to_vec();
        let key_der = cert.key_pair.serialize_der();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert_der.clone())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));

        let listener = std::net::TcpListener::bind(("127.0.0.1", options.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;

        let shared = Arc::new(Shared::new(options, schema, &cert_der, machines));
        let app = server::router(shared.clone());
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = server.serve(app.into_make_service()).await {
                eprintln!("pve-sim: server stopped: {err}");
            }
        });
        Ok(PveSim { shared, addr, cert_pem, cert_der, handle, task: Some(task) })
    }

    /// `https://127.0.0.1:PORT/api2/json`
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}/api2/json", self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The server certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// `AB:CD:…`: SHA-256 of the DER certificate, as the PVE UI shows it.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// `PVEAPIToken=USER@REALM!TOKENID=SECRET`
    pub fn token_header(&self) -> String {
        let (id, secret) = &self.shared.options.token;
        format!("PVEAPIToken={id}={secret}")
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        Faults { shared: self.shared.clone() }
    }

    /// Containers, by vmid (tasks that are due are finished first).
    pub fn containers(&self) -> Vec<SimContainer> {
        let mut state = self.shared.lock();
        state.tick();
        state
            .containers
            .values()
            .map(|ct| SimContainer {
                vmid: ct.vmid,
                node: ct.node.clone(),
                status: ct.status.clone(),
                config: ct.config.clone(),
            })
            .collect()
    }

    /// Volids of the templates on a node's storage.
    pub fn templates(&self, node: &str) -> Vec<String> {
        let mut state = self.shared.lock();
        state.tick();
        state.content.get(node).cloned().unwrap_or_default()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The requests that schema validation refused (400) or that named no API method (501).
    pub fn rejections(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.iter().filter(|r| r.rejected).cloned().collect()
    }

    /// The loaded schema.
    pub fn schema(&self) -> Arc<Schema> {
        self.shared.schema.clone()
    }
}

impl Drop for PveSim {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Fault injection on a running simulator. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    /// The next request with this method (case-insensitive) whose path
    /// (relative to `/api2/json`, e.g. `/nodes/pve1/lxc`) matches `path_regex`
    /// answers `status` with `message`. It must still pass auth and the schema.
    pub fn fail_next(&self, method: &str, path_regex: &str, status: u16, message: &str) {
        let regex = regex::Regex::new(path_regex).expect("fail_next: invalid path regex");
        self.shared.lock().faults.requests.push(server::RequestFault {
            method: method.to_ascii_uppercase(),
            path: regex,
            status,
            message: message.to_string(),
        });
    }

    /// The next task of `task_type` (`vzcreate`, `vzstart`, `vzshutdown`,
    /// `vzstop`, `vzdestroy`, `download`) ends with `exitstatus` (an error text,
    /// or `WARNINGS: N` for a success with warnings), `log` lines before the
    /// final `TASK ERROR: …` line. A failed task has no effect.
    pub fn fail_next_task(&self, task_type: &str, exitstatus: &str, log: &[&str]) {
        self.shared.lock().faults.tasks.push(server::TaskFault {
            task_type: task_type.to_string(),
            exitstatus: exitstatus.to_string(),
            log: log.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// Every task started from now on runs for `duration` of sim time.
    pub fn slow_tasks(&self, duration: Duration) {
        self.shared.lock().faults.task_duration = duration;
    }

    /// Tasks of one type started from now on run for `duration` (overrides [`Faults::slow_tasks`]).
    pub fn slow_task_type(&self, task_type: &str, duration: Duration) {
        self.shared.lock().faults.task_durations.insert(task_type.to_string(), duration);
    }

    /// The next `n` `POST /nodes/{node}/lxc` answer "CT {vmid} already exists
    /// on node '…'" as if another client had taken the id meanwhile.
    pub fn conflict_next_creates(&self, n: usize) {
        self.shared.lock().faults.create_conflicts += n;
    }

    /// Invalidate every ticket issued so far.
    pub fn expire_tickets(&self) {
        self.shared.lock().tickets.clear();
    }

    /// Move the simulator's clock forward: tickets age (they last 2 h), tasks progress.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.lock().clock_offset += by;
    }

    /// Drop every fault still pending.
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.faults.requests.clear();
        state.faults.tasks.clear();
        state.faults.create_conflicts = 0;
        state.faults.task_durations.clear();
        state.faults.task_duration = state.options.task_duration;
    }
}

/// Validate one request against the schema: the path must resolve, the
/// method exist, and the parameters (path variables included) validate.
/// Errors are per parameter; an unknown path or method reports under `path`
/// or `method`.
pub fn validate(
    schema: &Schema,
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
) -> Result<(), BTreeMap<String, String>> {
    match schema.check(method, path, params) {
        Ok(_) => Ok(()),
        Err(Rejection::Params(errors)) => Err(errors),
        Err(Rejection::NotImplemented(message)) => {
            let key = if schema.has_path(path) { "method" } else { "path" };
            Err(BTreeMap::from([(key.to_string(), message)]))
        }
    }
}

/// `AB:CD:…` SHA-256 fingerprint of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
