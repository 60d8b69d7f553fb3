//! `POST /recipes`: install a recipe bundle into the catalog this server serves.
//!
//! The bundle comes as the request body (`application/octet-stream`) or is
//! fetched from `{"url": …}`. It is verified against the server's trusted
//! keys, its component is loaded and instantiated with its own grants, and
//! only then does it replace the installed version. A bundle that is
//! unsigned or signed by an unknown key needs `?allow_untrusted=DIGEST`, which
//! only a server started with `--api-allow-untrusted` honours; a new
//! version that asks for more than the installed one needs
//! `?accept_grants=DIGEST`. Both name the very bundle the operator reviewed.
//! `?review=true` runs every check and installs nothing: it answers what the
//! install would do (signers, grants, what grew), for the operator to read
//! first. An untrusted bundle's refusal lists its grants in `details` too.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Authorized;
use super::error::ApiError;
use super::ServerState;
use crate::api;
use crate::bundle::fetch::{fetch_bundle, FetchError};
use crate::bundle::{BundleError, InstallError, InstallOptions};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallQuery {
    /// The digest of a bundle whose new grants the operator accepts.
    accept_grants: Option<String>,
    /// The digest of an unsigned or untrusted bundle the operator accepts.
    allow_untrusted: Option<String>,
    /// Check everything, install nothing: answer what would be installed.
    review: Option<bool>,
}

pub(crate) async fn install(
    auth: Authorized,
    State(state): State<ServerState>,
    query: Result<Query<InstallQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let Some(installer) = state.installer.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "catalog-read-only",
            "this server serves a directory of recipe sources (--catalog); it installs bundles only into its \
             own catalog (serve without --catalog)",
        ));
    };
    let limit = installer.limits().max_bundle_bytes;
    let bytes = match body {
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(too_large(format!("the bundle is over the limit of {limit} bytes")))
        }
        Err(rejection) => return Err(ApiError::new(rejection.status(), "invalid-request", rejection.body_text())),
        Ok(bytes) => bytes,
    };
    let bytes = match content_type(&headers) {
        Some("application/json") => {
            let request: api::InstallFromUrl = serde_json::from_slice(&bytes).map_err(|err| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-request",
                    format!("expected {{\"url\": …}}: {err}"),
                )
            })?;
            fetch_bundle(&request.url, limit).await.map_err(fetch_error)?
        }
        Some("application/octet-stream") | None => Vec::from(bytes),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!(
                    "`{other}`: send the bundle as application/octet-stream, or {{\"url\": …}} as application/json"
                ),
            ))
        }
    };

    if query.allow_untrusted.is_some() && !state.api_allow_untrusted {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "untrusted-bundle",
            "this server does not take allow_untrusted over the API: install the bundle on its host with \
             `proximity recipe install --allow-untrusted`, or start it with --api-allow-untrusted",
        ));
    }
    let review = query.review.unwrap_or(false);
    // Hashing and reading up to the bundle limit: off the async threads.
    let (prepared, reviewed) = {
        let installer = installer.clone();
        let (allow_untrusted, accept_grants) = (query.allow_untrusted.clone(), query.accept_grants.clone());
        tokio::task::spawn_blocking(move || {
            let trust = allow_untrusted.as_deref().map(|digest| installer.trust().clone().allow_digest(digest));
            let result = if review {
                installer.review(bytes, trust.as_ref()).map(|(prepared, review)| (prepared, Some(review)))
            } else {
                let options = InstallOptions { accept_grants: accept_grants.as_deref() };
                installer.prepare(bytes, trust.as_ref(), &options).map(|prepared| (prepared, None))
            };
            result.map_err(install_error)
        })
        .await
        .map_err(|err| ApiError::internal(format!("a worker thread failed: {err}")))??
    };

    crate::bundle::install::check_component(state.jobs.runtime(), &prepared)
        .await
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-bundle", format!("{err:#}")))?;

    if let Some(reviewed) = reviewed {
        return Ok((StatusCode::OK, Json(reviewed)).into_response());
    }
    let accept_grants = query.accept_grants.clone();
    let installed = tokio::task::spawn_blocking(move || {
        installer.commit(prepared, &InstallOptions { accept_grants: accept_grants.as_deref() })
    })
    .await
    .map_err(|err| ApiError::internal(format!("a worker thread failed: {err}")))?
    .map_err(install_error)?;
    tracing::info!(
        token = %auth.token.name,
        recipe = %installed.id,
        version = %installed.version,
        digest = %installed.digest,
        unchanged = installed.unchanged,
        "recipe bundle installed"
    );
    let status = if installed.unchanged { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(installed)).into_response())
}

/// Grants in words as the `details` of an error (field `grants`).
fn grants_in_words(grants: Vec<String>) -> impl Iterator<Item = api::FieldProblem> {
    grants.into_iter().map(|grant| api::FieldProblem { field: "grants".into(), problem: grant })
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or(value).trim())
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", message)
}

fn install_error(err: InstallError) -> ApiError {
    let message = err.to_string();
    match err {
        // Refused for its signers: it still says what the recipe would be
        // allowed to do, for the operator deciding whether to allow it anyway.
        InstallError::Bundle(
            BundleError::Unsigned { digest, grants } | BundleError::Untrusted { digest, grants, .. },
        ) => {
            let mut error = ApiError::new(StatusCode::FORBIDDEN, "untrusted-bundle", message).with_digest(digest);
            error.details = grants_in_words(grants).collect();
            error
        }
        InstallError::Bundle(BundleError::BundleTooLarge { .. } | BundleError::EntryTooLarge { .. }) => {
            too_large(message)
        }
        InstallError::Bundle(BundleError::Io { .. }) | InstallError::Io { .. } => ApiError::internal(message),
        InstallError::Bundle(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-bundle", message),
        InstallError::GrantsGrew { added, digest, .. } => {
            let mut error = ApiError::new(StatusCode::CONFLICT, "grants-grew", message).with_digest(digest);
            error.details = grants_in_words(added).collect();
            error
        }
        InstallError::Downgrade { .. } | InstallError::VersionConflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "version-conflict", message)
        }
    }
}

fn fetch_error(err: FetchError) -> ApiError {
    let message = err.to_string();
    match err {
        FetchError::BadUrl(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", message),
        FetchError::TooLarge { .. } => too_large(message),
        FetchError::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "fetch-failed", message),
        FetchError::Failed { .. } | FetchError::Status { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "fetch-failed", message)
        }
    }
}

/// `GET /bundles`: what the served catalog was installed from, and who the
/// server trusts.
pub(crate) async fn list(
    _auth: Authorized,
    State(state): State<ServerState>,
) -> Result<Json<api::BundleList>, ApiError> {
    let Some(installer) = state.installer.clone() else {
        return Ok(Json(api::BundleList {
            installs: false,
            allow_untrusted: state.api_allow_untrusted,
            trusted_keys: Vec::new(),
            bundles: Vec::new(),
        }));
    };
    let (trusted_keys, bundles) = tokio::task::spawn_blocking(move || {
        let keys = installer
            .trust()
            .trusted_keys()
            .iter()
            .map(|key| api::TrustedKey { name: key.name().to_string(), key_id: key.id() })
            .collect::<Vec<_>>();
        installer.installed().map(|bundles| (keys, bundles))
    })
    .await
    .map_err(|err| ApiError::internal(format!("a worker thread failed: {err}")))?
    .map_err(|err| ApiError::internal(err.to_string()))?;
    Ok(Json(api::BundleList { installs: true, allow_untrusted: state.api_allow_untrusted, trusted_keys, bundles }))
}
