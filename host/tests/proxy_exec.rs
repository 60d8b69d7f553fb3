//! The `proxy-exec` client ([`ProxyClient`]) against the real proxy server,
//! `proximity proxy serve`, started as a child process on 127.0.0.1 with a
//! runner that records the exact argv it was started with.
//!
//! Also through a server: `proximity serve --backend sim` with a `[proxy]`
//! table runs a recipe whose install calls `proxy-exec`, and reports the
//! client's figures under `/api/v1/proxy/stats` and `/metrics`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proximity::backend::{BackendError, ProxyExecutor};
use proximity::proxy::config::ServiceSettings;
use proximity::proxy::discovery::Source;
use proximity::proxy::{ProxyClient, ProxySettings};
use tempfile::TempDir;

const SERVICE: &str = "test-proxy";
const T: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "proxy-exec-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (Debian's openssh-client) runs; `cargo xtask test` installs it");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
}

fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen").arg("-lf").arg(public_key).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("a fingerprint").to_string()
}

/// A proxy's files: keys, whitelist, and the recording runner.
struct ProxyFiles {
    dir: TempDir,
    port: u16,
}

impl ProxyFiles {
    fn new() -> ProxyFiles {
        let dir = tempfile::Builder::new().prefix("proximity-proxy-exec-").tempdir().unwrap();
        let path = dir.path();
        std::fs::create_dir(path.join("calls")).unwrap();
        keygen(&path.join("host_key"));
        keygen(&path.join("client_key"));
        std::fs::copy(path.join("client_key.pub"), path.join("authorized_keys")).unwrap();
        // Records its argv NUL-separated (an argv cannot hold NUL), in a file
        // moved into calls/ only once written, then acts on its third word.
        let runner = format!(
            "#!/bin/sh\nf=$(mktemp \"{dir}/call.XXXXXX\")\nprintf '%s\\0' \"$@\" > \"$f\"\nmv \"$f\" \"{dir}/calls/\"\n\
             echo \"ran $#\"\ncase \"$3\" in\n  fail) echo failing >&2; exit 3 ;;\n  \
             slow) touch \"{dir}/started\"; exec sleep 60 ;;\nesac\nexit 0\n",
            dir = path.display()
        );
        let script = path.join("record.sh");
        std::fs::write(path.join("record.tmp"), runner).unwrap();
        std::fs::set_permissions(path.join("record.tmp"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(path.join("record.tmp"), &script).unwrap();
        let port = free_port();
        let config = format!(
            r#"listen = "127.0.0.1:{port}"
host_key = "{host_key}"

[services.{SERVICE}]
authorized_keys = "{keys}"
runner = {{ kind = "command", program = "{runner}" }}
rate_per_minute = 60000
burst = 10000
max_sessions = 50

[[services.{SERVICE}.commands]]
prefix = "app run"
max_args = 8
positional = ".*"
"#,
            host_key = path.join("host_key").display(),
            keys = path.join("authorized_keys").display(),
            runner = script.display(),
        );
        std::fs::write(path.join("proxy.toml"), config).unwrap();
        ProxyFiles { dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client settings for this proxy; quick retries for tests.
    fn settings(&self) -> ProxySettings {
        let service = ServiceSettings {
            user: None,
            key: self.path("client_key"),
            host_fingerprint: Some(fingerprint(&self.path("host_key.pub"))),
            known_hosts: None,
            trust_on_first_use: false,
            discovery: Source::Static(vec![self.endpoint().parse().unwrap()]),
        };
        ProxySettings {
            retries: 2,
            backoff_ms: 20,
            services: [(SERVICE.to_string(), service)].into(),
            ..ProxySettings::default()
        }
    }

    /// Every argv the runner was started with, oldest first.
    fn calls(&self) -> Vec<Vec<String>> {
        let mut files: Vec<_> = std::fs::read_dir(self.path("calls")).unwrap().map(|e| e.unwrap()).collect();
        files.sort_by_key(|e| e.metadata().unwrap().modified().unwrap());
        files
            .iter()
            .map(|e| {
                let bytes = std::fs::read(e.path()).unwrap();
                let mut argv: Vec<String> =
                    bytes.split(|b| *b == 0).map(|a| String::from_utf8(a.to_vec()).unwrap()).collect();
                argv.pop(); // after the last NUL
                argv
            })
            .collect()
    }

    fn clear_calls(&self) {
        for entry in std::fs::read_dir(self.path("calls")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
}

/// `proximity proxy serve`, killed when dropped.
struct ProxyServer {
    child: Child,
}

impl ProxyServer {
    fn start(files: &ProxyFiles) -> ProxyServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proximity"))
            .args(["proxy", "serve", "--config"])
            .arg(files.path("proxy.toml"))
            .env("PROXIMITY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("proximity proxy serve starts");
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", files.port)).is_ok() {
                return ProxyServer { child };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("proximity proxy serve exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("proximity proxy serve did not listen on {}", files.endpoint());
    }

    /// SIGKILL, as a crash or an OOM kill would end it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_reach_the_command_exactly_and_connections_are_reused() {
    let files = ProxyFiles::new();
    let _proxy = ProxyServer::start(&files);
    let client = ProxyClient::new(&files.settings()).unwrap();

    // Shell syntax in an argument is a byte string like any other: each one
    // arrives as exactly one argument, and no second command runs.
    let corpus = [
        "; rm -rf /",
        "a && touch /tmp/pwned",
        "| cat /etc/shadow",
        "$(id)",
        "`id`",
        "'single' \"double\"",
        "it's",
        "back\\slash",
        "*",
        "~root",
        "A=b",
        "",
        "  spaces  around  ",
        "ünïcødé ✓",
        "rm -rf /",
    ];
    for (i, arg) in corpus.iter().enumerate() {
        let args = words(&["echo", arg]);
        let output = client.proxy_exec(SERVICE, "app run", &args, T).await.unwrap();
        assert_eq!(output.status, 0, "{arg:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "ran 4\n", "{arg:?}");
        let calls = files.calls();
        assert_eq!(calls.len(), i + 1);
        assert_eq!(calls[i], words(&["app", "run", "echo", arg]), "argument {arg:?} arrived changed");
    }
    assert!(!Path::new("/tmp/pwned").exists());

    // The command's own failure comes back as its status and stderr.
    let output = client.proxy_exec(SERVICE, "app run", &words(&["fail"]), T).await.unwrap();
    assert_eq!(output.status, 3);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "failing\n");
    // Many more, one after another, on the same connection.
    for i in 0..50 {
        let output = client.proxy_exec(SERVICE, "app run", &[format!("{i}")], T).await.unwrap();
        assert_eq!(output.status, 0, "call {i}: {}", String::from_utf8_lossy(&output.stderr));
    }

    let stats = client.stats().services.remove(0);
    assert_eq!(stats.service, SERVICE);
    assert_eq!(stats.endpoints, vec![files.endpoint()]);
    assert_eq!(stats.calls, corpus.len() as u64 + 51);
    assert_eq!(stats.succeeded, stats.calls);
    assert_eq!(stats.connections, 1, "one connection serves sequential calls");
    assert_eq!(stats.reuses, stats.calls - 1);
    assert_eq!(stats.breaker, "closed");

    // Concurrent calls share a few connections, within the configured cap.
    let client = std::sync::Arc::new(client);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.proxy_exec(SERVICE, "app run", &[format!("n{i}")], T).await.map(|o| o.status)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 0);
    }
    let stats = client.stats().services.remove(0);
    assert!(stats.connections <= 5, "max 5 connections per proxy, got {}", stats.connections);
    assert_eq!(stats.succeeded, corpus.len() as u64 + 91);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_lines_fail_clearly_and_run_nothing() {
    let files = ProxyFiles::new();
    let _proxy = ProxyServer::start(&files);
    let client = ProxyClient::new(&files.settings()).unwrap();

    // Refused by the proxy, with its reason.
    let cases: [(&str, Vec<String>, &str); 4] = [
        ("app run", words(&["../etc/passwd"]), ".."),
        ("app run", words(&["line\nbreak"]), "control"),
        ("app run", vec!["x".repeat(5000)], "long"),
        ("app remove", words(&["everything"]), "not allowed"),
    ];
    for (command, args, reason) in &cases {
        let error = client.proxy_exec(SERVICE, command, args, T).await.unwrap_err();
        let BackendError::InvalidInput(message) = &error else { panic!("{command} {args:?}: {error:?}") };
        assert!(message.contains("refused"), "{message}");
        assert!(message.to_lowercase().contains(reason), "{message} should say why ({reason})");
    }
    // A NUL cannot be sent at all: refused before any connection.
    let before = client.stats().services[0].connections;
    let error = client.proxy_exec(SERVICE, "app run", &words(&["a\0b"]), T).await.unwrap_err();
    assert!(matches!(error, BackendError::InvalidInput(_)), "{error:?}");
    assert_eq!(client.stats().services[0].connections, before);

    // A service nobody configured.
    let error = client.proxy_exec("elsewhere", "app run", &[], T).await.unwrap_err();
    assert!(matches!(&error, BackendError::NotFound(m) if m.contains("elsewhere")), "{error:?}");

    assert!(files.calls().is_empty(), "a refused line ran: {:?}", files.calls());
    // Refusals are answers: the service is fine.
    let stats = client.stats().services.remove(0);
    assert_eq!(stats.breaker, "closed");
    assert_eq!(stats.failures_in_a_row, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_mid_command_fails_that_call_and_the_next_one_reconnects() {
    let files = ProxyFiles::new();
    let mut proxy = ProxyServer::start(&files);
    let client = std::sync::Arc::new(ProxyClient::new(&files.settings()).unwrap());

    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.proxy_exec(SERVICE, "app run", &words(&["slow"]), T).await })
    };
    while !files.path("started").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.kill();
    let error = slow.await.unwrap().unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, BackendError::Failed(_)), "{error:?}");
    assert!(message.contains("not tried again"), "a started command is never sent twice: {message}");
    assert_eq!(files.calls().len(), 1);

    let _proxy = ProxyServer::start(&files);
    let output = client.proxy_exec(SERVICE, "app run", &words(&["again"]), T).await.unwrap();
    assert_eq!(output.status, 0);
    let stats = client.stats().services.remove(0);
    assert_eq!(stats.connections, 2, "the broken connection was replaced");
    assert_eq!((stats.succeeded, stats.failed), (1, 1));
    assert_eq!(files.calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_while_the_proxy_is_down_and_a_probe_closes_it() {
    let files = ProxyFiles::new();
    let mut settings = files.settings();
    settings.breaker_failures = 2;
    settings.breaker_cooldown_secs = 1;
    settings.retries = 1;
    let client = ProxyClient::new(&settings).unwrap();

    // Down: something listens on the proxy's port but closes every
    // connection at once, and counts them.
    let listener = std::net::TcpListener::bind(("127.0.0.1", files.port)).unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acceptor = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                drop(stream);
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    for _ in 0..2 {
        let error = client.proxy_exec(SERVICE, "app run", &[], T).await.unwrap_err();
        assert!(error.to_string().contains("2 attempts"), "retried once: {error}");
    }
    assert_eq!(client.stats().services[0].breaker, "open");
    let tried = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried >= 4, "each failed call tried twice: {tried}");

    // Open: fails at once, without touching the network.
    let error = client.proxy_exec(SERVICE, "app run", &[], T).await.unwrap_err();
    assert!(error.to_string().contains("circuit breaker open"), "{error}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), tried);
    assert_eq!(client.stats().services[0].fast_failed, 1);

    // Back: the fake goes, the proxy comes; after the cool-down one probe
    // goes through and closes the breaker.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(("127.0.0.1", files.port));
    acceptor.join().unwrap();
    let _proxy = ProxyServer::start(&files);
    while client.stats().services[0].breaker != "half-open" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = client.proxy_exec(SERVICE, "app run", &words(&["probe"]), T).await.unwrap();
    assert_eq!(output.status, 0);
    let stats = client.stats().services.remove(0);
    assert_eq!(stats.breaker, "closed");
    assert_eq!(stats.failures_in_a_row, 0);
    assert_eq!(files.calls(), vec![words(&["app", "run", "probe"])]);
}

/// `proximity serve` on the sim backend with a `[proxy]` table, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_with_proxy(files: &ProxyFiles, data: &Path) -> (Server, String) {
    let component = repo().join("tests/recipes/proxied/target/recipe.wasm");
    assert!(component.is_file(), "{} is not built: run `cargo xtask build-recipes`", component.display());
    let catalog = data.join("catalog");
    std::fs::create_dir_all(&catalog).unwrap();
    std::os::unix::fs::symlink(repo().join("tests/recipes/proxied"), catalog.join("proxied")).unwrap();
    let settings = files.settings();
    let service = &settings.services[SERVICE];
    let config = format!(
        "[proxy]\nretries = 1\nbackoff_ms = 20\n\n[proxy.services.{SERVICE}]\nkey = \"{key}\"\n\
         host_fingerprint = \"{fingerprint}\"\ndiscovery = {{ static = [\"{endpoint}\"] }}\n",
        key = service.key.display(),
        fingerprint = service.host_fingerprint.as_deref().unwrap(),
        endpoint = files.endpoint(),
    );
    std::fs::write(data.join("proximity.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proximity"))
        .args(["token", "create", "--name", "test", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_proximity"))
        .args(["serve", "--backend", "sim", "--listen", "127.0.0.1:0", "--config"])
        .arg(data.join("proximity.toml"))
        .arg("--data-dir")
        .arg(data)
        .arg("--catalog")
        .arg(&catalog)
        .env_remove("PROXIMITY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("proximity serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the server prints its address").unwrap();
        if let Some((_, address)) = line.split_once(" on http://") {
            break format!("http://{}", address.split('/').next().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Server { child, url }, token)
}

/// Deploys `proxied` with `params` and waits for the job's end: its state and view.
async fn deploy(http: &reqwest::Client, server: &Server, token: &str, params: serde_json::Value) -> serde_json::Value {
    let accepted: serde_json::Value = http
        .post(format!("{}/api/v1/deployments", server.url))
        .bearer_auth(token)
        .json(&serde_json::json!({ "recipe": "proxied", "params": params }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["job"]["id"].as_str().or(accepted["id"].as_str()).expect("a job id").to_string();
    loop {
        let job: serde_json::Value = http
            .get(format!("{}/api/v1/deployments/{id}", server.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(job["state"].as_str(), Some("queued" | "running")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_calls_through_the_server_and_the_figures_show_up() {
    let files = ProxyFiles::new();
    let _proxy = ProxyServer::start(&files);
    let data = tempfile::tempdir().unwrap();
    let (server, token) = serve_with_proxy(&files, data.path());
    let http = reqwest::Client::new();

    let job = deploy(&http, &server, &token, serde_json::json!({ "arg1": "$(id); x", "arg2": "two words" })).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(files.calls(), vec![words(&["app", "run", "$(id); x", "two words"])]);

    // Not in the recipe's grants: denied by the host, nothing sent.
    files.clear_calls();
    let job = deploy(&http, &server, &token, serde_json::json!({ "command": "app forbidden" })).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job.to_string();
    assert!(error.contains("denied") && error.contains("app forbidden"), "{job:#}");
    assert!(files.calls().is_empty());

    let stats: proximity::api::ProxyStats = http
        .get(format!("{}/api/v1/proxy/stats", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.services.len(), 1);
    let service = &stats.services[0];
    assert_eq!((service.service.as_str(), service.calls, service.succeeded), (SERVICE, 1, 1));
    assert_eq!(service.connections, 1);
    let unauthorised = http.get(format!("{}/api/v1/proxy/stats", server.url)).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);

    let metrics = http.get(format!("{}/api/v1/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    for line in [
        format!("proximity_proxy_calls_total{{service=\"{SERVICE}\",outcome=\"succeeded\"}} 1"),
        format!("proximity_proxy_connections_total{{service=\"{SERVICE}\"}} 1"),
        format!("proximity_proxy_breaker{{service=\"{SERVICE}\",state=\"closed\"}} 1"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in /metrics:\n{metrics}");
    }
}
