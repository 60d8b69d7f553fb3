//! The API's one error type, and the extractors that turn axum's rejections
//! into it: every failure a client sees is an [`api::ErrorBody`].

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::api;
use crate::jobs::JobError;
use crate::store::StoreError;

/// The most a request body may hold.
pub const BODY_LIMIT: usize = 256 * 1024;

/// An error answer: a status and the JSON body `{"error": {code, message, details}}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable (`not-found`, `invalid-params`, ...).
    pub code: &'static str,
    pub message: String,
    pub details: Vec<api::FieldProblem>,
    /// The bundle a refused install is about (see [`api::ErrorDetail::digest`]).
    pub digest: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Vec::new(), digest: None }
    }

    /// The same error, naming the bundle it is about.
    pub fn with_digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(digest.into());
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The wire shape of this error.
    pub fn body(&self) -> api::ErrorBody {
        api::ErrorBody {
            error: api::ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                details: self.details.clone(),
                digest: self.digest.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), code = self.code, "{}", self.message);
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the oversized body is never read, so the server drops
            // the connection after this answer: say so, or a keep-alive client
            // sends its next request down a connection that is closing.
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<JobError> for ApiError {
    fn from(err: JobError) -> Self {
        match err {
            JobError::NotFound(message) => ApiError::not_found(message),
            JobError::InvalidParams(details) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid-params",
                message: if details.len() == 1 {
                    "1 parameter does not validate".to_string()
                } else {
                    format!("{} parameters do not validate", details.len())
                },
                details,
                digest: None,
            },
            JobError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            err @ JobError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", err.to_string())
            }
            JobError::Internal(message) => ApiError::internal(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(message) => ApiError::not_found(message),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid(message) => ApiError::bad_request(message),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => {
                // The serde message with its path (`params.port: invalid type: ...`),
                // without axum's "Failed to deserialize ..." preamble.
                let message = std::error::Error::source(&err).map(|e| e.to_string()).unwrap_or_else(|| err.body_text());
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", message)
            }
            JsonRejection::JsonSyntaxError(err) => {
                let message = match std::error::Error::source(&err) {
                    Some(cause) => format!("the request body is not valid JSON: {cause}"),
                    None => "the request body is not valid JSON".to_string(),
                };
                ApiError::new(StatusCode::BAD_REQUEST, "bad-json", message)
            }
            JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
            JsonRejection::BytesRejection(err) => bytes_rejection(err),
            other => ApiError::new(other.status(), "invalid-request", other.body_text()),
        }
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "expected a JSON body with `Content-Type: application/json`",
    )
}

fn bytes_rejection(err: BytesRejection) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the request body is over the limit of {} KiB", BODY_LIMIT / 1024),
        )
    } else {
        ApiError::new(err.status(), "invalid-request", err.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// [`axum::Json`] whose rejections are [`ApiError`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// Like [`ApiJson`], but an empty body (with or without a content type)
/// means `T::default()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiJsonOrDefault<T>(pub T);

impl<T, S> FromRequest<S> for ApiJsonOrDefault<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(bytes_rejection)?;
        parse_json_or_default(&headers, &bytes).map(ApiJsonOrDefault)
    }
}

/// The body of [`ApiJsonOrDefault`]: empty means default, otherwise it must be JSON.
pub(crate) fn parse_json_or_default<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !is_json_content_type(headers) {
        return Err(unsupported_media_type());
    }
    let Json(value) = Json::<T>::from_bytes(bytes)?;
    Ok(value)
}

/// `application/json`, or `application/<something>+json`, with any parameters.
pub(crate) fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// [`axum::extract::Path`] whose rejections are [`ApiError`]s.
#[derive(Clone, Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(err: ApiError) -> (u16, serde_json::Value) {
        (err.status.as_u16(), serde_json::to_value(err.body()).unwrap())
    }

    #[test]
    fn job_errors_map_to_status_and_code() {
        let cases = [
            (JobError::NotFound("no job `j1`".into()), 404, "not-found", "no job `j1`"),
            (JobError::Conflict("app `a` is busy".into()), 409, "conflict", "app `a` is busy"),
            (JobError::ShuttingDown, 503, "shutting-down", "the server is shutting down"),
            (JobError::Internal("disk on fire".into()), 500, "internal", "disk on fire"),
        ];
        for (err, status, code, message) in cases {
            let (got_status, body) = json_of(err.into());
            assert_eq!(got_status, status);
            assert_eq!(body, serde_json::json!({"error": {"code": code, "message": message}}));
        }
    }

    #[test]
    fn invalid_params_carry_details() {
        let details = vec![
            api::FieldProblem { field: "port".into(), problem: "must be at most 65535".into() },
            api::FieldProblem { field: "resources.cores".into(), problem: "over the grant".into() },
        ];
        let err: ApiError = JobError::InvalidParams(details.clone()).into();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        let (_, body) = json_of(err);
        assert_eq!(body["error"]["code"], "invalid-params");
        assert_eq!(body["error"]["message"], "2 parameters do not validate");
        let back: api::ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(back.error.details, details);
    }

    #[tokio::test]
    async fn responses_are_json_and_401_asks_for_bearer() {
        let response = ApiError::unauthorized("missing bearer token").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        assert!(response.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body, serde_json::json!({"error": {"code": "unauthorized", "message": "missing bearer token"}}));

        let response = ApiError::not_found("nope").into_response();
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn json_rejections_map_to_400_and_422() {
        let syntax = Json::<api::DeployRequest>::from_bytes(b"{\"recipe\": ").unwrap_err();
        let err = ApiError::from(syntax);
        assert_eq!((err.status.as_u16(), err.code), (400, "bad-json"));

        let unknown = Json::<api::DeployRequest>::from_bytes(br#"{"recipe": "x", "colour": 1}"#).unwrap_err();
        let err = ApiError::from(unknown);
        assert_eq!((err.status.as_u16(), err.code), (422, "invalid-request"));
        assert!(err.message.contains("unknown field `colour`"), "{}", err.message);
        assert!(!err.message.contains("Failed to deserialize"), "{}", err.message);

        let wrong_type = Json::<api::DeployRequest>::from_bytes(br#"{"recipe": "x", "dry_run": "yes"}"#).unwrap_err();
        let err = ApiError::from(wrong_type);
        assert_eq!((err.status.as_u16(), err.code), (422, "invalid-request"));
        assert!(err.message.contains("dry_run"), "{}", err.message);
    }

    #[test]
    fn empty_body_means_default() {
        let mut headers = HeaderMap::new();
        let request: api::UpgradeRequest = parse_json_or_default(&headers, b"").unwrap();
        assert!(request.version.is_none());
        let request: api::UpgradeRequest = parse_json_or_default(&headers, b"  \n").unwrap();
        assert!(request.version.is_none());

        let err = parse_json_or_default::<api::UpgradeRequest>(&headers, br#"{"version": "1.2.3"}"#).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        let request: api::UpgradeRequest = parse_json_or_default(&headers, br#"{"version": "1.2.3"}"#).unwrap();
        assert_eq!(request.version.as_deref(), Some("1.2.3"));
        let err = parse_json_or_default::<api::UpgradeRequest>(&headers, br#"{"versoin": "1"}"#).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (422, "invalid-request"));
    }

    #[test]
    fn json_content_types() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_json_content_type(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON;charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/json"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type(&HeaderMap::new()));
    }
}
