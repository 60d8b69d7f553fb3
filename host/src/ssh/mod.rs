//! SSH client: connections, a pool of them, and quoting for a remote shell.
//!
//! Two users share it: the proxmox backend runs `pct` on a node through its
//! login shell ([`RemoteCommand::Argv`]), and the `proxy-exec` capability
//! sends whitelisted command lines to a forced-command proxy
//! ([`RemoteCommand::Forced`]).

mod connection;
mod pool;
pub mod quote;

pub use connection::{
    ExecResult, HostKeyPolicy, RemoteCommand, RunFailure, SshAuth, SshConnection, SshError, SshTarget, OUTPUT_LIMIT,
};
pub use pool::{backoff_with_jitter, PoolConfig, PoolStats, SshPool};
