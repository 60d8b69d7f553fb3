//! The container's address, as DHCP gave it.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::super::BackendError;
use super::process::tool;

const POLL: Duration = Duration::from_millis(250);

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
                "container {name} got no IPv4 address within {}s (is the bridge's dnsmasq running?)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
