//! Probes from the Proximity host to a container's address: a TCP connect
//! or an HTTP GET, retried until a deadline. Shared by the backends whose
//! containers the host can reach (lxc on this host, proxmox on the LAN).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BackendError;

const POLL: Duration = Duration::from_millis(250);
/// One connection attempt.
const ATTEMPT: Duration = Duration::from_secs(3);

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
