//! Load bench: the real `proximity-proxy` binary on 127.0.0.1 with 200 SSH
//! sessions running a command at the same time, and its memory under that
//! load.
//!
//! ```sh
//! cargo bench -p proximity-proxy --bench load
//! ```
//!
//! Two shapes: 200 connections with one exec each, and 40 connections with
//! 5 channels each. Every command prints `started` and then waits for a
//! release file, so that all 200 are running when the memory is read.
//! Prints the proxy's RSS idle and loaded, its peak (VmHWM), the cost per
//! session, and the errors; exits non-zero if any session failed.
//! `PROXY_BIN=/path/to/proximity-proxy` measures another build instead.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::Barrier;

const SESSIONS: usize = 200;

/// The proxy under test, killed when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(dir: &Path) -> Proxy {
        // PROXY_BIN: another build of the proxy, e.g. one made with a
        // different release profile.
        let binary = std::env::var_os("PROXY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_proximity-proxy").into());
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(dir.join("proxy.toml"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn,proximity_proxy=info,proximity_proxy::audit=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start proximity-proxy");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the proxy exited").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().parse().unwrap();
            }
        };
        // Keep draining the log so the proxy never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        Proxy { child, addr }
    }

    /// Resident KiB of the proxy's own executable (code and data, shared
    /// with other copies) and of its heap, from /proc/PID/smaps.
    fn resident_by_kind(&self) -> (u64, u64) {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.child.id())).unwrap();
        let executable = std::fs::read_link(format!("/proc/{}/exe", self.child.id())).unwrap();
        let (mut binary, mut heap, mut current) = (0, 0, "");
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                let kib: u64 = rss.trim().trim_end_matches("kB").trim().parse().unwrap();
                if current == executable.to_str().unwrap() {
                    binary += kib;
                } else if current == "[heap]" {
                    heap += kib;
                }
            } else if !line.split_whitespace().next().unwrap_or("").ends_with(':') {
                // A mapping's header: address range, perms, offset, dev, inode, name.
                current = line.split_whitespace().nth(5).unwrap_or("");
            }
        }
        (binary, heap)
    }

    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

struct Accept;

impl client::Handler for Accept {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A directory with the key, the config and the command: print `started`,
/// then wait for the release file.
fn workspace(key: &PrivateKey) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("authorized_keys"), format!("{}\n", key.public_key().to_openssh().unwrap())).unwrap();
    let script = d.join("hold.sh");
    let release = d.join("release");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho started\nwhile [ ! -e {} ]; do sleep 0.1; done\n", release.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        r#"
listen = "127.0.0.1:0"
host_key = "{host_key}"

[services.bench]
authorized_keys = "{keys}"
runner = {{ kind = "command", program = "{script}" }}
rate_per_minute = 100000
burst = 10000
max_sessions = 10000

[[services.bench.commands]]
prefix = "hold"
"#,
        host_key = d.join("host_key").display(),
        keys = d.join("authorized_keys").display(),
        script = script.display(),
    );
    std::fs::write(d.join("proxy.toml"), config).unwrap();
    dir
}

/// Runs `hold` on one new channel: `Ok` when it printed `started`, exited
/// with 0 and closed.
async fn hold(handle: &client::Handle<Accept>, started: &Barrier) -> Result<(), String> {
    let opened = async {
        let channel = handle.channel_open_session().await.map_err(|e| format!("open: {e}"))?;
        channel.exec(true, &b"hold"[..]).await.map_err(|e| format!("exec: {e}"))?;
        Ok::<_, String>(channel)
    };
    let mut channel = match opened.await {
        Ok(channel) => channel,
        Err(e) => {
            started.wait().await;
            return Err(e);
        }
    };
    let (mut stdout, mut stderr, mut status, mut counted) = (Vec::new(), Vec::new(), None, false);
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => {
                stdout.extend_from_slice(&data);
                if !counted && stdout == b"started\n" {
                    counted = true;
                    started.wait().await;
                }
            }
            ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if !counted {
        // Counted as arrived anyway, so that the others are not held forever.
        started.wait().await;
    }
    match (counted, status) {
        (true, Some(0)) => Ok(()),
        _ => Err(format!(
            "status {status:?}, stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

async fn connect(addr: SocketAddr, key: &Arc<PrivateKey>) -> Result<client::Handle<Accept>, String> {
    let config = Arc::new(client::Config::default());
    let mut handle = client::connect(config, addr, Accept).await.map_err(|e| format!("connect: {e}"))?;
    let auth = handle
        .authenticate_publickey("bench", PrivateKeyWithHashAlg::new(key.clone(), None))
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("login refused".into());
    }
    Ok(handle)
}

struct Figures {
    threads: u64,
    binary_kib: u64,
    heap_kib: u64,
    idle_kib: u64,
    loaded_kib: u64,
    peak_kib: u64,
    errors: usize,
    elapsed: Duration,
}

/// `connections` connections with `channels` commands each, all running
/// at once.
async fn scenario(key: &Arc<PrivateKey>, connections: usize, channels: usize) -> Figures {
    let dir = workspace(key);
    let proxy = Proxy::start(dir.path());
    let idle_kib = proxy.status_kib("VmRSS:");
    let started = Instant::now();
    let errors = Arc::new(AtomicUsize::new(0));
    // Every session, plus this task that reads the memory.
    let all_started = Arc::new(Barrier::new(connections * channels + 1));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (key, errors, all_started, addr) = (key.clone(), errors.clone(), all_started.clone(), proxy.addr);
        tasks.push(tokio::spawn(async move {
            let handle = match connect(addr, &key).await {
                Ok(handle) => handle,
                Err(e) => {
                    eprintln!("error: {e}");
                    errors.fetch_add(channels, Ordering::Relaxed);
                    // Stand in for the sessions that never ran.
                    futures_join_all((0..channels).map(|_| all_started.wait())).await;
                    return;
                }
            };
            let runs = (0..channels).map(|_| hold(&handle, &all_started));
            for result in futures_join_all(runs).await {
                if let Err(e) = result {
                    eprintln!("error: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    all_started.wait().await;
    let loaded_kib = proxy.status_kib("VmRSS:");
    let threads = proxy.status_kib("Threads:");
    let (binary_kib, heap_kib) = proxy.resident_by_kind();
    std::fs::write(dir.path().join("release"), "").unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    Figures {
        threads,
        binary_kib,
        heap_kib,
        idle_kib,
        loaded_kib,
        peak_kib: proxy.status_kib("VmHWM:"),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// Polls futures side by side on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    // `cargo bench` passes --bench; nothing else is understood.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let key = Arc::new(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
    let mut failed = false;
    println!("proximity-proxy load: {SESSIONS} concurrent sessions, each running a command");
    for (connections, channels) in [(SESSIONS, 1), (SESSIONS / 5, 5)] {
        let f = runtime.block_on(scenario(&key, connections, channels));
        let sessions = connections * channels;
        println!(
            "{connections:>3} connections x {channels} exec: idle RSS {:.1} MiB, loaded RSS {:.1} MiB, \
             peak (VmHWM) {:.1} MiB (executable {:.1} MiB, heap {:.1} MiB), {:.1} KiB per session, \
             {} threads, errors {}, {:.2} s",
            mib(f.idle_kib),
            mib(f.loaded_kib),
            mib(f.peak_kib),
            mib(f.binary_kib),
            mib(f.heap_kib),
            f.loaded_kib.saturating_sub(f.idle_kib) as f64 / sessions as f64,
            f.threads,
            f.errors,
            f.elapsed.as_secs_f64(),
        );
        failed |= f.errors > 0;
    }
    if failed {
        eprintln!("some sessions failed");
        std::process::exit(1);
    }
}
