//! The HTTP client of a `proximity serve` server: typed calls for every
//! `/api/v1` route, and a reader for a job's Server-Sent Events.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api;

/// How long a plain (non-streaming) call may take before we give up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status.
    #[error("{}", render_api_error(*.status, .code, .message, .details))]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Vec<api::FieldProblem>,
        /// The bundle a `POST /recipes` refusal names, to confirm it by.
        digest: Option<String>,
    },
    /// Nothing answered: refused, unresolvable, timed out, TLS failed.
    #[error("cannot reach the Proximity server at {url}: {cause} (is `proximity serve` running?)")]
    Unreachable { url: String, cause: String },
}

impl ClientError {
    /// The HTTP status, for an answer from the server.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Unreachable { .. } => None,
        }
    }
}

fn render_api_error(status: u16, code: &str, message: &str, details: &[api::FieldProblem]) -> String {
    let mut text = format!("server said {status} {code}: {message}");
    if status == 401 {
        text.push_str(" (pass --token or set PROXIMITY_TOKEN; create one with `proximity token create --name NAME`)");
    }
    for detail in details {
        text.push_str(&format!("\n  - {}: {}", detail.field, detail.problem));
    }
    text
}

/// What a start/stop/restart call asks of an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppAction {
    Start,
    Stop,
    Restart,
}

impl AppAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AppAction::Start => "start",
            AppAction::Stop => "stop",
            AppAction::Restart => "restart",
        }
    }
}

/// What `POST /recipes` installs.
pub enum BundleSource {
    Bytes(Vec<u8>),
    Url(String),
}

/// `POST /recipes`'s query: the operator's confirmations, each naming a bundle digest.
#[derive(Debug, Default, Serialize)]
pub struct InstallQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_grants: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_untrusted: Option<String>,
}

/// A client of one Proximity server.
#[derive(Clone, Debug)]
pub struct Client {
    /// `scheme://host[:port][/prefix]`, without a trailing `/`.
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `server` (an `http://` or `https://` URL).
    pub fn new(server: &str, token: Option<String>) -> Result<Client> {
        let trimmed = server.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(trimmed)
            .with_context(|| format!("invalid server URL `{server}` (expected e.g. http://127.0.0.1:8089)"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("invalid server URL `{server}`: the scheme must be http or https, not `{}`", url.scheme());
        }
        if url.host_str().is_none_or(str::is_empty) {
            anyhow::bail!("invalid server URL `{server}`: it names no host");
        }
        if url.query().is_some() || url.fragment().is_some() {
            anyhow::bail!("invalid server URL `{server}`: it must not have a query or fragment");
        }
        let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        if let Some(token) = &token {
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| anyhow!("the API token contains characters that cannot go in an HTTP header"))?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("proximity/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client { base: trimmed.to_string(), token, http })
    }

    /// The server's base URL, as given (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn catalog(&self) -> Result<api::CatalogList> {
        self.call(Method::GET, "/catalog", None::<&()>).await
    }

    pub async fn recipe(&self, id: &str) -> Result<api::RecipeDetail> {
        self.call(Method::GET, &format!("/recipes/{}", segment(id)), None::<&()>).await
    }

    /// Start a deployment; `202` with the job's id and URLs.
    pub async fn deploy(&self, request: &api::DeployRequest) -> Result<api::JobAccepted> {
        self.call(Method::POST, "/deployments", Some(request)).await
    }

    pub async fn job(&self, id: &str) -> Result<api::Job> {
        self.call(Method::GET, &format!("/deployments/{}", segment(id)), None::<&()>).await
    }

    /// Ask the server to cancel a job; it answers with the job as it is now.
    pub async fn cancel(&self, id: &str) -> Result<api::Job> {
        self.call(Method::DELETE, &format!("/deployments/{}", segment(id)), None::<&()>).await
    }

    pub async fn apps(&self) -> Result<api::AppList> {
        self.call(Method::GET, "/apps", None::<&()>).await
    }

    pub async fn app(&self, id: &str) -> Result<api::App> {
        self.call(Method::GET, &format!("/apps/{}", segment(id)), None::<&()>).await
    }

    pub async fn app_action(&self, id: &str, action: AppAction) -> Result<api::App> {
        self.call(Method::POST, &format!("/apps/{}/{}", segment(id), action.as_str()), None::<&()>).await
    }

    pub async fn logs(&self, id: &str) -> Result<api::AppLogs> {
        self.call(Method::GET, &format!("/apps/{}/logs", segment(id)), None::<&()>).await
    }

    pub async fn secrets(&self, id: &str) -> Result<api::AppSecrets> {
        self.call(Method::GET, &format!("/apps/{}/secrets", segment(id)), None::<&()>).await
    }

    /// Start an upgrade job.
    pub async fn upgrade(&self, id: &str, request: &api::UpgradeRequest) -> Result<api::JobAccepted> {
        self.call(Method::POST, &format!("/apps/{}/upgrade", segment(id)), Some(request)).await
    }

    /// Start an uninstall job.
    pub async fn remove(&self, id: &str) -> Result<api::JobAccepted> {
        self.call(Method::DELETE, &format!("/apps/{}", segment(id)), None::<&()>).await
    }

    /// Install a bundle: its bytes, or a URL the server fetches it from.
    pub async fn install_recipe(&self, bundle: BundleSource, options: &InstallQuery) -> Result<api::InstalledRecipe> {
        let mut request = self
            .request(Method::POST, "/recipes")
            .query(options)
            .header(ACCEPT, "application/json")
            .timeout(CALL_TIMEOUT);
        request = match bundle {
            BundleSource::Bytes(bytes) => request.header(CONTENT_TYPE, "application/octet-stream").body(bytes),
            BundleSource::Url(url) => request.json(&api::InstallFromUrl { url }),
        };
        let response = send(request, &self.base).await?;
        let bytes = response.bytes().await.map_err(|err| unreachable(&self.base, &err))?;
        serde_json::from_slice(&bytes)
            .context("the server's answer to POST /api/v1/recipes is not what this client expects")
    }

    /// A job's events, in order, from the one after `after` (all of them when
    /// `None`). The stream ends after the `end` event, or early when the
    /// connection drops: then it yields an error, or simply stops.
    pub fn events(
        &self,
        job_id: &str,
        after: Option<u64>,
    ) -> impl Stream<Item = Result<api::JobEvent>> + Send + 'static {
        let path = format!("/deployments/{}/events", segment(job_id));
        let url = self.url(&path);
        let mut request = self.request(Method::GET, &path).header(ACCEPT, "text/event-stream");
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        let state = EventsState {
            phase: Phase::Connect(Box::new(request)),
            base: self.base.clone(),
            url,
            ready: VecDeque::new(),
        };
        futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{}", self.base, api::PREFIX, path)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let what = format!("{method} {}{path}", api::PREFIX);
        let mut request = self.request(method, path).header(ACCEPT, "application/json").timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = send(request, &self.base).await?;
        let bytes = response.bytes().await.map_err(|err| unreachable(&self.base, &err))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!("the server's answer to {what} is not what this client expects (is it the same Proximity version?)")
        })
    }
}

/// Send, and turn a failure to connect or a non-2xx answer into a [`ClientError`].
async fn send(request: RequestBuilder, base: &str) -> Result<Response, ClientError> {
    let response = request.send().await.map_err(|err| unreachable(base, &err))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    Err(api_error(status, &body))
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<api::ErrorBody>(body) {
        Ok(api::ErrorBody { error }) => ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            details: error.details,
            digest: error.digest,
        },
        // Not our JSON: a proxy in between, or a server of something else.
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let reason = status.canonical_reason().unwrap_or("error");
            let message = if text.is_empty() {
                reason.to_string()
            } else {
                let mut short: String = text.chars().take(200).collect();
                if short.len() < text.len() {
                    short.push('…');
                }
                short
            };
            ClientError::Api {
                status: status.as_u16(),
                code: reason.to_ascii_lowercase().replace(' ', "-"),
                message,
                details: Vec::new(),
                digest: None,
            }
        }
    }
}

fn unreachable(base: &str, err: &reqwest::Error) -> ClientError {
    // reqwest's own text repeats the URL; what helps is the innermost causes.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    let cause = if err.is_timeout() {
        "timed out".to_string()
    } else if let Some(last) = causes.pop() {
        last
    } else {
        err.to_string()
    };
    ClientError::Unreachable { url: base.to_string(), cause }
}

/// Percent-encode one path segment (ids are plain, but never trust that).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The response body, already cut into SSE messages.
type MessageStream = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<SseMessage>>> + Send>>;

enum Phase {
    Connect(Box<RequestBuilder>),
    Read(MessageStream),
    Done,
}

struct EventsState {
    phase: Phase,
    base: String,
    url: String,
    ready: VecDeque<SseMessage>,
}

impl EventsState {
    async fn next(&mut self) -> Option<Result<api::JobEvent>> {
        loop {
            while let Some(message) = self.ready.pop_front() {
                match decode_event(&message) {
                    Ok(Some(event)) => {
                        if event.kind == "end" {
                            // The server closes after `end`; don't wait for it.
                            self.phase = Phase::Done;
                            self.ready.clear();
                        }
                        return Some(Ok(event));
                    }
                    Ok(None) => continue,
                    Err(err) => {
                        self.phase = Phase::Done;
                        return Some(Err(err));
                    }
                }
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Connect(request) => {
                    let response = match send(*request, &self.base).await {
                        Ok(response) => response,
                        Err(err) => return Some(Err(err.into())),
                    };
                    let content_type =
                        response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
                        return Some(Err(anyhow!(
                            "{} answered with `{content_type}`, not an event stream (is it the same Proximity version?)",
                            self.url
                        )));
                    }
                    let mut parser = SseParser::default();
                    let messages = response.bytes_stream().map(move |chunk| chunk.map(|chunk| parser.feed(&chunk)));
                    self.phase = Phase::Read(Box::pin(messages));
                }
                Phase::Read(mut messages) => match messages.next().await {
                    Some(Ok(batch)) => {
                        self.ready.extend(batch);
                        self.phase = Phase::Read(messages);
                    }
                    Some(Err(err)) => {
                        return Some(Err(anyhow!("the event stream from {} broke: {}", self.base, error_chain(&err))))
                    }
                    // Closed before `end`: the caller decides whether to resume.
                    None => return None,
                },
            }
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The kinds of job event; other SSE event types (keep-alives, future
/// additions) are skipped.
const JOB_EVENT_KINDS: &[&str] = &["message", "step", "log", "host", "end"];

fn decode_event(message: &SseMessage) -> Result<Option<api::JobEvent>> {
    if !JOB_EVENT_KINDS.contains(&message.event.as_str()) {
        return Ok(None);
    }
    let event: api::JobEvent = serde_json::from_str(&message.data).with_context(|| {
        let mut data: String = message.data.chars().take(200).collect();
        if data.len() < message.data.len() {
            data.push('…');
        }
        format!("the server sent a `{}` event this client cannot read: {data}", message.event)
    })?;
    Ok(Some(event))
}

/// One dispatched Server-Sent Events message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseMessage {
    /// The last event id seen on the stream (it carries over between messages).
    pub id: Option<String>,
    /// The `event:` field, `message` when absent.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// An incremental `text/event-stream` parser: feed it chunks as they come,
/// cut anywhere (even inside a line or a UTF-8 character).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting this one belongs to it.
    after_cr: bool,
    /// A leading byte-order mark has been dealt with.
    started: bool,
    last_id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for &byte in chunk {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(message) = self.line_done(&line) {
                        out.push(message);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        out
    }

    fn line_done(&mut self, mut line: &[u8]) -> Option<SseMessage> {
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None; // a comment
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {} // `retry` and unknown fields
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseMessage> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseMessage {
            id: self.last_id.clone(),
            event: event.filter(|e| !e.is_empty()).unwrap_or_else(|| "message".to_string()),
            data: std::mem::take(&mut self.data),
        })
    }
}

/// The events of a whole `text/event-stream` body (a finished job's stream),
/// in order; for tools and tests that read the body in one piece.
pub fn job_events_from_sse(body: &[u8]) -> Result<Vec<api::JobEvent>> {
    let mut parser = SseParser::default();
    let mut messages = parser.feed(body);
    messages.extend(parser.feed(b"\n\n"));
    messages
        .into_iter()
        .filter(|m| !m.data.is_empty())
        .map(|m| serde_json::from_str(&m.data).with_context(|| format!("event data is not a job event: {}", m.data)))
        .collect()
}

/// A job for the client's tests, with this state and result.
#[cfg(test)]
pub(crate) fn sample_job(state: api::JobState, result: serde_json::Value) -> api::Job {
    api::Job {
        id: "x".into(),
        kind: api::JobKind::Install,
        recipe: "hello".into(),
        version: "1.0.0".into(),
        app_id: "hello-1".into(),
        state,
        dry_run: false,
        created_at: "2025-01-01T00:00:00Z".into(),
        started_at: None,
        finished_at: None,
        result: Some(result),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Vec<SseMessage> {
        let mut parser = SseParser::default();
        chunks.iter().flat_map(|chunk| parser.feed(chunk)).collect()
    }

    fn msg(id: Option<&str>, event: &str, data: &str) -> SseMessage {
        SseMessage { id: id.map(str::to_string), event: event.to_string(), data: data.to_string() }
    }

    #[test]
    fn sse_parses_fields_comments_and_multiline_data() {
        let text = b": keep-alive\n\nid: 1\nevent: step\ndata: {\"a\":\ndata:  1}\n\ndata: plain\n\nretry: 10\nunknown\nid: 2\nevent: end\ndata\n\n";
        let messages = feed_all(&[text]);
        assert_eq!(
            messages,
            vec![msg(Some("1"), "step", "{\"a\":\n 1}"), msg(Some("1"), "message", "plain"), msg(Some("2"), "end", "")]
        );
    }

    #[test]
    fn sse_handles_chunks_cut_anywhere() {
        let text = "id: 7\r\nevent: log\r\ndata: héllo\r\n\r\nid: 8\revent: end\rdata: done\r\r".as_bytes();
        let whole = feed_all(&[text]);
        assert_eq!(whole, vec![msg(Some("7"), "log", "héllo"), msg(Some("8"), "end", "done")]);
        // Every possible single cut, including inside `\r\n` and inside `é`.
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(feed_all(&[a, b]), whole, "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_all(&bytes), whole);
    }

    #[test]
    fn sse_waits_for_the_blank_line() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"id: 1\nevent: step\ndata: {}\n").is_empty());
        assert!(parser.feed(b"dat").is_empty());
        assert_eq!(parser.feed(b"a: x\n\n"), vec![msg(Some("1"), "step", "{}\nx")]);
        // An event without data dispatches nothing, and its type does not leak.
        assert!(parser.feed(b"event: ping\n\n").is_empty());
        assert_eq!(parser.feed(b"data: y\n\n"), vec![msg(Some("1"), "message", "y")]);
    }

    #[test]
    fn sse_skips_a_leading_bom() {
        assert_eq!(feed_all(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]), vec![msg(None, "message", "x")]);
    }

    #[test]
    fn api_error_display_lists_field_problems() {
        let err = ClientError::Api {
            status: 422,
            code: "invalid-params".into(),
            message: "invalid parameters for recipe `wordpress`".into(),
            details: vec![
                api::FieldProblem { field: "params.admin_email".into(), problem: "is required".into() },
                api::FieldProblem { field: "resources.cores".into(), problem: "must be at most 8".into() },
            ],
            digest: None,
        };
        assert_eq!(
            err.to_string(),
            "server said 422 invalid-params: invalid parameters for recipe `wordpress`\n\
             \x20 - params.admin_email: is required\n\
             \x20 - resources.cores: must be at most 8"
        );
    }

    #[test]
    fn api_error_display_for_401_says_how_to_authenticate() {
        let err = ClientError::Api {
            status: 401,
            code: "unauthorized".into(),
            message: "missing bearer token".into(),
            details: vec![],
            digest: None,
        };
        assert_eq!(
            err.to_string(),
            "server said 401 unauthorized: missing bearer token (pass --token or set PROXIMITY_TOKEN; \
             create one with `proximity token create --name NAME`)"
        );
    }

    #[test]
    fn non_json_error_bodies_still_read_well() {
        let err = api_error(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(err.to_string(), "server said 502 bad-gateway: upstream down");
        let err = api_error(StatusCode::NOT_FOUND, b"");
        assert_eq!(err.to_string(), "server said 404 not-found: Not Found");
    }

    #[test]
    fn new_validates_and_trims_the_url() {
        let client = Client::new("http://127.0.0.1:8089/", None).unwrap();
        assert_eq!(client.base(), "http://127.0.0.1:8089");
        assert_eq!(client.url("/apps"), "http://127.0.0.1:8089/api/v1/apps");
        let client = Client::new("https://example.com/proximity//", Some("t".into())).unwrap();
        assert_eq!(client.url("/apps"), "https://example.com/proximity/api/v1/apps");
        for bad in ["ftp://example.com", "127.0.0.1:8089", "not a url", "http://h/?q=1"] {
            assert!(Client::new(bad, None).is_err(), "{bad} should be refused");
        }
        assert_eq!(segment("my app/1"), "my%20app%2F1");
    }

    fn job(state: api::JobState) -> api::Job {
        sample_job(state, serde_json::json!({"url": "http://10.0.3.2/"}))
    }

    fn event(seq: u64, kind: &str, message: Option<&str>, job: Option<api::Job>) -> api::JobEvent {
        api::JobEvent {
            seq,
            elapsed_ms: seq * 100,
            kind: kind.into(),
            name: (kind == "step").then(|| format!("step {seq}")),
            level: (kind == "log").then(|| "info".to_string()),
            message: message.map(str::to_string),
            job: job.map(Box::new),
        }
    }

    /// A server answering the events route with a fixed body, cut into
    /// awkward chunks; it records the `Authorization` and `Last-Event-ID` it saw.
    async fn serve_events(body: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>) {
        use axum::body::Body;
        use axum::http::{header, HeaderMap, StatusCode as Code};
        use axum::response::IntoResponse;

        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/api/v1/deployments/x/events",
            axum::routing::get(move |headers: HeaderMap| {
                let body = body.clone();
                let record = record.clone();
                async move {
                    let get = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let auth = get(header::AUTHORIZATION.as_str());
                    record.lock().unwrap().push((auth.clone(), get("last-event-id")));
                    if auth != "Bearer s3cret" {
                        let error = serde_json::json!({"error": {"code": "unauthorized", "message": "bad token"}});
                        return (Code::UNAUTHORIZED, axum::Json(error)).into_response();
                    }
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                        body.into_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
                    let stream = futures_util::stream::iter(chunks);
                    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), seen)
    }

    /// `JobEvent` has no `PartialEq`: compare the JSON.
    fn json(events: &[api::JobEvent]) -> serde_json::Value {
        serde_json::to_value(events).unwrap()
    }

    fn sse(events: &[api::JobEvent]) -> String {
        let mut body = String::from(": hello\n\n");
        for event in events {
            body.push_str(&format!(
                "id: {}\nevent: {}\ndata: {}\n\n",
                event.seq,
                event.kind,
                serde_json::to_string(event).unwrap()
            ));
        }
        body
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_end_holds_the_job() {
        let events = vec![
            event(1, "step", None, None),
            event(2, "log", Some("hello\nworld"), None),
            event(3, "host", Some("created container"), None),
            event(4, "end", None, Some(job(api::JobState::Succeeded))),
        ];
        let (base, seen) = serve_events(sse(&events)).await;
        let client = Client::new(&base, Some("s3cret".into())).unwrap();
        let got: Vec<api::JobEvent> = client.events("x", Some(0)).map(|item| item.unwrap()).collect::<Vec<_>>().await;
        assert_eq!(json(&got), json(&events));
        let end_job = got.last().unwrap().job.as_ref().unwrap();
        assert_eq!(end_job.state, api::JobState::Succeeded);
        assert_eq!(end_job.app_id, "hello-1");
        assert_eq!(seen.lock().unwrap().as_slice(), &[("Bearer s3cret".to_string(), "0".to_string())]);
    }

    #[tokio::test]
    async fn events_without_the_right_token_is_a_401_error() {
        let (base, seen) = serve_events(String::new()).await;
        let client = Client::new(&base, Some("wrong".into())).unwrap();
        let got: Vec<Result<api::JobEvent>> = client.events("x", None).collect().await;
        assert_eq!(got.len(), 1);
        let err = got.into_iter().next().unwrap().unwrap_err();
        let err = err.downcast_ref::<ClientError>().expect("a ClientError");
        assert_eq!(err.status(), Some(401));
        assert!(err.to_string().contains("PROXIMITY_TOKEN"), "{err}");
        assert_eq!(seen.lock().unwrap().as_slice(), &[("Bearer wrong".to_string(), String::new())]);
    }

    #[tokio::test]
    async fn events_stream_that_drops_before_end_just_stops() {
        let events = vec![event(1, "step", None, None), event(2, "log", Some("half"), None)];
        let mut body = sse(&events);
        body.push_str("id: 3\nevent: log\ndata: {\"seq\":3"); // cut off mid-message
        let (base, _) = serve_events(body).await;
        let client = Client::new(&base, Some("s3cret".into())).unwrap();
        let got: Vec<api::JobEvent> = client.events("x", None).map(|item| item.unwrap()).collect().await;
        assert_eq!(json(&got), json(&events));
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_unreachable() {
        // Bind then drop, so the port is (very likely) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::new(&format!("http://{addr}"), None).unwrap();
        let err = client.apps().await.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&format!("cannot reach the Proximity server at http://{addr}: ")), "{text}");
        assert!(text.ends_with("(is `proximity serve` running?)"), "{text}");
    }
}
