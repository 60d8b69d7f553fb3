//! `proximity serve` over real HTTP on loopback, with a real SQLite file:
//! each test starts the server binary as a child process with its own data
//! directory and talks to it as any client would.

mod common;

use std::path::Path;
use std::time::Duration;

use proximity::api;
use serde_json::{json, Value};

use common::{create_token, proximity, repo, Server};

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

/// The events of an SSE body, in order.
fn parse_sse(body: &str) -> Vec<api::JobEvent> {
    proximity::cli::client::job_events_from_sse(body.as_bytes()).expect("every event is a JobEvent")
}

/// Open a job's event stream and read it until `marker` has been seen: the
/// open response (to read on) and what was read so far.
async fn follow_until(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    job: &str,
    marker: &str,
) -> (reqwest::Response, String) {
    let mut response =
        http.get(server.api(&format!("/deployments/{job}/events"))).bearer_auth(token).send().await.unwrap();
    let mut seen = String::new();
    while !seen.contains(marker) {
        let chunk = response.chunk().await.unwrap().unwrap_or_else(|| panic!("the stream ended before {marker}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    (response, seen)
}

/// GET `path` with the token and decode the JSON answer.
async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, server: &Server, token: &str, path: &str) -> T {
    let response = http.get(server.api(path)).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "GET {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {path}: {err}: {text}"))
}

async fn events(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    job: &str,
    after: Option<u64>,
) -> Vec<api::JobEvent> {
    let mut request = http.get(server.api(&format!("/deployments/{job}/events"))).bearer_auth(token);
    if let Some(after) = after {
        request = request.header("Last-Event-ID", after.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    parse_sse(&response.text().await.unwrap())
}

async fn deploy(http: &reqwest::Client, server: &Server, token: &str, body: Value) -> api::JobAccepted {
    let response = http.post(server.api("/deployments")).bearer_auth(token).json(&body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn final_job(events: &[api::JobEvent]) -> api::Job {
    let last = events.last().expect("events");
    assert_eq!(last.kind, "end", "the stream ends with `end`: {events:?}");
    *last.job.clone().expect("`end` holds the job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_streams_its_events_in_order_replays_them_late_and_keeps_secrets_out() {
    let data = tempfile::tempdir().unwrap();
    let token = create_token(data.path(), "ops");
    let server = Server::start(data.path(), &["--catalog", "recipes", "--backend", "sim"]);
    let http = client();

    let health: api::Health = http.get(server.api("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!((health.status.as_str(), health.backend.as_str()), ("ok", "sim"));
    let catalog: api::CatalogList = http.get(server.api("/catalog")).send().await.unwrap().json().await.unwrap();
    assert!(catalog.recipes.iter().any(|r| r.id == "redis" && r.digest.len() == 64), "{catalog:?}");

    let accepted = deploy(&http, &server, &token, json!({"recipe": "redis", "app_id": "cache"})).await;
    assert_eq!(accepted.app_id, "cache");
    let live = events(&http, &server, &token, &accepted.id, None).await;
    let seqs: Vec<u64> = live.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=live.len() as u64).collect::<Vec<_>>(), "numbered 1, 2, 3 ... with no gap");
    assert!(live.iter().any(|e| e.kind == "step"), "steps are streamed: {live:?}");
    let job = final_job(&live);
    assert_eq!(job.state, api::JobState::Succeeded, "{job:?}");

    // A late reader gets the same events; a resuming one, the rest.
    let late = events(&http, &server, &token, &accepted.id, None).await;
    assert_eq!(serde_json::to_value(&late).unwrap(), serde_json::to_value(&live).unwrap());
    let resumed = events(&http, &server, &token, &accepted.id, Some(2)).await;
    assert_eq!(resumed.first().map(|e| e.seq), Some(3));

    let app: api::App = get(&http, &server, &token, "/apps/cache").await;
    assert_eq!((app.recipe.as_str(), app.state), ("redis", api::AppState::Running));
    assert!(!app.secrets.is_empty(), "redis has a generated password: {app:?}");
    let secrets: api::AppSecrets = get(&http, &server, &token, "/apps/cache/secrets").await;
    let password = secrets.secrets.values().next().expect("the secret is retrievable").clone();
    assert!(password.len() >= 16);
    let everything = serde_json::to_string(&live).unwrap() + &serde_json::to_string(&app).unwrap();
    assert!(!everything.contains(&password), "the secret never appears in events or app views");
    let db = std::fs::read(data.path().join("proximity.db")).unwrap();
    let wal = std::fs::read(data.path().join("proximity.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "stored encrypted");
    }

    // A dry run records a plan and creates nothing; its file texts keep secrets hidden.
    let dry = deploy(&http, &server, &token, json!({"recipe": "wordpress", "dry_run": true})).await;
    let job = final_job(&events(&http, &server, &token, &dry.id, None).await);
    assert_eq!(job.state, api::JobState::Succeeded, "{job:?}");
    let plan = job.result.as_ref().and_then(|r| r["plan"].as_array().cloned()).expect("the plan");
    let compose = plan.iter().find(|s| s["op"] == "write-file").and_then(|s| s["text"].as_str()).unwrap();
    assert!(compose.contains("«secret:db-password»"), "{compose}");
    let dry_app = http.get(server.api(&format!("/apps/{}", dry.app_id))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(dry_app.status(), 404, "a dry run makes no app");

    // Upgrade in place (same version here), then its logs and health.
    let upgrade = http.post(server.api("/apps/cache/upgrade")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(upgrade.status(), 202);
    let upgrade: api::JobAccepted = upgrade.json().await.unwrap();
    let job = final_job(&events(&http, &server, &token, &upgrade.id, None).await);
    assert_eq!((job.kind, job.state), (api::JobKind::Upgrade, api::JobState::Succeeded), "{job:?}");
    let app: api::App = get(&http, &server, &token, "/apps/cache").await;
    assert_eq!((app.deployment_id.as_str(), app.state), (upgrade.id.as_str(), api::AppState::Running));
    let logs: api::AppLogs = get(&http, &server, &token, "/apps/cache/logs").await;
    assert!(!logs.lines.is_empty(), "{logs:?}");
    assert_eq!(logs.health.as_ref().map(|h| h["healthy"].clone()), Some(json!(true)), "{logs:?}");

    // Stop, start, then uninstall through the API.
    let stopped = http.post(server.api("/apps/cache/stop")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(stopped.json::<api::App>().await.unwrap().state, api::AppState::Stopped);
    let started = http.post(server.api("/apps/cache/start")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(started.json::<api::App>().await.unwrap().state, api::AppState::Running);
    let removal = http.delete(server.api("/apps/cache")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(removal.status(), 202);
    let removal: api::JobAccepted = removal.json().await.unwrap();
    let job = final_job(&events(&http, &server, &token, &removal.id, None).await);
    assert_eq!(job.state, api::JobState::Succeeded, "{job:?}");
    let gone = http.get(server.api("/apps/cache")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

async fn error_of(response: reqwest::Response) -> (u16, api::ErrorDetail) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: api::ErrorBody = serde_json::from_str(&text).unwrap_or_else(|_| panic!("one error shape: {text}"));
    (status, body.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_the_one_error_shape() {
    let data = tempfile::tempdir().unwrap();
    let token = create_token(data.path(), "ops");
    let doomed = create_token(data.path(), "doomed");
    let server = Server::start(data.path(), &["--catalog", "recipes", "--backend", "sim"]);
    let http = client();
    let post = |body: String| {
        http.post(server.api("/deployments"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, error) = error_of(post(json!({"recipe": "no-such-app"}).to_string()).await.unwrap()).await;
    assert_eq!((status, error.code.as_str()), (404, "not-found"), "{error:?}");

    let bad = json!({"recipe": "nginx", "params": {"port": "eighty", "greeting": ["a"]}, "resources": {"cores": 999}});
    let (status, error) = error_of(post(bad.to_string()).await.unwrap()).await;
    assert_eq!(status, 422, "{error:?}");
    let fields: Vec<&str> = error.details.iter().map(|d| d.field.as_str()).collect();
    assert!(fields.contains(&"greeting"), "every bad field is listed: {error:?}");

    let (status, error) = error_of(post("{not json".into()).await.unwrap()).await;
    assert_eq!(status, 400, "{error:?}");
    let (status, _) = error_of(post(json!({"recipe": "nginx", "surprise": 1}).to_string()).await.unwrap()).await;
    assert_eq!(status, 422, "unknown fields are refused");
    let huge = json!({"recipe": "nginx", "params": {"greeting": "x".repeat(2 << 20)}}).to_string();
    let response = post(huge).await.unwrap();
    let closing = response.headers().get("connection").is_some_and(|v| v == "close");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 413, "{error:?}");
    assert!(closing, "a 413 tells keep-alive clients that its connection closes");

    let (status, error) = error_of(http.get(server.api("/apps")).send().await.unwrap()).await;
    assert_eq!((status, error.code.as_str()), (401, "unauthorized"));
    let (status, _) = error_of(http.get(server.api("/apps")).bearer_auth("prx_wrong").send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(http.get(server.api("/apps")).bearer_auth(&doomed).send().await.unwrap().status(), 200);
    let out = proximity().args(["token", "revoke", "doomed", "--data-dir"]).arg(data.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _) = error_of(http.get(server.api("/apps")).bearer_auth(&doomed).send().await.unwrap()).await;
    assert_eq!(status, 401, "a revoked token stops working at once");

    let (status, _) = error_of(http.get(server.api("/apps/nobody")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) =
        error_of(http.get(server.api("/deployments/dep-none")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let doc: Value = http.get(server.api("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(
        doc["paths"]["/api/v1/deployments"]["post"].is_object() || doc["paths"]["/deployments"]["post"].is_object()
    );
}

/// A copy of the nginx recipe whose package install takes a minute on the simulator.
fn slow_catalog() -> tempfile::TempDir {
    let catalog = tempfile::tempdir().unwrap();
    let dir = catalog.path().join("nginx");
    std::fs::create_dir_all(dir.join("target")).unwrap();
    for file in ["recipe.toml", "icon.svg"] {
        std::fs::copy(repo().join("recipes/nginx").join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("sim.toml"), "[[exec]]\nprefix = [\"apt-get\", \"install\"]\ndelay-ms = 60000\n").unwrap();
    std::fs::copy(repo().join("recipes/nginx/target/recipe.wasm"), dir.join("target/recipe.wasm")).unwrap();
    catalog
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_the_recipe_and_destroys_what_it_made() {
    let data = tempfile::tempdir().unwrap();
    let catalog = slow_catalog();
    let token = create_token(data.path(), "ops");
    let server = Server::start(data.path(), &["--backend", "sim", "--catalog", catalog.path().to_str().unwrap()]);
    let http = client();
    let accepted = deploy(&http, &server, &token, json!({"recipe": "nginx", "app_id": "slow"})).await;

    // Wait until the recipe is inside the slow step, then cancel.
    let (mut response, mut seen) = follow_until(&http, &server, &token, &accepted.id, "Installing").await;
    let cancel = http.delete(server.api(&format!("/deployments/{}", accepted.id))).bearer_auth(&token).send().await;
    assert_eq!(cancel.unwrap().status(), 202);
    while let Some(chunk) = response.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let job = final_job(&parse_sse(&seen));
    assert_eq!(job.state, api::JobState::Cancelled, "{job:?}");
    let destroyed = job.error.as_ref().and_then(|e| e["destroyed"].as_array().cloned()).unwrap_or_default();
    assert_eq!(destroyed.len(), 1, "the container it created is destroyed: {job:?}");
    let apps: api::AppList = get(&http, &server, &token, "/apps").await;
    assert!(apps.apps.is_empty(), "{apps:?}");
    let again = http.delete(server.api(&format!("/deployments/{}", accepted.id))).bearer_auth(&token).send().await;
    assert_eq!(again.unwrap().status(), 409, "a finished job cannot be cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_simultaneous_deploys_each_finish_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let token = create_token(data.path(), "ops");
    let server = Server::start(
        data.path(),
        &["--catalog", "recipes", "--backend", "sim", "--concurrency", "16", "--per-node", "16"],
    );
    let http = client();
    let submits = (0..100).map(|i| {
        let (http, server, token) = (&http, &server, &token);
        async move { deploy(http, server, token, json!({"recipe": "nginx", "app_id": format!("web-{i}")})).await }
    });
    let accepted = futures_util::future::join_all(submits).await;
    let follows = accepted.iter().map(|a| {
        let (http, server, token) = (&http, &server, &token);
        async move { events(http, server, token, &a.id, None).await }
    });
    for (a, events) in accepted.iter().zip(futures_util::future::join_all(follows).await) {
        assert_eq!(events.iter().filter(|e| e.kind == "end").count(), 1, "{}", a.id);
        assert_eq!(final_job(&events).state, api::JobState::Succeeded, "{}", a.id);
    }
    let apps: api::AppList = get(&http, &server, &token, "/apps").await;
    let mut ids: Vec<String> = apps.apps.into_iter().map(|a| a.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    let metrics = http.get(server.api("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("proximity_jobs_total{kind=\"install\",result=\"succeeded\"} 100"), "{metrics}");
    assert!(metrics.contains("proximity_capability_calls_total{capability=\"create-lxc\",outcome=\"ok\"} 100"));
    assert!(metrics.contains("proximity_jobs_running 0"), "{metrics}");
}

/// Proximity's containers in an lxcpath that belong to `job`.
fn containers_of_job(lxcpath: &Path, job: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(lxcpath) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("config"))
                .ok()
                .and_then(|text| proximity::backend::lxc::config::labels(&text))
                .is_some_and(|owner| owner.deployment_id == job)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Real containers: kill -9 the server mid-install, start it again, and the
/// job is marked interrupted and its container destroyed; then a full deploy
/// and uninstall through the API on the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_mid_install_on_lxc_the_restarted_server_cleans_up() {
    let lxcpath = repo().join("target/lxc-tests");
    let data = tempfile::tempdir().unwrap();
    let token = create_token(data.path(), "ops");
    let mut server = Server::start(
        data.path(),
        &["--catalog", "recipes", "--backend", "lxc", "--lxc-path", lxcpath.to_str().unwrap()],
    );
    let http = client();
    let accepted = deploy(&http, &server, &token, json!({"recipe": "nginx", "app_id": "crash-me"})).await;
    let (response, seen) = follow_until(&http, &server, &token, &accepted.id, "Installing").await;
    drop(response);
    let before = parse_sse(&seen).len();
    assert_eq!(containers_of_job(&lxcpath, &accepted.id).len(), 1, "the install made its container");

    server.restart();
    assert!(containers_of_job(&lxcpath, &accepted.id).is_empty(), "the restarted server destroyed it");
    let job: api::Job = get(&http, &server, &token, &format!("/deployments/{}", accepted.id)).await;
    assert_eq!(job.state, api::JobState::Interrupted, "{job:?}");
    let after = events(&http, &server, &token, &accepted.id, None).await;
    assert!(after.len() > before, "no event lost, recovery notes added: {after:?}");
    assert!(after.iter().any(|e| e.message.as_deref().is_some_and(|m| m.contains("destroyed container"))));

    // The same server then deploys for real and removes the app again.
    let accepted =
        deploy(&http, &server, &token, json!({"recipe": "nginx", "params": {"greeting": "via the API"}})).await;
    let job = final_job(&events(&http, &server, &token, &accepted.id, None).await);
    assert_eq!(job.state, api::JobState::Succeeded, "{job:?}");
    let app: api::App = get(&http, &server, &token, &format!("/apps/{}", accepted.app_id)).await;
    let url = app.url.clone().expect("nginx reports its URL");
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(page.contains("via the API"), "{page}");
    let removal: api::JobAccepted = http
        .delete(server.api(&format!("/apps/{}", accepted.app_id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = final_job(&events(&http, &server, &token, &removal.id, None).await);
    assert_eq!(job.state, api::JobState::Succeeded, "{job:?}");
    assert!(!lxcpath.join(&app.containers[0]).exists(), "uninstall destroyed the container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_and_key_the_server_speaks_https_only() {
    let data = tempfile::tempdir().unwrap();
    let token = create_token(data.path(), "ops");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (data.path().join("cert.pem"), data.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let server = Server::start(
        data.path(),
        &["--backend", "sim", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let apps = trusting.get(server.api("/apps")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(apps.status(), 200);
    // A client that does not trust the certificate is refused, and plain HTTP gets no answer.
    assert!(client().get(server.api("/healthz")).send().await.is_err(), "untrusted certificate accepted");
    let plain = server.api("/healthz").replacen("https://", "http://", 1);
    assert!(!client().get(plain).send().await.map(|r| r.status().is_success()).unwrap_or(false));

    // Half a TLS configuration is an error, said before anything else happens.
    let out = proximity()
        .args(["serve", "--backend", "sim", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both tls_cert and tls_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_gives_running_jobs_their_grace_then_cancels_and_cleans_up() {
    let data = tempfile::tempdir().unwrap();
    let catalog = slow_catalog();
    // Settings from a TOML file: the simulator, and one second of grace.
    let config = data.path().join("proximity.toml");
    let toml = format!("backend = \"sim\"\nshutdown_grace_secs = 1\ncatalog = {:?}\n", catalog.path());
    std::fs::write(&config, toml).unwrap();
    let token = create_token(data.path(), "ops");
    let mut server = Server::start(data.path(), &["--config", config.to_str().unwrap()]);
    let http = client();
    let health: api::Health = http.get(server.api("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health.backend, "sim", "the file's backend is used");
    let accepted = deploy(&http, &server, &token, json!({"recipe": "nginx", "app_id": "slow"})).await;
    let (mut response, mut seen) = follow_until(&http, &server, &token, &accepted.id, "Installing").await;
    let status = server.terminate();
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}");
    // The open event stream saw the end of the job before the server went.
    while let Ok(Some(chunk)) = response.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let job = final_job(&parse_sse(&seen));
    assert_eq!(job.state, api::JobState::Cancelled, "{job:?}");

    server.restart();
    let job: api::Job = get(&http, &server, &token, &format!("/deployments/{}", accepted.id)).await;
    assert_eq!(job.state, api::JobState::Cancelled, "recorded before exit, so not `interrupted`: {job:?}");
    let destroyed = job.error.as_ref().and_then(|e| e["destroyed"].as_array().cloned()).unwrap_or_default();
    assert_eq!(destroyed.len(), 1, "{job:?}");
}
