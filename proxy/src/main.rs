//! `proximity-proxy serve --config proxy.toml`
//!
//! A single-threaded runtime: the proxy mostly waits on sockets and child
//! processes, and one thread keeps its memory small.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use proximity_proxy::audit::TracingAudit;
use proximity_proxy::config::ProxyConfig;
use proximity_proxy::server::{load_or_generate_host_key, serve_health, Proxy};

const USAGE: &str = "usage: proximity-proxy serve --config PATH";

fn config_path() -> Result<PathBuf, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", "--config", path] => Ok(PathBuf::from(path)),
        ["serve", arg] if arg.starts_with("--config=") => Ok(PathBuf::from(&arg["--config=".len()..])),
        _ => Err(USAGE.to_owned()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let path = match config_path() {
        Ok(path) => path,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("proximity-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proximity-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let config = ProxyConfig::load(&path)?;
    let host_key = load_or_generate_host_key(&config.host_key)?;
    let proxy = Arc::new(Proxy::from_config(&config, Arc::new(TracingAudit))?);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    if let Some(address) = config.health_listen {
        let health = tokio::net::TcpListener::bind(address).await?;
        tracing::info!("health checks on {}", health.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = serve_health(health).await {
                tracing::error!("health listener stopped: {e}");
            }
        });
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = proxy.serve(listener, host_key) => served?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
        _ = terminate.recv() => tracing::info!("terminated, stopping"),
    }
    Ok(())
}
