//! The `lxc` backend with real containers on this host.
//!
//! These tests never skip: without a working LXC setup they fail and say how
//! to get one (CI installs it in `.ci/run`). Each test removes every
//! container it made, found by its own unique app id, even when it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use proximity::backend::lxc::{config, LxcBackend};
use proximity::backend::{
    Backend, BackendError, ContainerRef, ContainerSpec, ExecOutput, ExecRequest, Features, FileWrite, HttpProbe,
    NoProxies, Ownership,
};
use proximity::catalog::CatalogEntry;
use proximity::deploy::PreparedDeploy;
use proximity::events::{Event, EventKind, EventSink, LogLevel};
use proximity::manifest::ParamValue;
use proximity::runtime::{Action, ActionResult, RunError, RunOutcome, Runtime, RuntimeConfig};
use proximity_tests::lxc::{argv, backend, containers_of, listed, lxcpath, owner, running, spec, unique, Cleanup};
use proximity_tests::plan::steps;
use proximity_tests::{install_on, load, prepared, recipe, uninstall_on};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime starts")
}

/// [`http_get`], tried again (at most `attempts` times, a second apart) when
/// the connection fails or closes without an answer: PHP's built-in web
/// server (adminer) was seen, on a loaded host, to drop a connection right
/// after the recipe's own probe had been answered.
fn http_get_again(url: &str, attempts: u32) -> (u16, String) {
    for attempt in 1..attempts {
        match std::panic::catch_unwind(|| http_get(url)) {
            Ok(answer) => return answer,
            Err(_) => {
                eprintln!("GET {url}: attempt {attempt} failed; trying again");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    http_get(url)
}

fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let addr = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().expect("address"), Duration::from_secs(5)).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads the response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, response)
}

/// Run one export (`upgrade`, `health`, `uninstall`) of `entry` on an
/// installed app's containers, with `changed` parameters replacing the
/// install's, collecting the run's events.
async fn run_on_app(
    runtime: &Runtime,
    entry: &CatalogEntry,
    prepared: &PreparedDeploy,
    action: Action,
    containers: &[ContainerRef],
    backend: Arc<dyn Backend>,
    changed: &[(&str, ParamValue)],
) -> (Result<RunOutcome, RunError>, Vec<Event>) {
    let recipe = load(runtime, entry).await;
    let (events, mut receiver) = EventSink::channel(prepared.redactor());
    let mut request = prepared.request(action, containers.to_vec(), backend, Arc::new(NoProxies), events);
    for (name, value) in changed {
        let slot = request.subject.params.values.iter_mut().find(|(n, _)| n == name).expect("a known parameter");
        slot.1 = value.clone();
    }
    let outcome = runtime.run(&recipe, request).await;
    let mut collected = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        collected.push(event);
    }
    (outcome, collected)
}

/// The health report of an installed app, as `(healthy, [(check, ok, detail)])`.
async fn health_of(
    runtime: &Runtime,
    entry: &CatalogEntry,
    prepared: &PreparedDeploy,
    containers: &[ContainerRef],
    backend: Arc<dyn Backend>,
) -> (bool, Vec<(String, bool, String)>) {
    let (outcome, _) = run_on_app(runtime, entry, prepared, Action::Health, containers, backend, &[]).await;
    let outcome = outcome.unwrap_or_else(|err| panic!("health runs: {err}"));
    let ActionResult::Health { report } = outcome.result else { panic!("a health report expected") };
    (report.healthy, report.checks.into_iter().map(|c| (c.name, c.ok, c.detail)).collect())
}

fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log { level: LogLevel::Warn | LogLevel::Error, message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// A secret parameter's value as the host generated it.
fn secret(deploy: &PreparedDeploy, name: &str) -> String {
    deploy
        .subject
        .params
        .values
        .iter()
        .find_map(|(n, value)| match value {
            ParamValue::Text(text) if n == name => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a generated {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_deploys_for_real_serves_the_greeting_then_uninstall_removes_it() {
    let backend = Arc::new(backend().await);
    // One runtime per test: the recipe is compiled once for all its runs.
    let runtime = runtime();
    let nginx = recipe("recipes/nginx");
    let app_id = unique("lxc-nginx");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&nginx, &[("greeting", "Hello from a real container")]);
    deploy.subject.app_id = app_id.clone();
    let started = Instant::now();
    let run = install_on(&runtime, &nginx, deploy, backend.clone(), Arc::new(NoProxies)).await;
    let outcome = run.outcome.unwrap_or_else(|err| panic!("nginx installs on lxc: {err}"));
    eprintln!("nginx deployed in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let url = app.url.clone().expect("nginx reports its URL");
    assert!(url.starts_with("http://10."), "a bridge address: {url}");

    let (status, page) = http_get(&url);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Hello from a real container"), "{page}");

    let [container] = &outcome.created[..] else { panic!("one container: {:?}", outcome.created) };
    assert!(listed(&container.id));
    let config = std::fs::read_to_string(lxcpath().join(&container.id).join("config")).unwrap();
    assert_eq!(config::labels(&config).map(|o| o.app_id), Some(app_id.clone()), "labels kept in the config");
    assert!(config.contains("lxc.idmap = u 0 "), "unprivileged: {config}");
    assert!(config.contains("lxc.rootfs.path = dir:"), "unprivileged: a full copy of the shifted base: {config}");

    let (healthy, checks) = health_of(&runtime, &nginx, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(healthy, "{checks:?}");
    assert_eq!(checks.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["service", "config", "http"]);

    // A real upgrade: apt in the container, the page written again with a new greeting.
    let started = Instant::now();
    let greeting = ParamValue::Text("Upgraded in place".into());
    let (upgraded, events) = run_on_app(
        &runtime,
        &nginx,
        &run.prepared,
        Action::Upgrade { from_version: "0.0.9".into() },
        &outcome.created,
        backend.clone(),
        &[("greeting", greeting)],
    )
    .await;
    let upgraded = upgraded.unwrap_or_else(|err| panic!("nginx upgrades on lxc: {err}"));
    eprintln!("nginx upgraded in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Upgraded { app: after } = &upgraded.result else { panic!("upgrade result expected") };
    assert_eq!(after.url.as_deref(), Some(url.as_str()), "the same address after the upgrade");
    assert!(upgraded.created.is_empty(), "an upgrade creates no container");
    assert_eq!(steps(&events)[0], "Upgrading nginx");
    let (status, page) = http_get(&url);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Upgraded in place"), "{page}");

    let (removed, events) =
        run_on_app(&runtime, &nginx, &run.prepared, Action::Uninstall, &outcome.created, backend.clone(), &[]).await;
    let removed = removed.unwrap_or_else(|err| panic!("uninstall succeeds: {err}"));
    assert_eq!(steps(&events), ["Stopping nginx"]);
    assert!(warnings(&events).is_empty(), "nginx stopped cleanly: {:?}", warnings(&events));
    assert_eq!(removed.destroyed, vec![container.id.clone()]);
    assert!(!listed(&container.id), "lxc-ls no longer lists {}", container.id);
    assert!(!lxcpath().join(&container.id).exists(), "its directory and rootfs are gone");
    backend.destroy(container).await.expect("destroying a missing container succeeds");
}

/// A catalog recipe written in Python, end to end: Debian's Adminer served by
/// PHP in a real container, reached over the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adminer_recipe_deploys_for_real_and_serves_its_login_page() {
    let backend = Arc::new(backend().await);
    // One runtime per test: the recipe is compiled once for all its runs.
    let runtime = runtime();
    let adminer = recipe("recipes/adminer");
    let app_id = unique("lxc-adminer");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&adminer, &[]);
    deploy.subject.app_id = app_id.clone();
    let started = Instant::now();
    let run = install_on(&runtime, &adminer, deploy, backend.clone(), Arc::new(NoProxies)).await;
    let outcome = run.outcome.unwrap_or_else(|err| panic!("adminer installs on lxc: {err}"));
    eprintln!("adminer deployed in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let url = app.url.clone().expect("adminer reports its URL");

    let (status, page) = http_get_again(&url, 5);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Adminer"), "the login page: {page}");

    let (healthy, checks) = health_of(&runtime, &adminer, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(healthy, "{checks:?}");
    // The Python SDK's upgrade_packages for real, then the service restarted.
    let started = Instant::now();
    let (upgraded, events) = run_on_app(
        &runtime,
        &adminer,
        &run.prepared,
        Action::Upgrade { from_version: "0.0.9".into() },
        &outcome.created,
        backend.clone(),
        &[("upload-limit-mb", ParamValue::Integer(32))],
    )
    .await;
    let upgraded = upgraded.unwrap_or_else(|err| panic!("adminer upgrades on lxc: {err}"));
    eprintln!("adminer upgraded in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Upgraded { app: after } = &upgraded.result else { panic!("upgrade result expected") };
    assert_eq!(after.url.as_deref(), Some(url.as_str()));
    assert_eq!(steps(&events)[0], "Upgrading Adminer and PHP");
    let (status, page) = http_get_again(&url, 5);
    assert_eq!(status, 200, "{page}");
    let [container] = &outcome.created[..] else { panic!("one container: {:?}", outcome.created) };
    let php_ini = backend.read_file(container, "/etc/adminer/php.ini").await.expect("php.ini");
    assert!(String::from_utf8_lossy(&php_ini).contains("upload_max_filesize = 32M"), "the new limit is written");

    let removed = uninstall_on(&runtime, &adminer, &run.prepared, outcome.created.clone(), backend.clone())
        .await
        .unwrap_or_else(|err| panic!("uninstall succeeds: {err}"));
    assert_eq!(removed.destroyed.len(), 1);
    assert!(containers_of(&app_id).is_empty(), "nothing of {app_id} is left");
}

/// Delegates to the real backend, letting a test tamper with the files a
/// recipe writes or the commands it runs: real faults inside a real container.
struct Tamper {
    inner: Arc<LxcBackend>,
    file: fn(&mut FileWrite),
    exec: fn(&mut ExecRequest),
}

impl Tamper {
    fn new(inner: Arc<LxcBackend>) -> Self {
        Tamper { inner, file: |_| {}, exec: |_| {} }
    }
}

#[async_trait]
impl Backend for Tamper {
    fn name(&self) -> &'static str {
        "lxc"
    }
    async fn owned(&self) -> Result<Vec<(ContainerRef, Ownership)>, BackendError> {
        self.inner.owned().await
    }
    async fn create(&self, owner: &Ownership, spec: &ContainerSpec) -> Result<ContainerRef, BackendError> {
        self.inner.create(owner, spec).await
    }
    async fn start(&self, c: &ContainerRef) -> Result<(), BackendError> {
        self.inner.start(c).await
    }
    async fn stop(&self, c: &ContainerRef) -> Result<(), BackendError> {
        self.inner.stop(c).await
    }
    async fn destroy(&self, c: &ContainerRef) -> Result<(), BackendError> {
        self.inner.destroy(c).await
    }
    async fn address(&self, c: &ContainerRef, timeout: Duration) -> Result<String, BackendError> {
        self.inner.address(c, timeout).await
    }
    async fn exec(&self, c: &ContainerRef, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        let mut request = request.clone();
        (self.exec)(&mut request);
        self.inner.exec(c, &request).await
    }
    async fn write_file(&self, c: &ContainerRef, file: &FileWrite) -> Result<(), BackendError> {
        let mut file = file.clone();
        (self.file)(&mut file);
        self.inner.write_file(c, &file).await
    }
    async fn read_file(&self, c: &ContainerRef, path: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.read_file(c, path).await
    }
    async fn wait_tcp(&self, c: &ContainerRef, port: u16, timeout: Duration) -> Result<(), BackendError> {
        self.inner.wait_tcp(c, port, timeout).await
    }
    async fn wait_http(&self, c: &ContainerRef, probe: &HttpProbe, timeout: Duration) -> Result<u16, BackendError> {
        self.inner.wait_http(c, probe, timeout).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_failing_mid_install_destroys_the_container_and_names_the_step_and_stderr() {
    let backend = Arc::new(backend().await);
    let nginx = recipe("recipes/nginx");
    let app_id = unique("lxc-broken");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&nginx, &[]);
    deploy.subject.app_id = app_id.clone();
    // A broken site, so that the recipe's real `nginx -t` fails inside the container.
    let tamper = Tamper {
        file: |file| {
            if file.path.starts_with("/etc/nginx/") {
                file.contents = b"server { listen 80; bogus_directive on; }\n".to_vec();
            }
        },
        ..Tamper::new(backend.clone())
    };
    let run = install_on(&runtime(), &nginx, deploy, Arc::new(tamper), Arc::new(NoProxies)).await;
    let err = run.outcome.expect_err("a broken site fails the install");
    let message = err.to_string();
    assert_eq!(err.step.as_deref(), Some("Starting nginx"), "{message}");
    assert!(message.contains("nginx -t"), "names the command: {message}");
    assert!(message.contains("bogus_directive"), "carries nginx's own stderr: {message}");
    let [destroyed] = &err.destroyed[..] else { panic!("the container is destroyed: {err:?}") };
    assert!(err.left_behind.is_empty(), "{err:?}");
    assert!(!listed(destroyed), "{destroyed} is gone");
    assert!(containers_of(&app_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_mid_install_is_killed_and_the_container_destroyed() {
    let backend = Arc::new(backend().await);
    let nginx = recipe("recipes/nginx");
    let app_id = unique("lxc-slow");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&nginx, &[]);
    deploy.subject.app_id = app_id.clone();
    // The config check hangs (a real `sleep` in the container) past a 2 s timeout.
    let tamper = Tamper {
        exec: |request| {
            if request.argv == ["nginx", "-t"] {
                request.argv = vec!["sleep".into(), "600".into()];
                request.timeout = Duration::from_secs(2);
            }
        },
        ..Tamper::new(backend.clone())
    };
    let run = install_on(&runtime(), &nginx, deploy, Arc::new(tamper), Arc::new(NoProxies)).await;
    let err = run.outcome.expect_err("the hanging command fails the install");
    let proximity::runtime::RunFailure::Recipe(recipe_error) = &err.failure else { panic!("{err:?}") };
    assert_eq!(recipe_error.kind, "timeout", "{err}");
    assert_eq!(err.step.as_deref(), Some("Starting nginx"), "{err}");
    let [destroyed] = &err.destroyed[..] else { panic!("the container is destroyed: {err:?}") };
    assert!(!listed(destroyed));
    assert!(containers_of(&app_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_files_pass_argv_env_cwd_stdin_and_kill_on_timeout() {
    let backend = backend().await;
    let app_id = unique("lxc-exec");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let c = running(&backend, &app_id, 256, true).await;

    // Arguments arrive intact, with no shell in between.
    let tricky = "a b; echo injected $(id) 'q' \"d\"";
    let out = backend
        .exec(
            &c,
            &ExecRequest {
                argv: argv(&["printf", "%s|", tricky]),
                timeout: Duration::from_secs(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((out.status, String::from_utf8_lossy(&out.stdout).into_owned()), (0, format!("{tricky}|")));

    let request = ExecRequest {
        argv: argv(&["sh", "-c", "pwd; echo \"$GREETING\"; cat; echo oops >&2; exit 3"]),
        env: vec![("GREETING".into(), "hi there".into())],
        cwd: Some("/etc".into()),
        stdin: Some(b"from stdin\n".to_vec()),
        timeout: Duration::from_secs(20),
    };
    let out = backend.exec(&c, &request).await.unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/etc\nhi there\nfrom stdin\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    // A timeout kills the command inside the container, children included.
    let started = Instant::now();
    let slow = ExecRequest {
        argv: argv(&["sh", "-c", "sleep 300 & sleep 301"]),
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let err = backend.exec(&c, &slow).await.expect_err("times out");
    assert!(matches!(err, BackendError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let ps = backend
        .exec(
            &c,
            &ExecRequest { argv: argv(&["ps", "-eo", "comm"]), timeout: Duration::from_secs(20), ..Default::default() },
        )
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep"), "{}", String::from_utf8_lossy(&ps.stdout));

    // Files go through the container's own view: a symlink resolves inside it.
    let link = ExecRequest {
        argv: argv(&["ln", "-s", "/etc/target-inside", "/tmp/link"]),
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    assert_eq!(backend.exec(&c, &link).await.unwrap().status, 0);
    let file = FileWrite {
        path: "/tmp/link".into(),
        contents: b"secret\n".to_vec(),
        mode: 0o640,
        owner: Some("root".into()),
        group: Some("daemon".into()),
    };
    backend.write_file(&c, &file).await.unwrap();
    assert!(!std::path::Path::new("/etc/target-inside").exists(), "the host's /etc is untouched");
    assert_eq!(backend.read_file(&c, "/etc/target-inside").await.unwrap(), b"secret\n");
    let stat = backend
        .exec(
            &c,
            &ExecRequest {
                argv: argv(&["stat", "-c", "%a %U %G", "/etc/target-inside"]),
                timeout: Duration::from_secs(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&stat.stdout).trim(), "640 root daemon");
    let nested = FileWrite {
        path: "/opt/new dir/x.conf".into(),
        contents: b"x".to_vec(),
        mode: 0o600,
        owner: None,
        group: None,
    };
    backend.write_file(&c, &nested).await.unwrap();
    assert!(matches!(backend.read_file(&c, "/nope").await, Err(BackendError::NotFound(_))));

    backend.destroy(&c).await.unwrap();
    assert!(!listed(&c.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_the_memory_limit_is_oom_killed() {
    let backend = backend().await;
    let app_id = unique("lxc-oom");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    // Privileged, so that the overlay snapshot clone is exercised too.
    let c = running(&backend, &app_id, 128, false).await;
    let config = std::fs::read_to_string(lxcpath().join(&c.id).join("config")).unwrap();
    assert!(config.contains("lxc.rootfs.path = overlay:"), "an overlay clone: {config}");
    // perl is in every Debian base (perl-base is essential).
    let hog = ExecRequest {
        argv: argv(&["perl", "-e", "my $x = 'a' x (400 * 1024 * 1024); print length($x), qq(\\n);"]),
        timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let out = backend.exec(&c, &hog).await.expect("the command runs");
    assert_eq!(
        out.status,
        137,
        "killed by SIGKILL (OOM): stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // The container itself survives the OOM kill of one command.
    let ok = backend
        .exec(&c, &ExecRequest { argv: argv(&["true"]), timeout: Duration::from_secs(20), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ok.status, 0);
    backend.destroy(&c).await.unwrap();
}

#[tokio::test]
async fn alpine_is_refused_with_the_reason() {
    let backend = backend().await;
    let mut alpine = spec("t", 128);
    alpine.os_template = "alpine-3.20".into();
    let err = backend.create(&owner(&unique("lxc-alpine")), &alpine).await.expect_err("no alpine");
    assert!(matches!(&err, BackendError::InvalidInput(m) if m.contains("debian-12") && m.contains("mirror")), "{err}");
}

/// One RESP command over `stream`, returning the first reply line.
fn redis_command(stream: &mut TcpStream, args: &[&str]) -> String {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("redis replies");
        reply.push(byte[0]);
    }
    String::from_utf8_lossy(&reply).trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_deploys_with_a_generated_password_and_answers_a_real_client() {
    let backend = Arc::new(backend().await);
    // One runtime per test: the recipe is compiled once for all its runs.
    let runtime = runtime();
    let redis = recipe("recipes/redis");
    let app_id = unique("lxc-redis");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&redis, &[]);
    deploy.subject.app_id = app_id.clone();
    let password = deploy
        .subject
        .params
        .values
        .iter()
        .find_map(|(name, value)| match value {
            ParamValue::Text(text) if name == "password" => Some(text.clone()),
            _ => None,
        })
        .expect("a generated password");
    assert!(password.len() >= 16);
    let run = install_on(&runtime, &redis, deploy, backend.clone(), Arc::new(NoProxies)).await;
    let outcome = run.outcome.unwrap_or_else(|err| panic!("redis installs on lxc: {err}"));
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let address = app.address.clone().expect("redis reports its address");

    let mut client = TcpStream::connect((address.as_str(), 6379)).expect("redis accepts connections");
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(redis_command(&mut client, &["PING"]).starts_with("-NOAUTH"), "the password is required");
    assert!(redis_command(&mut client, &["AUTH", "wrong-password"]).starts_with("-"), "a wrong password is refused");
    assert_eq!(redis_command(&mut client, &["AUTH", &password]), "+OK");
    assert_eq!(redis_command(&mut client, &["SET", "greeting", "hello"]), "+OK");
    assert_eq!(redis_command(&mut client, &["GET", "greeting"]), "$5");
    drop(client);

    let (healthy, checks) = health_of(&runtime, &redis, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(healthy, "{checks:?}");

    let removed = uninstall_on(&runtime, &redis, &run.prepared, outcome.created.clone(), backend.clone())
        .await
        .unwrap_or_else(|err| panic!("uninstall succeeds: {err}"));
    assert_eq!(removed.destroyed.len(), 1);
    for container in &outcome.created {
        assert!(!listed(&container.id));
    }
    assert!(containers_of(&app_id).is_empty(), "nothing of {app_id} is left");
}

/// Run `args` in `c`, failing the test with the command's stderr when it fails.
async fn must(backend: &LxcBackend, c: &ContainerRef, args: &[&str], timeout_secs: u64) -> String {
    let request = ExecRequest {
        argv: argv(args),
        env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
        timeout: Duration::from_secs(timeout_secs),
        ..Default::default()
    };
    let out = backend.exec(c, &request).await.unwrap_or_else(|err| panic!("{args:?}: {err}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status, 0, "{args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// The WordPress recipe's path on this backend: Docker and compose inside an
/// unprivileged container with nesting, with an image that exists offline
/// (a busybox root filesystem imported into Docker; Docker Hub is out of reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_compose_run_inside_an_unprivileged_nesting_container() {
    let backend = backend().await;
    let app_id = unique("lxc-docker");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let nesting = ContainerSpec { features: Features { nesting: true, ..Default::default() }, ..spec("docker", 2048) };
    let c = backend.create(&owner(&app_id), &nesting).await.expect("create");
    backend.start(&c).await.expect("start");

    must(&backend, &c, &["apt-get", "update", "-q"], 300).await;
    must(
        &backend,
        &c,
        &["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io", "docker-compose", "busybox-static"],
        600,
    )
    .await;
    must(&backend, &c, &["systemctl", "start", "docker"], 120).await;
    let info = must(&backend, &c, &["docker", "info", "--format", "{{.Driver}} {{.CgroupVersion}}"], 60).await;
    eprintln!("docker inside lxc: storage driver and cgroup version: {}", info.trim());

    // An image made here: busybox alone, imported.
    must(&backend, &c, &["mkdir", "-p", "/opt/image/bin", "/opt/app"], 30).await;
    must(&backend, &c, &["cp", "/bin/busybox", "/opt/image/bin/busybox"], 30).await;
    must(&backend, &c, &["ln", "-s", "busybox", "/opt/image/bin/sh"], 30).await;
    must(&backend, &c, &["sh", "-c", "tar -C /opt/image -c . | docker import - local/busybox:offline"], 120).await;
    let hello = must(
        &backend,
        &c,
        &["docker", "run", "--rm", "local/busybox:offline", "/bin/busybox", "echo", "hello from docker"],
        120,
    )
    .await;
    assert_eq!(hello.trim(), "hello from docker");

    let compose =
        "services:\n  web:\n    image: local/busybox:offline\n    command: [\"/bin/busybox\", \"sleep\", \"3600\"]\n";
    let file = FileWrite {
        path: "/opt/app/docker-compose.yml".into(),
        contents: compose.into(),
        mode: 0o644,
        owner: None,
        group: None,
    };
    backend.write_file(&c, &file).await.expect("compose file written");
    must(&backend, &c, &["docker-compose", "-f", "/opt/app/docker-compose.yml", "up", "-d"], 300).await;
    let running = must(
        &backend,
        &c,
        &["docker-compose", "-f", "/opt/app/docker-compose.yml", "ps", "--services", "--filter", "status=running"],
        60,
    )
    .await;
    assert_eq!(running.trim(), "web", "the compose service runs");
}

/// `psql` on this host, as any client on the network would use it: over the
/// bridge to the container's address, with a password (never prompting).
/// Debian's `postgresql-client` provides it.
fn host_psql(address: &str, user: &str, database: &str, password: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", address, "-p", "5432"])
        .args(["-U", user, "-d", database, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSERVICEFILE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|err| {
            panic!("psql, PostgreSQL's client, must run on this host for this test (Debian: postgresql-client): {err}")
        })
}

/// [`host_psql`] that must succeed; its output, trimmed.
fn host_psql_ok(address: &str, user: &str, database: &str, password: &str, sql: &str) -> String {
    let out = host_psql(address, user, database, password, sql);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "psql {sql:?} as {user} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.trim().to_string()
}

/// PostgreSQL's whole life on a real container: install with a generated
/// password, a client on this host signs in over the bridge (and wrong
/// credentials do not), health while running and while stopped, an upgrade
/// that keeps the data and applies a changed parameter, then uninstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_deploys_a_client_on_the_host_signs_in_and_it_upgrades_and_uninstalls_for_real() {
    let backend = Arc::new(backend().await);
    // One runtime per test: the recipe is compiled once for all its runs.
    let runtime = runtime();
    let pg = recipe("recipes/postgresql");
    let app_id = unique("lxc-pg");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&pg, &[("database", "shop"), ("user", "shopkeeper")]);
    deploy.subject.app_id = app_id.clone();
    let password = secret(&deploy, "password");
    assert!(password.len() >= 16, "a generated password");

    let started = Instant::now();
    let run = install_on(&runtime, &pg, deploy, backend.clone(), Arc::new(NoProxies)).await;
    let outcome = run.outcome.unwrap_or_else(|err| panic!("postgresql installs on lxc: {err}"));
    eprintln!("postgresql deployed in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let address = app.address.clone().expect("postgresql reports its address");
    assert_eq!(app.url.as_deref(), Some(format!("postgresql://shopkeeper@{address}:5432/shop").as_str()));
    assert_eq!(app.ports, vec![5432]);
    let [container] = &outcome.created[..] else { panic!("one container: {:?}", outcome.created) };

    // A real client on this host, over the bridge, with the generated password.
    let (user, db) = ("shopkeeper", "shop");
    let who = host_psql_ok(&address, user, db, &password, "SELECT current_user || '@' || current_database()");
    assert_eq!(who, "shopkeeper@shop");
    host_psql_ok(&address, user, db, &password, "CREATE TABLE visits (n integer)");
    host_psql_ok(&address, user, db, &password, "INSERT INTO visits VALUES (42)");
    assert_eq!(host_psql_ok(&address, user, db, &password, "SELECT n FROM visits"), "42");
    let encoding = host_psql_ok(&address, user, db, &password, "SHOW server_encoding");
    assert_eq!(encoding, "UTF8");

    let wrong = host_psql(&address, user, db, "not-the-password-at-all", "SELECT 1");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && stderr.contains("password authentication failed"), "{stderr}");
    // The superuser has no way in from the network, whatever the password.
    let superuser = host_psql(&address, "postgres", "postgres", &password, "SELECT 1");
    let stderr = String::from_utf8_lossy(&superuser.stderr);
    assert!(!superuser.status.success() && stderr.contains("no pg_hba.conf entry"), "{stderr}");
    // The server keeps a SCRAM verifier, not the password.
    let verifier = must(
        &backend,
        container,
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'shopkeeper'",
        ],
        30,
    )
    .await;
    assert_eq!(verifier.trim(), "SCRAM-SHA-256$");

    let (healthy, checks) = health_of(&runtime, &pg, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(healthy, "{checks:?}");
    assert_eq!(checks.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["service", "port", "query"]);

    // Stopped for real, the server is reported unhealthy on every check.
    must(&backend, container, &["systemctl", "stop", "postgresql@15-main"], 60).await;
    let (healthy, checks) = health_of(&runtime, &pg, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(!healthy, "{checks:?}");
    assert!(checks.iter().all(|(_, ok, _)| !ok), "every check fails while stopped: {checks:?}");

    // A real upgrade: apt in the container, a changed parameter, a restart.
    let started = Instant::now();
    let (upgraded, events) = run_on_app(
        &runtime,
        &pg,
        &run.prepared,
        Action::Upgrade { from_version: "0.0.9".into() },
        &outcome.created,
        backend.clone(),
        &[("max-connections", ParamValue::Integer(150))],
    )
    .await;
    let upgraded = upgraded.unwrap_or_else(|err| panic!("postgresql upgrades on lxc: {err}"));
    eprintln!("postgresql upgraded in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Upgraded { app: after } = &upgraded.result else { panic!("upgrade result expected") };
    assert_eq!(after.url, app.url, "the same address and database after the upgrade");
    assert_eq!(steps(&events)[0], "Upgrading PostgreSQL");
    assert_eq!(host_psql_ok(&address, user, db, &password, "SHOW max_connections"), "150");
    assert_eq!(host_psql_ok(&address, user, db, &password, "SELECT n FROM visits"), "42", "the data survived");
    let (healthy, checks) = health_of(&runtime, &pg, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(healthy, "healthy again after the upgrade: {checks:?}");

    let (removed, events) =
        run_on_app(&runtime, &pg, &run.prepared, Action::Uninstall, &outcome.created, backend.clone(), &[]).await;
    let removed = removed.unwrap_or_else(|err| panic!("uninstall succeeds: {err}"));
    assert_eq!(steps(&events), ["Stopping PostgreSQL"]);
    assert!(warnings(&events).is_empty(), "PostgreSQL stopped cleanly: {:?}", warnings(&events));
    assert_eq!(removed.destroyed, vec![container.id.clone()]);
    assert!(!listed(&container.id), "lxc-ls no longer lists {}", container.id);
    assert!(!lxcpath().join(&container.id).exists(), "its directory and rootfs are gone");
    assert!(containers_of(&app_id).is_empty(), "nothing of {app_id} is left");
}

/// The first packet a MySQL-protocol server sends a new client: `Ok` with the
/// server's version from its handshake (protocol 10), or `Err` with the
/// message of the error packet it sends instead when this client's address
/// may not sign in at all.
fn mysql_greeting(address: &str) -> Result<String, String> {
    let addr = format!("{address}:3306").parse().expect("address");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the server accepts connections");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).expect("a packet header");
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("the packet");
    match payload.first() {
        Some(10) => {
            let version = payload[1..].split(|b| *b == 0).next().unwrap_or_default();
            Ok(String::from_utf8_lossy(version).into_owned())
        }
        Some(0xff) if payload.len() > 3 => Err(String::from_utf8_lossy(&payload[3..]).into_owned()),
        other => panic!("neither a handshake nor an error packet: {other:?} ({len} bytes)"),
    }
}

/// The `mariadb` client inside the container, over TCP to the container's own
/// bridge address (the path a LAN client takes), with a password.
async fn mariadb_over_tcp(
    backend: &LxcBackend,
    c: &ContainerRef,
    address: &str,
    password: &str,
    sql: &str,
) -> (i32, String, String) {
    let request = ExecRequest {
        argv: argv(&["mariadb", "--protocol=tcp", "-h", address, "-P", "3306", "-u", "shopkeeper", "-D", "shop"])
            .into_iter()
            .chain(argv(&["--batch", "--skip-column-names", "-e", sql]))
            .collect(),
        env: vec![("MYSQL_PWD".into(), password.into())],
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let out = backend.exec(c, &request).await.expect("mariadb runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// MariaDB on a real container: the host's address is greeted, a password
/// sign-in over the bridge works (a wrong one does not), health, an upgrade
/// that narrows allowed-network so this host is turned away, uninstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_deploys_signs_in_over_the_bridge_and_an_upgrade_narrows_who_may_connect() {
    let backend = Arc::new(backend().await);
    let runtime = runtime();
    let mariadb = recipe("recipes/mariadb");
    let app_id = unique("lxc-mariadb");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&mariadb, &[("database", "shop"), ("user", "shopkeeper")]);
    deploy.subject.app_id = app_id.clone();
    let password = secret(&deploy, "password");

    let started = Instant::now();
    let run = install_on(&runtime, &mariadb, deploy, backend.clone(), Arc::new(NoProxies)).await;
    let outcome = run.outcome.unwrap_or_else(|err| panic!("mariadb installs on lxc: {err}"));
    eprintln!("mariadb deployed in {:.1}s", started.elapsed().as_secs_f64());
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let address = app.address.clone().expect("mariadb reports its address");
    assert_eq!(app.url.as_deref(), Some(format!("mysql://shopkeeper@{address}:3306/shop").as_str()));
    let [container] = &outcome.created[..] else { panic!("one container: {:?}", outcome.created) };

    // This host may connect: the server greets it with its handshake.
    let version = mysql_greeting(&address).unwrap_or_else(|err| panic!("the host is turned away: {err}"));
    assert!(version.contains("MariaDB"), "{version}");
    let (status, who, stderr) =
        mariadb_over_tcp(&backend, container, &address, &password, "SELECT CURRENT_USER()").await;
    assert_eq!((status, who.as_str()), (0, "shopkeeper@%"), "{stderr}");
    let (status, _, stderr) =
        mariadb_over_tcp(&backend, container, &address, &password, "CREATE TABLE t (n INT)").await;
    assert_eq!(status, 0, "{stderr}");
    let (status, _, stderr) =
        mariadb_over_tcp(&backend, container, &address, "not-the-password-at-all", "SELECT 1").await;
    assert!(status != 0 && stderr.contains("Access denied"), "{stderr}");

    let (healthy, checks) = health_of(&runtime, &mariadb, &run.prepared, &outcome.created, backend.clone()).await;
    assert!(healthy, "{checks:?}");

    // An upgrade with a network this host is not in: the old account goes.
    let started = Instant::now();
    let (upgraded, _) = run_on_app(
        &runtime,
        &mariadb,
        &run.prepared,
        Action::Upgrade { from_version: "0.0.9".into() },
        &outcome.created,
        backend.clone(),
        &[("allowed-network", ParamValue::Text("192.0.2.0/24".into()))],
    )
    .await;
    upgraded.unwrap_or_else(|err| panic!("mariadb upgrades on lxc: {err}"));
    eprintln!("mariadb upgraded in {:.1}s", started.elapsed().as_secs_f64());
    let refused = mysql_greeting(&address).expect_err("this host may no longer connect");
    assert!(refused.contains("not allowed to connect"), "{refused}");
    let mut narrowed = run.prepared.subject.clone();
    for (name, value) in &mut narrowed.params.values {
        if name == "allowed-network" {
            *value = ParamValue::Text("192.0.2.0/24".into());
        }
    }
    let narrowed = PreparedDeploy { subject: narrowed, keep_failed: false };
    let (healthy, checks) = health_of(&runtime, &mariadb, &narrowed, &outcome.created, backend.clone()).await;
    assert!(healthy, "the account inside the container still signs in: {checks:?}");

    let (removed, events) =
        run_on_app(&runtime, &mariadb, &narrowed, Action::Uninstall, &outcome.created, backend.clone(), &[]).await;
    let removed = removed.unwrap_or_else(|err| panic!("uninstall succeeds: {err}"));
    assert!(warnings(&events).is_empty(), "MariaDB stopped cleanly: {:?}", warnings(&events));
    assert_eq!(removed.destroyed, vec![container.id.clone()]);
    assert!(!listed(&container.id));
    assert!(containers_of(&app_id).is_empty(), "nothing of {app_id} is left");
}
