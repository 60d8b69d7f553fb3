//! The bridge, the container's address, and probes from the host.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::BackendError;
use super::process::{lock_file, tool};

const LXC_NET: &str = "/usr/libexec/lxc/lxc-net";
const POLL: Duration = Duration::from_millis(250);
const ATTEMPT: Duration = Duration::from_secs(3);

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

pub async fn wait_tcp(ip: &str, port: u16, deadline: Instant, timeout: Duration) -> Result<(), BackendError> {
    let addr = socket(ip, port)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(_)) = tokio::time::timeout(left.min(ATTEMPT), TcpStream::connect(addr)).await {
            return Ok(());
        }
        if Instant::now() + POLL >= deadline {
            return Err(BackendError::Timeout(format!(
                "{addr} did not accept a connection within {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// GET `path` until it answers (with `expect` when given); returns the status.
pub async fn wait_http(
    ip: &str,
    port: u16,
    path: &str,
    expect: Option<u16>,
    deadline: Instant,
    timeout: Duration,
) -> Result<u16, BackendError> {
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(BackendError::InvalidInput(format!("HTTP path `{path}` must start with / and hold no spaces")));
    }
    let addr = socket(ip, port)?;
    let mut last;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.min(ATTEMPT), get(addr, ip, path)).await {
            Ok(Ok((status, _))) if expect.is_none_or(|want| want == status) => return Ok(status),
            Ok(Ok((status, _))) => last = format!("answered {status}"),
            Ok(Err(err)) => last = err.to_string(),
            Err(_) => last = "no answer".into(),
        }
        if Instant::now() + POLL >= deadline {
            let want = expect.map(|s| format!(" with {s}")).unwrap_or_default();
            return Err(BackendError::Timeout(format!(
                "http://{addr}{path} did not answer{want} within {}s (last: {last})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn socket(ip: &str, port: u16) -> Result<SocketAddr, BackendError> {
    let ip: IpAddr = ip.parse().map_err(|_| BackendError::Failed(format!("`{ip}` is not an IP address")))?;
    Ok(SocketAddr::new(ip, port))
}

/// A minimal HTTP/1.0 GET: the status code and the body.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: proximity\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // Bounded: a probe never needs more than the start of a page.
    stream.take(1 << 20).read_to_end(&mut response).await?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(invalid)?;
    let status_line = response[..head_end].split(|&b| b == b'\n').next().ok_or_else(invalid)?;
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)?;
    Ok((status, response[head_end + 4..].to_vec()))
}
