//! Helpers for the tests that use real LXC containers (`lxc.rs`, `lxc_net.rs`).

use std::path::PathBuf;

use proximity::backend::lxc::{config, Bridge, LxcBackend, LxcConfig, SETUP_HINT};
use proximity::backend::{Backend, ContainerRef, ContainerSpec, Features, IpConfig, NetworkSpec, Ownership};

use crate::repo_root;

/// Shared by every run so that the base image is built once and kept.
pub fn lxcpath() -> PathBuf {
    std::env::var_os("PROXIMITY_LXC_TEST_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/lxc-tests"))
}

pub async fn backend() -> LxcBackend {
    backend_on(Bridge::Auto).await
}

/// A backend whose containers join `bridge`.
pub async fn backend_on(bridge: Bridge) -> LxcBackend {
    let config = LxcConfig { lxcpath: lxcpath(), bridge, ..Default::default() };
    match LxcBackend::new(config).await {
        Ok(backend) => backend,
        Err(err) => panic!(
            "LXC is not usable on this host, so the real-container tests cannot run: {err}\nSet it up {SETUP_HINT}{}",
            if std::env::var("CI").as_deref() == Ok("true") { " (CI: .ci/run should have done this)" } else { "" }
        ),
    }
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos)
}

/// Destroys, on drop, every container in the test lxcpath labelled with this
/// app id: the containers of this test and no others.
pub struct Cleanup {
    pub app_id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in containers_of(&self.app_id) {
            let status = std::process::Command::new("lxc-destroy")
                .args(["-f", "-P"])
                .arg(lxcpath())
                .args(["-n", &name])
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("cleanup: could not destroy container {name}: {status:?}");
            }
        }
    }
}

pub fn containers_of(app_id: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(lxcpath()) else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("config"))
                .ok()
                .and_then(|text| config::labels(&text))
                .is_some_and(|owner| owner.app_id == app_id)
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether `lxc-ls` still lists the container.
pub fn listed(name: &str) -> bool {
    let out = std::process::Command::new("lxc-ls").arg("-P").arg(lxcpath()).output().expect("lxc-ls runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().any(|n| n == name)
}

pub fn spec(hostname: &str, memory_mb: u32) -> ContainerSpec {
    ContainerSpec {
        hostname: hostname.into(),
        os_template: "debian-12".into(),
        cores: 1,
        memory_mb,
        swap_mb: 0,
        disk_gb: 2,
        features: Features::default(),
        unprivileged: true,
        network: NetworkSpec { bridge: None, ip: IpConfig::Dhcp },
        tags: vec!["proximity".into()],
    }
}

pub fn owner(app_id: &str) -> Ownership {
    Ownership { recipe_id: "test".into(), app_id: app_id.into(), deployment_id: unique("dep") }
}

pub fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub async fn running(backend: &LxcBackend, app_id: &str, memory_mb: u32, unprivileged: bool) -> ContainerRef {
    let c =
        backend.create(&owner(app_id), &ContainerSpec { unprivileged, ..spec("t", memory_mb) }).await.expect("create");
    backend.start(&c).await.expect("start");
    c
}
