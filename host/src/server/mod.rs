//! The HTTP API (`proximity serve`): every route under [`api::PREFIX`],
//! speaking the JSON of [`crate::api`], in front of the job manager.
//!
//! - [`router`]: the routes, their errors, and a request log.
//! - [`serve`]: runs it on a listener until a shutdown signal, then stops the jobs.
//! - [`auth`]: bearer tokens ([`Authorized`]).
//! - [`error`]: [`ApiError`], and extractors whose rejections are one.
//!
//! - [`web`]: the web page at `/` and `/ui/…`, embedded in the binary.
//!
//! `openapi.json` (served at `GET /api/v1/openapi.json`) documents all of it.

pub mod auth;
pub mod error;
mod publish;
mod routes;
mod sse;
mod web;

use axum_server::tls_rustls::RustlsConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Extension, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use auth::Authorized;
pub use error::{ApiError, ApiJson, ApiJsonOrDefault, ApiPath, BODY_LIMIT};

use crate::api;
use crate::jobs::Jobs;

/// What every handler gets.
#[derive(Clone)]
pub struct ServerState {
    pub jobs: Jobs,
    /// Installs bundles into the served catalog (`POST /recipes`); `None`
    /// when the catalog is a directory of recipe sources.
    pub installer: Option<Arc<crate::bundle::RecipeInstaller>>,
    /// Whether `POST /recipes?allow_untrusted=` is honoured. Off by default:
    /// a token alone should not be enough to run code no trusted key signed.
    pub api_allow_untrusted: bool,
}

/// Every route, as (method, path below [`api::PREFIX`]). The router is built
/// from this list, and a test holds `openapi.json` to it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/catalog"),
    ("GET", "/recipes/{id}"),
    ("GET", "/recipes/{id}/icon"),
    ("POST", "/recipes"),
    ("GET", "/bundles"),
    ("POST", "/deployments"),
    ("GET", "/deployments/{id}"),
    ("DELETE", "/deployments/{id}"),
    ("GET", "/deployments/{id}/events"),
    ("GET", "/apps"),
    ("GET", "/apps/{id}"),
    ("DELETE", "/apps/{id}"),
    ("POST", "/apps/{id}/start"),
    ("POST", "/apps/{id}/stop"),
    ("POST", "/apps/{id}/restart"),
    ("GET", "/apps/{id}/logs"),
    ("GET", "/apps/{id}/secrets"),
    ("POST", "/apps/{id}/upgrade"),
    ("GET", "/proxy/stats"),
];

/// The handler of one entry of [`ROUTES`].
fn endpoint(method: &str, path: &str) -> MethodRouter<ServerState> {
    match (method, path) {
        ("GET", "/healthz") => get(routes::healthz),
        ("GET", "/metrics") => get(routes::metrics),
        ("GET", "/openapi.json") => get(routes::openapi),
        ("GET", "/catalog") => get(routes::catalog),
        ("GET", "/recipes/{id}") => get(routes::recipe),
        ("GET", "/recipes/{id}/icon") => get(routes::recipe_icon),
        ("GET", "/bundles") => get(publish::list),
        // A bundle is far larger than any JSON request.
        ("POST", "/recipes") => post(publish::install)
            .layer(DefaultBodyLimit::max(crate::bundle::ReadLimits::default().max_bundle_bytes as usize)),
        ("POST", "/deployments") => post(routes::deploy),
        ("GET", "/deployments/{id}") => get(routes::job),
        ("DELETE", "/deployments/{id}") => delete(routes::cancel),
        ("GET", "/deployments/{id}/events") => get(routes::events),
        ("GET", "/apps") => get(routes::apps),
        ("GET", "/apps/{id}") => get(routes::app),
        ("DELETE", "/apps/{id}") => delete(routes::uninstall),
        ("POST", "/apps/{id}/start") => post(routes::start),
        ("POST", "/apps/{id}/stop") => post(routes::stop),
        ("POST", "/apps/{id}/restart") => post(routes::restart),
        ("GET", "/apps/{id}/logs") => get(routes::logs),
        ("GET", "/apps/{id}/secrets") => get(routes::secrets),
        ("POST", "/apps/{id}/upgrade") => post(routes::upgrade),
        ("GET", "/proxy/stats") => get(routes::proxy_stats),
        _ => unreachable!("no handler for {method} {path}"),
    }
}

/// The routes, before they get their state.
fn routes() -> Router<ServerState> {
    let mut router = Router::new();
    for (method, path) in ROUTES {
        router = router.route(&format!("{}{path}", api::PREFIX), endpoint(method, path));
    }
    // The web page, beside the API.
    router = router.merge(web::routes());
    // After the routes: it applies to those present.
    router
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(log_request))
}

/// The whole API.
pub fn router(state: ServerState) -> Router {
    routes().with_state(state)
}

/// Ends open event streams when the server shuts down (see [`serve`]).
#[derive(Clone, Debug)]
pub(crate) struct ShutdownSignal(pub(crate) CancellationToken);

/// Serve the API on `listener` until `shutdown` completes.
///
/// Then the listener stops taking connections and the job manager shuts down
/// (running jobs get their grace period), while open requests finish: event
/// streams see their jobs' `end` events and close; any still open when the
/// jobs are done are closed too. Returns once all of that is over.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, state, shutdown).await
}

/// Load a PEM certificate chain and private key for [`serve_with`].
pub async fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> std::io::Result<RustlsConfig> {
    // One process-wide crypto provider; a second install attempt is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    RustlsConfig::from_pem_file(cert, key).await.map_err(|err| {
        std::io::Error::new(err.kind(), format!("TLS certificate {} / key {}: {err}", cert.display(), key.display()))
    })
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<RustlsConfig>,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let jobs = state.jobs.clone();
    let streams = CancellationToken::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let signal = {
        let (jobs, streams) = (jobs.clone(), streams.clone());
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; stopping jobs");
            let stopping = tokio::spawn(async move {
                jobs.shutdown().await;
                streams.cancel();
            });
            let _ = started_tx.send(stopping);
        }
    };
    if let Ok(address) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{address}{}", api::PREFIX);
    }
    set_nodelay(&listener);
    let app = router(state).layer(Extension(ShutdownSignal(streams.clone())));
    let served = match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(signal).await,
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                signal.await;
                stopper.graceful_shutdown(None);
            });
            let listener = listener.into_std()?;
            axum_server::from_tcp_rustls(listener, config).handle(handle).serve(app.into_make_service()).await
        }
    };
    match started_rx.await {
        Ok(stopping) => {
            if let Err(err) = stopping.await {
                tracing::error!("stopping the jobs failed: {err}");
            }
        }
        // The server stopped without the signal (an accept error): stop the jobs now.
        Err(_) => jobs.shutdown().await,
    }
    streams.cancel();
    served
}

/// TCP_NODELAY on the listening socket, which Linux hands down to every
/// accepted one: an event stream's small writes then leave at once instead of
/// waiting ~40 ms for the client's delayed ACK (measured by benches/api.rs).
fn set_nodelay(listener: &tokio::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) on a socket this listener owns, with a pointer to
    // a live c_int and its exact size.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        tracing::warn!("could not set TCP_NODELAY: {}", std::io::Error::last_os_error());
    }
}

/// Logs each request's method, path, status and duration (never headers: they hold tokens).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn openapi() -> Value {
        serde_json::from_str(routes::OPENAPI).expect("openapi.json is JSON")
    }

    #[test]
    fn every_route_has_a_handler() {
        // Builds the router (without state): panics on a missing handler or a clash.
        let _ = routes();
        let unique: BTreeSet<_> = ROUTES.iter().collect();
        assert_eq!(unique.len(), ROUTES.len(), "a route is listed twice");
    }

    #[test]
    fn openapi_documents_exactly_the_routes() {
        let doc = openapi();
        assert_eq!(doc["openapi"].as_str().unwrap_or(""), "3.1.0");
        assert_eq!(doc["servers"][0]["url"], api::PREFIX);
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
                if item.get(method).is_some() {
                    documented.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<_> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn openapi_refs_resolve_and_operations_are_complete() {
        let doc = openapi();
        fn walk(value: &Value, refs: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        refs.push(r.clone());
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
        let mut ids = BTreeSet::new();
        for (method, path) in ROUTES {
            let op = &doc["paths"][*path][method.to_ascii_lowercase()];
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} used twice");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: no responses");
            if path.contains("{id}") {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let shared = doc["paths"][*path]["parameters"].as_array().cloned().unwrap_or_default();
                assert!(
                    params
                        .iter()
                        .chain(&shared)
                        .any(|p| p["$ref"] == "#/components/parameters/Id" || p["name"] == "id"),
                    "{method} {path}: the id parameter is not documented"
                );
            }
        }
    }

    #[test]
    fn openapi_public_and_protected_routes_match_the_handlers() {
        let doc = openapi();
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        let public = ["/healthz", "/metrics", "/openapi.json", "/catalog", "/recipes/{id}", "/recipes/{id}/icon"];
        for (method, path) in ROUTES {
            let op = &doc["paths"][*path][method.to_ascii_lowercase()];
            let is_public = op.get("security").is_some_and(|s| s == &serde_json::json!([]));
            assert_eq!(is_public, public.contains(path), "{method} {path}: security in openapi.json");
            let says_401 = op["responses"].get("401").is_some();
            assert_eq!(says_401, !is_public, "{method} {path}: 401 response in openapi.json");
        }
    }

    /// Keys of the object `value` serializes to.
    fn keys(value: impl serde::Serialize) -> BTreeSet<String> {
        serde_json::to_value(value).unwrap().as_object().unwrap().keys().cloned().collect()
    }

    /// `full` has every optional field set, `minimal` none: the schema's
    /// properties must be the first's keys and its `required` the second's.
    fn check_schema(doc: &Value, name: &str, full: impl serde::Serialize, minimal: impl serde::Serialize) {
        let schema = &doc["components"]["schemas"][name];
        let properties: BTreeSet<String> =
            schema["properties"].as_object().unwrap_or_else(|| panic!("schema {name}")).keys().cloned().collect();
        assert_eq!(properties, keys(full), "properties of schema {name}");
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .map(|r| r.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(required, keys(minimal), "required of schema {name}");
    }

    fn job(full: bool) -> api::Job {
        api::Job {
            id: "j".into(),
            kind: api::JobKind::Install,
            recipe: "r".into(),
            version: "1.0.0".into(),
            app_id: "a".into(),
            state: api::JobState::Running,
            dry_run: false,
            created_at: "t".into(),
            started_at: full.then(|| "t".into()),
            finished_at: full.then(|| "t".into()),
            result: full.then(|| serde_json::json!({})),
            error: full.then(|| serde_json::json!({})),
        }
    }

    fn app(full: bool) -> api::App {
        api::App {
            id: "a".into(),
            recipe: "r".into(),
            version: "1".into(),
            digest: "d".into(),
            state: api::AppState::Running,
            url: full.then(|| "http://x".into()),
            address: full.then(|| "10.0.0.2".into()),
            ports: vec![],
            outputs: Default::default(),
            containers: vec![],
            params: Default::default(),
            secrets: vec![],
            node: None,
            deployment_id: "j".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    fn summary(full: bool) -> api::RecipeSummary {
        api::RecipeSummary {
            id: "r".into(),
            name: "R".into(),
            version: "1".into(),
            description: "d".into(),
            category: "c".into(),
            icon: full.then(|| "icon.svg".into()),
            website: full.then(|| "https://x".into()),
            digest: "d".into(),
        }
    }

    #[test]
    fn openapi_schemas_match_the_wire_types() {
        let doc = openapi();
        let problem = api::FieldProblem { field: "f".into(), problem: "p".into() };
        let detail = |details: Vec<api::FieldProblem>| api::ErrorDetail {
            code: "c".into(),
            message: "m".into(),
            details,
            digest: None,
        };
        check_schema(
            &doc,
            "ErrorBody",
            api::ErrorBody { error: detail(vec![]) },
            api::ErrorBody { error: detail(vec![]) },
        );
        let with_digest = api::ErrorDetail { digest: Some("d".into()), ..detail(vec![problem.clone()]) };
        check_schema(&doc, "ErrorDetail", with_digest, detail(vec![]));
        check_schema(&doc, "FieldProblem", &problem, &problem);
        check_schema(&doc, "RecipeSummary", summary(true), summary(false));
        let list = api::CatalogList { recipes: vec![] };
        check_schema(&doc, "CatalogList", &list, &list);
        let recipe_detail = |full| api::RecipeDetail {
            summary: summary(full),
            manifest: serde_json::json!({}),
            grants: vec![],
            versions: vec![],
        };
        check_schema(&doc, "RecipeDetail", recipe_detail(true), recipe_detail(false));
        check_schema(&doc, "Target", api::Target { node: Some("n".into()) }, api::Target::default());
        let resources = api::Resources { cores: Some(1), memory_mb: Some(1), disk_gb: Some(1) };
        check_schema(&doc, "Resources", resources, api::Resources::default());
        let deploy = |full: bool| api::DeployRequest {
            recipe: "r".into(),
            version: full.then(|| "1".into()),
            params: Default::default(),
            app_id: full.then(|| "a".into()),
            resources: Default::default(),
            target: Default::default(),
            dry_run: false,
        };
        // Fields with serde defaults are optional on input.
        let mut deploy_required = serde_json::to_value(deploy(false)).unwrap();
        for optional in ["params", "resources", "target", "dry_run"] {
            deploy_required.as_object_mut().unwrap().remove(optional);
        }
        check_schema(&doc, "DeployRequest", deploy(true), deploy_required);
        check_schema(
            &doc,
            "UpgradeRequest",
            api::UpgradeRequest { version: Some("1".into()) },
            api::UpgradeRequest::default(),
        );
        let accepted = api::JobAccepted { id: "j".into(), app_id: "a".into(), url: "u".into(), events_url: "e".into() };
        check_schema(&doc, "JobAccepted", &accepted, &accepted);
        check_schema(&doc, "Job", job(true), job(false));
        let event = |full: bool| api::JobEvent {
            seq: 1,
            elapsed_ms: 1,
            kind: "end".into(),
            name: full.then(|| "n".into()),
            level: full.then(|| "info".into()),
            message: full.then(|| "m".into()),
            job: full.then(|| Box::new(job(false))),
        };
        check_schema(&doc, "JobEvent", event(true), event(false));
        check_schema(&doc, "App", app(true), app(false));
        let list = api::AppList { apps: vec![] };
        check_schema(&doc, "AppList", &list, &list);
        let secrets = api::AppSecrets { secrets: Default::default() };
        check_schema(&doc, "AppSecrets", &secrets, &secrets);
        let logs = |full: bool| api::AppLogs { health: full.then(|| serde_json::json!({})), lines: vec![] };
        check_schema(&doc, "AppLogs", logs(true), logs(false));
        let health = api::Health { status: "ok".into(), version: "1".into(), backend: "sim".into() };
        check_schema(&doc, "Health", &health, &health);
        let proxy = api::ProxyStats { services: vec![api::ProxyServiceStats::default()] };
        check_schema(&doc, "ProxyStats", &proxy, &proxy);
        check_schema(&doc, "ProxyServiceStats", &proxy.services[0], &proxy.services[0]);
        let from_url = api::InstallFromUrl { url: "https://x".into() };
        check_schema(&doc, "InstallFromUrl", &from_url, &from_url);
        let installed = |full: bool| api::InstalledRecipe {
            id: "r".into(),
            version: "1".into(),
            digest: "d".into(),
            signers: vec![],
            grants: vec![],
            added_grants: vec![],
            previous_version: full.then(|| "0.9".into()),
            unchanged: false,
        };
        check_schema(&doc, "InstalledRecipe", installed(true), installed(false));
        let review = |full: bool| api::BundleReview {
            id: "r".into(),
            version: "1".into(),
            digest: "d".into(),
            signers: vec![],
            grants: vec![],
            added_grants: vec![],
            previous_version: full.then(|| "0.9".into()),
            unchanged: false,
        };
        check_schema(&doc, "BundleReview", review(true), review(false));
        let signer = |full: bool| api::BundleSigner {
            name: "alice".into(),
            key_id: full.then(|| "0123456789abcdef".into()),
            trusted: full,
        };
        check_schema(&doc, "BundleSigner", signer(true), signer(false));
        let key = api::TrustedKey { name: "alice".into(), key_id: "0123456789abcdef".into() };
        check_schema(&doc, "TrustedKey", &key, &key);
        let bundle = api::InstalledBundle {
            id: "r".into(),
            version: "1".into(),
            digest: "d".into(),
            signers: vec![],
            grants: vec![],
        };
        check_schema(&doc, "InstalledBundle", &bundle, &bundle);
        let list = api::BundleList { installs: true, allow_untrusted: false, trusted_keys: vec![], bundles: vec![] };
        check_schema(&doc, "BundleList", &list, &list);

        let enum_values = |name: &str| -> Vec<String> {
            doc["components"]["schemas"][name]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("enum {name}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let states = [
            api::JobState::Queued,
            api::JobState::Running,
            api::JobState::Succeeded,
            api::JobState::Failed,
            api::JobState::Cancelled,
            api::JobState::Interrupted,
        ];
        assert_eq!(enum_values("JobState"), states.map(|s| s.as_str().to_string()));
        let app_states = [
            api::AppState::Running,
            api::AppState::Stopped,
            api::AppState::Deploying,
            api::AppState::Removing,
            api::AppState::Failed,
        ];
        assert_eq!(enum_values("AppState"), app_states.map(|s| s.as_str().to_string()));
        let kinds = [api::JobKind::Install, api::JobKind::Uninstall, api::JobKind::Upgrade]
            .map(|k| serde_json::to_value(k).unwrap().as_str().unwrap().to_string());
        assert_eq!(enum_values("JobKind"), kinds);
    }
}
