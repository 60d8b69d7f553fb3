//! A `proximity serve` child process for the HTTP tests, and the binary's
//! other commands they need, and a loopback file server to fetch bundles
//! from. Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn proximity() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_proximity"));
    command.current_dir(repo());
    for var in ["PROXIMITY_CATALOG", "PROXIMITY_BACKEND", "PROXIMITY_CONFIG", "PROXIMITY_TOKEN", "PROXIMITY_DATA_DIR"] {
        command.env_remove(var);
    }
    command
}

/// A running `proximity serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    data: PathBuf,
    args: Vec<String>,
}

impl Server {
    pub fn start(data: &Path, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, url) = spawn(data, &args);
        Server { child, url, data: data.to_path_buf(), args }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit (bounded, so a hang fails the test instead of stalling it).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server did not stop within two minutes of SIGTERM");
    }

    pub fn restart(&mut self) {
        self.kill();
        let (child, url) = spawn(&self.data, &self.args);
        self.child = child;
        self.url = url;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn spawn(data: &Path, args: &[String]) -> (Child, String) {
    for recipe in ["nginx", "wordpress", "redis"] {
        let component = repo().join("recipes").join(recipe).join("target/recipe.wasm");
        assert!(component.is_file(), "{} is not built: run `cargo xtask build-recipes`", component.display());
    }
    let mut child = proximity()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("proximity serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("the server prints its address before anything else").unwrap();
        if let Some((scheme, rest)) = line.split_once(" on ").and_then(|(_, r)| r.split_once("://")) {
            let addr = rest.split('/').next().unwrap();
            break format!("{scheme}://{addr}");
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

pub fn create_token(data: &Path, name: &str) -> String {
    let out = proximity().args(["token", "create", "--name", name, "--data-dir"]).arg(data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("prx_"), "{token}");
    token
}

/// One file served over loopback HTTP/1.1 (a place to fetch a bundle from).
pub fn serve_file(bytes: Vec<u8>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/bundle.prox", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&bytes);
        }
    });
    url
}
