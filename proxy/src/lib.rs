//! `proximity-proxy`: an SSH server that runs only whitelisted commands.
//!
//! Recipes call the host's `proxy-exec` capability for commands that must run
//! where the recipe cannot reach, such as `php occ files:scan` in a Nextcloud
//! container on another Swarm node. The host connects here over SSH with a
//! service's ED25519 key; the proxy splits the requested command line into
//! an argv (POSIX word rules, never a shell), checks it against that
//! service's whitelist, and runs it with the service's runner, by default
//! `docker exec [--user U] CONTAINER ARGV…`.
//!
//! # Entry points for a host binary
//! - [`run_server`]`(config_path: &Path) -> Result<(), ServeError>`:
//!   `proximity proxy serve --config proxy.toml`. Builds its own
//!   current-thread runtime and serves until SIGINT or SIGTERM; call it from
//!   a plain thread (not inside a tokio runtime). Audit records are
//!   `tracing` events, so install a subscriber first.
//! - [`serve`]`(config: &ProxyConfig, shutdown) -> Result<(), ServeError>`:
//!   the same inside a runtime the caller owns, until `shutdown` resolves.
//! - [`run_forced_command`]`(config_path: &Path, service: &str) -> i32`:
//!   `proximity proxy forced-command --config proxy.toml --service NAME`,
//!   for OpenSSH's `command="…"` in `authorized_keys`. Returns the process
//!   exit status. Stderr belongs to the SSH client there: do not log to it.
//!
//! The `proximity-proxy` binary is a thin wrapper over these.
//!
//! Modules, one job each:
//! - [`config`]: the TOML file.
//! - [`policy`]: splitting a command line and matching it against the whitelist.
//! - [`runner`]: where a command runs, and running it with a timeout and an
//!   output limit.
//! - [`pipe`]: reading a command's output without a buffer per command.
//! - [`limits`]: per-key rate limit and concurrent command cap.
//! - [`audit`]: one record per request.
//! - [`service`]: one service's whitelist, limits and runner, and running a
//!   command line through them (shared by both modes).
//! - [`server`]: the russh server that ties them together.
//! - [`serve`](mod@serve): from a configuration to a running server.
//! - [`forced_command`]: one command under OpenSSH's forced-command mode.
//!
//! # Exit statuses
//! The command's own status, or: 124 killed after the timeout, 125 killed
//! after the output limit or could not be started, 126 refused (with a
//! one-line reason on stderr, prefixed `proximity-proxy: refused:`).
//!
//! # Configuration
//! ```toml
//! listen = "0.0.0.0:2222"
//! host_key = "/var/lib/proximity-proxy/host_ed25519"  # generated (0600) if missing
//! health_listen = "0.0.0.0:2223"                      # optional: TCP accept-and-close
//! audit_log = "/var/log/proximity-proxy/audit.log"    # optional: audit lines appended here too
//!
//! [services.nextcloud]
//! # An OpenSSH authorized_keys file, e.g. a Docker secret. Only plain
//! # ssh-ed25519 lines; lines with options are refused.
//! authorized_keys = "/run/secrets/nextcloud_proxy_keys"
//! # Or kind = "docker", container = "nextcloud"; or kind = "command",
//! # program = "/usr/local/bin/x", args = ["--flag"] to run PROGRAM ARGS… ARGV….
//! runner = { kind = "docker", label = "com.docker.swarm.service.name=nextcloud_app", user = "www-data" }
//! timeout_secs = 600          # default 300
//! max_output_bytes = 1048576  # stdout + stderr, default 4 MiB
//! rate_per_minute = 30        # per key, default 60
//! burst = 5                   # default 10
//! max_sessions = 2            # running commands per key, default 4
//!
//! [[services.nextcloud.commands]]
//! prefix = "php occ files:scan"      # fixed start of the argv
//! max_args = 3                       # arguments after the prefix
//! flags = ["--all", "--quiet"]       # flags without a value
//! options = { "--path" = "/[A-Za-z0-9_./-]+" }   # --path=V or --path V; V must match in full
//! positional = "[A-Za-z0-9_.@-]{1,64}"           # other arguments; absent: none allowed
//!
//! [[services.nextcloud.commands]]
//! prefix = "php occ maintenance:mode"
//! max_args = 1
//! flags = ["--on", "--off"]
//! ```
//! A key listed for several services picks one with the SSH user name
//! (`ssh nextcloud@proxy …`); a key in one service may use any user name.
//! Whatever the rules say, lines with control characters (NUL, newline…),
//! arguments over 1 KiB, and `..` path segments are refused.

pub mod audit;
pub mod config;
pub mod forced_command;
pub mod limits;
pub mod pipe;
pub mod policy;
pub mod runner;
pub mod serve;
pub mod server;
pub mod service;

pub use forced_command::run_forced_command;
pub use serve::{run_server, serve, ServeError};
