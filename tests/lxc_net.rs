//! The bridges of the lxc backend.
//!
//! lxc-net recovery: on hosts without a service manager, an earlier run can
//! leave lxcbr0 and lxc-net's "running" mark behind after its dnsmasq is gone.
//! Containers then still get their old address but no DNS, and every apt
//! install fails. The backend must notice and start lxc-net anew.
//!
//! Proximity's own bridge, for hosts whose lxc-net subnet is taken.
//!
//! A separate test binary: it kills lxc-net's dnsmasq, which the tests in
//! `lxc.rs` (run in parallel with each other, never with this one) depend on.
//! The own bridge's test does not use lxc-net.

use std::path::Path;
use std::time::Duration;

use proximity::backend::lxc::{remove_own_bridge, Bridge, LxcBackend, LxcConfig};
use proximity::backend::{Backend, ExecRequest};
use proximity_tests::lxc::{argv, backend, backend_on, lxcpath, owner, spec, unique, Cleanup};

fn dnsmasq_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string("/run/lxc/dnsmasq.pid").ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq").then_some(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_dnsmasq_behind_a_stale_mark_is_restarted_and_containers_resolve_names() {
    // A working network first, then the state a killed session leaves.
    drop(backend().await);
    let old = dnsmasq_pid().expect("the backend started lxc-net's dnsmasq");
    // SAFETY: kill(2) on the dnsmasq pid just read; no memory is touched.
    assert_eq!(unsafe { libc::kill(old as i32, libc::SIGKILL) }, 0, "killing dnsmasq {old}");
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        dnsmasq_pid().is_none()
    });
    assert!(gone, "dnsmasq {old} did not die");
    assert!(Path::new("/run/lxc/network_up").exists(), "lxc-net's mark stays, as after a killed session");
    assert!(Path::new("/sys/class/net/lxcbr0").exists(), "the bridge stays too");

    let backend = backend().await;
    let new = dnsmasq_pid().expect("the backend restarted lxc-net's dnsmasq");
    assert_ne!(new, old);

    // A container on the restarted bridge resolves names through it.
    let app_id = unique("lxc-net");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let c = backend.create(&owner(&app_id), &spec("dns", 256)).await.expect("create");
    backend.start(&c).await.expect("start");
    backend.address(&c, Duration::from_secs(60)).await.expect("the container gets an address over DHCP");
    let request = ExecRequest {
        argv: argv(&["getent", "hosts", "deb.debian.org"]),
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let out = backend.exec(&c, &request).await.expect("exec");
    assert_eq!(out.status, 0, "getent failed inside the container: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty(), "getent printed an address");
}

/// Proximity's own bridge, as hosts that use lxc-net's subnet for something
/// else get it: a container on it has an address in the bridge's subnet over
/// DHCP, resolves names through the bridge's dnsmasq, reaches the outside
/// through NAT and the host on the bridge address; the bridge is found again
/// by a second backend, and taken down without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proximitys_own_bridge_serves_dhcp_dns_and_nat() {
    const NAME: &str = "prxtest0";
    let subnet: ipnet::Ipv4Net = "10.213.250.0/24".parse().unwrap();
    let gateway = "10.213.250.1";
    remove_own_bridge(NAME).await.expect("a leftover test bridge is removed");
    let own = Bridge::Own { name: NAME.into(), subnet: Some(subnet) };
    let backend = backend_on(own.clone()).await;
    assert!(Path::new("/sys/class/net").join(NAME).exists(), "the bridge was created");

    let app_id = unique("own-bridge");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let c = backend.create(&owner(&app_id), &spec("ownbr", 256)).await.expect("create");
    let config = std::fs::read_to_string(lxcpath().join(&c.id).join("config")).unwrap();
    assert!(config.contains(&format!("lxc.net.0.link = {NAME}")), "{config}");
    backend.start(&c).await.expect("start");
    let address: std::net::Ipv4Addr =
        backend.address(&c, Duration::from_secs(60)).await.expect("an address over DHCP").parse().unwrap();
    assert!(subnet.contains(&address) && address.to_string() != gateway, "{address} is a host of {subnet}");

    let host = std::net::TcpListener::bind((gateway, 0)).expect("listening on the bridge address");
    let port = host.local_addr().unwrap().port();
    let run = |script: String| {
        let backend = backend.clone();
        let c = c.clone();
        async move {
            let request = ExecRequest {
                argv: argv(&["bash", "-c", &script]),
                timeout: Duration::from_secs(40),
                ..Default::default()
            };
            let out = backend.exec(&c, &request).await.expect("exec");
            assert_eq!(out.status, 0, "`{script}` failed in the container: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    run("getent hosts deb.debian.org".into()).await;
    run("timeout 30 bash -c 'exec 3<>/dev/tcp/deb.debian.org/80'".into()).await;
    run(format!("echo over-the-bridge > /dev/tcp/{gateway}/{port}")).await;
    let (mut stream, from) = host.accept().expect("the container connected to the host");
    assert_eq!(from.ip(), std::net::IpAddr::V4(address));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut stream, &mut said).unwrap();
    assert_eq!(said.trim(), "over-the-bridge");

    // A second backend finds the same bridge; another subnet is refused.
    drop(backend_on(own).await);
    let other = Bridge::Own { name: NAME.into(), subnet: Some("10.213.251.0/24".parse().unwrap()) };
    let err = LxcBackend::new(LxcConfig { lxcpath: lxcpath(), bridge: other, ..Default::default() })
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("10.213.250.1/24"), "{err}");

    backend.destroy(&c).await.expect("destroy");
    remove_own_bridge(NAME).await.expect("the bridge is removed");
    assert!(!Path::new("/sys/class/net").join(NAME).exists(), "the link is gone");
    let nat = std::process::Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .output()
        .expect("iptables runs");
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(!nat.contains("10.213.250.0/24"), "its NAT rule is gone: {nat}");
}
