//! `proximity proxy`: the proxy server of the `proxy-exec` capability, from
//! the main binary (the `proximity-proxy` crate does the work; its own
//! binary is the same server, smaller, for proxy containers).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ProxyCommand {
    /// Serve whitelisted commands over SSH (ED25519 keys, exec only, no shell).
    Serve {
        /// The proxy's TOML file: listen address, host key, services and their whitelists.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check and run `$SSH_ORIGINAL_COMMAND` with one service's whitelist: for
    /// OpenSSH's `command="…"` in authorized_keys.
    ForcedCommand {
        #[arg(long)]
        config: PathBuf,
        /// The service whose whitelist and runner apply.
        #[arg(long)]
        service: String,
    },
}

/// Runs outside the CLI's multi-threaded runtime: the proxy keeps to one
/// thread of its own.
pub fn run(command: ProxyCommand) -> ExitCode {
    match command {
        ProxyCommand::Serve { config } => match proximity_proxy::run_server(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        },
        ProxyCommand::ForcedCommand { config, service } => {
            let status = proximity_proxy::run_forced_command(&config, &service);
            ExitCode::from(u8::try_from(status).unwrap_or(1))
        }
    }
}
