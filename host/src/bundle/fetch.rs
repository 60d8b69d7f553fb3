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
    #[error("fetching {url}: no complete answer within {after:?}")]
    Timeout { url: String, after: Duration },
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
        Err(_) => Err(FetchError::Timeout { url: url.to_owned(), after: timeout }),
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

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    /// A loopback server answering every request with `response` (then, if
    /// `endless`, a body that never ends).
    fn server(response: &'static [u8], endless: bool) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/b.prox", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.read(&mut [0u8; 2048]);
                let _ = stream.write_all(response);
                while endless && stream.write_all(&[0u8; 4096]).is_ok() {}
            }
        });
        url
    }

    #[tokio::test]
    async fn size_status_scheme_and_time_are_bounded() {
        let announced = server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n", false);
        assert!(matches!(fetch_bundle(&announced, 999).await, Err(FetchError::TooLarge { limit: 999, .. })));

        let unannounced = server(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", true);
        assert!(matches!(fetch_bundle(&unannounced, 100_000).await, Err(FetchError::TooLarge { .. })));

        let missing = server(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false);
        assert!(matches!(fetch_bundle(&missing, 100).await, Err(FetchError::Status { status: 404, .. })));

        for bad in ["file:///etc/passwd", "ftp://x/b.prox", "not a url", "http://"] {
            assert!(matches!(fetch_bundle(bad, 100).await, Err(FetchError::BadUrl(_))), "{bad}");
        }

        // Accepts, reads the request, never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/b.prox", silent.local_addr().unwrap());
        let err = fetch_with_timeout(&url, 100, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("no complete answer within 300ms"), "{err}");
        drop(silent);

        let ok = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false);
        assert_eq!(fetch_bundle(&ok, 5).await.unwrap(), b"hello");
    }
}
