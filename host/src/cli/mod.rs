//! The `proximity` command line.

pub mod apps;
pub mod client;
mod deploy;
mod keys;
mod output;
mod proxy;
mod recipe;
pub mod remote;
pub mod serve;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "proximity", version, about = "Self-hosted app store for Proxmox VE: sandboxed WebAssembly recipes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy a recipe: validate its parameters, run its install, print progress and the result.
    Deploy(deploy::DeployArgs),
    /// Work with recipes: inspect manifests and grants, build components.
    #[command(subcommand)]
    Recipe(recipe::RecipeCommand),
    /// Serve the catalog and the deployment API over HTTP.
    Serve(serve::ServeArgs),
    /// Manage the server's API tokens.
    Token(token::TokenArgs),
    /// Apps deployed through a server: list, inspect, start, stop, logs, remove, upgrade.
    Apps {
        #[command(subcommand)]
        command: apps::AppsCommand,
        #[command(flatten)]
        server: apps::ServerArgs,
    },
    /// The SSH proxy for the `proxy-exec` capability: `serve`, or `forced-command` under OpenSSH.
    Proxy {
        #[command(subcommand)]
        command: proxy::ProxyCommand,
    },
    /// Key pairs for the proxy-exec SSH proxies.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
}

/// Options shared by commands that read the catalog.
#[derive(clap::Args, Clone)]
struct CatalogArgs {
    /// Directory of recipe directories.
    #[arg(long, env = "PROXIMITY_CATALOG", default_value = "recipes")]
    catalog: PathBuf,
}

/// Operator limits and the compiled-code cache, shared by commands that run recipes.
#[derive(clap::Args, Clone)]
struct RuntimeArgs {
    /// Where compiled recipe code is cached [default: $XDG_CACHE_HOME/proximity/native or ~/.cache/proximity/native].
    #[arg(long, env = "PROXIMITY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Upper bound on any recipe's memory, whatever its manifest asks.
    #[arg(long, env = "PROXIMITY_MAX_MEMORY_MB", default_value_t = 512)]
    max_memory_mb: u32,
    /// Upper bound on any run's deadline, whatever its manifest asks.
    #[arg(long, env = "PROXIMITY_MAX_TIMEOUT_SECS", default_value_t = 3600)]
    max_timeout_secs: u64,
}

impl RuntimeArgs {
    fn config(&self) -> crate::runtime::RuntimeConfig {
        let cache_dir = self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
            Some(base.join("proximity").join("native"))
        });
        crate::runtime::RuntimeConfig {
            cache_dir,
            max_memory_mb: self.max_memory_mb,
            max_timeout: std::time::Duration::from_secs(self.max_timeout_secs),
            ..Default::default()
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The proxy server logs one audit line per request at `info`; under
    // sshd, stderr is the SSH client's, so a forced command logs nothing there.
    let default_log = match &cli.command {
        Command::Proxy { command: proxy::ProxyCommand::Serve { .. } } => "info",
        Command::Proxy { command: proxy::ProxyCommand::ForcedCommand { .. } } => "off",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROXIMITY_LOG").unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match cli.command {
        Command::Proxy { command } => return proxy::run(command),
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Deploy(args) => deploy::run(args).await,
            Command::Recipe(command) => recipe::run(command).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Apps { command, server } => apps::run(command, &server).await,
            Command::Proxy { .. } => unreachable!("handled before the runtime starts"),
            Command::Keys(command) => keys::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
