//! The web page: `GET /` and `GET /ui/…`, from files embedded in the binary
//! at build time (`host/web/`). Plain HTML, CSS and ES modules: nothing is
//! built, and nothing is fetched from elsewhere when the page runs.
//!
//! The files are listed here by hand with `include_bytes!` (a dozen of them):
//! no embedding crate is needed, a missing file fails the build, and a test
//! checks that every file in `host/web/` is listed.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest as _, Sha256};
use std::sync::OnceLock;

use super::error::ApiError;

/// One embedded file, served at `/ui/NAME`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!("../../web/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("sse.js", JS),
    asset!("dom.js", JS),
    asset!("catalog.js", JS),
    asset!("recipe.js", JS),
    asset!("job.js", JS),
    asset!("apps.js", JS),
    asset!("settings.js", JS),
];

/// What the page may load and talk to: this origin only. No inline script or
/// style attribute in the HTML; icons are same-origin images.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The page's routes, outside the API prefix.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/{*path}", get(asset))
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// A strong validator per file: the sha256 of its bytes, computed once.
fn etag(asset: &'static Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS.iter().map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..32])).collect()
    });
    let index = ASSETS.iter().position(|a| std::ptr::eq(a, asset)).expect("an embedded asset");
    &tags[index]
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, HeaderValue::from_static(tag));
    // Revalidated on every load: a new binary serves new files at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if asset.content_type.starts_with("text/html") {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|candidate| candidate.trim() == tag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    (headers, asset.bytes).into_response()
}

async fn page(request: HeaderMap) -> Response {
    serve(find("index.html").expect("index.html is embedded"), &request)
}

/// `/ui/NAME`: an embedded file; any other path without an extension is the
/// page itself (its views live in the URL's fragment, but a bookmark of
/// `/ui/apps` should still open it).
async fn asset(uri: Uri, request: HeaderMap) -> Response {
    let name = uri.path().trim_start_matches("/ui/");
    match find(name) {
        Some(asset) => serve(asset, &request),
        None if !name.contains('.') => page(request).await,
        None => ApiError::not_found(format!("no file `{}`", uri.path())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_web_directory_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn scripts_import_only_embedded_modules() {
        // `import … from './x.js'` must name a file the server has.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let module = line.rsplit("'./").next().and_then(|rest| rest.split('\'').next()).unwrap();
                assert!(find(module).is_some(), "{}: imports `{module}`, which is not embedded", asset.name);
            }
        }
    }

    #[test]
    fn etags_differ_per_file() {
        let tags: std::collections::BTreeSet<_> = ASSETS.iter().map(etag).collect();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
