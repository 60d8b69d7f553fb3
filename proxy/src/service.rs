//! One configured service and running a command line through it: the
//! whitelist, the admission (rate limit and session cap), the runner and its
//! limits. The SSH server and OpenSSH forced-command mode both go through
//! [`Service::execute`], so they refuse and run exactly the same things.

use tokio::sync::{mpsc, oneshot};

use crate::audit::Outcome;
use crate::config::{ConfigError, ServiceConfig};
use crate::limits::KeyLimits;
use crate::policy::{authorize, CommandRule, Refusal};
use crate::runner::{self, Chunk, RunLimits, Runner};

/// Written before every message the proxy itself puts on stderr.
pub const STDERR_TAG: &str = "proximity-proxy";

/// A service's whitelist, runner and limits.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    rules: Vec<CommandRule>,
    runner: Box<dyn Runner>,
    limits: KeyLimits,
    run_limits: RunLimits,
}

impl Service {
    /// Compiles the rules and builds the runner of the service `name`.
    pub fn from_config(name: &str, config: &ServiceConfig) -> Result<Service, ConfigError> {
        Ok(Service {
            name: name.to_owned(),
            rules: config.compile_rules(name)?,
            runner: runner::from_config(&config.runner),
            limits: KeyLimits {
                rate_per_minute: config.rate_per_minute,
                burst: config.burst,
                max_sessions: config.max_sessions,
            },
            run_limits: RunLimits { timeout: config.timeout(), max_output: config.max_output_bytes },
        })
    }

    /// Checks `line` against the whitelist, asks `admit` for a place (it
    /// gets the service's limits; its permit is held while the command
    /// runs), then runs the argv, sending its output to `out` until it ends
    /// or `cancel` resolves. Returns the argv for the audit record (the raw
    /// line as one element when it could not be split) and how it ended.
    pub async fn execute<Permit>(
        &self,
        line: &[u8],
        admit: impl FnOnce(KeyLimits) -> Result<Permit, Refusal>,
        out: mpsc::Sender<Chunk>,
        cancel: oneshot::Receiver<()>,
    ) -> (Vec<String>, Outcome) {
        let argv = match authorize(&self.rules, line) {
            Ok((_, argv)) => argv,
            Err(refusal) => {
                return (vec![String::from_utf8_lossy(line).into_owned()], Outcome::Refused(refusal.to_string()))
            }
        };
        let outcome = match admit(self.limits) {
            Err(refusal) => Outcome::Refused(refusal.to_string()),
            Ok(_permit) => match self.runner.prepare(&argv).await {
                Err(reason) => Outcome::Failed(reason),
                Ok(invocation) => runner::run(&invocation, self.run_limits, out, cancel).await,
            },
        };
        (argv, outcome)
    }

    /// The line the proxy adds on stderr after the command's own output,
    /// newline included, if the outcome calls for one.
    pub fn stderr_line(&self, outcome: &Outcome) -> Option<String> {
        let message = match outcome {
            Outcome::Exited(_) | Outcome::Abandoned => return None,
            Outcome::Refused(reason) => format!("refused: {reason}"),
            Outcome::TimedOut => format!("killed after the timeout of {} s", self.run_limits.timeout.as_secs()),
            Outcome::OutputLimit => format!("killed after {} bytes of output", self.run_limits.max_output),
            Outcome::Failed(reason) => format!("cannot run the command: {reason}"),
        };
        Some(format!("{STDERR_TAG}: {message}\n"))
    }
}
