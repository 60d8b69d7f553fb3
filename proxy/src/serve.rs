//! `serve`: the SSH server and its health port, from a configuration to a
//! running process. The entry points the `proximity-proxy` binary and the
//! host's `proximity proxy serve` share.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::audit;
use crate::config::{ConfigError, ProxyConfig};
use crate::server::{load_or_generate_host_key, serve_health, Proxy, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot open the audit log {path}: {source}")]
    AuditLog { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("the SSH listener failed: {0}")]
    Accept(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot watch for signals: {0}")]
    Signals(std::io::Error),
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address).await.map_err(|source| ServeError::Listen { address, source })
}

/// Serves `config` until `shutdown` resolves (`Ok`) or the SSH listener
/// fails. Must run inside a tokio runtime with I/O and time enabled; a
/// current-thread runtime is enough. Audit records are written as `tracing`
/// events on the `proximity_proxy::audit` target (so the caller installs
/// the subscriber), and also appended to `audit_log` when it is set.
/// Commands still running when it returns stop when the runtime is dropped.
pub async fn serve(config: &ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let host_key = load_or_generate_host_key(&config.host_key)?;
    let audit = audit::for_server(config)
        .map_err(|source| ServeError::AuditLog { path: config.audit_log.clone().unwrap_or_default(), source })?;
    let proxy = Arc::new(Proxy::from_config(config, audit)?);
    let listener = bind(config.listen).await?;
    tracing::info!("listening on {}", listener.local_addr().map_err(ServeError::Accept)?);
    let health = match config.health_listen {
        Some(address) => {
            let health = bind(address).await?;
            tracing::info!("health checks on {}", health.local_addr().map_err(ServeError::Accept)?);
            Some(tokio::spawn(async move {
                if let Err(e) = serve_health(health).await {
                    tracing::error!("health listener stopped: {e}");
                }
            }))
        }
        None => None,
    };
    let served = tokio::select! {
        served = proxy.serve(listener, host_key) => served.map_err(ServeError::Accept),
        () = shutdown => Ok(()),
    };
    if let Some(health) = health {
        health.abort();
    }
    served
}

/// `proximity proxy serve --config PATH`: loads the file and serves it on a
/// current-thread runtime of its own until SIGINT or SIGTERM. Blocks the
/// calling thread, which must not be inside a tokio runtime.
pub fn run_server(config_path: &Path) -> Result<(), ServeError> {
    let config = ProxyConfig::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
        let stop = async {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("terminated, stopping"),
                _ = interrupt.recv() => tracing::info!("interrupted, stopping"),
            }
        };
        serve(&config, stop).await
    })
}
