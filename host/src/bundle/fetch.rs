//! Fetching a bundle over HTTP(S), bounded in size and time.

use std::time::Duration;

use futures_util::StreamExt as _;

/// How long a whole download may take, connecting included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("fetching {url}: {message}")]
    Failed { url: String, message: String },
    #[error("fetching {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: more than {limit} bytes; a bundle is at most that")]
    TooLarge { url: String, limit: u64 },
    #[error("fetching {url}: no answer within {} s", FETCH_TIMEOUT.as_secs())]
    Timeout { url: String },
}

/// Downloads `url`, refusing more than `limit` bytes (announced or received).
pub async fn fetch_bundle(url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
    fetch_with_timeout(url, limit, FETCH_TIMEOUT).await
}

pub async fn fetch_with_timeout(url: &str, limit: u64, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(FetchError::BadUrl(url.to_owned()));
    }
    match tokio::time::timeout(timeout, download(parsed, limit)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout { url: url.to_owned() }),
    }
}

async fn download(url: reqwest::Url, limit: u64) -> Result<Vec<u8>, FetchError> {
    let shown = url.to_string();
    let failed = |err: reqwest::Error| FetchError::Failed { url: shown.clone(), message: err.to_string() };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(failed)?;
    let response = client.get(url.clone()).send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(FetchError::Status { url: shown, status: response.status().as_u16() });
    }
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(FetchError::TooLarge { url: shown, limit });
    }
    let mut bytes = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(failed)?;
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            return Err(FetchError::TooLarge { url: shown, limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
