//! `lxc` backend benchmark, with real containers: prints figures only.
//!
//! - create → running → address, for an overlay clone (privileged) and a full
//!   copy of the shifted base (unprivileged);
//! - exec round trip (`lxc-attach -- true`);
//! - full nginx deploy (create → healthy HTTP) from a warm base; target < 30 s.
//!
//! Needs root, LXC and the nginx recipe built (`cargo xtask build-recipes`).
//! Uses `target/lxc-tests` (or `PROXIMITY_LXC_TEST_PATH`), so the tests'
//! base images are reused, and destroys every container it creates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proximity::backend::lxc::{LxcBackend, LxcConfig};
use proximity::backend::{Backend, ContainerSpec, ExecRequest, Features, IpConfig, NetworkSpec, NoProxies, Ownership};
use proximity::catalog::CatalogEntry;
use proximity::deploy::{prepare, DeployInput};
use proximity::events::EventSink;
use proximity::runtime::{Runtime, RuntimeConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn spec(unprivileged: bool) -> ContainerSpec {
    ContainerSpec {
        hostname: "bench".into(),
        os_template: "debian-12".into(),
        cores: 1,
        memory_mb: 512,
        swap_mb: 0,
        disk_gb: 2,
        features: Features::default(),
        unprivileged,
        network: NetworkSpec { bridge: None, ip: IpConfig::Dhcp },
        tags: vec![],
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let lxcpath = std::env::var_os("PROXIMITY_LXC_TEST_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/lxc-tests"));
    let backend = Arc::new(LxcBackend::new(LxcConfig { lxcpath, ..Default::default() }).await.unwrap_or_else(|err| {
        eprintln!("lxc backend unavailable: {err}");
        std::process::exit(2);
    }));
    let owner = Ownership {
        recipe_id: "bench".into(),
        app_id: format!("bench-{}", std::process::id()),
        deployment_id: "bench".into(),
    };
    for unprivileged in [false, true] {
        backend.prepare_base("debian-12", unprivileged).await.expect("base image");
    }

    println!("lxc backend ({:?})", backend.cgroups());
    for (label, unprivileged) in [("privileged, overlay clone", false), ("unprivileged, full copy", true)] {
        let t0 = Instant::now();
        let c = backend.create(&owner, &spec(unprivileged)).await.expect("create");
        let created = t0.elapsed();
        backend.start(&c).await.expect("start");
        let running = t0.elapsed();
        let address = backend.address(&c, Duration::from_secs(60)).await.expect("address");
        let addressed = t0.elapsed();
        println!(
            "  {label:<26} create {}  → running {}  → address {} ({address})",
            secs(created),
            secs(running),
            secs(addressed)
        );
        if !unprivileged {
            let request =
                ExecRequest { argv: vec!["true".into()], timeout: Duration::from_secs(10), ..Default::default() };
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                backend.exec(&c, &request).await.expect("exec");
                times.push(t.elapsed());
            }
            times.sort();
            println!(
                "  exec round trip (`true`, 20 runs)  median {:.1} ms, max {:.1} ms",
                times[10].as_secs_f64() * 1e3,
                times[19].as_secs_f64() * 1e3
            );
        }
        let t = Instant::now();
        backend.destroy(&c).await.expect("destroy");
        println!("  {label:<26} destroy {}", secs(t.elapsed()));
    }

    let entry = CatalogEntry::load(&repo().join("recipes/nginx")).expect("nginx manifest");
    if !entry.component_path().is_file() {
        eprintln!("{} is not built: run `cargo xtask build-recipes`", entry.component_path().display());
        std::process::exit(2);
    }
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let recipe = runtime.load(&entry.component_path()).await.expect("nginx loads");
    let prepared = prepare(entry.manifest.clone(), DeployInput::default()).expect("parameters");
    let (events, _receiver) = EventSink::channel(prepared.redactor());
    let t = Instant::now();
    let outcome = runtime.run(&recipe, prepared.install_request(backend.clone(), Arc::new(NoProxies), events)).await;
    let took = t.elapsed();
    match &outcome {
        Ok(_) => println!("  full nginx deploy (create → healthy HTTP, unprivileged)  {}  (target < 30 s)", secs(took)),
        Err(err) => println!("  full nginx deploy failed after {}: {err}", secs(took)),
    }
    if let Ok(outcome) = outcome {
        for c in &outcome.created {
            backend.destroy(c).await.expect("destroy");
        }
    }
}
