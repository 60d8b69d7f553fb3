//! Proxy discovery and proxy keys against real parts: a private dnsmasq for
//! DNS (A, AAAA, SRV), TCP listeners on loopback as proxies, and a private
//! Docker engine in Swarm mode for service discovery and secrets.

use std::net::TcpListener;
use std::time::Duration;

use proximity::proxy::discovery::{Discovery, DiscoveryConfig, DiscoveryError, Endpoint, Source, SwarmAddresses};
use proximity::proxy::keys::{self, GenerateRequest, KeyError, SecretOutcome, FINGERPRINT_LABEL};
use proximity_tests::dns::{dnsmasq_available, Dnsmasq, Record};
use proximity_tests::dockerd::{docker_available, Dockerd, IMAGE};

/// Listeners on `addresses`, all on one port (DNS gives one port for every address).
fn listeners_on_one_port(addresses: &[&str]) -> (Vec<TcpListener>, u16) {
    'search: for _ in 0..100 {
        let first = TcpListener::bind((addresses[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for address in &addresses[1..] {
            match TcpListener::bind((*address, port)) {
                Ok(listener) => listeners.push(listener),
                Err(_) => continue 'search,
            }
        }
        return (listeners, port);
    }
    panic!("no port free on all of {addresses:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn endpoint(text: &str) -> Endpoint {
    text.parse().unwrap()
}

#[tokio::test]
async fn static_endpoints_keep_their_order_and_lose_the_unhealthy() {
    let (_a, a) = listeners_on_one_port(&["127.0.0.1"]);
    let (_b, b) = listeners_on_one_port(&["127.0.0.1"]);
    let closed = free_port();
    let list = [format!("127.0.0.1:{b}"), format!("127.0.0.1:{closed}"), format!("127.0.0.1:{a}")];
    let source = Source::Static(list.iter().map(|text| endpoint(text)).collect());
    let discovery = Discovery::new(source, DiscoveryConfig::default());
    let found = discovery.endpoints().await.unwrap();
    assert_eq!(found, vec![endpoint(&list[0]), endpoint(&list[2])]);
}

#[tokio::test]
async fn dns_a_and_aaaa_records_become_health_checked_endpoints() {
    if !dnsmasq_available() {
        return;
    }
    let (_listeners, port) = listeners_on_one_port(&["127.0.0.3", "127.0.0.2", "::1"]);
    let dns = Dnsmasq::start(&[
        Record::host("proxy.test", "127.0.0.3"),
        Record::host("proxy.test", "127.0.0.2"),
        Record::host("proxy.test", "::1"),
        // Listed in DNS, but nothing listens there: the health check leaves it out.
        Record::host("proxy.test", "127.0.0.4"),
    ]);
    let source = Source::Dns { name: "proxy.test".into(), port, nameserver: Some(dns.address()) };
    let discovery = Discovery::new(source, DiscoveryConfig::default());
    let mut everything = discovery.query_source().await.unwrap();
    everything.sort();
    let expected_all: Vec<Endpoint> =
        ["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"].iter().map(|host| Endpoint::new(*host, port)).collect();
    assert_eq!(everything, expected_all, "A and AAAA records, with the configured port");
    let healthy = discovery.endpoints().await.unwrap();
    let expected: Vec<Endpoint> =
        ["127.0.0.2", "127.0.0.3", "::1"].iter().map(|host| Endpoint::new(*host, port)).collect();
    assert_eq!(healthy, expected, "sorted, without the one that does not accept");
    assert_eq!(discovery.describe(), format!("dns proxy.test:{port} via {}", dns.address()));
}

#[tokio::test]
async fn srv_records_give_targets_and_ports_by_priority_then_weight() {
    if !dnsmasq_available() {
        return;
    }
    let (_a, port_a) = listeners_on_one_port(&["127.0.0.5"]);
    let (_b, port_b) = listeners_on_one_port(&["127.0.0.6"]);
    let (_c, port_c) = listeners_on_one_port(&["127.0.0.7", "::1"]);
    let dns = Dnsmasq::start(&[
        Record::srv("_nc-proxy._tcp.test", "a.test", port_a, 10, 5),
        Record::srv("_nc-proxy._tcp.test", "b.test", port_b, 5, 1),
        Record::srv("_nc-proxy._tcp.test", "c.test", port_c, 10, 50),
        // A target without addresses is skipped while the others resolve.
        Record::srv("_nc-proxy._tcp.test", "gone.test", 2222, 1, 1),
        Record::host("a.test", "127.0.0.5"),
        Record::host("b.test", "127.0.0.6"),
        Record::host("c.test", "127.0.0.7"),
        Record::host("c.test", "::1"),
    ]);
    let source = Source::Srv { name: "_nc-proxy._tcp.test".into(), nameserver: Some(dns.address()) };
    let discovery = Discovery::new(source, DiscoveryConfig::default());
    let expected = vec![
        Endpoint::new("127.0.0.6", port_b),
        Endpoint::new("127.0.0.7", port_c),
        Endpoint::new("::1", port_c),
        Endpoint::new("127.0.0.5", port_a),
    ];
    assert_eq!(discovery.endpoints().await.unwrap(), expected);
}

#[tokio::test]
async fn names_that_do_not_resolve_are_clear_errors() {
    if !dnsmasq_available() {
        return;
    }
    let dns = Dnsmasq::start(&[Record::srv("_nc-proxy._tcp.test", "a.test", 2222, 1, 1)]);
    let nameserver = Some(dns.address());

    let missing = Source::Dns { name: "missing.test".into(), port: 2222, nameserver };
    let error = Discovery::new(missing, DiscoveryConfig::default()).endpoints().await.unwrap_err();
    assert!(matches!(error, DiscoveryError::NameNotFound { ref name, .. } if name == "missing.test"), "{error}");
    assert!(error.to_string().contains("`missing.test` does not exist"), "{error}");

    let no_srv = Source::Srv { name: "_other._tcp.test".into(), nameserver };
    let error = Discovery::new(no_srv, DiscoveryConfig::default()).endpoints().await.unwrap_err();
    assert!(matches!(error, DiscoveryError::NameNotFound { .. }), "{error}");

    // The SRV name exists, but has no addresses of its own.
    let no_address = Source::Dns { name: "_nc-proxy._tcp.test".into(), port: 2222, nameserver };
    let error = Discovery::new(no_address, DiscoveryConfig::default()).endpoints().await.unwrap_err();
    assert!(matches!(error, DiscoveryError::NoRecords { .. }), "{error}");
    assert!(error.to_string().contains("has no A or AAAA records"), "{error}");

    // The only target has no address: the SRV lookup says so.
    let unresolved = Source::Srv { name: "_nc-proxy._tcp.test".into(), nameserver };
    let error = Discovery::new(unresolved, DiscoveryConfig::default()).endpoints().await.unwrap_err();
    assert!(error.to_string().contains("a.test"), "{error}");
}

#[tokio::test]
async fn an_unreachable_nameserver_is_a_clear_error() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let source = Source::Dns { name: "proxy.test".into(), port: 2222, nameserver: Some(closed) };
    let error = Discovery::new(source, DiscoveryConfig::default()).endpoints().await.unwrap_err();
    assert!(matches!(error, DiscoveryError::Dns { .. }), "{error}");
    let text = error.to_string();
    assert!(text.starts_with(&format!("dns proxy.test:2222 via {closed}: looking up `proxy.test` failed")), "{text}");
}

#[tokio::test]
async fn failing_endpoints_are_dropped_until_a_refresh_finds_them_healthy() {
    if !dnsmasq_available() {
        return;
    }
    let (mut listeners, port) = listeners_on_one_port(&["127.0.0.8", "127.0.0.9"]);
    let dns = Dnsmasq::start(&[Record::host("pool.test", "127.0.0.8"), Record::host("pool.test", "127.0.0.9")]);
    let source = Source::Dns { name: "pool.test".into(), port, nameserver: Some(dns.address()) };
    let config = DiscoveryConfig { ttl: Duration::from_secs(3600), ..Default::default() };
    let discovery = Discovery::new(source, config);
    let (first, second) = (Endpoint::new("127.0.0.8", port), Endpoint::new("127.0.0.9", port));
    assert_eq!(discovery.endpoints().await.unwrap(), vec![first.clone(), second.clone()]);

    // Calls fail, but the proxy still accepts connections: dropped, the
    // refresh that follows finds it healthy, and it is back.
    for _ in 0..3 {
        discovery.report_failure(&first);
    }
    assert_eq!(discovery.stats().drops, 1);
    assert!(discovery.stats().endpoints.is_empty(), "the cache is invalidated");
    assert_eq!(discovery.endpoints().await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(discovery.stats().refreshes, 2);

    // Now it is down for good: cached until failures drop it, then gone.
    drop(listeners.remove(0));
    discovery.report_failure(&first);
    discovery.report_failure(&first);
    assert_eq!(discovery.endpoints().await.unwrap(), vec![first.clone(), second.clone()], "still cached");
    discovery.report_failure(&first);
    assert_eq!(discovery.endpoints().await.unwrap(), vec![second.clone()]);
    assert_eq!(discovery.stats().refreshes, 3);
}

/// The local addresses of sockets listening on TCP `port`, from /proc/net/tcp and tcp6.
fn listening_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A")) = (fields.get(1), fields.get(3)) else { continue };
            let Some((address, hex_port)) = local.split_once(':') else { continue };
            if u16::from_str_radix(hex_port, 16) != Ok(port) {
                continue;
            }
            // IPv4 addresses are one little-endian word; IPv6 ones four.
            let bytes: Vec<u8> = (0..address.len() / 2)
                .map(|i| u8::from_str_radix(&address[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<_>>()
                .chunks(4)
                .flat_map(|word| word.iter().rev().copied().collect::<Vec<_>>())
                .collect();
            let ip = match bytes.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap()),
                _ => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap()),
            };
            found.push(ip.to_string());
        }
    }
    found
}

/// Waits (up to a minute) for `check` to give `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within a minute");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A long-lived process listening on 2222 in the test image (perl is in Debian's minbase).
const LISTENER: &str = "my $s = IO::Socket::INET->new(LocalPort => 2222, Listen => 5, ReuseAddr => 1) or die $!; \
                        while (my $c = $s->accept) { close $c }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_services_are_discovered_and_keys_become_secrets() {
    if !docker_available() {
        return;
    }
    let dockerd = Dockerd::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let engine = dockerd.host();
    let unique = format!("pd{}", std::process::id());
    let proxy_label = format!("service={unique}-proxy");
    let bare_label = format!("service={unique}-bare");
    let swarm = |label: &str, addresses| Source::Swarm {
        engine: engine.clone(),
        label: label.to_string(),
        port: 2222,
        addresses,
        host: None,
    };
    let discover = |source: Source| async move { Discovery::new(source, DiscoveryConfig::default()).endpoints().await };
    let keys_dir = tempfile::tempdir().unwrap();
    let request = GenerateRequest {
        service: unique.clone(),
        dir: keys_dir.path().join("keys"),
        force: false,
        docker_host: Some(engine.clone()),
    };

    // Before `swarm init`: both refuse, and no key is written.
    let error = discover(swarm(&proxy_label, SwarmAddresses::Published)).await.unwrap_err();
    assert!(matches!(error, DiscoveryError::NotSwarm { .. }), "{error}");
    assert!(error.to_string().contains("is not in Swarm mode"), "{error}");
    let error = keys::generate(&request).await.expect_err("no secrets outside Swarm mode");
    assert!(matches!(error, KeyError::NotSwarm { .. }), "{error}");
    assert!(!keys_dir.path().join("keys").exists(), "a refusal writes nothing");

    dockerd.init_swarm();
    let error = discover(swarm(&proxy_label, SwarmAddresses::Published)).await.unwrap_err();
    assert!(matches!(error, DiscoveryError::NoService { .. }), "{error}");
    assert!(error.to_string().contains(&format!("no Swarm service has the label `{proxy_label}`")), "{error}");

    // A proxy service publishing target port 2222 on a host port.
    let published = free_port();
    dockerd.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &format!("{unique}-proxy"),
        "--label",
        &proxy_label,
        "--publish",
        &format!("published={published},target=2222,mode=host"),
        IMAGE,
        "perl",
        "-MIO::Socket::INET",
        "-e",
        LISTENER,
    ]);
    let found = eventually("the proxy service is discovered and healthy", || async {
        discover(swarm(&proxy_label, SwarmAddresses::Published)).await.ok()
    })
    .await;
    assert_eq!(found, vec![Endpoint::new("127.0.0.1", published)]);
    assert_eq!(listening_on(published), vec!["127.0.0.1".to_string()], "the engine publishes on loopback only");

    // A service with the label, on an overlay network, publishing nothing.
    let network = format!("{unique}-net");
    dockerd.docker(&["network", "create", "--driver", "overlay", "--subnet", "10.213.7.0/24", &network]);
    dockerd.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &format!("{unique}-bare"),
        "--label",
        &bare_label,
        "--network",
        &network,
        IMAGE,
        "sleep",
        "infinity",
    ]);
    let error = discover(swarm(&bare_label, SwarmAddresses::Published)).await.unwrap_err();
    assert!(matches!(error, DiscoveryError::NoPublishedPort { .. }), "{error}");
    assert!(error.to_string().contains(&format!("`{unique}-bare` publishes no TCP port for target port 2222")));

    // Its running task's overlay address, as the engine's CLI reports it.
    let tasks = Discovery::new(swarm(&bare_label, SwarmAddresses::Tasks), DiscoveryConfig::default());
    let found = eventually("the bare service's task runs", || async { tasks.query_source().await.ok() }).await;
    let bare = format!("{unique}-bare");
    let task = dockerd.docker(&["service", "ps", "--filter", "desired-state=running", "-q", "--no-trunc", &bare]);
    let address = dockerd.docker(&[
        "inspect",
        "--format",
        "{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}",
        task.trim(),
    ]);
    let address = address.split_whitespace().next().expect("the task has an address").split('/').next().unwrap();
    assert!(address.starts_with("10.213.7."), "{address}");
    assert_eq!(found, vec![Endpoint::new(address, 2222)]);

    // Keys: the first run writes the pair and creates both secrets.
    let first = keys::generate(&request).await.unwrap();
    let (private_secret, public_secret) = keys::secret_names(&unique);
    assert!(!first.reused);
    assert!(first.files.private.is_file() && first.files.public.is_file());
    assert!(
        matches!(first.secrets.as_slice(), [SecretOutcome::Created { name: a, .. }, SecretOutcome::Created { name: b, .. }]
            if *a == private_secret && *b == public_secret),
        "{:?}",
        first.secrets
    );
    let label = dockerd.docker(&[
        "secret",
        "inspect",
        "--format",
        &format!("{{{{index .Spec.Labels \"{FINGERPRINT_LABEL}\"}}}}"),
        &public_secret,
    ]);
    assert_eq!(label.trim(), first.key.fingerprint());

    // The secrets hold exactly the key files' contents, as a task sees them.
    dockerd.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &format!("{unique}-reader"),
        "--restart-condition",
        "none",
        "--secret",
        &private_secret,
        "--secret",
        &public_secret,
        IMAGE,
        "sh",
        "-c",
        &format!("cat /run/secrets/{private_secret} /run/secrets/{public_secret}"),
    ]);
    let expected = format!(
        "{}{}",
        std::fs::read_to_string(&first.files.private).unwrap(),
        std::fs::read_to_string(&first.files.public).unwrap()
    );
    let logged = eventually("the reader service prints the secrets", || async {
        let output = dockerd.try_docker(&["service", "logs", "--raw", &format!("{unique}-reader")]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.contains("proximity-proxy:").then_some(text)
    })
    .await;
    assert_eq!(logged, expected);

    // A second run keeps the key and skips both secrets.
    let second = keys::generate(&request).await.unwrap();
    assert!(second.reused);
    assert_eq!(second.key.fingerprint(), first.key.fingerprint());
    for outcome in &second.secrets {
        assert!(matches!(outcome, SecretOutcome::Existing { same_key: Some(true), .. }), "{outcome:?}");
    }

    // A new key elsewhere: the secrets stay, and are reported as holding another key.
    let elsewhere = GenerateRequest { dir: keys_dir.path().join("other"), ..request.clone() };
    let third = keys::generate(&elsewhere).await.unwrap();
    assert_ne!(third.key.fingerprint(), first.key.fingerprint());
    for outcome in &third.secrets {
        assert!(matches!(outcome, SecretOutcome::Existing { same_key: Some(false), .. }), "{outcome:?}");
    }
    let listed = dockerd.docker(&["secret", "ls", "--format", "{{.Name}}"]);
    assert_eq!(listed.lines().filter(|name| name.starts_with(&unique)).count(), 2);
}

#[tokio::test]
async fn generated_keys_are_what_openssh_reads() {
    if std::process::Command::new("ssh-keygen").arg("-?").stderr(std::process::Stdio::null()).status().is_err() {
        let message = "ssh-keygen is missing: install it with `apt-get install -y openssh-client`";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message} (CI=true: this test may not be skipped)");
        eprintln!("SKIPPED: {message}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let request =
        GenerateRequest { service: "nextcloud".into(), dir: dir.path().join("keys"), force: false, docker_host: None };
    let generated = keys::generate(&request).await.unwrap();
    assert!(generated.secrets.is_empty() && !generated.reused);
    let derived = std::process::Command::new("ssh-keygen").arg("-y").arg("-f").arg(&generated.files.private).output();
    let derived = String::from_utf8(derived.unwrap().stdout).unwrap();
    let line = generated.key.public_line();
    assert_eq!(derived.trim(), line, "ssh-keygen derives the same public key (and comment) from the private one");
    assert!(line.ends_with(" proximity-proxy:nextcloud"), "{line}");
    assert_eq!(proximity_tests::sshd::fingerprint(&generated.files.public), generated.key.fingerprint());

    let again = keys::generate(&request).await.unwrap_err();
    assert!(matches!(again, KeyError::Exists { .. }), "{again}");
    let replaced = keys::generate(&GenerateRequest { force: true, ..request }).await.unwrap();
    assert_ne!(replaced.key.fingerprint(), generated.key.fingerprint());
}
