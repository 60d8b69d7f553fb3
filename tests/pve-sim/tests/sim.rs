//! The simulator over real HTTPS, with reqwest trusting its certificate.

use std::collections::BTreeMap;
use std::time::Duration;

use proximity_pve_sim::{validate, NodeMemory, PveSim, Schema, SimOptions, DEFAULT_SCHEMA};
use serde_json::{json, Value};

const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

enum Auth {
    None,
    Token(String),
    Ticket { ticket: String, csrf: String },
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// Send the CSRF token on non-GET ticket calls.
    csrf: bool,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn data(&self) -> &Value {
        &self.body["data"]
    }
}

impl Client {
    fn new(sim: &PveSim, auth: Auth) -> Client {
        let cert = reqwest::Certificate::from_pem(sim.cert_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder().add_root_certificate(cert).build().unwrap();
        Client { http, base: sim.base_url(), auth, csrf: true }
    }

    fn token(sim: &PveSim) -> Client {
        Client::new(sim, Auth::Token(sim.token_header()))
    }

    async fn login(sim: &PveSim) -> Client {
        let client = Client::new(sim, Auth::None);
        let answer = client.call("POST", "/access/ticket", &[("username", "root@pam"), ("password", "secret")]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let ticket = answer.data()["ticket"].as_str().unwrap().to_string();
        let csrf = answer.data()["CSRFPreventionToken"].as_str().unwrap().to_string();
        assert_eq!(answer.data()["username"], "root@pam");
        Client { auth: Auth::Ticket { ticket, csrf }, ..client }
    }

    async fn call(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        request = if matches!(method, reqwest::Method::GET | reqwest::Method::DELETE) {
            request.query(params)
        } else {
            request.form(params)
        };
        match &self.auth {
            Auth::None => {}
            Auth::Token(header) => request = request.header("Authorization", header),
            Auth::Ticket { ticket, csrf } => {
                request = request.header("Cookie", format!("PVEAuthCookie={ticket}"));
                if method != reqwest::Method::GET && self.csrf {
                    request = request.header("CSRFPreventionToken", csrf);
                }
            }
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    async fn ok(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Value {
        let answer = self.call(method, path, params).await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        answer.data().clone()
    }

    /// Poll a task until it stops; its status.
    async fn wait(&self, upid: &str) -> Value {
        let node = upid.split(':').nth(1).unwrap();
        let path = format!("/nodes/{node}/tasks/{}/status", encode(upid));
        for _ in 0..100 {
            let status = self.ok("GET", &path, &[]).await;
            if status["status"] == "stopped" {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("task {upid} never stopped");
    }

    async fn log(&self, upid: &str) -> Vec<String> {
        let node = upid.split(':').nth(1).unwrap();
        let lines = self.ok("GET", &format!("/nodes/{node}/tasks/{}/log", encode(upid)), &[]).await;
        lines.as_array().unwrap().iter().map(|l| l["t"].as_str().unwrap().to_string()).collect()
    }
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn sim() -> PveSim {
    PveSim::start(SimOptions::default()).await.unwrap()
}

fn create_params(vmid: &str) -> Vec<(&str, &str)> {
    vec![
        ("vmid", vmid),
        ("ostemplate", TEMPLATE),
        ("hostname", "app-one"),
        ("memory", "1024"),
        ("cores", "2"),
        ("rootfs", "local:8"),
        ("net0", "name=eth0,bridge=vmbr0,ip=dhcp,firewall=1"),
        ("unprivileged", "1"),
        ("features", "nesting=1"),
        ("tags", "proximity;app-one"),
        ("onboot", "1"),
    ]
}

/// create → start → interfaces → shutdown → destroy.
async fn full_flow(sim: &PveSim, client: &Client) {
    let vmid = client.ok("GET", "/cluster/nextid", &[]).await.as_str().unwrap().to_string();
    assert_eq!(vmid, "100");
    let upid = client.ok("POST", "/nodes/pve1/lxc", &create_params(&vmid)).await.as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:pve1:") && upid.contains(":vzcreate:100:"), "{upid}");
    assert_eq!(client.wait(&upid).await["exitstatus"], "OK");
    assert!(client.log(&upid).await.last().unwrap() == "TASK OK");

    let config = client.ok("GET", "/nodes/pve1/lxc/100/config", &[]).await;
    assert_eq!(config["hostname"], "app-one");
    assert_eq!(config["memory"], 1024);
    assert!(config["net0"].as_str().unwrap().contains("hwaddr=BC:24:11:"), "{config}");
    assert!(config.get("lock").is_none());
    assert_eq!(config["rootfs"], "local:100/vm-100-disk-0.raw,size=8G");

    let upid = client.ok("POST", "/nodes/pve1/lxc/100/status/start", &[]).await.as_str().unwrap().to_string();
    assert_eq!(client.wait(&upid).await["exitstatus"], "OK");
    let status = client.ok("GET", "/nodes/pve1/lxc/100/status/current", &[]).await;
    assert_eq!(status["status"], "running");
    assert_eq!(status["name"], "app-one");

    let interfaces = client.ok("GET", "/nodes/pve1/lxc/100/interfaces", &[]).await;
    let names: Vec<&str> = interfaces.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lo", "eth0"]);
    let inet = interfaces[1]["inet"].as_str().unwrap();
    assert!(inet.starts_with("10.99.") && inet.ends_with("/24"), "{inet}");

    let resources = client.ok("GET", "/cluster/resources", &[("type", "vm")]).await;
    assert_eq!(resources[0]["id"], "lxc/100");
    assert_eq!(resources[0]["status"], "running");

    // A running container cannot be destroyed.
    let answer = client.call("DELETE", "/nodes/pve1/lxc/100", &[("purge", "1")]).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body["message"].as_str().unwrap().contains("container is running"));

    let upid = client.ok("POST", "/nodes/pve1/lxc/100/status/shutdown", &[("timeout", "30")]).await;
    assert_eq!(client.wait(upid.as_str().unwrap()).await["exitstatus"], "OK");
    assert_eq!(sim.containers()[0].status, "stopped");
    let answer = client.call("GET", "/nodes/pve1/lxc/100/interfaces", &[]).await;
    assert_eq!(answer.status, 500);

    let params = [("purge", "1"), ("destroy-unreferenced-disks", "1")];
    let upid = client.ok("DELETE", "/nodes/pve1/lxc/100", &params).await.as_str().unwrap().to_string();
    assert!(upid.contains(":vzdestroy:100:"));
    assert_eq!(client.wait(&upid).await["exitstatus"], "OK");
    assert!(sim.containers().is_empty());
    let answer = client.call("GET", "/nodes/pve1/lxc/100/config", &[]).await;
    assert_eq!(answer.status, 500);

    assert_eq!(sim.rejections(), vec![], "the client sent something PVE would refuse");
}

#[tokio::test]
async fn flow_with_token() {
    let sim = sim().await;
    let client = Client::token(&sim);
    full_flow(&sim, &client).await;
    let upid = sim.requests().iter().find(|r| r.path == "/nodes/pve1/lxc").map(|r| r.status);
    assert_eq!(upid, Some(200));
}

#[tokio::test]
async fn flow_with_ticket_requires_csrf() {
    let sim = sim().await;
    let mut client = Client::login(&sim).await;
    client.csrf = false;
    let answer = client.call("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    assert_eq!(answer.status, 401);
    assert!(sim.containers().is_empty());
    // GET needs no CSRF token.
    client.ok("GET", "/nodes", &[]).await;
    client.csrf = true;
    full_flow(&sim, &client).await;
    let task_user = sim.requests().len();
    assert!(task_user > 0);
}

#[tokio::test]
async fn no_or_bad_credentials_get_401() {
    let sim = sim().await;
    let anonymous = Client::new(&sim, Auth::None);
    assert_eq!(anonymous.call("GET", "/nodes", &[]).await.status, 401);
    assert_eq!(anonymous.call("GET", "/version", &[]).await.status, 401);
    let wrong = Client::new(&sim, Auth::Token("PVEAPIToken=root@pam!proximity=wrong".into()));
    assert_eq!(wrong.call("GET", "/nodes", &[]).await.status, 401);
    let answer = anonymous.call("POST", "/access/ticket", &[("username", "root@pam"), ("password", "nope")]).await;
    assert_eq!(answer.status, 401);
    let version = Client::token(&sim).ok("GET", "/version", &[]).await;
    assert!(version["version"].is_string());
    // Realm given apart.
    let answer = anonymous
        .call("POST", "/access/ticket", &[("username", "root"), ("realm", "pam"), ("password", "secret")])
        .await;
    assert_eq!(answer.status, 200);
    assert!(sim.rejections().is_empty());
}

#[tokio::test]
async fn expired_tickets_get_401() {
    let sim = sim().await;
    let client = Client::login(&sim).await;
    client.ok("GET", "/nodes", &[]).await;
    sim.faults().advance_clock(Duration::from_secs(2 * 3600 + 1));
    assert_eq!(client.call("GET", "/nodes", &[]).await.status, 401);

    let client = Client::login(&sim).await;
    client.ok("GET", "/nodes", &[]).await;
    sim.faults().expire_tickets();
    let answer = client.call("GET", "/nodes", &[]).await;
    assert_eq!(answer.status, 401);
    // A fresh login works again; tokens never expire.
    Client::login(&sim).await.ok("GET", "/nodes", &[]).await;
    Client::token(&sim).ok("GET", "/nodes", &[]).await;
}

/// Each case: (method, path, params, expected status, the error key).
#[tokio::test]
async fn schema_rejections_are_refused_and_recorded() {
    let sim = sim().await;
    let client = Client::token(&sim);
    let with = |extra: &[(&'static str, &'static str)], without: &[&str]| {
        let mut params: Vec<(&str, &str)> =
            create_params("100").into_iter().filter(|(k, _)| !without.contains(k)).collect();
        for (k, v) in extra {
            params.retain(|(key, _)| key != k);
            params.push((k, v));
        }
        params
    };
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/nodes/pve1/lxc", with(&[("colour", "blue")], &[]), 400, "colour", "property is not defined"),
        ("POST", "/nodes/pve1/lxc", with(&[("memory", "lots")], &[]), 400, "memory", "type check ('integer') failed"),
        ("POST", "/nodes/pve1/lxc", with(&[("memory", "8")], &[]), 400, "memory", "minimum value of 16"),
        ("POST", "/nodes/pve1/lxc", with(&[("unprivileged", "true")], &[]), 400, "unprivileged", "boolean"),
        ("POST", "/nodes/pve1/lxc", with(&[("ostype", "windows")], &[]), 400, "ostype", "enumeration"),
        ("POST", "/nodes/pve1/lxc", with(&[("net0", "name=eth0,speed=10")], &[]), 400, "net0.speed", "not defined"),
        ("POST", "/nodes/pve1/lxc", with(&[("net0", "name=eth0,ip=10.0.0.300/24")], &[]), 400, "net0.ip", "ipv4"),
        ("POST", "/nodes/pve1/lxc", with(&[("net0", "name=eth0,gw=nope")], &[]), 400, "net0.gw", "IPv4"),
        ("POST", "/nodes/pve1/lxc", with(&[("net0", "bridge=vmbr0")], &[]), 400, "net0.name", "missing"),
        ("POST", "/nodes/pve1/lxc", with(&[("net32", "name=eth0")], &[]), 400, "net32", "not defined"),
        ("POST", "/nodes/pve1/lxc", with(&[("hostname", "bad_name")], &[]), 400, "hostname", "DNS name"),
        ("POST", "/nodes/pve1/lxc", with(&[], &["ostemplate"]), 400, "ostemplate", "property is missing"),
        ("POST", "/nodes/pve1/lxc", with(&[("vmid", "99")], &[]), 400, "vmid", "minimum value of 100"),
        ("POST", "/nodes/bad_node/lxc", with(&[], &[]), 400, "node", "node name"),
        ("GET", "/nodes/pve1/lxc/abc/config", vec![], 400, "vmid", "type check ('integer') failed"),
        ("GET", "/cluster/resources", vec![("type", "lxc")], 400, "type", "enumeration"),
        ("GET", "/nodes/pve1/containers", vec![], 501, "path", "not implemented"),
        ("PUT", "/nodes/pve1/lxc", vec![], 501, "path", "not implemented"),
        ("POST", "/cluster/nextid", vec![], 501, "path", "not implemented"),
    ];
    for (i, (method, path, params, status, key, text)) in cases.iter().enumerate() {
        let answer = client.call(method, path, params).await;
        assert_eq!(answer.status, *status, "{method} {path}: {}", answer.body);
        let rejections = sim.rejections();
        assert_eq!(rejections.len(), i + 1, "{method} {path} was not recorded");
        let recorded = rejections.last().unwrap();
        assert_eq!((recorded.method.as_str(), recorded.path.as_str()), (*method, *path));
        assert_eq!(recorded.status, *status);
        let message = recorded.errors.get(*key).unwrap_or_else(|| panic!("{method} {path}: {:?}", recorded.errors));
        assert!(message.contains(text), "{method} {path}: {key}: {message}");
        if *status == 400 {
            assert_eq!(answer.body["data"], Value::Null);
            assert!(answer.body["errors"][key].is_string(), "{}", answer.body);
        }
    }
    assert!(sim.containers().is_empty());
}

#[tokio::test]
async fn json_bodies_are_validated_too() {
    let sim = sim().await;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.cert_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let post = |body: Value| {
        http.post(format!("{}/nodes/pve1/lxc", sim.base_url())).header("Authorization", sim.token_header()).json(&body)
    };
    let answer =
        post(json!({ "vmid": 100, "ostemplate": TEMPLATE, "unprivileged": true, "memory": 256 })).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer = post(json!({ "vmid": 101, "ostemplate": TEMPLATE, "memory": "x" })).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(sim.rejections().len(), 1);
}

#[tokio::test]
async fn keyctl_with_a_token_is_forbidden() {
    let sim = sim().await;
    let token = Client::token(&sim);
    let mut params = create_params("100");
    params.retain(|(k, _)| *k != "features");
    params.push(("features", "nesting=1,keyctl=1"));
    let answer = token.call("POST", "/nodes/pve1/lxc", &params).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    let message = answer.body["message"].as_str().unwrap();
    assert_eq!(
        message.trim(),
        "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
    );
    assert!(sim.containers().is_empty());
    // Not a schema rejection: the request was valid.
    assert!(sim.rejections().is_empty());

    // root@pam by password may.
    let root = Client::login(&sim).await;
    let upid = root.ok("POST", "/nodes/pve1/lxc", &params).await;
    root.wait(upid.as_str().unwrap()).await;
    assert_eq!(sim.containers()[0].config["features"], "nesting=1,keyctl=1");
    // And the token may not change them afterwards either, nor add a bind mount.
    let answer = token.call("PUT", "/nodes/pve1/lxc/100/config", &[("features", "nesting=1")]).await;
    assert_eq!(answer.status, 403);
    let answer = token.call("PUT", "/nodes/pve1/lxc/100/config", &[("mp0", "/srv/data,mp=/data")]).await;
    assert_eq!(answer.status, 403);
    assert!(answer.body["message"].as_str().unwrap().contains("mount point type bind"));
    token.ok("PUT", "/nodes/pve1/lxc/100/config", &[("memory", "2048"), ("delete", "tags")]).await;
    let config = &sim.containers()[0].config;
    assert_eq!(config["memory"], "2048");
    assert!(!config.contains_key("tags"));
}

#[tokio::test]
async fn nextid_does_not_reserve_and_conflicts_can_be_injected() {
    let sim = sim().await;
    let client = Client::token(&sim);
    assert_eq!(client.ok("GET", "/cluster/nextid", &[]).await, "100");
    assert_eq!(client.ok("GET", "/cluster/nextid", &[]).await, "100");

    sim.faults().conflict_next_creates(2);
    for _ in 0..2 {
        let answer = client.call("POST", "/nodes/pve1/lxc", &create_params("100")).await;
        assert_eq!(answer.status, 500);
        assert_eq!(answer.body["message"], "CT 100 already exists on node 'pve1'\n");
    }
    let upid = client.ok("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    assert_eq!(client.ok("GET", "/cluster/nextid", &[]).await, "101");
    client.wait(upid.as_str().unwrap()).await;

    // A real conflict, from another node.
    let answer = client.call("POST", "/nodes/pve2/lxc", &create_params("100")).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body["message"], "CT 100 already exists on node 'pve1'\n");
    // nextid with a taken vmid.
    let answer = client.call("GET", "/cluster/nextid", &[("vmid", "100")]).await;
    assert_eq!(answer.status, 400);
    assert_eq!(client.ok("GET", "/cluster/nextid", &[("vmid", "105")]).await, "105");
    assert!(sim.rejections().is_empty());
}

#[tokio::test]
async fn task_failures_show_exitstatus_and_log() {
    let sim = sim().await;
    let client = Client::token(&sim);
    let faults = sim.faults();
    faults.fail_next_task(
        "vzcreate",
        "unable to create CT 100 - disk quota exceeded",
        &["extracting archive", "tar: write error"],
    );
    let upid = client.ok("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    let upid = upid.as_str().unwrap();
    let status = client.wait(upid).await;
    assert_eq!(status["exitstatus"], "unable to create CT 100 - disk quota exceeded");
    assert_eq!(status["type"], "vzcreate");
    assert_eq!(status["id"], "100");
    assert_eq!(status["node"], "pve1");
    assert_eq!(status["user"], "root@pam!proximity");
    assert_eq!(
        client.log(upid).await,
        ["extracting archive", "tar: write error", "TASK ERROR: unable to create CT 100 - disk quota exceeded"]
    );
    assert!(sim.containers().is_empty(), "a failed create leaves nothing");

    // The next create succeeds; a failed start leaves it stopped.
    let upid = client.ok("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    client.wait(upid.as_str().unwrap()).await;
    faults.fail_next_task("vzstart", "startup for container '100' failed", &[]);
    let upid = client.ok("POST", "/nodes/pve1/lxc/100/status/start", &[]).await;
    assert_eq!(client.wait(upid.as_str().unwrap()).await["exitstatus"], "startup for container '100' failed");
    assert_eq!(sim.containers()[0].status, "stopped");

    // Warnings are a success.
    faults.fail_next_task("vzstart", "WARNINGS: 1", &["WARN: old systemd"]);
    let upid = client.ok("POST", "/nodes/pve1/lxc/100/status/start", &[]).await;
    assert_eq!(client.wait(upid.as_str().unwrap()).await["exitstatus"], "WARNINGS: 1");
    assert_eq!(client.log(upid.as_str().unwrap()).await.last().unwrap(), "TASK WARNINGS: 1");
    assert_eq!(sim.containers()[0].status, "running");
}

#[tokio::test]
async fn slow_tasks_run_until_the_clock_says() {
    let sim = sim().await;
    let client = Client::token(&sim);
    sim.faults().slow_tasks(Duration::from_secs(30));
    let upid = client.ok("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    let upid = upid.as_str().unwrap();
    let path = format!("/nodes/pve1/tasks/{}/status", encode(upid));
    let status = client.ok("GET", &path, &[]).await;
    assert_eq!(status["status"], "running");
    assert!(status.get("exitstatus").is_none());
    assert!(!client.log(upid).await.iter().any(|l| l.starts_with("TASK")));
    assert_eq!(sim.containers()[0].config["lock"], "create");
    // Locked while creating.
    let answer = client.call("POST", "/nodes/pve1/lxc/100/status/start", &[]).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body["message"].as_str().unwrap().contains("locked (create)"));

    sim.faults().advance_clock(Duration::from_secs(31));
    assert_eq!(client.ok("GET", &path, &[]).await["exitstatus"], "OK");

    // Per type: only vzstart is slow now.
    sim.faults().slow_tasks(Duration::ZERO);
    sim.faults().slow_task_type("vzstart", Duration::from_secs(5));
    let upid = client.ok("POST", "/nodes/pve1/lxc/100/status/start", &[]).await;
    let path = format!("/nodes/pve1/tasks/{}/status", encode(upid.as_str().unwrap()));
    assert_eq!(client.ok("GET", &path, &[]).await["status"], "running");
    sim.faults().advance_clock(Duration::from_secs(5));
    assert_eq!(client.ok("GET", &path, &[]).await["status"], "stopped");
    assert_eq!(sim.containers()[0].status, "running");
}

#[tokio::test]
async fn injected_request_failures() {
    let sim = sim().await;
    let client = Client::token(&sim);
    sim.faults().fail_next("GET", "^/cluster/nextid$", 503, "cluster not ready");
    let answer = client.call("GET", "/cluster/nextid", &[]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body["message"], "cluster not ready\n");
    assert_eq!(client.ok("GET", "/cluster/nextid", &[]).await, "100");

    // A fault only fires on a request that passes the schema.
    sim.faults().fail_next("POST", r"^/nodes/[^/]+/lxc$", 500, "got timeout");
    let answer = client.call("POST", "/nodes/pve1/lxc", &[("vmid", "100")]).await;
    assert_eq!(answer.status, 400);
    let answer = client.call("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    assert_eq!((answer.status, answer.body["message"].as_str()), (500, Some("got timeout\n")));
    assert!(sim.containers().is_empty());
    client.ok("POST", "/nodes/pve1/lxc", &create_params("100")).await;
    assert_eq!(sim.requests().last().unwrap().status, 200);
}

#[tokio::test]
async fn templates_download_through_aplinfo() {
    let sim = sim().await;
    let client = Client::token(&sim);
    let content = client.ok("GET", "/nodes/pve1/storage/local/content", &[("content", "vztmpl")]).await;
    assert_eq!(content.as_array().unwrap().len(), 1);
    assert_eq!(content[0]["volid"], TEMPLATE);
    let available = client.ok("GET", "/nodes/pve1/aplinfo", &[]).await;
    let names: Vec<&str> = available.as_array().unwrap().iter().map(|t| t["template"].as_str().unwrap()).collect();
    assert!(names.contains(&"ubuntu-24.04-standard_24.04-2_amd64.tar.zst"));

    let ubuntu = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
    let mut params = create_params("100");
    params.retain(|(k, _)| *k != "ostemplate");
    params.push(("ostemplate", ubuntu));
    assert_eq!(client.call("POST", "/nodes/pve1/lxc", &params).await.status, 500);

    let template = [("storage", "local"), ("template", "ubuntu-24.04-standard_24.04-2_amd64.tar.zst")];
    let upid = client.ok("POST", "/nodes/pve1/aplinfo", &template).await;
    assert!(upid.as_str().unwrap().contains(":download:"));
    assert_eq!(client.wait(upid.as_str().unwrap()).await["exitstatus"], "OK");
    let content = client.ok("GET", "/nodes/pve1/storage/local/content", &[("content", "vztmpl")]).await;
    assert!(content.as_array().unwrap().iter().any(|c| c["volid"] == ubuntu));
    assert!(sim.templates("pve1").contains(&ubuntu.to_string()));
    assert!(!sim.templates("pve2").contains(&ubuntu.to_string()));
    let upid = client.ok("POST", "/nodes/pve1/lxc", &params).await;
    assert_eq!(client.wait(upid.as_str().unwrap()).await["exitstatus"], "OK");

    let answer =
        client.call("POST", "/nodes/pve1/aplinfo", &[("storage", "local"), ("template", "nope.tar.zst")]).await;
    assert_eq!(answer.status, 400);
    let answer = client.call("GET", "/nodes/pve1/storage/nfs/content", &[]).await;
    assert_eq!(answer.status, 500);
    assert!(sim.rejections().is_empty());
}

#[tokio::test]
async fn nodes_resources_and_certificate() {
    let sim = sim().await;
    let client = Client::token(&sim);
    let nodes = client.ok("GET", "/nodes", &[]).await;
    let names: Vec<&str> = nodes.as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["pve1", "pve2"]);
    for key in ["status", "maxmem", "mem", "maxcpu", "cpu"] {
        assert!(!nodes[0][key].is_null(), "{key}");
    }
    let storage = client.ok("GET", "/cluster/resources", &[("type", "storage")]).await;
    assert_eq!(storage.as_array().unwrap().len(), 2);
    assert_eq!(storage[0]["storage"], "local");
    let all = client.ok("GET", "/cluster/resources", &[]).await;
    assert_eq!(all.as_array().unwrap().len(), 4);

    let fingerprint = sim.fingerprint_sha256();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    assert!(fingerprint
        .split(':')
        .all(|h| h.len() == 2 && h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
    assert_eq!(nodes[0]["ssl_fingerprint"], fingerprint);
    assert!(sim.token_header().starts_with("PVEAPIToken=root@pam!proximity="));
    assert!(sim.base_url().starts_with("https://127.0.0.1:") && sim.base_url().ends_with("/api2/json"));
}

#[tokio::test]
async fn nodes_have_their_own_memory_and_running_containers_use_some() {
    let options = SimOptions {
        nodes: vec!["pve1".into(), "pve2".into(), "pve3".into()],
        node_memory: BTreeMap::from([
            ("pve1".to_string(), NodeMemory::mib(16 * 1024, 12 * 1024)),
            ("pve2".to_string(), NodeMemory::mib(8 * 1024, 1024)),
        ]),
        ..SimOptions::default()
    };
    let sim = PveSim::start(options).await.unwrap();
    let client = Client::token(&sim);
    let memory = |nodes: &Value, name: &str| {
        let node = nodes.as_array().unwrap().iter().find(|n| n["node"] == name).unwrap().clone();
        (node["maxmem"].as_u64().unwrap(), node["mem"].as_u64().unwrap())
    };
    let nodes = client.ok("GET", "/nodes", &[]).await;
    assert_eq!(memory(&nodes, "pve1"), (16 << 30, 12 << 30));
    assert_eq!(memory(&nodes, "pve2"), (8 << 30, 1 << 30));
    assert_eq!(memory(&nodes, "pve3"), (64 << 30, 4 << 30), "the default");
    let resources = client.ok("GET", "/cluster/resources", &[("type", "node")]).await;
    assert_eq!(memory(&resources, "pve2"), (8 << 30, 1 << 30));

    // A running container with 1024 MiB uses a quarter of it on its node.
    let params: Vec<(&str, &str)> = create_params("100").into_iter().chain([("start", "1")]).collect();
    let upid = client.ok("POST", "/nodes/pve2/lxc", &params).await;
    assert_eq!(client.wait(upid.as_str().unwrap()).await["exitstatus"], "OK");
    let nodes = client.ok("GET", "/nodes", &[]).await;
    assert_eq!(memory(&nodes, "pve2"), (8 << 30, (1 << 30) + (256 << 20)));
    assert_eq!(memory(&nodes, "pve1"), (16 << 30, 12 << 30));
    assert!(sim.rejections().is_empty(), "{:?}", sim.rejections());
}

// --- validate(), no server ---------------------------------------------------

fn schema() -> Schema {
    Schema::load(std::path::Path::new(DEFAULT_SCHEMA)).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn validate_covers_the_schema_constructs() {
    let schema = schema();
    let create = |extra: &[(&str, &str)]| {
        let mut p = params(&[("vmid", "100"), ("ostemplate", TEMPLATE)]);
        p.extend(params(extra));
        validate(&schema, "POST", "/nodes/pve1/lxc", &p)
    };
    assert_eq!(create(&[]), Ok(()));
    // booleans: 0/1 at the top, parse_boolean words inside property strings
    assert!(create(&[("start", "1")]).is_ok());
    assert!(create(&[("start", "yes")]).unwrap_err()["start"].contains("boolean"));
    assert!(create(&[("features", "nesting=true,keyctl=off")]).is_ok());
    assert!(create(&[("features", "nesting=maybe")]).unwrap_err().contains_key("features.nesting"));
    // integer limits, numbers (the schema's "minimum": "0" is a string)
    assert!(create(&[("tty", "7")]).unwrap_err()["tty"].contains("maximum value of 6"));
    assert!(create(&[("cpulimit", "1.5")]).is_ok());
    assert!(create(&[("cpulimit", "1,5")]).is_err());
    assert!(create(&[("bwlimit", "-1")]).unwrap_err()["bwlimit"].contains("minimum"));
    // strings: maxLength, minLength, pattern
    assert!(create(&[("password", "abc")]).unwrap_err()["password"].contains("at least 5"));
    assert!(create(&[("description", &"x".repeat(8193))]).is_err());
    assert!(create(&[("net0", "name=eth 0")]).unwrap_err().contains_key("net0.name"));
    // property strings: default key, required keys, duplicates, [n] keys
    assert!(create(&[("rootfs", "local:8,size=8G")]).is_ok());
    assert!(create(&[("mp0", "local:8,mp=/data")]).is_ok());
    assert!(create(&[("mp0", "local:8")]).unwrap_err().contains_key("mp0.mp"));
    assert!(create(&[("mp0", "local:8,mp=/../etc")]).is_err());
    assert!(create(&[("net0", "name=eth0,name=eth1")]).unwrap_err()["net0"].contains("duplicate"));
    assert!(create(&[("net0", "eth0")]).unwrap_err()["net0"].contains("default key"));
    assert!(create(&[("net31", "name=eth31"), ("mp255", "local:1,mp=/x"), ("unused3", "local:100/x.raw")]).is_ok());
    assert!(create(&[("net07", "name=eth0")]).is_err());
    assert!(create(&[("net0", "name=eth0,ip=192.168.1.5/24,gw=192.168.1.1,hwaddr=BC:24:11:00:00:01")]).is_ok());
    assert!(create(&[("net0", "name=eth0,hwaddr=01:00:00:00:00:01")]).is_err(), "multicast MAC");
    assert!(create(&[("net0", "name=eth0,ip6=auto,tag=4095")]).unwrap_err().contains_key("net0.tag"));
    // named formats
    assert!(create(&[("nameserver", "1.1.1.1 2606:4700::1111")]).is_ok());
    assert!(create(&[("nameserver", "1.1.1.1 dns.example")]).is_err());
    assert!(create(&[("searchdomain", "example.com")]).is_ok());
    assert!(create(&[("tags", "a;b c")]).is_ok());
    assert!(create(&[("tags", "a;b$")]).is_err());
    assert!(create(&[("storage", "1local")]).is_err());
    assert!(create(&[("hookscript", "local:snippets/hook.sh")]).is_ok());
    assert!(create(&[("hookscript", "/root/hook.sh")]).is_err());
    // requires
    assert!(create(&[("unique", "1")]).unwrap_err()["restore"].contains("requires"));
    assert!(create(&[("unique", "1"), ("restore", "1")]).is_ok());
    // path variables
    assert!(validate(&schema, "GET", "/nodes/pve1/lxc/100/config", &params(&[])).is_ok());
    assert!(validate(&schema, "GET", "/nodes/pve1/lxc/99/config", &params(&[])).unwrap_err().contains_key("vmid"));
    assert!(validate(&schema, "GET", "/nodes/pve1/lxc/nope", &params(&[])).unwrap_err()["vmid"].contains("integer"));
    assert!(validate(&schema, "GET", "/nodes/pve1/lxc/100/nope", &params(&[])).unwrap_err().contains_key("path"));
    assert!(validate(&schema, "PATCH", "/nodes/pve1/lxc", &params(&[])).unwrap_err().contains_key("method"));
    // PUT config: delete takes a list of config ids
    let put = |p: &[(&str, &str)]| validate(&schema, "PUT", "/nodes/pve1/lxc/100/config", &params(p));
    assert!(put(&[("delete", "net1,mp0")]).is_ok());
    assert!(put(&[("delete", "net1,0bad")]).is_err());
    assert!(put(&[("ostemplate", TEMPLATE)]).is_err(), "not a config key");
    // tasks: the UPID is a plain string
    let upid = "UPID:pve1:00001234:00ABCDEF:65000000:vzcreate:100:root@pam!proximity:";
    assert!(validate(&schema, "GET", &format!("/nodes/pve1/tasks/{upid}/status"), &params(&[])).is_ok());
    assert!(validate(&schema, "GET", "/cluster/resources", &params(&[("type", "vm")])).is_ok());
    assert!(validate(&schema, "GET", "/version", &params(&[("x", "1")])).is_err());
}
