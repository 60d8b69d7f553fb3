//! `proximity serve`: the HTTP server, and its configuration.
//!
//! Settings come from, lowest first: built-in defaults, a TOML file
//! (`--config`, `PROXIMITY_CONFIG`, or `/etc/proximity/proximity.toml` when it
//! exists), `PROXIMITY_<KEY>` environment variables, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use super::recipe::ensure_built;
use crate::backend::lxc::{LxcBackend, LxcConfig};
use crate::backend::sim::{SimBackend, SimScript};
use crate::backend::{Backend, NoProxies, ProxyExecutor};
use crate::bundle::{RecipeInstaller, TrustPolicy};
use crate::catalog::Catalog;
use crate::jobs::{Jobs, JobsConfig, Metered, Metrics, Services};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::Store;

const SYSTEM_CONFIG: &str = "/etc/proximity/proximity.toml";

/// Everything `proximity serve` can be told; the keys of the TOML file and,
/// upper-cased with a `PROXIMITY_` prefix, of the environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServeConfig {
    /// Address and port to listen on; loopback unless you put TLS or a proxy in front.
    pub listen: SocketAddr,
    /// Where the database (`proximity.db`) and the secrets key (`secret.key`) live.
    pub data_dir: PathBuf,
    /// A directory of recipe sources to serve instead of the installed bundles
    /// (for recipe authors): built at start, never installed into. Without it
    /// the catalog is the bundles installed in `DATA_DIR/recipes`.
    pub catalog: Option<PathBuf>,
    /// Trusted publisher keys for installing bundles, one `ed25519 BASE64 NAME`
    /// per `*.pub` file (default: `DATA_DIR/trusted-keys`).
    pub trusted_keys: Option<PathBuf>,
    /// Let `POST /recipes?allow_untrusted=DIGEST` install a bundle no trusted
    /// key signed. Off: such bundles go in only with `recipe install` on this host.
    pub api_allow_untrusted: bool,
    /// `lxc` (real containers on this host), `proxmox` (a PVE cluster, see `[proxmox]`) or `sim` (nothing is created).
    pub backend: String,
    /// The lxc backend's container directory.
    pub lxc_path: PathBuf,
    /// The lxc backend's bridge: `auto` (lxcbr0, or Proximity's own `proximity0`
    /// where lxc-net's subnet is taken), `lxcbr0`, `proximity0[=SUBNET]`, or an existing bridge.
    pub lxc_bridge: String,
    /// Jobs running at once.
    pub concurrency: usize,
    /// Jobs running at once on one node.
    pub per_node: usize,
    /// Seconds a shutdown waits for running jobs before cancelling them.
    pub shutdown_grace_secs: u64,
    /// Compiled recipe code cache (default: under the data directory).
    pub cache_dir: Option<PathBuf>,
    pub max_memory_mb: u32,
    pub max_timeout_secs: u64,
    /// PEM certificate chain: with `tls_key`, the server speaks HTTPS itself.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The `proxmox` backend's cluster: API, credentials, TLS trust, SSH to the nodes.
    pub proxmox: Option<crate::backend::proxmox::settings::ProxmoxSettings>,
    /// The `proxy-exec` capability's proxy services (see `proxy::config`);
    /// on every backend, `sim` too.
    pub proxy: Option<crate::proxy::ProxySettings>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            data_dir: PathBuf::from("/var/lib/proximity"),
            catalog: None,
            trusted_keys: None,
            api_allow_untrusted: false,
            backend: "lxc".into(),
            lxc_path: PathBuf::from("/var/lib/proximity/lxc"),
            lxc_bridge: "auto".into(),
            concurrency: 8,
            per_node: 4,
            shutdown_grace_secs: 30,
            cache_dir: None,
            max_memory_mb: 512,
            max_timeout_secs: 3600,
            tls_cert: None,
            tls_key: None,
            proxmox: None,
            proxy: None,
        }
    }
}

/// Flags override the file and the environment; each is optional.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct ServeArgs {
    /// TOML configuration file [default: /etc/proximity/proximity.toml when it exists].
    #[arg(long, env = "PROXIMITY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Serve this directory of recipe sources instead of the installed bundles.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<PathBuf>,
    /// Directory of trusted publisher keys [default: DATA_DIR/trusted-keys], read at start.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<PathBuf>,
    /// Honour `allow_untrusted` in `POST /recipes` (unsigned bundles over the API).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub api_allow_untrusted: bool,
    /// lxc or sim.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lxc_path: Option<PathBuf>,
    /// auto, lxcbr0, proximity0[=SUBNET] or an existing bridge.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lxc_bridge: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_node: Option<usize>,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl ServeConfig {
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let file = args.config.clone().or_else(|| Path::new(SYSTEM_CONFIG).is_file().then(|| SYSTEM_CONFIG.into()));
        let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(file) = &file {
            if !file.is_file() {
                bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only the keys this struct has: PROXIMITY_TOKEN and friends belong to the client.
        let keys = [
            "listen",
            "data_dir",
            "catalog",
            "trusted_keys",
            "api_allow_untrusted",
            "backend",
            "lxc_path",
            "lxc_bridge",
            "concurrency",
            "per_node",
            "shutdown_grace_secs",
            "cache_dir",
            "max_memory_mb",
            "max_timeout_secs",
        ];
        figment = figment.merge(Env::prefixed("PROXIMITY_").only(&keys)).merge(Serialized::defaults(args));
        figment.extract().context("reading the server configuration")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("proximity.db")
    }

    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }

    pub fn trusted_keys_dir(&self) -> PathBuf {
        self.trusted_keys.clone().unwrap_or_else(|| self.data_dir.join("trusted-keys"))
    }

    /// The catalog's root, and the installer when it is the installed bundles.
    pub fn catalog(&self) -> Result<(PathBuf, Option<RecipeInstaller>)> {
        if let Some(sources) = &self.catalog {
            return Ok((sources.clone(), None));
        }
        let keys = self.trusted_keys_dir();
        let trust = if keys.is_dir() {
            TrustPolicy::from_dir(&keys)?
        } else {
            eprintln!(
                "proximity: no trusted keys ({} does not exist): bundles install only when allowed by digest",
                keys.display()
            );
            TrustPolicy::trust_nobody()
        };
        let installer = RecipeInstaller::new(&self.data_dir, trust);
        let root = installer.catalog_root().to_path_buf();
        std::fs::create_dir_all(&root).with_context(|| format!("creating the catalog {}", root.display()))?;
        Ok((root, Some(installer)))
    }
}

pub fn open_store(config: &ServeConfig) -> Result<Arc<Store>> {
    let store = Store::open(&config.db_path(), &config.key_path())
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let config = ServeConfig::load(&args)?;
    // Checked first: a bad certificate should not wait for recipe builds.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::server::tls_config(cert, key).await?),
        (None, None) => None,
        _ => bail!("TLS needs both tls_cert and tls_key (--tls-cert, --tls-key)"),
    };
    let store = open_store(&config)?;
    let (catalog_root, installer) = config.catalog()?;
    let catalog = Catalog::new(&catalog_root);
    let entries = catalog.entries().with_context(|| format!("reading the catalog {}", catalog_root.display()))?;
    // Recipe sources are served as built components: build what is missing
    // now, not on the first request. Installed bundles come built.
    for entry in entries.iter().filter(|e| !e.is_installed_bundle()) {
        ensure_built(&entry.dir, false)?;
    }
    let metrics = Arc::new(Metrics::new());
    let (backend, mut proxy) = backend(&config, &entries).await?;
    if let Some(settings) = &config.proxy {
        let client = crate::proxy::ProxyClient::new(settings).context("reading the [proxy] configuration")?;
        proxy = Arc::new(client);
    }
    metrics.watch_proxies(proxy.clone());
    let backend: Arc<dyn Backend> = Arc::new(Metered::new(backend, metrics.clone()));
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("native"))),
        max_memory_mb: config.max_memory_mb,
        max_timeout: Duration::from_secs(config.max_timeout_secs),
        ..Default::default()
    })?;
    let jobs_config = JobsConfig {
        concurrency: config.concurrency,
        per_node: config.per_node,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    let services = Services { runtime: Arc::new(runtime), catalog, backend, proxy, store: store.clone() };
    let jobs = Jobs::new(services, jobs_config, metrics);
    let report = jobs.recover().await?;
    if !report.interrupted.is_empty() {
        eprintln!(
            "proximity: recovered {} interrupted job(s): destroyed {} container(s), kept {}, failed {}",
            report.interrupted.len(),
            report.destroyed.len(),
            report.adopted.len(),
            report.failed.len()
        );
    }
    if store.tokens()?.iter().all(|t| t.revoked_at.is_some()) {
        eprintln!("proximity: no API token exists yet; create one with `proximity token create --name NAME`");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() && tls.is_none() {
        eprintln!(
            "proximity: listening on {bound}, beyond this host: put TLS in front (a reverse proxy, see the README)"
        );
    }
    // Printed for people and for tests that start the server on port 0.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "proximity: serving {} recipe(s) on {scheme}://{bound}/ with the {} backend",
        entries.len(),
        config.backend
    );
    crate::server::serve_with(
        listener,
        tls,
        crate::server::ServerState {
            jobs,
            installer: installer.map(Arc::new),
            api_allow_untrusted: config.api_allow_untrusted,
        },
        shutdown_signal(),
    )
    .await?;
    eprintln!("proximity: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn backend(
    config: &ServeConfig,
    entries: &[crate::catalog::CatalogEntry],
) -> Result<(Arc<dyn Backend>, Arc<dyn ProxyExecutor>)> {
    match config.backend.as_str() {
        "sim" => {
            let mut scripts = Vec::new();
            for entry in entries {
                scripts.push((entry.manifest.recipe.id.clone(), SimScript::for_recipe(&entry.dir)?));
            }
            let sim = SimBackend::default().with_recipe_scripts(scripts);
            Ok((Arc::new(sim.clone()), Arc::new(sim)))
        }
        "lxc" => {
            let bridge = config.lxc_bridge.parse().map_err(|err| anyhow::anyhow!("lxc_bridge: {err}"))?;
            let lxc = LxcBackend::new(LxcConfig { lxcpath: config.lxc_path.clone(), bridge, ..LxcConfig::default() })
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "the lxc backend cannot run here: {err}\n(to try without containers: --backend sim)"
                    )
                })?;
            Ok((Arc::new(lxc), Arc::new(NoProxies)))
        }
        "proxmox" => Ok((proxmox_backend(config)?, Arc::new(NoProxies))),
        other => bail!("unknown backend `{other}`: use lxc, sim or proxmox"),
    }
}

/// The proxmox backend from the configuration's `[proxmox]` table.
pub fn proxmox_backend(config: &ServeConfig) -> Result<Arc<dyn Backend>> {
    let settings = config.proxmox.clone().ok_or_else(|| {
        anyhow::anyhow!("the proxmox backend needs a [proxmox] table in the configuration file (see the README)")
    })?;
    let backend = crate::backend::proxmox::ProxmoxBackend::new(settings.into_config()?)?;
    Ok(Arc::new(backend))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("proximity: shutting down (running jobs get their grace period)");
}
