//! Bearer-token authentication: the [`Authorized`] extractor. Tokens are
//! checked against the store and never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use super::ServerState;
use crate::store::{self, TokenInfo};

const MISSING: &str = "missing bearer token";
const INVALID: &str = "invalid or revoked token";

/// A request carrying a valid, unrevoked API token. Put it first among a
/// handler's arguments so an unauthenticated request is refused before its
/// body is read.
#[derive(Clone, Debug)]
pub struct Authorized {
    /// The token's record (its name, for audit logs; never its plaintext).
    pub token: TokenInfo,
}

impl FromRequestParts<ServerState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ServerState) -> Result<Self, Self::Rejection> {
        let plaintext = bearer_token(&parts.headers)?;
        let store = state.jobs.store().clone();
        // A read, right here; the write of `last_used_at` (at most once a
        // minute per token) goes to a blocking thread.
        let verified = match store.find_token(plaintext)? {
            Some(token) if store::token_use_is_stale(&token) => {
                let plaintext = plaintext.to_string();
                tokio::task::spawn_blocking(move || store.verify_token(&plaintext))
                    .await
                    .map_err(|err| ApiError::internal(format!("checking the token failed: {err}")))??
            }
            found => found,
        };
        match verified {
            Some(token) if token.revoked_at.is_none() => Ok(Authorized { token }),
            _ => {
                tracing::info!(method = %parts.method, path = parts.uri.path(), "refused an invalid or revoked token");
                Err(ApiError::unauthorized(INVALID))
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any
/// case); a missing header, another scheme or an empty token is a 401.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized(MISSING))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized(INVALID))?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(MISSING));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::unauthorized(MISSING));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    fn parse(value: Option<&'static [u8]>) -> Result<String, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        bearer_token(&headers).map(str::to_string)
    }

    fn refused(value: Option<&'static [u8]>) -> String {
        let err = parse(value).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.code, "unauthorized");
        err.message
    }

    #[test]
    fn bearer_tokens_are_read() {
        assert_eq!(parse(Some(b"Bearer prx_abc123")).unwrap(), "prx_abc123");
        assert_eq!(parse(Some(b"bearer prx_abc123")).unwrap(), "prx_abc123");
        assert_eq!(parse(Some(b"BEARER   prx_abc123  ")).unwrap(), "prx_abc123");
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        assert_eq!(refused(None), MISSING);
        assert_eq!(refused(Some(b"")), MISSING);
        assert_eq!(refused(Some(b"Bearer")), MISSING);
        assert_eq!(refused(Some(b"Bearer    ")), MISSING);
        assert_eq!(refused(Some(b"Basic dXNlcjpwYXNz")), MISSING);
        assert_eq!(refused(Some(b"prx_abc123")), MISSING);
        assert_eq!(refused(Some(b"Bearer \xffabc")), INVALID);
    }
}
