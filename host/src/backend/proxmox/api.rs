//! The Proxmox VE REST API (`/api2/json`): authentication, requests, and the
//! tasks that every mutating call starts.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::tls::{self, PveTls};
use crate::backend::BackendError;

/// Tickets live 2 h on Proxmox; renew well before.
const TICKET_RENEW_AFTER: Duration = Duration::from_secs(90 * 60);
const TASK_POLL: Duration = Duration::from_millis(250);
/// Task log lines quoted in an error.
const TASK_LOG_LINES: usize = 10;

#[derive(Clone, Debug)]
pub enum PveAuth {
    /// `USER@REALM!TOKENID` and its secret.
    Token { id: String, secret: String },
    /// Ticket login; renewed before it expires.
    Password { user: String, password: String },
}

impl PveAuth {
    pub fn is_root_pam(&self) -> bool {
        matches!(self, PveAuth::Password { user, .. } if user == "root@pam")
    }
}

#[derive(Clone, Debug)]
struct Ticket {
    ticket: String,
    csrf: String,
    obtained: Instant,
}

/// One Proxmox API endpoint (any node of the cluster).
pub struct PveClient {
    http: reqwest::Client,
    /// e.g. `https://pve.example:8006/api2/json`
    base: String,
    auth: PveAuth,
    ticket: Mutex<Option<Ticket>>,
}

/// What the API said, kept apart so callers can react to a status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl From<ApiError> for BackendError {
    fn from(err: ApiError) -> Self {
        match err.status {
            404 => BackendError::NotFound(err.message),
            400 => BackendError::InvalidInput(err.message),
            _ => BackendError::Failed(err.message),
        }
    }
}

impl PveClient {
    pub fn new(url: &str, auth: PveAuth, tls: &PveTls, timeout: Duration) -> Result<Self, BackendError> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(BackendError::InvalidInput(format!("the Proxmox API URL must be https://…, not `{url}`")));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .user_agent(concat!("proximity/", env!("CARGO_PKG_VERSION")));
        let http = tls::configure(builder, tls)?
            .build()
            .map_err(|err| BackendError::Failed(format!("Proxmox API client: {err}")))?;
        Ok(PveClient { http, base, auth, ticket: Mutex::new(None) })
    }

    pub fn auth(&self) -> &PveAuth {
        &self.auth
    }

    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        self.call(reqwest::Method::GET, path, params).await
    }

    pub async fn post(&self, path: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        self.call(reqwest::Method::POST, path, params).await
    }

    pub async fn put(&self, path: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        self.call(reqwest::Method::PUT, path, params).await
    }

    pub async fn delete(&self, path: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        self.call(reqwest::Method::DELETE, path, params).await
    }

    /// One call; a ticket that the server no longer takes is renewed once.
    async fn call(&self, method: reqwest::Method, path: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        match self.call_once(method.clone(), path, params).await {
            Err(err) if err.status == 401 && matches!(self.auth, PveAuth::Password { .. }) => {
                *self.ticket.lock().await = None;
                self.call_once(method, path, params).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        request = if matches!(method, reqwest::Method::GET | reqwest::Method::DELETE) {
            request.query(params)
        } else {
            request.form(params)
        };
        match &self.auth {
            PveAuth::Token { id, secret } => {
                request = request.header("Authorization", format!("PVEAPIToken={id}={secret}"));
            }
            PveAuth::Password { .. } => {
                let ticket = self.ticket().await?;
                request = request.header("Cookie", format!("PVEAuthCookie={}", ticket.ticket));
                if method != reqwest::Method::GET {
                    request = request.header("CSRFPreventionToken", ticket.csrf);
                }
            }
        }
        let response = request.send().await.map_err(|err| ApiError {
            status: 0,
            message: format!("cannot reach the Proxmox API at {}: {}", self.base, error_chain(&err)),
        })?;
        read(method.as_str(), path, response).await
    }

    /// The current ticket, logging in when there is none or it is old.
    async fn ticket(&self) -> Result<Ticket, ApiError> {
        let PveAuth::Password { user, password } = &self.auth else {
            unreachable!("tickets are only used with password auth")
        };
        let mut slot = self.ticket.lock().await;
        if let Some(ticket) = slot.as_ref().filter(|t| t.obtained.elapsed() < TICKET_RENEW_AFTER) {
            return Ok(ticket.clone());
        }
        let url = format!("{}/access/ticket", self.base);
        let response = self
            .http
            .post(&url)
            .form(&[("username", user.as_str()), ("password", password.as_str())])
            .send()
            .await
            .map_err(|err| ApiError {
                status: 0,
                message: format!("cannot reach the Proxmox API at {}: {}", self.base, error_chain(&err)),
            })?;
        let data = read("POST", "/access/ticket", response).await.map_err(|err| ApiError {
            status: err.status,
            message: format!("login as {user} failed: {}", err.message),
        })?;
        let field = |name: &str| data[name].as_str().map(str::to_string);
        let (Some(ticket), Some(csrf)) = (field("ticket"), field("CSRFPreventionToken")) else {
            return Err(ApiError { status: 502, message: "the login answer has no ticket".into() });
        };
        let ticket = Ticket { ticket, csrf, obtained: Instant::now() };
        *slot = Some(ticket.clone());
        Ok(ticket)
    }

    /// Wait for a task to stop; `OK` and `WARNINGS: N` succeed, anything else
    /// fails with the end of the task's log.
    pub async fn wait_task(&self, upid: &str, timeout: Duration) -> Result<(), BackendError> {
        let node = upid_node(upid)?;
        let path = format!("/nodes/{node}/tasks/{}/status", encode(upid));
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.get(&path, &[]).await?;
            if status["status"].as_str() == Some("stopped") {
                let exit = status["exitstatus"].as_str().unwrap_or("unknown").to_string();
                if exit == "OK" || exit.starts_with("WARNINGS") {
                    return Ok(());
                }
                let log = self.task_log(&node, upid).await.unwrap_or_default();
                return Err(BackendError::Failed(format!(
                    "Proxmox task {} failed: {exit}{}",
                    status["type"].as_str().unwrap_or("?"),
                    if log.is_empty() { String::new() } else { format!("\n{log}") }
                )));
            }
            if Instant::now() + TASK_POLL > deadline {
                return Err(BackendError::Timeout(format!(
                    "Proxmox task {upid} still running after {}s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(TASK_POLL).await;
        }
    }

    async fn task_log(&self, node: &str, upid: &str) -> Result<String, ApiError> {
        let path = format!("/nodes/{node}/tasks/{}/log", encode(upid));
        let lines = self.get(&path, &[]).await?;
        let lines: Vec<&str> = lines.as_array().into_iter().flatten().filter_map(|l| l["t"].as_str()).collect();
        let start = lines.len().saturating_sub(TASK_LOG_LINES);
        Ok(lines[start..].join("\n"))
    }
}

/// The `data` of a PVE answer, or an error with PVE's own words.
async fn read(method: &str, path: &str, response: reqwest::Response) -> Result<Value, ApiError> {
    let status = response.status();
    let reason = status.canonical_reason().unwrap_or("").to_string();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body["data"].clone());
    }
    // PVE puts the summary in the status line and per-parameter problems in `errors`.
    let mut message = format!("{method} {path}: {} {reason}", status.as_u16());
    if let Some(text) = body["message"].as_str() {
        message.push_str(&format!(": {}", text.trim()));
    }
    if let Some(errors) = body["errors"].as_object() {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or(""))).collect();
        message.push_str(&format!(" ({})", list.join("; ")));
    }
    Err(ApiError { status: status.as_u16(), message })
}

/// The node a UPID belongs to: `UPID:{node}:…`.
pub fn upid_node(upid: &str) -> Result<String, BackendError> {
    let mut parts = upid.split(':');
    match (parts.next(), parts.next()) {
        (Some("UPID"), Some(node)) if !node.is_empty() => Ok(node.to_string()),
        _ => Err(BackendError::Failed(format!("`{upid}` is not a Proxmox task id (UPID)"))),
    }
}

/// A path segment: UPIDs hold `:`, `@` and `!`, which go percent-encoded.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids_name_their_node() {
        let upid = "UPID:pve2:0000ABCD:00001234:6740A1B2:vzcreate:101:root@pam!proximity:";
        assert_eq!(upid_node(upid).unwrap(), "pve2");
        assert!(upid_node("nonsense").is_err());
        assert_eq!(encode("UPID:pve2:x@y!z:"), "UPID%3Apve2%3Ax%40y%21z%3A");
    }
}
