//! lxc-net recovery: on hosts without a service manager, an earlier run can
//! leave lxcbr0 and lxc-net's "running" mark behind after its dnsmasq is gone.
//! Containers then still get their old address but no DNS, and every apt
//! install fails. The backend must notice and start lxc-net anew.
//!
//! A separate test binary: it kills dnsmasq, which the tests in `lxc.rs`
//! (run in parallel with each other, never with this one) depend on.

use std::path::Path;
use std::time::Duration;

use proximity::backend::{Backend, ExecRequest};
use proximity_tests::lxc::{argv, backend, owner, spec, unique, Cleanup};

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
