//! The proxmox backend end to end, with the real parts that run here:
//!
//! - the PVE API simulator over HTTPS, which refuses every request that does
//!   not validate against the official API schema (and records it);
//! - real LXC containers behind the simulated ones (`LxcMachines`);
//! - a real OpenSSH sshd on loopback whose `pct` is `tests/support/fixtures/pct`,
//!   which does to those containers what `pct` would.
//!
//! Recipes run through the proxmox backend exactly as against a cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proximity::backend::lxc::LxcBackend;
use proximity::backend::proxmox::api::PveAuth;
use proximity::backend::proxmox::tls::PveTls;
use proximity::backend::proxmox::{labels, ProxmoxBackend, ProxmoxConfig, SshConfig};
use proximity::backend::{Backend, ContainerRef, ContainerSpec, Features, IpConfig, NetworkSpec, NoProxies, Ownership};
use proximity::runtime::{ActionResult, Runtime, RuntimeConfig};
use proximity::ssh::{HostKeyPolicy, SshAuth};
use proximity_pve_sim::{MachineFuture, Machines, NodeMemory, PveSim, SimOptions};
use proximity_tests::lxc::{backend as lxc_backend, lxcpath, unique, Cleanup};
use proximity_tests::sshd::Sshd;
use proximity_tests::{install_on, prepared, recipe, repo_root};

const TEMPLATE: &str = "debian-12-standard_12.7-1_amd64.tar.zst";

/// The simulator's containers, made real with the lxc backend.
#[derive(Clone)]
struct LxcMachines(Arc<MachineState>);

struct MachineState {
    lxc: Arc<LxcBackend>,
    /// Where the `pct` shim finds each VMID's LXC name.
    state: std::path::PathBuf,
    containers: Mutex<HashMap<u32, ContainerRef>>,
    addresses: Mutex<HashMap<u32, String>>,
}

impl MachineState {
    fn container(&self, vmid: u32) -> Result<ContainerRef, String> {
        self.containers.lock().unwrap().get(&vmid).cloned().ok_or_else(|| format!("no machine for CT {vmid}"))
    }
}

fn spec_from(config: &BTreeMap<String, String>) -> ContainerSpec {
    let number = |key: &str, default: u32| config.get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
    let features = config.get("features").cloned().unwrap_or_default();
    ContainerSpec {
        hostname: config.get("hostname").cloned().unwrap_or_else(|| "ct".into()),
        os_template: "debian-12".into(),
        cores: number("cores", 1),
        memory_mb: number("memory", 512),
        swap_mb: number("swap", 0),
        disk_gb: 4,
        features: Features {
            nesting: features.contains("nesting=1"),
            keyctl: features.contains("keyctl=1"),
            fuse: features.contains("fuse=1"),
        },
        unprivileged: config.get("unprivileged").map(String::as_str) == Some("1"),
        network: NetworkSpec { bridge: None, ip: IpConfig::Dhcp },
        tags: vec!["proximity".into()],
    }
}

impl Machines for LxcMachines {
    fn create(&self, vmid: u32, config: BTreeMap<String, String>) -> MachineFuture {
        let this = self.0.clone();
        Box::pin(async move {
            let owner = config
                .get("description")
                .and_then(|d| labels::parse(d))
                .ok_or_else(|| "the container has no Proximity labels in its description".to_string())?;
            let c = this.lxc.create(&owner, &spec_from(&config)).await.map_err(|e| e.to_string())?;
            std::fs::write(this.state.join(vmid.to_string()), &c.id).map_err(|e| e.to_string())?;
            this.containers.lock().unwrap().insert(vmid, c);
            Ok(())
        })
    }

    fn start(&self, vmid: u32) -> MachineFuture {
        let this = self.0.clone();
        Box::pin(async move {
            let c = this.container(vmid)?;
            this.lxc.start(&c).await.map_err(|e| e.to_string())?;
            let ip = this.lxc.address(&c, Duration::from_secs(60)).await.map_err(|e| e.to_string())?;
            this.addresses.lock().unwrap().insert(vmid, format!("{ip}/24"));
            Ok(())
        })
    }

    fn stop(&self, vmid: u32) -> MachineFuture {
        let this = self.0.clone();
        Box::pin(async move {
            let c = this.container(vmid)?;
            this.addresses.lock().unwrap().remove(&vmid);
            this.lxc.stop(&c).await.map_err(|e| e.to_string())
        })
    }

    fn destroy(&self, vmid: u32) -> MachineFuture {
        let this = self.0.clone();
        Box::pin(async move {
            let c = this.container(vmid)?;
            this.lxc.destroy(&c).await.map_err(|e| e.to_string())?;
            this.containers.lock().unwrap().remove(&vmid);
            let _ = std::fs::remove_file(this.state.join(vmid.to_string()));
            Ok(())
        })
    }

    fn address(&self, vmid: u32) -> Option<String> {
        self.0.addresses.lock().unwrap().get(&vmid).cloned()
    }
}

/// Simulator + real containers + sshd with the `pct` shim, and a proxmox
/// backend wired to them.
struct Cluster {
    sim: PveSim,
    config: ProxmoxConfig,
    _sshd: Sshd,
    _state: tempfile::TempDir,
    backend: Arc<ProxmoxBackend>,
}

async fn cluster(auth: Option<PveAuth>) -> Cluster {
    cluster_with(auth, |_| {}).await
}

/// [`cluster`], with the backend's configuration changed by `tweak` first.
async fn cluster_with(auth: Option<PveAuth>, tweak: impl FnOnce(&mut ProxmoxConfig)) -> Cluster {
    let state = tempfile::tempdir().unwrap();
    let machines = LxcMachines(Arc::new(MachineState {
        lxc: Arc::new(lxc_backend().await),
        state: state.path().to_path_buf(),
        containers: Mutex::default(),
        addresses: Mutex::default(),
    }));
    let sim =
        PveSim::start_with_machines(SimOptions::default(), Arc::new(machines)).await.expect("the simulator starts");
    let shim_dir = repo_root().join("tests/support/fixtures");
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", shim_dir.display());
    let sshd = Sshd::start_with_env(&[
        ("PATH", &path),
        ("PCT_SHIM_STATE", state.path().to_str().unwrap()),
        ("PCT_SHIM_LXCPATH", lxcpath().to_str().unwrap()),
    ]);
    let (token_id, secret) = SimOptions::default().token;
    let mut config = ProxmoxConfig {
        api_url: sim.base_url(),
        auth: auth.unwrap_or(PveAuth::Token { id: token_id, secret }),
        tls: PveTls::Fingerprint(sim.fingerprint_sha256()),
        node: None,
        storage: "local".into(),
        template_storage: "local".into(),
        bridge: "vmbr0".into(),
        templates: BTreeMap::from([("debian-12".to_string(), TEMPLATE.to_string())]),
        ssh: Some(SshConfig {
            user: sshd.user(),
            port: sshd.port(),
            auth: SshAuth::KeyFile(sshd.path("client_key")),
            host_key: HostKeyPolicy::Fingerprint(sshd.host_fingerprint()),
            hosts: BTreeMap::from([("pve1".into(), "127.0.0.1".into()), ("pve2".into(), "127.0.0.1".into())]),
        }),
        task_timeout: Duration::from_secs(300),
    };
    tweak(&mut config);
    let backend = Arc::new(ProxmoxBackend::new(config.clone()).expect("backend"));
    Cluster { sim, config, _sshd: sshd, _state: state, backend }
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_deploys_through_the_api_simulator_and_ssh_into_a_real_container() {
    let cluster = cluster(None).await;
    let nginx = recipe("recipes/nginx");
    let app_id = unique("pve-nginx");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&nginx, &[("greeting", "Hello through Proxmox")]);
    deploy.subject.app_id = app_id.clone();
    let run = install_on(&runtime(), &nginx, deploy, cluster.backend.clone(), Arc::new(NoProxies)).await;
    let outcome = run.outcome.unwrap_or_else(|err| panic!("nginx installs through the proxmox backend: {err}"));
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let url = app.url.clone().expect("nginx reports its URL");
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(page.contains("Hello through Proxmox"), "{page}");

    assert!(cluster.sim.rejections().is_empty(), "every request fit the schema: {:?}", cluster.sim.rejections());
    let created = cluster.sim.containers();
    let [ct] = &created[..] else { panic!("one container: {created:?}") };
    assert_eq!(ct.config.get("unprivileged").map(String::as_str), Some("1"));
    assert!(ct.config.get("tags").is_some_and(|t| t.contains("proximity")), "{:?}", ct.config);
    let owned = cluster.backend.owned().await.unwrap();
    assert_eq!(owned.iter().map(|(_, o)| o.app_id.clone()).collect::<Vec<_>>(), vec![app_id.clone()]);

    for c in &outcome.created {
        cluster.backend.destroy(c).await.expect("destroy");
    }
    assert!(cluster.sim.containers().is_empty());
    assert!(cluster.sim.rejections().is_empty(), "{:?}", cluster.sim.rejections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_task_and_a_vmid_race_are_handled() {
    let cluster = cluster(None).await;
    let app_id = unique("pve-faults");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let owner = Ownership { recipe_id: "test".into(), app_id: app_id.clone(), deployment_id: unique("dep") };
    let spec = small_spec(Features::default());

    // The VMID from nextid was taken meanwhile: the backend takes another.
    cluster.sim.faults().conflict_next_creates(2);
    let c = cluster.backend.create(&owner, &spec).await.expect("create after two conflicts");
    cluster.backend.destroy(&c).await.unwrap();

    // A create task that fails: its error and log are in the message, nothing is left.
    cluster.sim.faults().fail_next_task("vzcreate", "unable to create CT - disk full", &["extracting archive"]);
    let err = cluster.backend.create(&owner, &spec).await.expect_err("the task failed");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(cluster.sim.containers().is_empty(), "{:?}", cluster.sim.containers());

    // An API error answers with PVE's words.
    cluster.sim.faults().fail_next("POST", "^/nodes/[^/]+/lxc$", 500, "storage 'local' is not online");
    let err = cluster.backend.create(&owner, &spec).await.expect_err("500");
    assert!(err.to_string().contains("not online"), "{err}");
    assert!(cluster.sim.rejections().is_empty(), "{:?}", cluster.sim.rejections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyctl_needs_root_so_a_token_sets_it_with_pct_over_ssh() {
    let cluster = cluster(None).await;
    let app_id = unique("pve-keyctl");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let owner = Ownership { recipe_id: "test".into(), app_id, deployment_id: unique("dep") };
    let spec = small_spec(Features { nesting: true, keyctl: true, fuse: false });
    let c = cluster.backend.create(&owner, &spec).await.expect("create with keyctl");
    let sent = cluster.sim.containers();
    assert_eq!(sent[0].config.get("features").map(String::as_str), Some("nesting=1"), "only nesting via the token");
    let features = std::fs::read_to_string(cluster._state.path().join(format!("{}.features", c.id))).unwrap();
    assert_eq!(features.trim(), "nesting=1,keyctl=1", "the rest through `pct set`");
    cluster.backend.destroy(&c).await.unwrap();
    assert!(cluster.sim.rejections().is_empty(), "{:?}", cluster.sim.rejections());
}

fn small_spec(features: Features) -> ContainerSpec {
    ContainerSpec {
        hostname: "small".into(),
        os_template: "debian-12".into(),
        cores: 1,
        memory_mb: 256,
        swap_mb: 0,
        disk_gb: 2,
        features,
        unprivileged: true,
        network: NetworkSpec { bridge: None, ip: IpConfig::Dhcp },
        tags: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_ticket_login_sets_keyctl_itself_and_bad_credentials_are_named() {
    let (user, password) = SimOptions::default().password;
    let cluster = cluster(Some(PveAuth::Password { user, password })).await;
    let app_id = unique("pve-ticket");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let owner = Ownership { recipe_id: "test".into(), app_id, deployment_id: unique("dep") };
    let c = cluster
        .backend
        .create(&owner, &small_spec(Features { nesting: true, keyctl: true, fuse: false }))
        .await
        .expect("create as root@pam");
    let sent = cluster.sim.containers();
    assert_eq!(sent[0].config.get("features").map(String::as_str), Some("nesting=1,keyctl=1"));
    assert!(!cluster._state.path().join(format!("{}.features", c.id)).exists(), "no pct set needed");
    cluster.backend.destroy(&c).await.unwrap();

    // A wrong token secret: the API's refusal, said plainly.
    let wrong = ProxmoxConfig {
        auth: PveAuth::Token { id: SimOptions::default().token.0, secret: "wrong".into() },
        ..cluster.config.clone()
    };
    let err = ProxmoxBackend::new(wrong).unwrap().create(&owner, &small_spec(Features::default())).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // A pinned fingerprint that is not the server's: refused before any credential is sent.
    let pinned = ProxmoxConfig { tls: PveTls::Fingerprint("00".repeat(32)), ..cluster.config.clone() };
    let err = ProxmoxBackend::new(pinned).unwrap().create(&owner, &small_spec(Features::default())).await.unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    assert!(cluster.sim.rejections().is_empty(), "{:?}", cluster.sim.rejections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_ssh_host_key_fails_the_step_and_the_container_goes() {
    let cluster = cluster_with(None, |config| {
        if let Some(ssh) = config.ssh.as_mut() {
            ssh.host_key = HostKeyPolicy::Fingerprint("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
        }
    })
    .await;
    let nginx = recipe("recipes/nginx");
    let app_id = unique("pve-hostkey");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let mut deploy = prepared(&nginx, &[]);
    deploy.subject.app_id = app_id.clone();
    let run = install_on(&runtime(), &nginx, deploy, cluster.backend.clone(), Arc::new(NoProxies)).await;
    let err = run.outcome.expect_err("exec over SSH must be refused");
    let text = err.to_string();
    assert!(text.contains("host key") || text.contains("fingerprint"), "{text}");
    assert!(err.step.is_some(), "the error names the step: {err:?}");
    assert_eq!(err.destroyed.len(), 1, "{err:?}");
    assert!(cluster.sim.containers().is_empty(), "{:?}", cluster.sim.containers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_template_is_downloaded_and_a_command_past_its_timeout_is_killed() {
    let cluster = cluster_with(None, |config| {
        config.templates.insert("ubuntu-24.04".into(), "ubuntu-24.04-standard_24.04-2_amd64.tar.zst".into());
    })
    .await;
    let app_id = unique("pve-template");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let owner = Ownership { recipe_id: "test".into(), app_id, deployment_id: unique("dep") };
    let spec = ContainerSpec { os_template: "ubuntu-24.04".into(), ..small_spec(Features::default()) };
    let c = cluster.backend.create(&owner, &spec).await.expect("create with a template to download");
    let requests = cluster.sim.requests();
    assert!(requests.iter().any(|r| r.method == "POST" && r.path.ends_with("/aplinfo")), "downloaded through aplinfo");
    let sent = cluster.sim.containers();
    assert!(sent[0].config.get("ostemplate").is_none_or(|t| t.contains("ubuntu-24.04")), "{:?}", sent[0].config);

    cluster.backend.start(&c).await.unwrap();
    // A unique argv, to find the process on this machine afterwards.
    let argv: Vec<String> = ["sleep", "4242"].map(String::from).to_vec();
    let request = proximity::backend::ExecRequest { argv, timeout: Duration::from_secs(2), ..Default::default() };
    let err = cluster.backend.exec(&c, &request).await.expect_err("past its timeout");
    assert!(matches!(err, proximity::backend::BackendError::Timeout(_)), "{err:?}");
    let mut gone = false;
    for _ in 0..50 {
        if proximity_tests::sshd::processes_with_argv(&["sleep", "4242"]).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the command was killed inside the container");
    cluster.backend.destroy(&c).await.unwrap();
    assert!(cluster.sim.rejections().is_empty(), "{:?}", cluster.sim.rejections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_connection_lost_during_a_step_fails_the_install_and_the_container_goes() {
    let cluster = cluster(None).await;
    let nginx = recipe("recipes/nginx");
    let app_id = unique("pve-ssh-drop");
    let _cleanup = Cleanup { app_id: app_id.clone() };
    let state = cluster._state.path().to_path_buf();
    // `apt-get update` (the first command of "Installing nginx") waits in the
    // `pct` shim until the test has cut its connection.
    std::fs::write(state.join("hold"), "apt-get").unwrap();
    let mut deploy = prepared(&nginx, &[]);
    deploy.subject.app_id = app_id.clone();
    let backend = cluster.backend.clone();
    let mut run =
        tokio::spawn(async move { install_on(&runtime(), &nginx, deploy, backend, Arc::new(NoProxies)).await });

    let held = loop {
        let held = std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .find_map(|e| e.file_name().to_str()?.strip_prefix("held.")?.parse::<u32>().ok());
        if let Some(pid) = held {
            break pid;
        }
        tokio::select! {
            finished = &mut run => {
                let outcome = finished.unwrap().outcome;
                panic!("the install ended before its `apt-get update` ran: {:?}", outcome.map(|o| o.result))
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };
    // The command runs on the node: its connection goes down under it.
    let killed = cluster._sshd.kill_connection_of(held);
    assert!(!killed.is_empty());
    std::fs::remove_file(state.join("hold")).unwrap();

    let run = run.await.unwrap();
    let err = run.outcome.expect_err("the install must fail when its SSH connection is lost");
    let text = err.to_string();
    assert_eq!(err.step.as_deref(), Some("Installing nginx"), "the error names the step: {err:?}");
    assert!(text.contains("SSH to node pve1"), "{text}");
    assert!(text.contains("`apt-get update`"), "names the command: {text}");
    assert!(text.contains("the connection was lost before the command finished"), "{text}");
    assert_eq!(err.destroyed.len(), 1, "{err:?}");
    assert!(err.left_behind.is_empty(), "{err:?}");
    // Gone from the simulated cluster, and the real container behind it too.
    assert!(cluster.sim.containers().is_empty(), "{:?}", cluster.sim.containers());
    assert_eq!(proximity_tests::lxc::containers_of(&app_id), Vec::<String>::new());
    let destroyed = cluster.sim.requests().into_iter().filter(|r| r.method == "DELETE" && r.status == 200).count();
    assert_eq!(destroyed, 1);
    assert!(cluster.sim.rejections().is_empty(), "{:?}", cluster.sim.rejections());
}

/// A backend on the simulator alone (no real containers, no SSH): enough
/// for what the API decides.
fn api_only(sim: &PveSim, node: Option<&str>) -> ProxmoxBackend {
    let (id, secret) = SimOptions::default().token;
    ProxmoxBackend::new(ProxmoxConfig {
        api_url: sim.base_url(),
        auth: PveAuth::Token { id, secret },
        tls: PveTls::Fingerprint(sim.fingerprint_sha256()),
        node: node.map(str::to_string),
        storage: "local".into(),
        template_storage: "local".into(),
        bridge: "vmbr0".into(),
        templates: BTreeMap::from([("debian-12".to_string(), TEMPLATE.to_string())]),
        ssh: None,
        task_timeout: Duration::from_secs(60),
    })
    .expect("backend")
}

#[tokio::test]
async fn containers_go_to_the_node_with_the_largest_free_share_that_fits_unless_a_node_is_named() {
    let sim = PveSim::start(SimOptions {
        nodes: vec!["big".into(), "roomy".into(), "tiny".into()],
        node_memory: BTreeMap::from([
            // Most free memory in MiB, but the smallest share of it free (25%).
            ("big".to_string(), NodeMemory::mib(64 * 1024, 48 * 1024)),
            // 75% free: 6 GiB.
            ("roomy".to_string(), NodeMemory::mib(8 * 1024, 2 * 1024)),
            // 90% free, but only 900 MiB.
            ("tiny".to_string(), NodeMemory::mib(1000, 100)),
        ]),
        ..SimOptions::default()
    })
    .await
    .expect("the simulator starts");
    let owner = Ownership { recipe_id: "test".into(), app_id: unique("pve-place"), deployment_id: unique("dep") };
    let needing = |memory_mb: u32| ContainerSpec { memory_mb, ..small_spec(Features::default()) };
    let backend = api_only(&sim, None);

    // 1 GiB does not fit on tiny: roomy has the largest free share of the others.
    let c = backend.create(&owner, &needing(1024)).await.expect("create 1 GiB");
    assert_eq!(c.node.as_deref(), Some("roomy"));
    // 512 MiB fits on tiny, whose free share is the largest.
    let small = backend.create(&owner, &needing(512)).await.expect("create 512 MiB");
    assert_eq!(small.node.as_deref(), Some("tiny"));
    // More than any node has free: refused before anything is created.
    let err = backend.create(&owner, &needing(20 * 1024)).await.expect_err("20 GiB fits nowhere");
    assert!(err.to_string().contains("no online Proxmox node has 20480 MiB of memory free"), "{err}");

    // A configured node wins over the free shares.
    let explicit = api_only(&sim, Some("big")).create(&owner, &needing(1024)).await.expect("create on big");
    assert_eq!(explicit.node.as_deref(), Some("big"));

    let placed: Vec<(u32, String)> = sim.containers().into_iter().map(|ct| (ct.vmid, ct.node)).collect();
    let expected = [(&c, "roomy"), (&small, "tiny"), (&explicit, "big")]
        .map(|(c, node)| (c.id.parse::<u32>().unwrap(), node.to_string()))
        .to_vec();
    assert_eq!(placed, expected);
    let creates: Vec<String> =
        sim.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/lxc")).map(|r| r.path).collect();
    assert_eq!(creates, ["/nodes/roomy/lxc", "/nodes/tiny/lxc", "/nodes/big/lxc"]);
    assert!(sim.rejections().is_empty(), "{:?}", sim.rejections());
}
