//! proxy-exec benchmark: prints figures and how they compare with the target.
//!
//! `proximity proxy serve` runs on 127.0.0.1 with a whitelist whose runner is
//! a local program (no Docker: the figures are the proxy's and the client's).
//!
//! - round trip: one `proxy-exec` call of `/bin/true` through the client
//!   ([`ProxyClient`]: pooled connection), against the same call over a new
//!   connection each time (connect, key exchange, login, exec, close);
//! - load: 200 calls at once, each running a 1 s `sleep`, through one client
//!   configured for 8 connections x 25 sessions (the proxy takes at most 32
//!   on one connection); every call must succeed;
//! - memory: the proxy's resident set (VmRSS while loaded, VmHWM its peak).
//!
//! No figure is asserted; errors are. Needs `ssh-keygen` (openssh-client).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proximity::backend::ProxyExecutor;
use proximity::proxy::client::command_line;
use proximity::proxy::config::ServiceSettings;
use proximity::proxy::discovery::{Endpoint, Source};
use proximity::proxy::{ProxyClient, ProxySettings};
use proximity::ssh::{HostKeyPolicy, PoolConfig, RemoteCommand, SshAuth, SshPool, SshTarget};

const SERVICE: &str = "bench";
const ROUND_TRIPS: usize = 300;
const FRESH_ROUND_TRIPS: usize = 60;
const CONCURRENT: usize = 200;
const T: Duration = Duration::from_secs(60);

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
}

fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen").arg("-lf").arg(public_key).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
}

/// kB of one `/proc/PID/status` line, e.g. `VmRSS`.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn start_proxy(dir: &Path, port: u16) -> Child {
    let sleeper = dir.join("sleeper.sh");
    std::fs::write(&sleeper, "#!/bin/sh\nexec sleep \"$3\"\n").unwrap();
    std::fs::set_permissions(&sleeper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
host_key = "{dir}/host_key"

[services.{SERVICE}]
authorized_keys = "{dir}/client_key.pub"
runner = {{ kind = "command", program = "/bin/true" }}
rate_per_minute = 1000000
burst = 100000
max_sessions = 400

[[services.{SERVICE}.commands]]
prefix = "app run"
max_args = 1
positional = "[0-9]+"

[services.sleeper]
authorized_keys = "{dir}/client_key.pub"
runner = {{ kind = "command", program = "{sleeper}" }}
rate_per_minute = 1000000
burst = 100000
max_sessions = 400

[[services.sleeper.commands]]
prefix = "app sleep"
max_args = 1
positional = "[0-9]+"
"#,
        dir = dir.display(),
        sleeper = sleeper.display(),
    );
    std::fs::write(dir.join("proxy.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_proximity"))
        .args(["proxy", "serve", "--config"])
        .arg(dir.join("proxy.toml"))
        .env("PROXIMITY_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("proximity proxy serve starts");
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        assert!(child.try_wait().unwrap().is_none(), "the proxy exited at start");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the proxy did not listen");
}

fn service(dir: &Path, port: u16, user: &str) -> ServiceSettings {
    ServiceSettings {
        user: Some(user.to_string()),
        key: dir.join("client_key"),
        host_fingerprint: Some(fingerprint(&dir.join("host_key.pub"))),
        known_hosts: None,
        trust_on_first_use: false,
        discovery: Source::Static(vec![Endpoint::new("127.0.0.1", port)]),
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("host_key"));
    keygen(&dir.path().join("client_key"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut proxy = start_proxy(dir.path(), port);
    let pid = proxy.id();
    let idle_kb = status_kb(pid, "VmRSS");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let settings = ProxySettings {
            max_connections_per_host: 8,
            max_sessions_per_connection: 25,
            services: [
                (SERVICE.to_string(), service(dir.path(), port, SERVICE)),
                ("sleeper".to_string(), service(dir.path(), port, "sleeper")),
            ]
            .into(),
            ..ProxySettings::default()
        };
        let client = Arc::new(ProxyClient::new(&settings).unwrap());
        let args = vec!["1".to_string()];

        // Pooled round trips (the first call opens the connection).
        client.proxy_exec(SERVICE, "app run", &args, T).await.unwrap();
        let mut pooled = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let started = Instant::now();
            let output = client.proxy_exec(SERVICE, "app run", &args, T).await.unwrap();
            pooled.push(started.elapsed());
            assert_eq!(output.status, 0);
        }
        pooled.sort();

        // A new connection per call.
        let pool = SshPool::new(PoolConfig::default());
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: SERVICE.into(),
            auth: SshAuth::KeyFile(dir.path().join("client_key")),
            host_key: HostKeyPolicy::Fingerprint(fingerprint(&dir.path().join("host_key.pub"))),
        };
        let line = command_line("app run", &args);
        let mut fresh = Vec::with_capacity(FRESH_ROUND_TRIPS);
        for _ in 0..FRESH_ROUND_TRIPS {
            let started = Instant::now();
            let result = pool.exec_fresh_command(&target, RemoteCommand::Forced(&line), None, T).await.unwrap();
            fresh.push(started.elapsed());
            assert_eq!(result.status, 0);
        }
        fresh.sort();

        // 200 sessions at once, each held for a second by `sleep 1`.
        let peak_before = status_kb(pid, "VmHWM");
        let started = Instant::now();
        let sampler = tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..40 {
                most = most.max(status_kb(pid, "VmRSS"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            most
        });
        let calls: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.proxy_exec("sleeper", "app sleep", &["1".to_string()], T).await })
            })
            .collect();
        let mut failed = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(output) if output.status == 0 => {}
                Ok(output) => {
                    failed += 1;
                    eprintln!("status {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
                }
                Err(error) => {
                    failed += 1;
                    eprintln!("error: {error}");
                }
            }
        }
        let load_time = started.elapsed();
        let loaded_kb = sampler.await.unwrap();
        let peak_kb = status_kb(pid, "VmHWM");
        let stats = client.stats();
        let sleeper = stats.services.iter().find(|s| s.service == "sleeper").unwrap();

        println!("proxy-exec benchmark: `proximity proxy serve` on 127.0.0.1, runner /bin/true");
        println!(
            "round trip, pooled ({ROUND_TRIPS} calls):        p50 {}  p95 {}  p99 {}",
            ms(percentile(&pooled, 0.5)),
            ms(percentile(&pooled, 0.95)),
            ms(percentile(&pooled, 0.99))
        );
        println!(
            "round trip, new connection ({FRESH_ROUND_TRIPS} calls): p50 {}  p95 {}  p99 {}",
            ms(percentile(&fresh, 0.5)),
            ms(percentile(&fresh, 0.95)),
            ms(percentile(&fresh, 0.99))
        );
        println!(
            "pooled is {:.1}x faster at p50 (target: pooled p50 < 2 ms: {})",
            percentile(&fresh, 0.5).as_secs_f64() / percentile(&pooled, 0.5).as_secs_f64(),
            if percentile(&pooled, 0.5) < Duration::from_millis(2) { "met" } else { "MISSED" }
        );
        println!(
            "{CONCURRENT} concurrent 1 s sessions: {} failed, all done in {}, on {} connection(s)",
            failed,
            ms(load_time),
            sleeper.connections
        );
        println!(
            "proxy RSS: idle {:.1} MB, under load {:.1} MB, peak {:.1} MB (before the load {:.1} MB; target < 15 MB: {})",
            idle_kb as f64 / 1024.0,
            loaded_kb as f64 / 1024.0,
            peak_kb as f64 / 1024.0,
            peak_before as f64 / 1024.0,
            if peak_kb < 15 * 1024 { "met" } else { "MISSED" }
        );
        assert_eq!(failed, 0, "every concurrent call must succeed");
    });
    let _ = proxy.kill();
    let _ = proxy.wait();
}
