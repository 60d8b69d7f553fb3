//! `container-exec` over SSH: one pooled connection reused for every
//! command, against a new connection per command, on loopback to a private
//! OpenSSH sshd (`proximity_tests::sshd`). Prints p50/p99 of each and their
//! ratio; targets: pooled p50 < 2 ms, ratio >= 20x.
//!
//! Each exec costs the node a session process, the login shell and the
//! command; the same shell and command started locally are printed as the
//! floor, with the load average, since a busy machine raises both.

use std::time::{Duration, Instant};

use proximity::ssh::{PoolConfig, SshPool};
use proximity_tests::sshd::Sshd;

const ROUNDS: usize = 200;
const FRESH_ROUNDS: usize = 40;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sshd = Sshd::start();
    let target = sshd.target();
    let pool = SshPool::new(PoolConfig::default());
    // `true` is the smallest real command: what is measured is the transport.
    let argv = vec!["true".to_string()];
    let timeout = Duration::from_secs(30);
    pool.exec(&target, &argv, None, timeout).await.expect("warm-up");

    let mut pooled = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let out = pool.exec(&target, &argv, None, timeout).await.expect("pooled exec");
        pooled.push(started.elapsed());
        assert_eq!(out.status, 0);
    }
    let mut fresh = Vec::with_capacity(FRESH_ROUNDS);
    for _ in 0..FRESH_ROUNDS {
        let started = Instant::now();
        let out = pool.exec_fresh(&target, &argv, None, timeout).await.expect("fresh exec");
        fresh.push(started.elapsed());
        assert_eq!(out.status, 0);
    }
    // The floor: the login shell running the same line, without SSH.
    let shell = login_shell();
    let mut local = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let out = std::process::Command::new(&shell)
            .args(["-c", "echo $$; exec true"])
            .env("SHLVL", "1")
            .output()
            .expect("run the login shell");
        local.push(started.elapsed());
        assert!(out.status.success());
    }
    pooled.sort();
    fresh.sort();
    local.sort();
    let stats = pool.stats();
    println!("container-exec over SSH to a loopback OpenSSH sshd (command: `true`)");
    println!(
        "  pooled          ({ROUNDS} runs, {} connection(s)): p50 {:7.2} ms  p99 {:7.2} ms   (target p50 < 2 ms)",
        stats.connections,
        ms(percentile(&pooled, 0.5)),
        ms(percentile(&pooled, 0.99))
    );
    println!(
        "  new connection  ({FRESH_ROUNDS} runs):                 p50 {:7.2} ms  p99 {:7.2} ms",
        ms(percentile(&fresh, 0.5)),
        ms(percentile(&fresh, 0.99))
    );
    let ratio = percentile(&fresh, 0.5).as_secs_f64() / percentile(&pooled, 0.5).as_secs_f64();
    println!("  ratio (p50 new / p50 pooled): {ratio:.1}x   (target >= 20x)");
    println!(
        "  floor: `{shell} -c 'echo $$; exec true'` started locally: p50 {:7.2} ms; load average {}",
        ms(percentile(&local, 0.5)),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The login shell of the user running the bench, as sshd starts it.
fn login_shell() -> String {
    let user = proximity_tests::sshd::user();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() == 7 && fields[0] == user)
        .map(|fields| fields[6].to_string())
        .unwrap_or_else(|| "/bin/sh".to_string())
}
