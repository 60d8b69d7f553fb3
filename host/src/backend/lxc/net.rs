//! The bridge, the container's address, and probes from the host.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::super::BackendError;
use super::process::{lock_file, tool};

const LXC_NET: &str = "/usr/libexec/lxc/lxc-net";
const POLL: Duration = Duration::from_millis(250);

/// Where lxc-net keeps its state; it survives a reboot-less restart of the
/// machine's processes, so it can claim a network that is no longer there.
const LXC_NET_RUN: &str = "/run/lxc";
const LXC_NET_LOCK: &str = "/run/lxc/proximity-lxc-net.lock";

/// Make sure `bridge` is usable. `lxcbr0` needs lxc-net's dnsmasq for DHCP and
/// DNS, and nothing restarts it on hosts without a service manager: when the
/// bridge is missing or its dnsmasq has died (lxc-net's own "already running"
/// mark stays behind), lxc-net is started anew.
pub async fn ensure_bridge(bridge: &str) -> Result<(), BackendError> {
    let bridge_exists = || Path::new("/sys/class/net").join(bridge).exists();
    if bridge != "lxcbr0" {
        return if bridge_exists() {
            Ok(())
        } else {
            Err(BackendError::NotFound(format!("bridge `{bridge}` does not exist; create it or use lxcbr0")))
        };
    }
    let run = Path::new(LXC_NET_RUN);
    if bridge_exists() && dnsmasq_alive(run) {
        return Ok(());
    }
    tokio::fs::create_dir_all(run)
        .await
        .map_err(|err| BackendError::Failed(format!("creating {LXC_NET_RUN}: {err}")))?;
    let _lock = lock_file(Path::new(LXC_NET_LOCK)).await?;
    if bridge_exists() && dnsmasq_alive(run) {
        return Ok(()); // another task or process started it meanwhile
    }
    // lxc-net refuses to start while its mark says it runs, and its stop would
    // `kill -9` whatever process now holds the stale pid: drop both files.
    for stale in ["network_up", "dnsmasq.pid"] {
        let _ = std::fs::remove_file(run.join(stale));
    }
    tracing::info!("starting lxc-net (lxcbr0 with DHCP, DNS and NAT)");
    tool(LXC_NET, ["start"], Duration::from_secs(60)).await?;
    if bridge_exists() && dnsmasq_alive(run) {
        Ok(())
    } else {
        Err(BackendError::Failed(format!("`{LXC_NET} start` ran but {bridge} or its dnsmasq is still missing")))
    }
}

/// Whether the pid in lxc-net's pid file is a running dnsmasq.
fn dnsmasq_alive(run: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(run.join("dnsmasq.pid")) else { return false };
    let Ok(pid) = pid.trim().parse::<u32>() else { return false };
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "dnsmasq")
}

/// The first IPv4 address in `lxc-info -iH` output.
pub fn first_ipv4(info: &str) -> Option<String> {
    info.lines()
        .map(str::trim)
        .filter_map(|line| line.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .map(|ip| ip.to_string())
}

pub async fn poll_address(lxcpath: &Path, name: &str, timeout: Duration) -> Result<String, BackendError> {
    let deadline = Instant::now() + timeout;
    let p = lxcpath.to_string_lossy();
    loop {
        let info = tool("lxc-info", ["-P", &p, "-n", name, "-iH"], Duration::from_secs(10)).await?;
        if let Some(ip) = first_ipv4(&info) {
            return Ok(ip);
        }
        if Instant::now() + POLL > deadline {
            return Err(BackendError::Timeout(format!(
                "container {name} got no IPv4 address within {}s (is dnsmasq of lxc-net running?)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
