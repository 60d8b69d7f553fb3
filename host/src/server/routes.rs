//! The handlers of every `/api/v1` route.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest as _, Sha256};

use super::auth::Authorized;
use super::error::{ApiError, ApiJson, ApiJsonOrDefault, ApiPath};
use super::sse::{resume_after, EventFeed, Refill};
use super::{ServerState, ShutdownSignal};
use crate::api;
use crate::catalog::{is_recipe_id, CatalogEntry};
use crate::jobs::{AppAction, JobError};

/// The hand-written OpenAPI document of this API.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// How often an idle event stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Run blocking work (SQLite, the file system) off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::internal(format!("a worker thread failed: {err}")))?
}

/// `202 Accepted` with the job and a `Location` header pointing at it.
fn accepted(job: api::JobAccepted) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(&job)).into_response();
    if let Ok(location) = HeaderValue::from_str(&job.url) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

// ---- public ----

pub(crate) async fn healthz(State(state): State<ServerState>) -> Json<api::Health> {
    Json(api::Health {
        status: "ok".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        backend: state.jobs.backend_name().to_string(),
    })
}

pub(crate) async fn metrics(State(state): State<ServerState>) -> Response {
    let text = state.jobs.metrics().render();
    ([(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text).into_response()
}

pub(crate) async fn proxy_stats(_auth: Authorized, State(state): State<ServerState>) -> Json<api::ProxyStats> {
    Json(state.jobs.proxy().stats())
}

pub(crate) async fn openapi() -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI).into_response()
}

fn summary(entry: &CatalogEntry, digest: String) -> api::RecipeSummary {
    let meta = &entry.manifest.recipe;
    api::RecipeSummary {
        id: meta.id.clone(),
        name: meta.name.clone(),
        version: meta.version.to_string(),
        description: meta.description.clone(),
        category: meta.category.clone(),
        icon: meta.icon.clone(),
        website: meta.website.clone(),
        digest,
    }
}

pub(crate) async fn catalog(State(state): State<ServerState>) -> Result<Json<api::CatalogList>, ApiError> {
    let jobs = state.jobs.clone();
    let recipes = blocking(move || {
        let root = jobs.catalog().root();
        let dirs = proximity_builder::find_recipe_dirs(root).map_err(|err| ApiError::internal(format!("{err:#}")))?;
        let mut recipes = Vec::with_capacity(dirs.len());
        for dir in dirs {
            // One broken recipe must not hide the others.
            let entry = match CatalogEntry::load(&dir) {
                Ok(entry) => entry,
                Err(err) => {
                    tracing::warn!("left out of the catalog: {}: {err:#}", dir.display());
                    continue;
                }
            };
            if entry.dir.file_name().and_then(|n| n.to_str()) != Some(entry.manifest.recipe.id.as_str()) {
                // `GET /recipes/{id}` finds recipes by directory name.
                tracing::warn!(
                    "left out of the catalog: {} declares id `{}`, not its directory's name",
                    dir.display(),
                    entry.manifest.recipe.id
                );
                continue;
            }
            // The digest is the sha256 of the component's bytes, as the runtime
            // computes it; hashing is much cheaper than loading every recipe.
            let path = entry.component_path();
            match std::fs::read(&path) {
                Ok(bytes) => recipes.push(summary(&entry, hex::encode(Sha256::digest(&bytes)))),
                Err(err) => tracing::warn!(
                    recipe = %entry.manifest.recipe.id,
                    "left out of the catalog: its component {} cannot be read: {err}",
                    path.display()
                ),
            }
        }
        recipes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(recipes)
    })
    .await?;
    Ok(Json(api::CatalogList { recipes }))
}

pub(crate) async fn recipe(
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::RecipeDetail>, ApiError> {
    if !is_recipe_id(&id) {
        return Err(ApiError::not_found(format!("no recipe `{id}` in the catalog")));
    }
    let (entry, loaded) = state.jobs.recipe(&id).await?;
    let manifest = &entry.manifest;
    let manifest_json = serde_json::to_value(&**manifest)
        .map_err(|err| ApiError::internal(format!("cannot encode the manifest of `{id}`: {err}")))?;
    Ok(Json(api::RecipeDetail {
        summary: summary(&entry, loaded.digest.clone()),
        manifest: manifest_json,
        grants: manifest.grants.summary_lines(),
        versions: vec![manifest.recipe.version.to_string()],
    }))
}

/// The largest icon served: icons are small, and this keeps a mistaken
/// manifest from streaming a big file to every catalog visitor.
const MAX_ICON_BYTES: u64 = 1 << 20;

/// The content type of an icon file, by its extension; `None` for a type the
/// page does not show.
fn icon_content_type(path: &std::path::Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// Reads a recipe's icon: a regular file inside the recipe's directory (after
/// resolving links), of a known image type, at most [`MAX_ICON_BYTES`].
fn read_icon(entry: &CatalogEntry) -> Result<(&'static str, Vec<u8>), ApiError> {
    let id = &entry.manifest.recipe.id;
    let missing = || ApiError::not_found(format!("recipe `{id}` has no icon"));
    let icon = entry.manifest.recipe.icon.as_deref().ok_or_else(missing)?;
    let content_type = icon_content_type(std::path::Path::new(icon)).ok_or_else(missing)?;
    let dir = entry.dir.canonicalize().map_err(|_| missing())?;
    let path = dir.join(icon).canonicalize().map_err(|_| missing())?;
    if !path.starts_with(&dir) {
        tracing::warn!(recipe = %id, "the icon `{icon}` resolves outside the recipe's directory; not served");
        return Err(missing());
    }
    let metadata = std::fs::metadata(&path).map_err(|_| missing())?;
    if !metadata.is_file() || metadata.len() > MAX_ICON_BYTES {
        return Err(missing());
    }
    let bytes = std::fs::read(&path).map_err(|err| ApiError::internal(format!("reading the icon of `{id}`: {err}")))?;
    Ok((content_type, bytes))
}

pub(crate) async fn recipe_icon(
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !is_recipe_id(&id) {
        return Err(ApiError::not_found(format!("no recipe `{id}` in the catalog")));
    }
    let jobs = state.jobs.clone();
    let (content_type, bytes) = blocking(move || {
        let entry = jobs.catalog().by_id(&id).map_err(|err| ApiError::not_found(format!("{err:#}")))?;
        read_icon(&entry)
    })
    .await?;
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // An SVG opened on its own must not run script in this origin.
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    Ok((headers, bytes).into_response())
}

// ---- deployments ----

pub(crate) async fn deploy(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiJson(request): ApiJson<api::DeployRequest>,
) -> Result<Response, ApiError> {
    if !is_recipe_id(&request.recipe) {
        return Err(JobError::InvalidParams(vec![api::FieldProblem {
            field: "recipe".to_string(),
            problem: format!("`{}` is not a catalog recipe id", request.recipe),
        }])
        .into());
    }
    let recipe = request.recipe.clone();
    let dry_run = request.dry_run;
    let job = state.jobs.install(request).await?;
    tracing::info!(token = %auth.token.name, job = %job.id, app = %job.app_id, %recipe, dry_run, "deployment accepted");
    Ok(accepted(job))
}

pub(crate) async fn job(
    _auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::Job>, ApiError> {
    let store = state.jobs.store().clone();
    let lookup = id.clone();
    let job = blocking(move || Ok(store.job(&lookup)?)).await?;
    job.map(Json).ok_or_else(|| ApiError::not_found(format!("no job `{id}`")))
}

pub(crate) async fn cancel(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let jobs = state.jobs.clone();
    let lookup = id.clone();
    let job = blocking(move || Ok(jobs.cancel(&lookup)?)).await?;
    tracing::info!(token = %auth.token.name, job = %id, "cancel requested");
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

pub(crate) async fn events(
    _auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    shutdown: Option<Extension<ShutdownSignal>>,
) -> Result<Response, ApiError> {
    let after = resume_after(&headers, query.as_deref())?;
    // Unknown jobs are refused here, before any of the stream is sent. Reads
    // only, which WAL never makes wait: no need for a blocking thread.
    let subscription = state.jobs.subscribe(&id, after)?;
    let store = state.jobs.store().clone();
    let refill: Refill = Arc::new(move |after| {
        let (store, id) = (store.clone(), id.clone());
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || store.events_after(&id, after)).await;
            match read {
                Ok(Ok(events)) => events,
                Ok(Err(err)) => {
                    tracing::warn!("cannot read stored events: {err}");
                    Vec::new()
                }
                Err(err) => {
                    tracing::warn!("cannot read stored events: {err}");
                    Vec::new()
                }
            }
        })
    });
    let stop = shutdown.map(|Extension(ShutdownSignal(token))| token);
    let feed = EventFeed::new(after, subscription.replay, subscription.live, refill, stop);
    let mut response = Sse::new(feed.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    // Tell buffering proxies (nginx) to pass events through as they come.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

// ---- apps ----

pub(crate) async fn apps(_auth: Authorized, State(state): State<ServerState>) -> Result<Json<api::AppList>, ApiError> {
    let store = state.jobs.store().clone();
    let records = blocking(move || Ok(store.apps()?)).await?;
    Ok(Json(api::AppList { apps: records.into_iter().map(|record| record.app).collect() }))
}

async fn find_app(state: &ServerState, id: &str) -> Result<api::App, ApiError> {
    let store = state.jobs.store().clone();
    let lookup = id.to_string();
    let record = blocking(move || Ok(store.app(&lookup)?)).await?;
    record.map(|record| record.app).ok_or_else(|| ApiError::not_found(format!("no app `{id}`")))
}

pub(crate) async fn app(
    _auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::App>, ApiError> {
    Ok(Json(find_app(&state, &id).await?))
}

async fn app_action(
    auth: Authorized,
    state: ServerState,
    id: String,
    action: AppAction,
) -> Result<Json<api::App>, ApiError> {
    let app = state.jobs.app_action(&id, action).await?;
    tracing::info!(token = %auth.token.name, app = %id, ?action, "app action done");
    Ok(Json(app))
}

pub(crate) async fn start(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::App>, ApiError> {
    app_action(auth, state, id, AppAction::Start).await
}

pub(crate) async fn stop(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::App>, ApiError> {
    app_action(auth, state, id, AppAction::Stop).await
}

pub(crate) async fn restart(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::App>, ApiError> {
    app_action(auth, state, id, AppAction::Restart).await
}

pub(crate) async fn logs(
    _auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::AppLogs>, ApiError> {
    Ok(Json(state.jobs.app_logs(&id).await?))
}

pub(crate) async fn secrets(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<api::AppSecrets>, ApiError> {
    find_app(&state, &id).await?;
    let store = state.jobs.store().clone();
    let lookup = id.clone();
    let secrets = blocking(move || Ok(store.secrets(&lookup)?)).await?;
    // An audit trail of who read secrets (names only, never values).
    tracing::info!(token = %auth.token.name, app = %id, count = secrets.len(), "secrets read");
    Ok(Json(api::AppSecrets { secrets }))
}

pub(crate) async fn upgrade(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrDefault(request): ApiJsonOrDefault<api::UpgradeRequest>,
) -> Result<Response, ApiError> {
    let job = state.jobs.upgrade(&id, request).await?;
    tracing::info!(token = %auth.token.name, job = %job.id, app = %id, "upgrade accepted");
    Ok(accepted(job))
}

pub(crate) async fn uninstall(
    auth: Authorized,
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = state.jobs.uninstall(&id).await?;
    tracing::info!(token = %auth.token.name, job = %job.id, app = %id, "uninstall accepted");
    Ok(accepted(job))
}

// ---- fallbacks ----

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route `{}`", uri.path()))
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("`{}` does not take {method} (see the Allow header)", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::manifest::Manifest;

    fn entry(dir: &std::path::Path, icon: &str) -> CatalogEntry {
        let toml = format!(
            "[recipe]\nid = \"hello\"\nname = \"Hello\"\nversion = \"1.0.0\"\ndescription = \"d\"\ncategory = \"c\"\n\
             icon = \"{icon}\"\n"
        );
        CatalogEntry { dir: dir.to_path_buf(), manifest: Arc::new(Manifest::from_toml_str(&toml).unwrap()) }
    }

    #[test]
    fn icons_are_served_by_type_from_inside_the_recipe_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("hello");
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::write(dir.join("img/icon.svg"), "<svg/>").unwrap();
        std::fs::write(dir.join("icon.PNG"), [0x89, b'P', b'N', b'G']).unwrap();
        std::fs::write(dir.join("notes.txt"), "text").unwrap();
        std::fs::write(root.path().join("secret.svg"), "<svg>outside</svg>").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.svg"), dir.join("escape.svg")).unwrap();
        std::fs::write(dir.join("huge.svg"), vec![b' '; (MAX_ICON_BYTES + 1) as usize]).unwrap();

        let (kind, bytes) = read_icon(&entry(&dir, "img/icon.svg")).unwrap();
        assert_eq!((kind, bytes.as_slice()), ("image/svg+xml", b"<svg/>".as_slice()));
        assert_eq!(read_icon(&entry(&dir, "icon.PNG")).unwrap().0, "image/png");
        for refused in ["notes.txt", "escape.svg", "huge.svg", "missing.svg", "img"] {
            let err = read_icon(&entry(&dir, refused)).unwrap_err();
            assert_eq!(err.status, StatusCode::NOT_FOUND, "{refused}");
        }
    }
}
