//! The `proxy-exec` capability's client: whitelisted commands sent to a
//! service's forced-command proxies over pooled SSH connections.
//!
//! A call for a service goes through these steps:
//! 1. The service's circuit breaker ([`super::breaker`]) lets it through, or
//!    it fails at once, without network traffic.
//! 2. Discovery ([`super::discovery`]) names the healthy proxies; calls take
//!    them in turn.
//! 3. The command line (the granted command, then each argument quoted with
//!    POSIX single quotes, which the proxy's splitter reads back exactly) runs
//!    on a pooled connection ([`crate::ssh::SshPool`]).
//! 4. A connection failure that cannot have let the command start is retried,
//!    after exponential backoff with jitter, up to `retries` times, possibly
//!    on another proxy. A command that may have started is never sent again.
//!
//! The proxy answers a refused command with exit status 126 and one line
//! `proximity-proxy: refused: REASON` on stderr: that becomes an
//! `invalid-input` error naming the reason. Other statuses are the command's
//! own and go back to the recipe as they are.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerConfig};
use super::config::{ProxySettings, ServiceConfig, SettingsError};
use super::discovery::{Discovery, Endpoint};
use crate::api::{ProxyServiceStats, ProxyStats};
use crate::backend::{BackendError, ExecOutput, ProxyExecutor};
use crate::ssh::quote::quote_arg;
use crate::ssh::{backoff_with_jitter, RemoteCommand, SshError, SshPool, SshTarget};

/// What the proxy writes before the reason of a refusal.
const REFUSAL_PREFIX: &str = "proximity-proxy: refused: ";
/// The proxy's exit status for a refused command.
const REFUSED_STATUS: i32 = 126;

/// Every configured proxy service, by name.
pub struct ProxyClient {
    services: BTreeMap<String, ServiceClient>,
}

impl ProxyClient {
    pub fn new(settings: &ProxySettings) -> Result<ProxyClient, SettingsError> {
        let retry = RetryPolicy { retries: settings.retries, backoff: Duration::from_millis(settings.backoff_ms) };
        let services = settings
            .services()?
            .into_iter()
            .map(|config| {
                let discovery = Discovery::new(config.source.clone(), settings.discovery());
                let client =
                    ServiceClient::new(config, discovery, SshPool::new(settings.pool()), settings.breaker(), retry);
                (client.config.name.clone(), client)
            })
            .collect();
        Ok(ProxyClient { services })
    }
}

#[async_trait]
impl ProxyExecutor for ProxyClient {
    async fn proxy_exec(
        &self,
        service: &str,
        command: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, BackendError> {
        let client = self.services.get(service).ok_or_else(|| {
            BackendError::NotFound(format!(
                "no proxy is configured for service `{service}` (add [proxy.services.{service}] to the server's \
                 configuration)"
            ))
        })?;
        client.call(command, args, timeout).await
    }

    fn stats(&self) -> ProxyStats {
        ProxyStats { services: self.services.values().map(ServiceClient::stats).collect() }
    }
}

#[derive(Clone, Copy, Debug)]
struct RetryPolicy {
    retries: u32,
    backoff: Duration,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    fast_failed: AtomicU64,
    retries: AtomicU64,
}

/// How a call failed: whether the service itself is in trouble (counted by
/// the breaker), or only this command.
enum CallError {
    Service(BackendError),
    Command(BackendError),
}

/// One proxy service: its discovery, connections and breaker.
struct ServiceClient {
    config: ServiceConfig,
    discovery: Discovery,
    pool: SshPool,
    breaker: Mutex<Breaker>,
    retry: RetryPolicy,
    /// Spreads calls over the healthy proxies.
    next: AtomicUsize,
    counters: Counters,
}

impl ServiceClient {
    fn new(
        config: ServiceConfig,
        discovery: Discovery,
        pool: SshPool,
        breaker: BreakerConfig,
        retry: RetryPolicy,
    ) -> ServiceClient {
        ServiceClient {
            config,
            discovery,
            pool,
            breaker: Mutex::new(Breaker::new(breaker)),
            retry,
            next: AtomicUsize::new(0),
            counters: Counters::default(),
        }
    }

    async fn call(&self, command: &str, args: &[String], timeout: Duration) -> Result<ExecOutput, BackendError> {
        let line = command_line(command, args);
        let name = &self.config.name;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(refusal) = self.breaker.lock().unwrap().try_pass(Instant::now()) {
            self.counters.fast_failed.fetch_add(1, Ordering::Relaxed);
            return Err(BackendError::Failed(format!(
                "proxy service `{name}` is unavailable: its last {} calls failed, so calls fail at once for {:.0?} \
                 more (circuit breaker open)",
                refusal.failures, refusal.retry_in
            )));
        }
        // Should the caller give up mid-call, a half-open probe must not
        // keep the breaker waiting for an outcome that never comes.
        let mut outcome = ProbeOutcome { breaker: &self.breaker, settled: false };
        let result = self.attempts(&line, timeout).await;
        outcome.settled = true;
        let mut breaker = self.breaker.lock().unwrap();
        match result {
            Ok(output) => {
                breaker.succeeded();
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                Ok(output)
            }
            Err(CallError::Command(error)) => {
                // The proxy answered: the service works.
                breaker.succeeded();
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
            Err(CallError::Service(error)) => {
                breaker.failed(Instant::now());
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Finds a proxy and runs `line` there, retrying what cannot have started.
    async fn attempts(&self, line: &str, timeout: Duration) -> Result<ExecOutput, CallError> {
        let name = &self.config.name;
        let deadline = Instant::now() + timeout;
        let mut attempt = 0u32;
        loop {
            let problem = match self.discovery.endpoints().await {
                Err(error) => format!("no proxy found: {error}"),
                Ok(endpoints) if endpoints.is_empty() => format!("no proxy found by {}", self.discovery.describe()),
                Ok(endpoints) => {
                    let endpoint = &endpoints[self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
                    match self.run_on(endpoint, line, deadline, timeout).await {
                        Ok(output) => return Ok(output),
                        Err(Retry::No(error)) => return Err(error),
                        Err(Retry::Yes(problem)) => problem,
                    }
                }
            };
            let wait = backoff_with_jitter(self.retry.backoff, attempt);
            if attempt >= self.retry.retries {
                let tries = attempt + 1;
                return Err(CallError::Service(BackendError::Failed(format!(
                    "proxy service `{name}`: {problem} ({tries} attempt{})",
                    if tries == 1 { "" } else { "s" }
                ))));
            }
            if Instant::now() + wait >= deadline {
                return Err(CallError::Service(BackendError::Timeout(format!(
                    "proxy service `{name}`: {problem}; no time left for another attempt within {timeout:?}"
                ))));
            }
            tracing::debug!(service = %name, attempt, "proxy call failed, retrying after {wait:?}: {problem}");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn run_on(
        &self,
        endpoint: &Endpoint,
        line: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ExecOutput, Retry> {
        let name = &self.config.name;
        let target = SshTarget {
            host: endpoint.host.clone(),
            port: endpoint.port,
            user: self.config.user.clone(),
            auth: self.config.auth.clone(),
            host_key: self.config.host_key.clone(),
        };
        match self.pool.run(&target, RemoteCommand::Forced(line), None, deadline, timeout).await {
            Ok(result) => {
                self.discovery.report_success(endpoint);
                let stderr = String::from_utf8_lossy(&result.stderr);
                if result.status == REFUSED_STATUS {
                    if let Some(reason) = stderr.lines().find_map(|l| l.strip_prefix(REFUSAL_PREFIX)) {
                        return Err(Retry::No(CallError::Command(BackendError::InvalidInput(format!(
                            "the proxy for service `{name}` refused `{line}`: {reason}"
                        )))));
                    }
                }
                Ok(ExecOutput { status: result.status, stdout: result.stdout, stderr: result.stderr })
            }
            Err(failure) => {
                let error = failure.error;
                match error {
                    // Settings, not luck: another try would fail alike.
                    SshError::Auth { .. } | SshError::HostKey { .. } => {
                        self.discovery.report_failure(endpoint);
                        Err(Retry::No(CallError::Service(BackendError::Failed(format!(
                            "proxy service `{name}`: {error}"
                        )))))
                    }
                    SshError::Quote(_) => {
                        Err(Retry::No(CallError::Command(BackendError::InvalidInput(error.to_string()))))
                    }
                    SshError::Timeout { .. } if failure.started => Err(Retry::No(CallError::Command(
                        BackendError::Timeout(format!("proxy service `{name}`: {error}")),
                    ))),
                    _ if failure.started => {
                        self.discovery.report_failure(endpoint);
                        Err(Retry::No(CallError::Service(BackendError::Failed(format!(
                            "proxy service `{name}`: {error}; not tried again, as the command may have run"
                        )))))
                    }
                    _ => {
                        self.discovery.report_failure(endpoint);
                        Err(Retry::Yes(format!("{endpoint}: {error}")))
                    }
                }
            }
        }
    }

    fn stats(&self) -> ProxyServiceStats {
        let breaker = self.breaker.lock().unwrap();
        let pool = self.pool.stats();
        let counters = &self.counters;
        ProxyServiceStats {
            service: self.config.name.clone(),
            discovery: self.discovery.describe(),
            endpoints: self.discovery.stats().endpoints.iter().map(ToString::to_string).collect(),
            breaker: breaker.state(Instant::now()).as_str().to_string(),
            failures_in_a_row: breaker.failures_in_a_row(),
            calls: counters.calls.load(Ordering::Relaxed),
            succeeded: counters.succeeded.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            fast_failed: counters.fast_failed.load(Ordering::Relaxed),
            retries: counters.retries.load(Ordering::Relaxed),
            connections: pool.connections,
            reuses: pool.reuses,
            connection_failures: pool.failures,
            open_connections: pool.open as u64,
        }
    }
}

/// Whether an attempt's failure may be tried again.
enum Retry {
    /// The command cannot have started: the problem, for the final message.
    Yes(String),
    No(CallError),
}

/// Releases a half-open probe whose call was dropped before it ended.
struct ProbeOutcome<'a> {
    breaker: &'a Mutex<Breaker>,
    settled: bool,
}

impl Drop for ProbeOutcome<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.lock().unwrap_or_else(|e| e.into_inner()).probe_abandoned();
        }
    }
}

/// The line the proxy gets: the granted command as written (its words are
/// the whitelist's prefix), then each argument single-quoted, so that the
/// proxy's POSIX splitter gives back exactly the argument, whatever it holds.
pub fn command_line(command: &str, args: &[String]) -> String {
    let mut line = command.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(&quote_arg(arg));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_so_the_proxy_splits_them_back() {
        let args: Vec<String> = ["--path", "/a b/it's", "$(id)", ""].iter().map(|s| s.to_string()).collect();
        let line = command_line("php occ files:scan", &args);
        assert_eq!(line, r#"php occ files:scan '--path' '/a b/it'\''s' '$(id)' ''"#);
        let split = shell_words::split(&line).unwrap();
        assert_eq!(split[..3], ["php", "occ", "files:scan"]);
        assert_eq!(split[3..], args[..]);
    }
}
