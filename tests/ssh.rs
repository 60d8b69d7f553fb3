//! The SSH executor of the Proxmox backend against a real OpenSSH sshd
//! (`proximity_tests::sshd`).
//!
//! Each test starts its own `/usr/sbin/sshd -D` on a free loopback port, with
//! host and client ED25519 keys made by `ssh-keygen` in a temporary directory
//! and a config from `fixtures/sshd_config.in`; the sshd (and every process
//! it started) is killed when the test's [`Sshd`] is dropped. The system's
//! sshd, if any, is never touched. The login user is the one running the
//! tests (root in CI, as on a Proxmox node), with keys.
//!
//! Password login is tested with a dedicated local user,
//! `proximity-ssh-test` ([`PasswordUser`]): sshd checks passwords against the
//! system's user database, so the test (as root) creates that user once and
//! gives it a fresh random password, locked again afterwards. The private
//! sshd allows passwords for that user alone.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proximity::ssh::{ExecResult, HostKeyPolicy, PoolConfig, SshAuth, SshError, SshPool, SshTarget, OUTPUT_LIMIT};
use proximity_tests::sshd::{
    fingerprint, free_port, keygen, processes_with_argv, user, PasswordUser, Sshd, PASSWORD_USER,
};

fn args(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| s.to_string()).collect()
}

fn pool() -> SshPool {
    SshPool::new(PoolConfig::default())
}

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn exec_returns_stdout_stderr_and_status_apart() {
    let sshd = Sshd::start();
    let pool = pool();
    let result =
        pool.exec(&sshd.target(), &args(&["sh", "-c", "printf out; printf err >&2; exit 3"]), None, T).await.unwrap();
    assert_eq!(result, ExecResult { status: 3, stdout: b"out".to_vec(), stderr: b"err".to_vec() });

    let result = pool.exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap();
    assert_eq!(result, ExecResult::default());

    // Killed by a signal: 128 + N, as a shell reports it.
    let result = pool.exec(&sshd.target(), &args(&["sh", "-c", "kill -TERM $$"]), None, T).await.unwrap();
    assert_eq!(result.status, 128 + 15);

    // A missing program is the shell's 127, not an SSH error.
    let result = pool.exec(&sshd.target(), &args(&["/nonexistent/program"]), None, T).await.unwrap();
    assert_eq!(result.status, 127, "{}", String::from_utf8_lossy(&result.stderr));
}

#[tokio::test]
async fn hostile_argv_arrives_intact() {
    let sshd = Sshd::start();
    let pool = pool();
    let hostile = [
        "",
        " ",
        "'",
        "''",
        "\"",
        "'\"'\"'",
        "\\",
        "\\'",
        "$(touch /tmp/proximity-pwned)",
        "`touch /tmp/proximity-pwned`",
        "$HOME",
        "${IFS}",
        "a b\tc\nd\re",
        "-n",
        "--",
        "-e",
        "~",
        "~root",
        "*",
        "/*",
        "?",
        "[a]",
        "{a,b}",
        "!!",
        "#comment",
        ";ls",
        "&& id",
        "| id",
        "> /tmp/proximity-pwned",
        "A=b",
        "if",
        "%s%n",
        "\u{1}\u{2}\u{1b}[31m\u{7f}",
        "é 😀 \u{a0}\u{2028}",
        "trailing\n",
        "\n",
    ];
    let mut argv = args(&["sh", "-c", "for a in \"$@\"; do printf '%s\\0' \"$a\"; done", "sh"]);
    argv.extend(hostile.iter().map(|s| s.to_string()));
    let result = pool.exec(&sshd.target(), &argv, None, T).await.unwrap();
    assert_eq!(result.status, 0, "{}", String::from_utf8_lossy(&result.stderr));
    let expected: Vec<u8> = hostile.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    assert_eq!(result.stdout, expected);
    assert!(!Path::new("/tmp/proximity-pwned").exists());

    // The hostile word as the program itself is looked up, not interpreted.
    let result = pool.exec(&sshd.target(), &args(&["$(id)", "x"]), None, T).await.unwrap();
    assert_eq!(result.status, 127);
    assert!(result.stdout.is_empty());

    // NUL cannot be in an argv: refused before anything is sent.
    let error = pool.exec(&sshd.target(), &args(&["echo", "a\0b"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Quote(_)), "{error}");
}

#[tokio::test]
async fn stdin_is_delivered() {
    let sshd = Sshd::start();
    let pool = pool();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8 ^ (i / 256) as u8).collect();
    let result = pool.exec(&sshd.target(), &args(&["cat"]), Some(&data), T).await.unwrap();
    assert_eq!(result.status, 0);
    assert!(result.stdout == data, "stdin came back changed ({} bytes of {})", result.stdout.len(), data.len());

    // Without stdin, a reading command sees end of file at once.
    let result = pool.exec(&sshd.target(), &args(&["cat"]), None, Duration::from_secs(10)).await.unwrap();
    assert_eq!(result, ExecResult::default());

    // A command that does not read its input still finishes.
    let result = pool.exec(&sshd.target(), &args(&["echo", "done"]), Some(&data), T).await.unwrap();
    assert_eq!(result.stdout, b"done\n");
}

#[tokio::test]
async fn output_keeps_the_last_4_mib() {
    let sshd = Sshd::start();
    let pool = pool();
    let script = "head -c 6000000 /dev/zero | tr '\\0' a; printf END; head -c 5000000 /dev/zero | tr '\\0' b >&2; printf FIN >&2";
    let result = pool.exec(&sshd.target(), &args(&["sh", "-c", script]), None, T).await.unwrap();
    assert_eq!(result.status, 0);
    assert_eq!(OUTPUT_LIMIT, 4 * 1024 * 1024);
    assert_eq!(result.stdout.len(), OUTPUT_LIMIT);
    assert!(result.stdout.ends_with(b"aaaEND"));
    assert!(result.stdout[..OUTPUT_LIMIT - 3].iter().all(|b| *b == b'a'));
    assert_eq!(result.stderr.len(), OUTPUT_LIMIT);
    assert!(result.stderr.ends_with(b"bbbFIN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_remote_process() {
    let sshd = Sshd::start();
    let pool = pool();
    // A command with a child in its process group: both must go.
    let parent = ["sleep", "4242.5"];
    let child = ["sleep", "4243.5"];
    let script = "sleep 4243.5 & exec sleep 4242.5";
    let target = sshd.target();
    // Connected beforehand, so that the whole timeout is the command's.
    pool.exec(&target, &args(&["true"]), None, T).await.unwrap();
    let run = {
        let pool = pool.clone();
        let target = target.clone();
        tokio::spawn(
            async move { pool.exec(&target, &args(&["sh", "-c", script]), None, Duration::from_secs(3)).await },
        )
    };
    // Both run on the "node" while the command is within its time.
    let seen = Instant::now();
    while processes_with_argv(&parent).is_empty() || processes_with_argv(&child).is_empty() {
        assert!(seen.elapsed() < Duration::from_secs(5), "the remote command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = run.await.unwrap().unwrap_err();
    assert!(matches!(error, SshError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("sleep 4243.5"), "{error}");
    // And both are gone.
    let gone = Instant::now();
    while !processes_with_argv(&parent).is_empty() || !processes_with_argv(&child).is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(3),
            "remote processes survived the timeout: {:?} {:?}",
            processes_with_argv(&parent),
            processes_with_argv(&child)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection is still good.
    let result = pool.exec(&target, &args(&["echo", "ok"]), None, T).await.unwrap();
    assert_eq!(result.stdout, b"ok\n");
    assert_eq!(pool.stats().connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_exec_kills_the_remote_process() {
    let sshd = Sshd::start();
    let pool = pool();
    let sleeper = ["sleep", "4244.5"];
    let run = {
        let pool = pool.clone();
        let target = sshd.target();
        tokio::spawn(async move { pool.exec(&target, &args(&sleeper), None, Duration::from_secs(600)).await })
    };
    let seen = Instant::now();
    while processes_with_argv(&sleeper).is_empty() {
        assert!(seen.elapsed() < Duration::from_secs(5), "the remote command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The caller gives up (a run's deadline passed and its future is dropped).
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    let gone = Instant::now();
    while !processes_with_argv(&sleeper).is_empty() {
        assert!(gone.elapsed() < Duration::from_secs(5), "the abandoned remote command survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sequential_execs_share_one_connection() {
    let sshd = Sshd::start();
    let pool = pool();
    for i in 0..20 {
        let result = pool.exec(&sshd.target(), &args(&["echo", &i.to_string()]), None, T).await.unwrap();
        assert_eq!(result.stdout, format!("{i}\n").into_bytes());
    }
    let stats = pool.stats();
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert_eq!(stats.reuses, 19, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.open, 1, "{stats:?}");
    // A clone is the same pool.
    pool.clone().exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap();
    assert_eq!(pool.stats().connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_execs_stay_within_the_session_limit() {
    let sshd = Sshd::start();
    let pool = pool();
    let target = sshd.target();
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let pool = pool.clone();
            let target = target.clone();
            tokio::spawn(async move {
                pool.exec(&target, &args(&["sh", "-c", &format!("sleep 1; echo {i}")]), None, T).await
            })
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let result = run.await.unwrap().unwrap();
        assert_eq!(result.stdout, format!("{i}\n").into_bytes());
    }
    let stats = pool.stats();
    // sshd allows 8 sessions per connection (MaxSessions 8): 20 at once need
    // 3 connections, and ran 8 at once on one of them.
    assert_eq!(stats.peak_sessions, 8, "{stats:?}");
    assert_eq!(stats.connections, 3, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
}

#[tokio::test]
async fn reconnects_after_sshd_restart() {
    let mut sshd = Sshd::start();
    let pool = pool();
    pool.exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap();

    // Down: a plain exec fails fast and does not retry.
    sshd.kill();
    let error = pool.exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Connect { .. }), "{error}");

    // Back: the next exec connects again.
    sshd.spawn();
    let result = pool.exec(&sshd.target(), &args(&["echo", "back"]), None, T).await.unwrap();
    assert_eq!(result.stdout, b"back\n");
    assert_eq!(pool.stats().connections, 2);

    // Killed and restarted between two commands: the pooled connection is
    // dead, and the command goes to a new one.
    sshd.kill();
    sshd.spawn();
    let result = pool.exec(&sshd.target(), &args(&["echo", "again"]), None, T).await.unwrap();
    assert_eq!(result.stdout, b"again\n");
    let stats = pool.stats();
    assert_eq!(stats.connections, 3, "{stats:?}");
    assert!(stats.failures >= 2, "{stats:?}");
}

#[tokio::test]
async fn idempotent_exec_retries_until_the_node_is_back() {
    let mut sshd = Sshd::prepare();
    let target = sshd.target();
    let pool = SshPool::new(PoolConfig { backoff: Duration::from_millis(300), retries: 4, ..PoolConfig::default() });
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        sshd.spawn();
        sshd
    });
    let result = pool.exec_idempotent(&target, &args(&["echo", "up"]), None, T).await.unwrap();
    assert_eq!(result.stdout, b"up\n");
    let stats = pool.stats();
    assert!(stats.failures >= 1, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");
    drop(starter.join().unwrap());
}

#[tokio::test]
async fn unknown_or_changed_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start();
    let pool = pool();
    let fingerprint = sshd.host_fingerprint();

    // known_hosts with another key for this host and port.
    keygen(&sshd.path("other_key"));
    let other = std::fs::read_to_string(sshd.path("other_key.pub")).unwrap();
    let known_hosts = sshd.path("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {}", sshd.port(), other)).unwrap();
    let target = SshTarget { host_key: HostKeyPolicy::KnownHosts(known_hosts.clone()), ..sshd.target() };
    let error = pool.exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SshError::HostKey { .. }), "{message}");
    assert!(message.contains(&fingerprint), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{}", sshd.port())), "{message}");
    assert!(message.contains("ssh-keygen -R"), "{message}");

    // known_hosts without this host: unknown, and how to trust it.
    std::fs::write(&known_hosts, format!("[127.0.0.1]:1 {other}")).unwrap();
    let error = pool.exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SshError::HostKey { .. }), "{message}");
    assert!(message.contains(&fingerprint) && message.contains("ssh-keyscan"), "{message}");

    // With the right key recorded, it connects.
    let host = std::fs::read_to_string(sshd.path("ssh_host_ed25519_key.pub")).unwrap();
    std::fs::write(&known_hosts, format!("[127.0.0.1]:1 {other}[127.0.0.1]:{} {host}", sshd.port())).unwrap();
    pool.exec(&target, &args(&["true"]), None, T).await.unwrap();
    assert_eq!(pool.stats().connections, 1);
}

#[tokio::test]
async fn fingerprint_policy_accepts_only_the_right_key() {
    let sshd = Sshd::start();
    let pool = pool();
    let result = pool.exec(&sshd.target(), &args(&["echo", "hi"]), None, T).await.unwrap();
    assert_eq!(result.stdout, b"hi\n");

    keygen(&sshd.path("other_key"));
    let wrong = fingerprint(&sshd.path("other_key.pub"));
    let target = SshTarget { host_key: HostKeyPolicy::Fingerprint(wrong.clone()), ..sshd.target() };
    let error = SshPool::new(PoolConfig::default()).exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SshError::HostKey { .. }), "{message}");
    assert!(message.contains(&sshd.host_fingerprint()) && message.contains(&wrong), "{message}");
}

#[tokio::test]
async fn trust_on_first_use_records_the_key_then_holds_to_it() {
    let sshd = Sshd::start();
    let known_hosts = sshd.path("tofu/known_hosts");
    let target = SshTarget { host_key: HostKeyPolicy::TrustOnFirstUse(known_hosts.clone()), ..sshd.target() };
    SshPool::new(PoolConfig::default()).exec(&target, &args(&["true"]), None, T).await.unwrap();
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    let host_key = std::fs::read_to_string(sshd.path("ssh_host_ed25519_key.pub")).unwrap();
    let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{} {} {}", sshd.port(), host_key[0], host_key[1])),
        "{recorded}"
    );

    // Again, with a new pool: accepted, not appended twice; and the file
    // works as a plain known_hosts file.
    SshPool::new(PoolConfig::default()).exec(&target, &args(&["true"]), None, T).await.unwrap();
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), recorded);
    let strict = SshTarget { host_key: HostKeyPolicy::KnownHosts(known_hosts.clone()), ..sshd.target() };
    SshPool::new(PoolConfig::default()).exec(&strict, &args(&["true"]), None, T).await.unwrap();

    // A different key recorded: refused, not replaced.
    keygen(&sshd.path("other_key"));
    let other = std::fs::read_to_string(sshd.path("other_key.pub")).unwrap();
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {other}", sshd.port())).unwrap();
    let error = SshPool::new(PoolConfig::default()).exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::HostKey { .. }), "{error}");
    assert!(error.to_string().contains(&sshd.host_fingerprint()), "{error}");
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap().lines().count(), 1);
}

#[tokio::test]
async fn wrong_client_key_is_an_auth_error() {
    let sshd = Sshd::start();
    keygen(&sshd.path("stranger_key"));
    let target = SshTarget { auth: SshAuth::KeyFile(sshd.path("stranger_key")), ..sshd.target() };
    let pool = pool();
    let error = pool.exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SshError::Auth { .. }), "{message}");
    assert!(message.contains(&format!("{}@127.0.0.1:{}", user(), sshd.port())), "{message}");
    assert_eq!(pool.stats().failures, 1);

    // Not retried either: a refused key stays refused.
    let error = pool.exec_idempotent(&target, &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Auth { .. }), "{error}");
    assert_eq!(pool.stats().failures, 2, "one more attempt, not 1 + retries");

    // A key file that is not there.
    let target = SshTarget { auth: SshAuth::KeyFile(sshd.path("missing_key")), ..sshd.target() };
    let error = pool.exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Auth { .. }) && error.to_string().contains("missing_key"), "{error}");
}

#[tokio::test]
async fn agent_keys_log_in() {
    let sshd = Sshd::start();
    let socket = sshd.path("agent.sock");
    let mut agent = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(5), "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.path("client_key"))
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success());
    // The only test that reads SSH_AUTH_SOCK; Rust's env functions are
    // synchronised with each other.
    std::env::set_var("SSH_AUTH_SOCK", &socket);
    let target = SshTarget { auth: SshAuth::Agent, ..sshd.target() };
    let result = pool().exec(&target, &args(&["echo", "agent"]), None, T).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(result.unwrap().stdout, b"agent\n");
}

/// The password user, or `None` (with the reason printed) where it cannot be
/// made outside CI; in CI a missing part fails the test.
fn password_user() -> Option<PasswordUser> {
    match PasswordUser::acquire() {
        Ok(user) => Some(user),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the password login test cannot run in CI: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED (not in CI): password login needs the local user {PASSWORD_USER}: {reason}");
            None
        }
    }
}

#[tokio::test]
async fn password_login_for_the_password_user_and_keys_for_everyone_else() {
    let Some(account) = password_user() else { return };
    let sshd = Sshd::start();
    let target =
        SshTarget { user: account.name.clone(), auth: SshAuth::Password(account.password.clone()), ..sshd.target() };
    let result = pool().exec(&target, &args(&["id", "-un"]), None, T).await.unwrap();
    assert_eq!(result, ExecResult { status: 0, stdout: format!("{PASSWORD_USER}\n").into_bytes(), stderr: vec![] });

    // A wrong password: refused, said plainly, the password not shown.
    let wrong = format!("{}x", account.password);
    let target = SshTarget { auth: SshAuth::Password(wrong.clone()), ..target };
    let error = pool().exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SshError::Auth { .. }), "{message}");
    assert_eq!(
        message,
        format!("cannot log in as {PASSWORD_USER}@127.0.0.1:{}: the server refused the password", sshd.port())
    );
    assert!(!message.contains(&wrong) && !format!("{error:?}").contains(&wrong), "{message}");

    // The key user cannot log in with a password, even the right one: sshd
    // offers it publickey alone.
    let target = SshTarget { auth: SshAuth::Password(account.password.clone()), ..sshd.target() };
    let error = pool().exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Auth { .. }), "{error}");

    // The key user still logs in with its key.
    pool().exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap();
    let log = sshd.log_text();
    assert!(log.contains(&format!("Accepted publickey for {} ", user())), "{log}");
    assert_eq!(log.matches("Accepted password for ").count(), 1, "{log}");
    assert!(log.contains(&format!("Accepted password for {PASSWORD_USER} ")), "{log}");
    assert!(log.contains(&format!("Failed password for {PASSWORD_USER} ")), "{log}");

    // Once the test lets go of the user, its password no longer works.
    let password = account.password.clone();
    drop(account);
    let target = SshTarget { user: PASSWORD_USER.into(), auth: SshAuth::Password(password), ..sshd.target() };
    let error = pool().exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Auth { .. }), "{error}");
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let port = free_port();
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: user(),
        auth: SshAuth::KeyFile(PathBuf::from("/nonexistent")),
        host_key: HostKeyPolicy::Fingerprint("SHA256:none".into()),
    };
    let pool = pool();
    let error = pool.exec(&target, &args(&["true"]), None, T).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SshError::Connect { .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains(&user()), "{message}");
    assert_eq!(pool.stats().failures, 1);
    assert_eq!(pool.stats().connections, 0);

    // exec_idempotent tries 1 + retries times, backing off, within its timeout.
    let pool = SshPool::new(PoolConfig { retries: 2, backoff: Duration::from_millis(100), ..PoolConfig::default() });
    let error = pool.exec_idempotent(&target, &args(&["true"]), None, T).await.unwrap_err();
    assert!(matches!(error, SshError::Connect { .. }), "{error}");
    assert_eq!(pool.stats().failures, 3);
}

#[tokio::test]
async fn upload_is_byte_exact_with_its_mode() {
    let sshd = Sshd::start();
    let pool = pool();
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8).collect();
    assert_eq!(data.iter().copied().collect::<HashSet<u8>>().len(), 256);
    let remote = sshd.path("upload dir/it's a file.bin");
    std::fs::create_dir_all(remote.parent().unwrap()).unwrap();
    let remote_path = remote.to_str().unwrap();
    pool.upload(&sshd.target(), &data, remote_path, 0o640, T).await.unwrap();
    assert!(std::fs::read(&remote).unwrap() == data, "uploaded bytes differ");
    assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777, 0o640);

    // Replacing it: new content and mode, no temporary file left behind.
    pool.upload(&sshd.target(), b"small\n", remote_path, 0o755, T).await.unwrap();
    assert_eq!(std::fs::read(&remote).unwrap(), b"small\n");
    assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::read_dir(remote.parent().unwrap()).unwrap().count(), 1);

    // Into a directory that does not exist: an error naming the path.
    let error = pool.upload(&sshd.target(), b"x", "/nonexistent-dir/file", 0o600, T).await.unwrap_err();
    assert!(matches!(error, SshError::Command { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent-dir/file"), "{error}");
}

#[tokio::test]
async fn exec_fresh_opens_a_connection_per_call() {
    let sshd = Sshd::start();
    let pool = pool();
    for _ in 0..3 {
        let result = pool.exec_fresh(&sshd.target(), &args(&["echo", "fresh"]), Some(b"ignored"), T).await.unwrap();
        assert_eq!(result.stdout, b"fresh\n");
    }
    let stats = pool.stats();
    assert_eq!((stats.connections, stats.open), (0, 0), "{stats:?}");
    // sshd saw three logins.
    let log = sshd.log_text();
    assert_eq!(log.matches("Accepted publickey").count(), 3, "{log}");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let sshd = Sshd::start();
    let pool = SshPool::new(PoolConfig { idle_timeout: Duration::from_millis(200), ..PoolConfig::default() });
    pool.exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    pool.exec(&sshd.target(), &args(&["true"]), None, T).await.unwrap();
    let stats = pool.stats();
    assert_eq!((stats.connections, stats.reuses), (2, 0), "{stats:?}");
}
