//! A private DNS server for tests: Debian's `dnsmasq` on a free loopback
//! port, answering only the records a test gives it (no upstream, no
//! /etc/hosts), killed on drop. A missing dnsmasq fails the test under
//! `CI=true` and skips it elsewhere, saying so.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const INSTALL: &str = "apt-get install -y dnsmasq-base";

/// One record dnsmasq serves.
pub enum Record {
    /// A or AAAA, by the address's family.
    Host { name: String, address: std::net::IpAddr },
    /// `_service._tcp.domain` pointing at `target:port`.
    Srv { name: String, target: String, port: u16, priority: u16, weight: u16 },
}

impl Record {
    pub fn host(name: &str, address: &str) -> Record {
        Record::Host { name: name.into(), address: address.parse().expect("an IP address") }
    }

    pub fn srv(name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Record {
        Record::Srv { name: name.into(), target: target.into(), port, priority, weight }
    }

    fn argument(&self) -> String {
        match self {
            Record::Host { name, address } => format!("--host-record={name},{address}"),
            Record::Srv { name, target, port, priority, weight } => {
                format!("--srv-host={name},{target},{port},{priority},{weight}")
            }
        }
    }
}

/// Whether the test can run: `false` (after printing why) when dnsmasq is
/// missing outside CI; a panic when it is missing in CI.
pub fn dnsmasq_available() -> bool {
    if Path::new(DNSMASQ).exists() {
        return true;
    }
    let message = format!("{DNSMASQ} is missing: install it with `{INSTALL}`");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message} (CI=true: this test may not be skipped)");
    eprintln!("SKIPPED: {message}");
    false
}

pub struct Dnsmasq {
    address: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    pub fn start(records: &[Record]) -> Dnsmasq {
        let dir = tempfile::Builder::new().prefix("proximity-dnsmasq-").tempdir().unwrap();
        let port = free_udp_and_tcp_port();
        let log = dir.path().join("dnsmasq.log");
        let child = Command::new(DNSMASQ)
            .arg("--no-daemon")
            .arg(format!("--port={port}"))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
            .arg("--conf-file=/dev/null")
            .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()))
            // Unknown names get NXDOMAIN from here, never a forward elsewhere.
            .arg("--local=/test/")
            .args(records.iter().map(Record::argument))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DNSMASQ}: {e}"));
        let mut server = Dnsmasq { address: SocketAddr::from(([127, 0, 0, 1], port)), child, _dir: dir };
        server.wait_until_listening(&log);
        server
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Ready once it answers a query (any answer will do).
    fn wait_until_listening(&mut self, log: &Path) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answer = [0u8; 512];
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dnsmasq exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            let _ = socket.send_to(&probe_query(), self.address);
            if socket.recv_from(&mut answer).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "dnsmasq did not answer on {} within 10 s", self.address);
        }
    }
}

/// A DNS query for `ready.test` A: header (id, recursion desired, one
/// question), the name as labels, type A, class IN.
fn probe_query() -> Vec<u8> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}
