//! Jobs through a `proximity serve` server: start one, follow its events with
//! a progress bar, print how it ended.

use std::io::IsTerminal as _;
use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::mpsc;

use super::client::{Client, ClientError};
use crate::api;

/// How many times a dropped event stream is resumed before falling back to polling.
const MAX_RECONNECTS: u32 = 5;
/// The first wait before resuming a dropped stream; it doubles each time.
const BACKOFF: Duration = if cfg!(test) { Duration::from_millis(1) } else { Duration::from_millis(250) };
/// Between two `GET /deployments/{id}` once we poll.
const POLL_EVERY: Duration = if cfg!(test) { Duration::from_millis(5) } else { Duration::from_secs(2) };
/// Consecutive failed polls before giving up.
const MAX_POLL_FAILURES: u32 = 5;
/// The exit code when the user stops following (128 + SIGINT).
const DETACHED: u8 = 130;

/// `proximity deploy --server ...`: start the deployment, follow it to its
/// end, print the result. With `json`, stdout gets only the final job.
pub async fn deploy(client: &Client, request: api::DeployRequest, json: bool) -> Result<ExitCode> {
    let accepted = client.deploy(&request).await?;
    let recipe = match &request.version {
        Some(version) => format!("{} {version}", request.recipe),
        None => request.recipe.clone(),
    };
    let dry_run = if request.dry_run { " (dry run)" } else { "" };
    eprintln!("deploying {recipe} as {} (job {}){dry_run}", accepted.app_id, accepted.id);
    let code = follow(client, &accepted.id, json).await?;
    if code == ExitCode::SUCCESS && !request.dry_run && !json {
        show_secrets_once(client, &accepted.app_id).await?;
    }
    Ok(code)
}

/// The app's secret parameters (generated passwords among them), shown at
/// the end of its deploy; afterwards only `proximity apps secrets` shows them.
async fn show_secrets_once(client: &Client, app_id: &str) -> Result<()> {
    let app = client.app(app_id).await?;
    if app.secrets.is_empty() {
        return Ok(());
    }
    let secrets = client.secrets(app_id).await?;
    println!("  secrets (shown now; later with `proximity apps secrets {app_id}`):");
    for (name, value) in &secrets.secrets {
        println!("    {name} = {value}");
    }
    Ok(())
}

/// Follow a job the server accepted until it ends, then print how it ended
/// (with `json`, only the final [`api::Job`] on stdout). Exit code 0 when it
/// succeeded, 1 otherwise, 130 when the user stopped following.
///
/// Ctrl-C asks the server to cancel the job and keeps following while it
/// cleans up; a second Ctrl-C stops following (the job goes on).
pub async fn follow(client: &Client, job_id: &str, json: bool) -> Result<ExitCode> {
    let mut follower = Follower::new(client, job_id);
    let outcome = follower.watch().await;
    follower.progress.finish();
    follower.interrupts.abort();
    let Some(job) = outcome? else {
        eprintln!("stopped following job {job_id}; it goes on on the server");
        return Ok(ExitCode::from(DETACHED));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    }
    if job.state == api::JobState::Succeeded {
        if !json {
            print_success(&job);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        // On stderr, so it shows with --json too.
        print_failure(&job);
        Ok(ExitCode::FAILURE)
    }
}

struct Follower<'a> {
    client: &'a Client,
    job_id: &'a str,
    progress: Progress,
    interrupts: Interrupts,
    /// A cancel has been asked for: the next Ctrl-C stops following.
    cancel_sent: bool,
    last_seq: Option<u64>,
}

impl<'a> Follower<'a> {
    fn new(client: &'a Client, job_id: &'a str) -> Self {
        Follower {
            client,
            job_id,
            progress: Progress::new(),
            interrupts: Interrupts::new(),
            cancel_sent: false,
            last_seq: None,
        }
    }

    /// The finished job, or `None` when the user stopped following.
    async fn watch(&mut self) -> Result<Option<api::Job>> {
        let mut failures = 0;
        loop {
            let mut progressed = false;
            let mut events = pin!(self.client.events(self.job_id, self.last_seq));
            let problem = loop {
                tokio::select! {
                    item = events.next() => match item {
                        Some(Ok(event)) => {
                            progressed = true;
                            // A resumed stream never repeats, but don't count on it.
                            if self.last_seq.is_some_and(|seq| event.seq <= seq) {
                                continue;
                            }
                            self.last_seq = Some(event.seq);
                            if event.kind == "end" {
                                return match event.job {
                                    Some(job) => Ok(Some(*job)),
                                    None => self.client.job(self.job_id).await.map(Some),
                                };
                            }
                            self.progress.event(&event);
                        }
                        Some(Err(err)) => break Some(err),
                        None => break None,
                    },
                    Some(()) = self.interrupts.recv() => {
                        if self.interrupted().await {
                            return Ok(None);
                        }
                    }
                }
            };
            if let Some(err) = &problem {
                // The server answered and said no (401, 404, ...): asking again won't help.
                if is_refusal(err) {
                    return Err(problem.unwrap());
                }
            }
            if progressed {
                failures = 0;
            }
            failures += 1;
            let why = problem.map(|err| format!(": {err:#}")).unwrap_or_default();
            if failures > MAX_RECONNECTS {
                self.progress.line(format!("lost the event stream{why}; polling the job instead"));
                return self.poll().await;
            }
            self.progress.line(format!("lost the event stream{why}; reconnecting ({failures}/{MAX_RECONNECTS})"));
            if self.pause(BACKOFF * 2u32.pow(failures - 1)).await {
                return Ok(None);
            }
        }
    }

    /// The fallback when the event stream won't stay up.
    async fn poll(&mut self) -> Result<Option<api::Job>> {
        let mut failures = 0;
        loop {
            match self.client.job(self.job_id).await {
                Ok(job) if job.state.is_finished() => return Ok(Some(job)),
                Ok(job) => {
                    failures = 0;
                    self.progress.status(format!("{} (polling)", job.state.as_str()));
                }
                Err(err) if is_refusal(&err) => return Err(err),
                Err(err) => {
                    failures += 1;
                    if failures >= MAX_POLL_FAILURES {
                        return Err(err.context(format!(
                            "lost contact with the server; job {} may still be running there",
                            self.job_id
                        )));
                    }
                    self.progress.line(format!("cannot get the job's state ({failures}/{MAX_POLL_FAILURES}): {err:#}"));
                }
            }
            if self.pause(POLL_EVERY).await {
                return Ok(None);
            }
        }
    }

    /// Wait, still answering Ctrl-C. True when the user stopped following.
    async fn pause(&mut self, duration: Duration) -> bool {
        let sleep = pin!(tokio::time::sleep(duration));
        let mut sleep = sleep;
        loop {
            tokio::select! {
                _ = &mut sleep => return false,
                Some(()) = self.interrupts.recv() => {
                    if self.interrupted().await {
                        return true;
                    }
                }
            }
        }
    }

    /// Ctrl-C: the first cancels the job, the next stops following. True to stop.
    async fn interrupted(&mut self) -> bool {
        if self.cancel_sent {
            return true;
        }
        self.cancel_sent = true;
        match self.client.cancel(self.job_id).await {
            Ok(job) if job.state.is_finished() => {
                self.progress.line(format!("job {} had already ended ({})", self.job_id, job.state.as_str()))
            }
            Ok(_) => self.progress.line(format!(
                "cancelled job {}; following it while it cleans up (Ctrl-C again to stop waiting)",
                self.job_id
            )),
            Err(err) => self.progress.line(format!(
                "could not cancel job {}: {err:#}\n(Ctrl-C again to stop following; the job goes on)",
                self.job_id
            )),
        }
        false
    }
}

/// A 4xx answer from the server: it is there and refuses, so retrying is pointless.
fn is_refusal(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ClientError>().and_then(ClientError::status).is_some_and(|status| (400..500).contains(&status))
}

/// Ctrl-C presses, as messages; a listener task owns the signal.
struct Interrupts {
    receiver: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Interrupts {
    fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if sender.send(()).is_err() {
                    break;
                }
            }
        });
        Interrupts { receiver, task }
    }

    async fn recv(&mut self) -> Option<()> {
        self.receiver.recv().await
    }

    fn abort(&self) {
        self.task.abort();
    }
}

/// Progress on stderr: a spinner showing the current step with lines
/// printed above it on a terminal; plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner:.cyan} {msg} [{elapsed}]") {
                bar.set_style(style);
            }
            bar.set_message("waiting for the server");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress { bar }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn status(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        }
    }

    fn event(&self, event: &api::JobEvent) {
        if event.kind == "step" {
            if let Some(name) = &event.name {
                self.status(name.clone());
            }
        }
        for line in event_lines(event) {
            self.line(line);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// An event as the local deploy prints it (`output::print_event`).
fn event_lines(event: &api::JobEvent) -> Vec<String> {
    let at = format!("[{:>6.2}s]", event.elapsed_ms as f64 / 1000.0);
    let message = event.message.as_deref().unwrap_or("");
    match event.kind.as_str() {
        "step" => vec![format!("{at} ▸ {}", event.name.as_deref().unwrap_or(message))],
        "log" => {
            let tag = event.level.as_deref().unwrap_or("info");
            message.lines().map(|line| format!("{at}     {tag}: {line}")).collect()
        }
        "host" => message.lines().map(|line| format!("{at}   host: {line}")).collect(),
        other => message.lines().map(|line| format!("{at}   {other}: {line}")).collect(),
    }
}

fn print_success(job: &api::Job) {
    let app = &job.app_id;
    let result = job.result.as_ref().unwrap_or(&Value::Null);
    if job.dry_run {
        println!("✓ dry run of {} {} as `{app}`: nothing was created", job.recipe, job.version);
        if let Some(plan) = result.get("plan").and_then(Value::as_array) {
            println!("Plan ({} operations):", plan.len());
            for step in plan {
                println!("  {step}");
            }
        } else if !result.is_null() {
            println!("{}", serde_json::to_string_pretty(result).unwrap_or_default());
        }
        return;
    }
    match job.kind {
        api::JobKind::Install => println!("✓ installed `{app}` ({} {})", job.recipe, job.version),
        api::JobKind::Upgrade => println!("✓ upgraded `{app}` to {} {}", job.recipe, job.version),
        api::JobKind::Uninstall => println!("✓ removed `{app}`"),
    }
    for line in result_lines(result) {
        println!("  {line}");
    }
}

/// What a finished job's result says about the app, for a person.
fn result_lines(result: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    // The runtime's outcome is `{result: {action, app}, created, destroyed}`;
    // accept the app info on its own too.
    let app = result
        .pointer("/result/app")
        .or_else(|| result.get("app"))
        .or_else(|| result.get("url").or_else(|| result.get("address")).map(|_| result));
    if let Some(app) = app {
        if let Some(url) = app.get("url").and_then(Value::as_str) {
            lines.push(format!("url:     {url}"));
        }
        if let Some(address) = app.get("address").and_then(Value::as_str) {
            lines.push(format!("address: {address}"));
        }
        let ports = strings(app.get("ports"));
        if !ports.is_empty() {
            lines.push(format!("ports:   {}", ports.join(", ")));
        }
        for (name, value) in pairs(app.get("outputs")) {
            lines.push(format!("{name}: {value}"));
        }
    }
    let created = container_ids(result.get("created"));
    if !created.is_empty() {
        lines.push(format!("containers: {}", created.join(", ")));
    }
    let destroyed = container_ids(result.get("destroyed"));
    if !destroyed.is_empty() {
        lines.push(format!("destroyed container(s): {}", destroyed.join(", ")));
    }
    lines
}

fn print_failure(job: &api::Job) {
    let error = job.error.as_ref().unwrap_or(&Value::Null);
    let mut message = describe_error(error);
    if let Some(step) = error.get("step").and_then(Value::as_str) {
        if !message.as_deref().unwrap_or("").contains(step) {
            message = Some(format!("{} (during step `{step}`)", message.as_deref().unwrap_or("failed")));
        }
    }
    match (job.state, message) {
        (api::JobState::Failed, Some(message)) => eprintln!("✗ failed: {message}"),
        (api::JobState::Failed, None) => eprintln!("✗ failed (the server gave no reason)"),
        (api::JobState::Cancelled, message) => {
            eprintln!("✗ cancelled{}", message.map(|m| format!(": {m}")).unwrap_or_default())
        }
        (api::JobState::Interrupted, _) => eprintln!("✗ interrupted: the server stopped while the job ran"),
        (state, message) => eprintln!(
            "✗ job {} ended {}{}",
            job.id,
            state.as_str(),
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ),
    }
    let destroyed = container_ids(error.get("destroyed"));
    if !destroyed.is_empty() {
        eprintln!("  cleaned up: destroyed container(s) {}", destroyed.join(", "));
    }
    let left = container_ids(error.get("left_behind"));
    if !left.is_empty() {
        eprintln!("  left behind: container(s) {}", left.join(", "));
    }
}

/// A job's `error` in words: its `message`, or the runtime's `failure`
/// (`{kind, message}`, nested for a recipe's own error).
fn describe_error(error: &Value) -> Option<String> {
    match error {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get("message") {
                return Some(match map.get("kind").and_then(Value::as_str) {
                    Some(kind) if !map.contains_key("failure") => format!("{kind}: {text}"),
                    _ => text.clone(),
                });
            }
            if let Some(failure) = map.get("failure") {
                return describe_error(failure);
            }
            match (map.get("kind").and_then(Value::as_str), map.get("message")) {
                (_, Some(inner @ Value::Object(_))) => describe_error(inner),
                (Some("deadline"), Some(secs)) => Some(format!("ran past its deadline of {secs}s")),
                (Some("memory-limit"), Some(mib)) => Some(format!("used more than its memory limit of {mib} MiB")),
                (Some(kind), Some(other)) => Some(format!("{kind}: {other}")),
                (Some(kind), None) => Some(kind.to_string()),
                (None, _) => Some(error.to_string()),
            }
        }
        other => Some(other.to_string()),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else { return Vec::new() };
    items.iter().map(|item| item.as_str().map(str::to_string).unwrap_or_else(|| item.to_string())).collect()
}

/// `{name: value}` or `[[name, value], ...]`.
fn pairs(value: Option<&Value>) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    match value {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item.as_array().map(Vec::as_slice) {
                Some([name, value]) => Some((text(name), text(value))),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `["ct-1", ...]` or `[{id: "ct-1", ...}, ...]`.
fn container_ids(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| item.as_str().or_else(|| item.get("id").and_then(Value::as_str)).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_lines_match_the_local_deploy() {
        let event = api::JobEvent {
            seq: 2,
            elapsed_ms: 1250,
            kind: "log".into(),
            name: None,
            level: Some("warn".into()),
            message: Some("one\ntwo".into()),
            job: None,
        };
        assert_eq!(event_lines(&event), vec!["[  1.25s]     warn: one", "[  1.25s]     warn: two"]);
        let step = api::JobEvent { kind: "step".into(), name: Some("install packages".into()), ..event.clone() };
        assert_eq!(event_lines(&step), vec!["[  1.25s] ▸ install packages"]);
        let host = api::JobEvent { kind: "host".into(), message: Some("created ct-1".into()), ..event };
        assert_eq!(event_lines(&host), vec!["[  1.25s]   host: created ct-1"]);
    }

    #[test]
    fn result_lines_read_the_runtime_outcome() {
        let result = json!({
            "result": {"action": "installed", "app": {
                "url": "http://10.0.3.12/", "address": "10.0.3.12", "ports": [80, 443],
                "outputs": [["admin", "admin@example.com"]]
            }},
            "created": [{"id": "ct-1", "node": "pve1"}],
            "destroyed": []
        });
        assert_eq!(
            result_lines(&result),
            vec![
                "url:     http://10.0.3.12/",
                "address: 10.0.3.12",
                "ports:   80, 443",
                "admin: admin@example.com",
                "containers: ct-1"
            ]
        );
        assert_eq!(
            result_lines(&json!({"url": "http://x/", "outputs": {"a": "b"}})),
            vec!["url:     http://x/", "a: b"]
        );
    }

    #[test]
    fn describe_error_reads_run_errors() {
        let recipe = json!({
            "failure": {"kind": "recipe", "message": {"kind": "denied", "message": "no grant for http"}},
            "step": "fetch", "destroyed": ["ct-1"], "left_behind": []
        });
        assert_eq!(describe_error(&recipe).as_deref(), Some("denied: no grant for http"));
        let deadline = json!({"failure": {"kind": "deadline", "message": 60}});
        assert_eq!(describe_error(&deadline).as_deref(), Some("ran past its deadline of 60s"));
        let with_text = json!({"message": "boom (during step `x`)", "failure": {"kind": "crashed", "message": "boom"}});
        assert_eq!(describe_error(&with_text).as_deref(), Some("boom (during step `x`)"));
        assert_eq!(describe_error(&json!("plain")).as_deref(), Some("plain"));
        assert_eq!(describe_error(&Value::Null), None);
    }

    #[test]
    fn only_4xx_answers_are_refusals() {
        let api = |status| {
            anyhow::Error::from(ClientError::Api {
                status,
                code: "x".into(),
                message: "y".into(),
                details: vec![],
                digest: None,
            })
        };
        assert!(is_refusal(&api(404)));
        assert!(is_refusal(&api(401)));
        assert!(!is_refusal(&api(502)));
        assert!(!is_refusal(&anyhow::Error::from(ClientError::Unreachable { url: "u".into(), cause: "c".into() })));
        assert!(!is_refusal(&anyhow::anyhow!("the event stream broke")));
    }

    // Following a job against a scripted server.

    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};

    fn job(state: api::JobState) -> api::Job {
        let result = json!({"result": {"action": "installed", "app": {"url": "http://10.0.3.2/", "ports": []}}});
        crate::cli::client::sample_job(state, result)
    }

    fn sse(events: &[(u64, &str, Option<api::JobState>)]) -> Response {
        let mut body = String::new();
        for (seq, kind, state) in events {
            let event = api::JobEvent {
                seq: *seq,
                elapsed_ms: seq * 10,
                kind: kind.to_string(),
                name: (*kind == "step").then(|| format!("step {seq}")),
                level: None,
                message: Some(format!("message {seq}")),
                job: state.map(|state| Box::new(job(state))),
            };
            let data = serde_json::to_string(&event).unwrap();
            body.push_str(&format!("id: {seq}\nevent: {kind}\ndata: {data}\n\n"));
        }
        ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], body).into_response()
    }

    fn error(status: StatusCode, code: &str) -> Response {
        (status, axum::Json(json!({"error": {"code": code, "message": "scripted"}}))).into_response()
    }

    /// Serve `events` (given the `Last-Event-ID` sent, or "") and `job` for job `x`;
    /// returns the client and the `Last-Event-ID`s the events route saw.
    async fn serve(
        events: impl Fn(&str) -> Response + Send + Sync + 'static,
        job_state: Option<api::JobState>,
    ) -> (Client, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let events = Arc::new(events);
        let app = axum::Router::new()
            .route(
                "/api/v1/deployments/x/events",
                axum::routing::get(move |headers: HeaderMap| {
                    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    record.lock().unwrap().push(last.clone());
                    let response = events(&last);
                    async move { response }
                }),
            )
            .route(
                "/api/v1/deployments/x",
                axum::routing::get(move || async move {
                    match job_state {
                        Some(state) => axum::Json(job(state)).into_response(),
                        None => error(StatusCode::NOT_FOUND, "not-found"),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (Client::new(&format!("http://{addr}"), Some("t".into())).unwrap(), seen)
    }

    #[tokio::test]
    async fn follow_resumes_a_dropped_stream_after_the_last_event() {
        let (client, seen) = serve(
            |last| match last {
                "" => sse(&[(1, "step", None), (2, "log", None)]),
                "2" => sse(&[(3, "host", None), (4, "end", Some(api::JobState::Succeeded))]),
                _ => error(StatusCode::BAD_REQUEST, "bad-request"),
            },
            None,
        )
        .await;
        let code = follow(&client, "x", false).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(seen.lock().unwrap().as_slice(), ["", "2"]);
    }

    #[tokio::test]
    async fn follow_exits_1_when_the_job_failed() {
        let (client, _) = serve(|_| sse(&[(1, "end", Some(api::JobState::Failed))]), None).await;
        assert_eq!(follow(&client, "x", true).await.unwrap(), ExitCode::FAILURE);
    }

    #[tokio::test]
    async fn follow_polls_when_the_stream_keeps_failing() {
        let (client, seen) =
            serve(|_| error(StatusCode::SERVICE_UNAVAILABLE, "unavailable"), Some(api::JobState::Succeeded)).await;
        let code = follow(&client, "x", false).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        // The first try and five reconnects.
        assert_eq!(seen.lock().unwrap().len(), 1 + MAX_RECONNECTS as usize);
    }

    #[tokio::test]
    async fn follow_gives_up_at_once_when_the_server_refuses() {
        let (client, seen) = serve(|_| error(StatusCode::NOT_FOUND, "not-found"), None).await;
        let err = follow(&client, "x", false).await.unwrap_err();
        assert!(err.to_string().starts_with("server said 404 not-found"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
