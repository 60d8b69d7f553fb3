//! Interop with the original design: the `proxy-exec` client against
//! Debian's OpenSSH `sshd`, whose `authorized_keys` forces every command of
//! the key through `proximity proxy forced-command` (`command="…",restrict`).
//! sshd authenticates; the forced command applies the same whitelist as
//! `proximity proxy serve` to `$SSH_ORIGINAL_COMMAND`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proximity::backend::{BackendError, ProxyExecutor};
use proximity::proxy::config::ServiceSettings;
use proximity::proxy::discovery::{Endpoint, Source};
use proximity::proxy::{ProxyClient, ProxySettings};
use proximity_tests::sshd::{user, Sshd};

const SERVICE: &str = "nextcloud";
const T: Duration = Duration::from_secs(20);

/// The `proximity` binary of this build: cargo puts it next to the directory
/// of the test executables.
fn proximity_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join("proximity");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build -p proximity` (`cargo xtask test` does)",
        binary.display()
    );
    binary
}

fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// sshd with the key forced through `proximity proxy forced-command`, whose
/// runner records the argv it gets (NUL-separated) in `calls/`.
fn forced_sshd() -> Sshd {
    let mut sshd = Sshd::prepare();
    let calls = sshd.path("calls");
    std::fs::create_dir(&calls).unwrap();
    let runner = sshd.path("record.sh");
    std::fs::write(
        &runner,
        format!(
            "#!/bin/sh\nf=$(mktemp \"{calls}/call.XXXXXX\")\nprintf '%s\\0' \"$@\" > \"$f\"\necho \"ran $#\"\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = sshd.path("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:1"
host_key = "{host_key}"

[services.{SERVICE}]
authorized_keys = "{keys}"
runner = {{ kind = "command", program = "{runner}" }}

[[services.{SERVICE}.commands]]
prefix = "php occ files:scan"
max_args = 2
flags = ["--all"]
options = {{ "--path" = "/[A-Za-z0-9_./' -]+" }}
"#,
            host_key = sshd.path("unused_host_key").display(),
            keys = sshd.path("client_key.pub").display(),
            runner = runner.display(),
        ),
    )
    .unwrap();
    let public_key = std::fs::read_to_string(sshd.path("client_key.pub")).unwrap();
    let forced = format!(
        "command=\"{} proxy forced-command --config {} --service {SERVICE}\",restrict {}",
        proximity_binary().display(),
        config.display(),
        public_key.trim()
    );
    std::fs::write(sshd.path("authorized_keys"), forced + "\n").unwrap();
    sshd.spawn();
    sshd
}

fn calls(sshd: &Sshd) -> Vec<Vec<String>> {
    let mut calls = Vec::new();
    for entry in std::fs::read_dir(sshd.path("calls")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let mut argv: Vec<String> = bytes.split(|b| *b == 0).map(|a| String::from_utf8(a.to_vec()).unwrap()).collect();
        argv.pop();
        calls.push(argv);
    }
    calls
}

fn client(sshd: &Sshd) -> ProxyClient {
    let service = ServiceSettings {
        user: Some(user()),
        key: sshd.path("client_key"),
        host_fingerprint: Some(sshd.host_fingerprint()),
        known_hosts: None,
        trust_on_first_use: false,
        discovery: Source::Static(vec![Endpoint::new("127.0.0.1", sshd.port())]),
    };
    let settings = ProxySettings { services: [(SERVICE.to_string(), service)].into(), ..ProxySettings::default() };
    ProxyClient::new(&settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_works_with_openssh_and_a_forced_command() {
    let sshd = forced_sshd();
    let client = client(&sshd);

    let output = client
        .proxy_exec(SERVICE, "php occ files:scan", &words(&["--path", "/data/it's a dir"]), T)
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log_text()));
    assert_eq!(output.status, 0, "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ran 5\n");
    assert_eq!(calls(&sshd), vec![words(&["php", "occ", "files:scan", "--path", "/data/it's a dir"])]);

    // The same refusals as the proxy server, through sshd.
    for args in [words(&["--all; rm -rf /"]), words(&["--path", "/data/../etc"]), words(&["--delete"])] {
        let error = client.proxy_exec(SERVICE, "php occ files:scan", &args, T).await.unwrap_err();
        assert!(matches!(&error, BackendError::InvalidInput(m) if m.contains("refused")), "{args:?}: {error:?}");
    }
    assert_eq!(calls(&sshd).len(), 1, "a refused line ran");

    // Pooled as with the proxy server: one connection for all of it.
    let stats = client.stats().services.remove(0);
    assert_eq!((stats.connections, stats.calls), (1, 4));
}
