//! SSH connections kept open between commands.
//!
//! Opening an SSH connection costs a TCP handshake, a key exchange and a
//! login: many round trips, and CPU on the server. The pool keeps connections
//! per (host, port, user) and runs up to
//! [`PoolConfig::max_sessions_per_connection`] commands on one connection at
//! once, each on its own channel; past that it opens another connection (up to
//! [`PoolConfig::max_connections_per_host`]), and past those it waits.
//!
//! A connection that broke (the node rebooted, sshd restarted) is noticed
//! when it is next used, or by keepalives in the background, and replaced. A
//! command that cannot have started on it is run on the new connection;
//! [`SshPool::exec`] never runs a command twice once it may have started,
//! while [`SshPool::exec_idempotent`] retries with exponential backoff.
//! Connections unused for [`PoolConfig::idle_timeout`] are closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::connection::{RemoteCommand, RunFailure, SshConnection};
use super::{ExecResult, SshError, SshTarget, OUTPUT_LIMIT};

/// How the pool treats connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Commands run at once on one connection. Keep it below sshd's
    /// `MaxSessions` (10 by default): killing a timed-out command takes one
    /// more channel.
    pub max_sessions_per_connection: usize,
    /// Connections to one (host, port, user) at once; commands past
    /// `max_connections_per_host * max_sessions_per_connection` wait.
    pub max_connections_per_host: usize,
    /// A connection unused for this long is closed.
    pub idle_timeout: Duration,
    /// Connecting, key exchange and login, within the command's timeout.
    pub connect_timeout: Duration,
    /// Further attempts of [`SshPool::exec_idempotent`] after a failure of
    /// the connection.
    pub retries: u32,
    /// The wait before the first retry; it doubles with each one.
    pub backoff: Duration,
    /// The bytes kept of each output stream (the last ones).
    pub output_limit: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_sessions_per_connection: 8,
            max_connections_per_host: 4,
            idle_timeout: Duration::from_secs(5 * 60),
            connect_timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(200),
            output_limit: OUTPUT_LIMIT,
        }
    }
}

/// What the pool has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened by the pool (not by [`SshPool::exec_fresh`]).
    pub connections: u64,
    /// Commands run on a connection that was already open.
    pub reuses: u64,
    /// Connection attempts that failed, and connections that broke in use.
    pub failures: u64,
    /// Connections open now.
    pub open: usize,
    /// The most commands seen running at once on one connection.
    pub peak_sessions: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HostId {
    host: String,
    port: u16,
    user: String,
}

struct Pooled {
    connection: SshConnection,
    sessions: Arc<Semaphore>,
    active: AtomicUsize,
    last_used: Mutex<Instant>,
}

impl Pooled {
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        (self.active.load(Ordering::SeqCst) == 0).then(|| now - *self.last_used.lock().unwrap())
    }
}

struct Host {
    /// Bounds the commands running at once on all of the host's connections.
    slots: Arc<Semaphore>,
    connections: tokio::sync::Mutex<Vec<Arc<Pooled>>>,
}

/// One command's hold on a pooled connection.
struct Lease {
    pooled: Arc<Pooled>,
    reused: bool,
    _session: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.pooled.last_used.lock().unwrap() = Instant::now();
        self.pooled.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    reuses: AtomicU64,
    failures: AtomicU64,
    peak_sessions: AtomicUsize,
}

struct Inner {
    config: PoolConfig,
    hosts: Mutex<HashMap<HostId, Arc<Host>>>,
    counters: Counters,
}

/// SSH connections to servers (Proxmox nodes, proxies), shared by all callers.
#[derive(Clone)]
pub struct SshPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SshPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPool").field("config", &self.inner.config).field("stats", &self.stats()).finish()
    }
}

impl SshPool {
    pub fn new(config: PoolConfig) -> SshPool {
        let config = PoolConfig {
            max_sessions_per_connection: config.max_sessions_per_connection.max(1),
            max_connections_per_host: config.max_connections_per_host.max(1),
            ..config
        };
        SshPool { inner: Arc::new(Inner { config, hosts: Mutex::new(HashMap::new()), counters: Counters::default() }) }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> PoolStats {
        let counters = &self.inner.counters;
        let open = self
            .inner
            .hosts
            .lock()
            .unwrap()
            .values()
            .map(|host| host.connections.try_lock().map(|c| c.iter().filter(|p| !p.connection.is_closed()).count()))
            .map(|count| count.unwrap_or(0))
            .sum();
        PoolStats {
            connections: counters.connections.load(Ordering::SeqCst),
            reuses: counters.reuses.load(Ordering::SeqCst),
            failures: counters.failures.load(Ordering::SeqCst),
            open,
            peak_sessions: counters.peak_sessions.load(Ordering::SeqCst),
        }
    }

    /// Runs `argv` on the target (see [`super::connection`] for how), feeding it
    /// `stdin`, killing it when it outlives `timeout` (which covers waiting
    /// for a connection too). A command is never run twice: only one that
    /// cannot have started (its pooled connection turned out dead) is moved
    /// to a new connection.
    pub async fn exec(
        &self,
        target: &SshTarget,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecResult, SshError> {
        let deadline = Instant::now() + timeout;
        self.run(target, RemoteCommand::Argv(argv), stdin, deadline, timeout).await.map_err(|f| f.error)
    }

    /// [`Self::exec`] for a command that may safely run more than once: when
    /// the connection fails (cannot be opened, or breaks while the command
    /// runs), it is tried again up to [`PoolConfig::retries`] times, after
    /// [`PoolConfig::backoff`], doubling, with jitter ([`backoff_with_jitter`]).
    /// Host key and login failures, and a command that timed out, are not
    /// retried.
    pub async fn exec_idempotent(
        &self,
        target: &SshTarget,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecResult, SshError> {
        let deadline = Instant::now() + timeout;
        let config = &self.inner.config;
        let mut attempt = 0u32;
        loop {
            let failure = match self.run(target, RemoteCommand::Argv(argv), stdin, deadline, timeout).await {
                Ok(result) => return Ok(result),
                Err(failure) => failure,
            };
            let retryable = match &failure.error {
                SshError::Connect { .. } => true,
                SshError::Channel { .. } => failure.broken || !failure.started,
                // Connecting (or opening a channel) took too long, but time
                // is left: the node may be back.
                SshError::Timeout { .. } => !failure.started,
                _ => false,
            };
            if !retryable || attempt >= config.retries {
                return Err(failure.error);
            }
            let wait = backoff_with_jitter(config.backoff, attempt);
            if Instant::now() + wait >= deadline {
                return Err(failure.error);
            }
            tracing::debug!(host = %target.host, attempt, "retrying SSH command after {wait:?}: {}", failure.error);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Runs `argv` over a connection of its own, opened for this command and
    /// closed after it: what the pool saves, for comparison.
    pub async fn exec_fresh(
        &self,
        target: &SshTarget,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecResult, SshError> {
        self.exec_fresh_command(target, RemoteCommand::Argv(argv), stdin, timeout).await
    }

    /// [`Self::exec_fresh`] for any [`RemoteCommand`].
    pub async fn exec_fresh_command(
        &self,
        target: &SshTarget,
        command: RemoteCommand<'_>,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecResult, SshError> {
        let deadline = Instant::now() + timeout;
        command.check()?;
        let connect_timeout = self.inner.config.connect_timeout.min(timeout);
        let connection = SshConnection::connect(target, connect_timeout).await?;
        let result = connection.run(command, stdin, deadline, timeout, self.inner.config.output_limit).await;
        connection.disconnect().await;
        result.map_err(|f| f.error)
    }

    /// Writes `data` to `remote_path` on the target with permissions `mode`:
    /// through a temporary file created under `umask 077` in the same
    /// directory, then renamed over the path, so the file is never readable
    /// by others nor seen half-written. Binary-safe (the bytes go as stdin).
    pub async fn upload(
        &self,
        target: &SshTarget,
        data: &[u8],
        remote_path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let script = "set -e; umask 077; tmp=\"$1.proximity-upload.$$\"; trap 'rm -f \"$tmp\"' EXIT; \
                      cat > \"$tmp\"; chmod \"$2\" \"$tmp\"; mv -f \"$tmp\" \"$1\"; trap - EXIT";
        let argv: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            remote_path.into(),
            format!("{:o}", mode & 0o7777),
        ];
        let result = self.exec_idempotent(target, &argv, Some(data), timeout).await?;
        if result.status != 0 {
            return Err(SshError::Command {
                host: target.host.clone(),
                port: target.port,
                user: target.user.clone(),
                command: format!("upload to {remote_path}"),
                status: result.status,
                stderr: String::from_utf8_lossy(&result.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close_all(&self) {
        let hosts: Vec<Arc<Host>> = self.inner.hosts.lock().unwrap().drain().map(|(_, h)| h).collect();
        for host in hosts {
            for pooled in host.connections.lock().await.drain(..) {
                pooled.connection.disconnect().await;
            }
        }
    }

    /// Runs `command` on a pooled connection by `deadline` (`timeout` is for
    /// messages), telling in a failure whether the command may have started.
    /// A command is never run twice: only one that cannot have started (its
    /// pooled connection turned out dead) is moved to a new connection.
    pub async fn run(
        &self,
        target: &SshTarget,
        command: RemoteCommand<'_>,
        stdin: Option<&[u8]>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ExecResult, RunFailure> {
        command.check().map_err(|e| RunFailure { error: e.into(), started: false, broken: false })?;
        loop {
            let lease = self.lease(target, deadline, timeout).await?;
            let result =
                lease.pooled.connection.run(command, stdin, deadline, timeout, self.inner.config.output_limit).await;
            match result {
                Ok(result) => return Ok(result),
                Err(failure) => {
                    if failure.broken {
                        self.inner.counters.failures.fetch_add(1, Ordering::SeqCst);
                        self.forget(target, &lease.pooled).await;
                    }
                    // A connection taken from the pool may have died while it
                    // sat there: a command that never started on it goes to a
                    // new one. A new connection that fails is an answer.
                    if failure.broken && !failure.started && lease.reused && Instant::now() < deadline {
                        tracing::debug!(
                            host = %target.host,
                            "pooled SSH connection was dead; running `{}` on a new one",
                            command.display()
                        );
                        continue;
                    }
                    return Err(failure);
                }
            }
        }
    }

    fn host(&self, target: &SshTarget) -> Arc<Host> {
        let id = HostId { host: target.host.clone(), port: target.port, user: target.user.clone() };
        let config = &self.inner.config;
        self.inner
            .hosts
            .lock()
            .unwrap()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Host {
                    slots: Arc::new(Semaphore::new(
                        config.max_sessions_per_connection * config.max_connections_per_host,
                    )),
                    connections: tokio::sync::Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// Drops a broken connection from its host's list.
    async fn forget(&self, target: &SshTarget, pooled: &Arc<Pooled>) {
        let host = self.host(target);
        host.connections.lock().await.retain(|p| !Arc::ptr_eq(p, pooled));
    }

    /// Closes the connections of every host that have been idle too long.
    fn sweep_idle(&self) {
        let now = Instant::now();
        let idle_timeout = self.inner.config.idle_timeout;
        let hosts: Vec<Arc<Host>> = self.inner.hosts.lock().unwrap().values().cloned().collect();
        for host in hosts {
            let Ok(mut connections) = host.connections.try_lock() else { continue };
            connections.retain(|pooled| {
                let expired =
                    pooled.connection.is_closed() || pooled.idle_for(now).is_some_and(|idle| idle >= idle_timeout);
                if expired && !pooled.connection.is_closed() {
                    let pooled = pooled.clone();
                    tokio::spawn(async move { pooled.connection.disconnect().await });
                }
                !expired
            });
        }
    }

    /// A session on a live connection to the target: an open one with room,
    /// or a new one.
    async fn lease(&self, target: &SshTarget, deadline: Instant, timeout: Duration) -> Result<Lease, RunFailure> {
        let config = &self.inner.config;
        let counters = &self.inner.counters;
        let waited =
            |what: &str| RunFailure { error: target.timeout_error(what, timeout), started: false, broken: false };
        self.sweep_idle();
        let host = self.host(target);
        let slot = tokio::time::timeout_at(deadline, host.slots.clone().acquire_owned())
            .await
            .map_err(|_| waited("waiting for a free SSH session"))?
            .expect("the slots semaphore is never closed");
        let mut connections = tokio::time::timeout_at(deadline, host.connections.lock())
            .await
            .map_err(|_| waited("waiting for a free SSH session"))?;
        let now = Instant::now();
        connections.retain(|pooled| {
            let dead = pooled.connection.is_closed();
            if dead {
                counters.failures.fetch_add(1, Ordering::SeqCst);
            }
            !dead
        });
        for pooled in connections.iter() {
            if let Ok(session) = pooled.sessions.clone().try_acquire_owned() {
                counters.reuses.fetch_add(1, Ordering::SeqCst);
                return Ok(self.hand_out(pooled.clone(), session, slot, true, now));
            }
        }
        // Every connection is busy (or there is none): the slot we hold
        // guarantees there is room for one more.
        let connect_timeout = config.connect_timeout.min(deadline.saturating_duration_since(now));
        let connection = match SshConnection::connect(target, connect_timeout).await {
            Ok(connection) => connection,
            Err(error) => {
                counters.failures.fetch_add(1, Ordering::SeqCst);
                return Err(RunFailure { error, started: false, broken: false });
            }
        };
        counters.connections.fetch_add(1, Ordering::SeqCst);
        let pooled = Arc::new(Pooled {
            connection,
            sessions: Arc::new(Semaphore::new(config.max_sessions_per_connection)),
            active: AtomicUsize::new(0),
            last_used: Mutex::new(now),
        });
        let session = pooled.sessions.clone().try_acquire_owned().expect("a new connection has free sessions");
        connections.push(pooled.clone());
        Ok(self.hand_out(pooled, session, slot, false, now))
    }

    fn hand_out(
        &self,
        pooled: Arc<Pooled>,
        session: OwnedSemaphorePermit,
        slot: OwnedSemaphorePermit,
        reused: bool,
        now: Instant,
    ) -> Lease {
        *pooled.last_used.lock().unwrap() = now;
        let active = pooled.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.counters.peak_sessions.fetch_max(active, Ordering::SeqCst);
        Lease { pooled, reused, _session: session, _slot: slot }
    }
}

/// The wait before retry `attempt` (0 for the first): `base` doubled per
/// attempt, then a random part of it taken off (up to a half), so that
/// callers who failed together do not all come back at the same moment.
pub fn backoff_with_jitter(base: Duration, attempt: u32) -> Duration {
    use rand::Rng;
    let full = base.saturating_mul(1u32 << attempt.min(16));
    let jitter = rand::rng().random_range(0.0..0.5);
    full.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::{HostKeyPolicy, SshAuth};

    #[test]
    fn defaults_match_the_design() {
        let config = PoolConfig::default();
        assert_eq!(config.max_sessions_per_connection, 8);
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.retries, 3);
        assert_eq!(config.backoff, Duration::from_millis(200));
    }

    #[test]
    fn pool_is_shareable() {
        fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync_clone::<SshPool>();
    }

    #[test]
    fn backoff_doubles_and_keeps_at_least_half() {
        let base = Duration::from_millis(100);
        for attempt in 0..5u32 {
            let full = base * (1 << attempt);
            for _ in 0..50 {
                let wait = backoff_with_jitter(base, attempt);
                assert!(wait <= full && wait >= full / 2, "attempt {attempt}: {wait:?} outside {full:?}/2..{full:?}");
            }
        }
    }

    #[tokio::test]
    async fn nul_in_argv_is_refused_before_connecting() {
        let pool = SshPool::new(PoolConfig::default());
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port: 1,
            user: "root".into(),
            auth: SshAuth::Agent,
            host_key: HostKeyPolicy::Fingerprint("SHA256:x".into()),
        };
        let error =
            pool.exec(&target, &["echo".into(), "a\0b".into()], None, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, SshError::Quote(_)), "{error}");
        assert_eq!(pool.stats().connections, 0);
    }
}
