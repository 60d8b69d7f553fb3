//! The HTTP side: request parsing, auth, schema validation, the simulated
//! endpoints and their in-memory state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::schema::{parse_boolean, Rejection, Schema};
use crate::{formats, RecordedRequest, SimOptions};

/// Tickets are valid for two hours, as on PVE.
const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
const BASE: &str = "/api2/json";

pub(crate) struct Shared {
    pub options: SimOptions,
    pub schema: Arc<Schema>,
    pub fingerprint: String,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(
        options: SimOptions,
        schema: Arc<Schema>,
        cert_der: &[u8],
        machines: Option<Arc<dyn crate::Machines>>,
    ) -> Shared {
        let content = options.nodes.iter().map(|n| (n.clone(), options.templates.clone())).collect();
        let state = State {
            options: options.clone(),
            clock_offset: Duration::ZERO,
            tickets: HashMap::new(),
            containers: BTreeMap::new(),
            content,
            tasks: Vec::new(),
            requests: Vec::new(),
            faults: FaultState { task_duration: options.task_duration, ..FaultState::default() },
            next_pid: 0x1000 + rand::random::<u16>() as u32,
            machines,
        };
        Shared { fingerprint: crate::fingerprint(cert_der), options, schema, state: Mutex::new(state) }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) struct RequestFault {
    pub method: String,
    pub path: regex::Regex,
    pub status: u16,
    pub message: String,
}

pub(crate) struct TaskFault {
    pub task_type: String,
    pub exitstatus: String,
    pub log: Vec<String>,
}

#[derive(Default)]
pub(crate) struct FaultState {
    pub requests: Vec<RequestFault>,
    pub tasks: Vec<TaskFault>,
    pub task_duration: Duration,
    pub task_durations: HashMap<String, Duration>,
    pub create_conflicts: usize,
}

pub(crate) struct Ticket {
    user: String,
    csrf: String,
    issued_ms: u64,
}

pub(crate) struct Ct {
    pub vmid: u32,
    pub node: String,
    pub status: String,
    pub config: BTreeMap<String, String>,
    started_ms: u64,
}

#[derive(Clone, Debug)]
enum Effect {
    Create { vmid: u32, start: bool },
    Start { vmid: u32 },
    Stop { vmid: u32 },
    Destroy { vmid: u32 },
    Download { node: String, volid: String },
}

/// Filled in when a real machine operation ends.
type MachineOutcome = Arc<Mutex<Option<Result<(), String>>>>;

struct Task {
    upid: String,
    node: String,
    ty: String,
    id: String,
    user: String,
    pid: u32,
    pstart: u32,
    starttime: u64,
    start_ms: u64,
    duration_ms: u64,
    exitstatus: String,
    /// Every line, the final `TASK …` one included.
    log: Vec<String>,
    effect: Effect,
    done: bool,
    /// A real machine operation running with this task: `None` inside until it ends.
    machine: Option<MachineOutcome>,
}

impl Task {
    fn succeeded(&self) -> bool {
        self.exitstatus == "OK" || self.exitstatus.starts_with("WARNINGS")
    }
}

pub(crate) struct State {
    pub options: SimOptions,
    pub clock_offset: Duration,
    pub tickets: HashMap<String, Ticket>,
    pub containers: BTreeMap<u32, Ct>,
    /// Node → template volids on the storage.
    pub content: BTreeMap<String, Vec<String>>,
    tasks: Vec<Task>,
    pub requests: Vec<RecordedRequest>,
    pub faults: FaultState,
    next_pid: u32,
    /// Real containers behind the simulated ones, when the test gave some.
    machines: Option<Arc<dyn crate::Machines>>,
}

/// An error answer: status and PVE's message.
struct ApiError {
    status: u16,
    message: String,
    errors: Option<BTreeMap<String, String>>,
}

fn fail(status: u16, message: impl Into<String>) -> ApiError {
    ApiError { status, message: message.into(), errors: None }
}

type ApiResult = Result<Value, ApiError>;

/// Who is calling.
#[derive(Clone, Debug)]
enum Caller {
    Token(String),
    Ticket(String),
    Anonymous,
}

impl Caller {
    fn user(&self) -> &str {
        match self {
            Caller::Token(user) | Caller::Ticket(user) => user,
            Caller::Anonymous => "",
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = method.as_str().to_ascii_uppercase();
    let raw_path = uri.path();
    let path = raw_path
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let path = match path.strip_prefix(BASE) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
        _ => {
            let mut state = shared.lock();
            let message = format!("no such file '{path}'");
            return state.answer(&method, &path, BTreeMap::new(), true, Err(fail(404, message)));
        }
    };
    let params = match parse_params(&method, uri.query(), &headers, &body) {
        Ok(params) => params,
        Err(message) => {
            let mut state = shared.lock();
            let errors = BTreeMap::from([("body".to_string(), message)]);
            let err = ApiError { status: 400, message: "Parameter verification failed.".into(), errors: Some(errors) };
            return state.answer(&method, &path, BTreeMap::new(), true, Err(err));
        }
    };

    let checked = shared.schema.check(&method, &path, &params);
    let mut state = shared.lock();
    state.tick();

    // 1. the path and method must exist (PVE: 501)
    if let Err(Rejection::NotImplemented(message)) = &checked {
        return state.answer(&method, &path, params, true, Err(fail(501, message.clone())));
    }
    // 2. authentication (the login call itself needs none)
    let public = path == "/access/ticket";
    let caller = if public {
        Caller::Anonymous
    } else {
        match state.authenticate(&method, &headers, &shared.options) {
            Ok(caller) => caller,
            Err(err) => return state.answer(&method, &path, params, false, Err(err)),
        }
    };
    // 3. parameters (PVE: 400 "Parameter verification failed.")
    let resolved = match checked {
        Ok(resolved) => resolved,
        Err(Rejection::Params(errors)) => {
            let err = ApiError { status: 400, message: "Parameter verification failed.".into(), errors: Some(errors) };
            return state.answer(&method, &path, params, true, Err(err));
        }
        Err(Rejection::NotImplemented(_)) => unreachable!(),
    };
    // 4. injected faults
    if let Some(i) = state.faults.requests.iter().position(|f| f.method == method && f.path.is_match(&path)) {
        let fault = state.faults.requests.remove(i);
        return state.answer(&method, &path, params, false, Err(fail(fault.status, fault.message)));
    }
    // 5. the endpoint
    let result = state.dispatch(&shared, &method, &resolved.template, &resolved.params, &caller);
    state.answer(&method, &path, params, false, result)
}

/// Query string, plus a form or JSON body for POST/PUT.
fn parse_params(
    method: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(query) = query {
        pairs.extend(form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    if matches!(method, "POST" | "PUT") && !body.is_empty() {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match content_type.as_str() {
            "application/x-www-form-urlencoded" | "" => {
                pairs.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
            }
            "application/json" => {
                let value: Value = serde_json::from_slice(body).map_err(|err| format!("invalid JSON body: {err}"))?;
                let Value::Object(object) = value else { return Err("the JSON body is not an object".into()) };
                for (key, value) in object {
                    let text = match value {
                        Value::Null => continue,
                        Value::String(s) => s,
                        Value::Bool(b) => (if b { "1" } else { "0" }).to_string(),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string).unwrap_or(i.to_string()))
                            .collect::<Vec<_>>()
                            .join("\0"),
                        other => other.to_string(),
                    };
                    pairs.push((key, text));
                }
            }
            other => return Err(format!("unsupported content type '{other}'")),
        }
    }
    for (key, value) in pairs {
        match params.get_mut(&key) {
            Some(existing) => {
                let existing: &mut String = existing;
                existing.push('\0');
                existing.push_str(&value);
            }
            None => {
                params.insert(key, value);
            }
        }
    }
    Ok(params)
}

fn now_real_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02X}", rand::random::<u8>())).collect()
}

impl State {
    fn now_ms(&self) -> u64 {
        now_real_ms() + self.clock_offset.as_millis() as u64
    }

    /// Record the request and build the answer.
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        params: BTreeMap<String, String>,
        rejected: bool,
        result: ApiResult,
    ) -> Response {
        let (status, body, reason, errors) = match result {
            Ok(data) => (200, json!({ "data": data }), "OK".to_string(), BTreeMap::new()),
            Err(err) => {
                let errors = err.errors.clone().unwrap_or_default();
                let body = match &err.errors {
                    Some(errors) => json!({ "data": null, "errors": errors }),
                    None => json!({ "data": null, "message": format!("{}\n", err.message.trim_end()) }),
                };
                let mut errors = errors;
                if rejected && errors.is_empty() {
                    errors.insert("path".into(), err.message.clone());
                }
                (err.status, body, err.message, errors)
            }
        };
        self.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.to_string(),
            params,
            status,
            rejected,
            errors,
        });
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, Json(body)).into_response();
        let reason: String =
            reason.lines().next().unwrap_or("").chars().filter(|c| c.is_ascii() && !c.is_control()).collect();
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
            response.extensions_mut().insert(phrase);
        }
        response
    }

    fn authenticate(&mut self, method: &str, headers: &HeaderMap, options: &SimOptions) -> Result<Caller, ApiError> {
        if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            let Some(rest) = auth.strip_prefix("PVEAPIToken=") else {
                return Err(fail(401, "authentication failure"));
            };
            let Some((id, secret)) = rest.split_once('=') else {
                return Err(fail(401, "authentication failure"));
            };
            if id == options.token.0 && secret == options.token.1 {
                return Ok(Caller::Token(id.to_string()));
            }
            return Err(fail(401, "authentication failure"));
        }
        let cookie = headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == "PVEAuthCookie")
            .map(|(_, value)| percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned());
        let Some(ticket) = cookie else { return Err(fail(401, "No ticket")) };
        let now = self.now_ms();
        let Some(entry) = self.tickets.get(&ticket) else { return Err(fail(401, "authentication failure")) };
        if now.saturating_sub(entry.issued_ms) >= TICKET_LIFETIME.as_millis() as u64 {
            return Err(fail(401, "authentication failure"));
        }
        if method != "GET" {
            let csrf = headers.get("csrfpreventiontoken").and_then(|v| v.to_str().ok());
            if csrf != Some(entry.csrf.as_str()) {
                return Err(fail(401, "Permission denied - invalid csrf token"));
            }
        }
        Ok(Caller::Ticket(entry.user.clone()))
    }

    /// Finish every task whose time is up, applying its effect.
    pub fn tick(&mut self) {
        let now = self.now_ms();
        let mut finished = Vec::new();
        for task in self.tasks.iter_mut().filter(|t| !t.done) {
            if task.start_ms + task.duration_ms > now {
                continue;
            }
            // A task with a real operation behind it ends when that does.
            if let Some(slot) = &task.machine {
                match slot.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    None => continue,
                    Some(Ok(())) => {}
                    Some(Err(message)) if task.succeeded() => {
                        task.log.pop(); // "TASK OK"
                        task.log.push(format!("TASK ERROR: {message}"));
                        task.exitstatus = message;
                    }
                    Some(Err(_)) => {}
                }
            }
            task.done = true;
            finished.push((task.effect.clone(), task.succeeded()));
        }
        for (effect, ok) in finished {
            self.apply(effect, ok, now);
        }
    }

    fn apply(&mut self, effect: Effect, ok: bool, now: u64) {
        match (effect, ok) {
            (Effect::Create { vmid, start }, true) => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.config.remove("lock");
                    if start {
                        ct.status = "running".into();
                        ct.started_ms = now;
                    }
                }
            }
            (Effect::Create { vmid, .. }, false) => {
                self.containers.remove(&vmid);
            }
            (Effect::Start { vmid }, true) => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.status = "running".into();
                    ct.started_ms = now;
                }
            }
            (Effect::Stop { vmid }, true) => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.status = "stopped".into();
                }
            }
            (Effect::Destroy { vmid }, true) => {
                self.containers.remove(&vmid);
            }
            (Effect::Destroy { vmid }, false) => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.config.remove("lock");
                }
            }
            (Effect::Download { node, volid }, true) => {
                let list = self.content.entry(node).or_default();
                if !list.contains(&volid) {
                    list.push(volid);
                }
            }
            _ => {}
        }
    }

    /// Start the real operation behind a task's effect, if there are machines.
    fn machine_operation(&self, effect: &Effect) -> Option<MachineOutcome> {
        let machines = self.machines.clone()?;
        let future = match effect {
            Effect::Create { vmid, start } => {
                let config = self.containers.get(vmid).map(|ct| ct.config.clone()).unwrap_or_default();
                let (vmid, start, m) = (*vmid, *start, machines.clone());
                Box::pin(async move {
                    m.create(vmid, config).await?;
                    if start {
                        m.start(vmid).await?;
                    }
                    Ok(())
                }) as crate::MachineFuture
            }
            Effect::Start { vmid } => machines.start(*vmid),
            Effect::Stop { vmid } => machines.stop(*vmid),
            Effect::Destroy { vmid } => machines.destroy(*vmid),
            Effect::Download { .. } => return None,
        };
        let slot = Arc::new(Mutex::new(None));
        let filled = slot.clone();
        tokio::spawn(async move {
            let outcome = future.await;
            *filled.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        });
        Some(slot)
    }

    /// Start a task; returns its UPID.
    fn start_task(&mut self, node: &str, ty: &str, id: &str, user: &str, effect: Effect, lines: Vec<String>) -> String {
        self.next_pid += 1 + rand::random::<u8>() as u32 % 16;
        let pid = self.next_pid;
        let pstart = 0x0100_0000 + pid.wrapping_mul(7) % 0x00FF_FFFF;
        let start_ms = self.now_ms();
        let starttime = start_ms / 1000;
        let upid = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{ty}:{id}:{user}:");
        let duration = self.faults.task_durations.get(ty).copied().unwrap_or(self.faults.task_duration);
        let fault = self.faults.tasks.iter().position(|f| f.task_type == ty).map(|i| self.faults.tasks.remove(i));
        let (exitstatus, log) = match fault {
            None => {
                let mut log = lines;
                log.push("TASK OK".into());
                ("OK".to_string(), log)
            }
            Some(fault) if fault.exitstatus.starts_with("WARNINGS") => {
                let mut log = lines;
                log.extend(fault.log);
                log.push(format!("TASK {}", fault.exitstatus));
                (fault.exitstatus, log)
            }
            Some(fault) => {
                let mut log = fault.log;
                log.push(format!("TASK ERROR: {}", fault.exitstatus));
                (fault.exitstatus, log)
            }
        };
        let succeeded = exitstatus == "OK" || exitstatus.starts_with("WARNINGS");
        self.tasks.push(Task {
            upid: upid.clone(),
            node: node.to_string(),
            ty: ty.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            pid,
            pstart,
            starttime,
            start_ms,
            duration_ms: duration.as_millis() as u64,
            exitstatus,
            log,
            // A task set up to fail does nothing real.
            machine: if succeeded { self.machine_operation(&effect) } else { None },
            effect,
            done: false,
        });
        upid
    }

    fn dispatch(
        &mut self,
        shared: &Shared,
        method: &str,
        template: &str,
        p: &BTreeMap<String, String>,
        caller: &Caller,
    ) -> ApiResult {
        if let Some(node) = p.get("node") {
            if !self.options.nodes.contains(node) {
                return Err(fail(500, format!("no such cluster node '{node}'")));
            }
        }
        match (method, template) {
            ("GET", "/version") => Ok(json!({ "version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d" })),
            ("GET", "/access/ticket") => Ok(Value::Null),
            ("POST", "/access/ticket") => self.login(p),
            ("GET", "/nodes") => {
                Ok(Value::Array(self.options.nodes.iter().map(|n| self.node_entry(n, shared)).collect()))
            }
            ("GET", "/cluster/resources") => self.resources(p),
            ("GET", "/cluster/nextid") => self.nextid(p),
            ("GET", "/nodes/{node}/storage/{storage}/content") => self.storage_content(p),
            ("GET", "/nodes/{node}/aplinfo") => {
                Ok(Value::Array(self.options.available.iter().map(|t| aplinfo_entry(t)).collect()))
            }
            ("POST", "/nodes/{node}/aplinfo") => self.download(p, caller),
            ("GET", "/nodes/{node}/lxc") => Ok(Value::Array(
                self.containers.values().filter(|ct| ct.node == p["node"]).map(|ct| self.ct_status(ct)).collect(),
            )),
            ("POST", "/nodes/{node}/lxc") => self.create(p, caller),
            ("GET", "/nodes/{node}/lxc/{vmid}/config") => self.get_config(shared, p),
            ("PUT", "/nodes/{node}/lxc/{vmid}/config") => self.put_config(p, caller),
            ("GET", "/nodes/{node}/lxc/{vmid}/status/current") => {
                let ct = self.ct(p)?;
                Ok(self.ct_status(ct))
            }
            ("POST", "/nodes/{node}/lxc/{vmid}/status/start") => self.power(p, caller, "vzstart"),
            ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown") => self.power(p, caller, "vzshutdown"),
            ("POST", "/nodes/{node}/lxc/{vmid}/status/stop") => self.power(p, caller, "vzstop"),
            ("DELETE", "/nodes/{node}/lxc/{vmid}") => self.destroy(p, caller),
            ("GET", "/nodes/{node}/lxc/{vmid}/interfaces") => self.interfaces(p),
            ("GET", "/nodes/{node}/tasks/{upid}/status") => self.task_status(p),
            ("GET", "/nodes/{node}/tasks/{upid}/log") => self.task_log(p),
            _ => Err(fail(501, format!("Method '{method} {BASE}{template}' is valid but not simulated"))),
        }
    }

    fn login(&mut self, p: &BTreeMap<String, String>) -> ApiResult {
        let mut username = p["username"].clone();
        if !username.contains('@') {
            if let Some(realm) = p.get("realm") {
                username = format!("{username}@{realm}");
            }
        }
        let password = &p["password"];
        let (user, expected) = &self.options.password;
        let now = self.now_ms();
        let renewal = self.tickets.get(password).is_some_and(|t| {
            t.user == username && now.saturating_sub(t.issued_ms) < TICKET_LIFETIME.as_millis() as u64
        });
        if !(renewal || (&username == user && password == expected)) {
            return Err(fail(401, "authentication failure"));
        }
        let stamp = format!("{:08X}", now / 1000);
        let ticket = format!("PVE:{username}:{stamp}::{}", random_hex(48));
        let csrf = format!("{stamp}:{}", random_hex(20));
        self.tickets.insert(ticket.clone(), Ticket { user: username.clone(), csrf: csrf.clone(), issued_ms: now });
        Ok(json!({
            "username": username,
            "ticket": ticket,
            "CSRFPreventionToken": csrf,
            "clustername": "proximity-sim",
            "cap": { "vms": {}, "storage": {}, "nodes": {}, "access": {}, "dc": {}, "sdn": {}, "mapping": {} },
        }))
    }

    /// A node's (total, used) memory in bytes, its running containers included.
    fn node_memory(&self, node: &str) -> (u64, u64) {
        let base = self.options.node_memory.get(node).copied().unwrap_or_default();
        let containers: u64 = self
            .containers
            .values()
            .filter(|ct| ct.node == node && ct.status == "running")
            .map(|ct| config_u64(&ct.config, "memory", 512) * 1024 * 1024 / 4)
            .sum();
        (base.total, (base.used + containers).min(base.total))
    }

    fn node_entry(&self, node: &str, shared: &Shared) -> Value {
        let (maxmem, mem) = self.node_memory(node);
        json!({
            "node": node, "id": format!("node/{node}"), "type": "node", "status": "online", "level": "",
            "maxmem": maxmem, "mem": mem, "maxcpu": 16, "cpu": 0.031,
            "maxdisk": 100_000_000_000u64, "disk": 12_000_000_000u64, "uptime": 86_400,
            "ssl_fingerprint": shared.fingerprint,
        })
    }

    fn resources(&self, p: &BTreeMap<String, String>) -> ApiResult {
        let filter = p.get("type").map(String::as_str);
        let mut out = Vec::new();
        if filter.is_none() || filter == Some("vm") {
            for ct in self.containers.values() {
                let mut entry = self.ct_status(ct);
                entry["id"] = json!(format!("lxc/{}", ct.vmid));
                entry["node"] = json!(ct.node);
                entry["maxcpu"] = entry["cpus"].clone();
                out.push(entry);
            }
        }
        if filter.is_none() || filter == Some("node") {
            for node in &self.options.nodes {
                let (maxmem, mem) = self.node_memory(node);
                out.push(json!({
                    "id": format!("node/{node}"), "type": "node", "node": node, "status": "online", "level": "",
                    "maxmem": maxmem, "mem": mem, "maxcpu": 16, "cpu": 0.031,
                    "maxdisk": 100_000_000_000u64, "disk": 12_000_000_000u64, "uptime": 86_400,
                    "cgroup-mode": 2,
                }));
            }
        }
        if filter.is_none() || filter == Some("storage") {
            for node in &self.options.nodes {
                let storage = &self.options.storage;
                out.push(json!({
                    "id": format!("storage/{node}/{storage}"), "type": "storage", "storage": storage, "node": node,
                    "status": "available", "plugintype": "dir", "shared": 0,
                    "content": "iso,vztmpl,backup,rootdir,images",
                    "maxdisk": 100_000_000_000u64, "disk": 12_000_000_000u64,
                }));
            }
        }
        Ok(Value::Array(out))
    }

    fn nextid(&self, p: &BTreeMap<String, String>) -> ApiResult {
        if let Some(vmid) = p.get("vmid") {
            let vmid: u32 = vmid.parse().unwrap_or(0);
            if self.containers.contains_key(&vmid) {
                return Err(ApiError {
                    status: 400,
                    message: "Parameter verification failed.".into(),
                    errors: Some(BTreeMap::from([("vmid".to_string(), format!("VM {vmid} already exists"))])),
                });
            }
            return Ok(json!(vmid.to_string()));
        }
        let free = (100u32..).find(|id| !self.containers.contains_key(id)).unwrap_or(100);
        // PVE answers the id as a string.
        Ok(json!(free.to_string()))
    }

    fn check_storage(&self, storage: &str) -> Result<(), ApiError> {
        if storage != self.options.storage {
            return Err(fail(500, format!("storage '{storage}' does not exist")));
        }
        Ok(())
    }

    fn storage_content(&self, p: &BTreeMap<String, String>) -> ApiResult {
        self.check_storage(&p["storage"])?;
        let node = &p["node"];
        let wanted: Option<Vec<&str>> = p.get("content").map(|c| formats::split_list(c).collect());
        let wants = |content: &str| wanted.as_ref().is_none_or(|w| w.contains(&content));
        let vmid_filter: Option<u32> = p.get("vmid").and_then(|v| v.parse().ok());
        let mut out = Vec::new();
        if wants("vztmpl") && vmid_filter.is_none() {
            for volid in self.content.get(node).into_iter().flatten() {
                let format = if volid.ends_with(".tar.zst") {
                    "tzst"
                } else if volid.ends_with(".tar.xz") {
                    "txz"
                } else {
                    "tgz"
                };
                out.push(json!({ "volid": volid, "content": "vztmpl", "format": format, "size": 129_863_680u64, "ctime": 1_717_000_000u64 }));
            }
        }
        if wants("rootdir") {
            for ct in self.containers.values().filter(|ct| &ct.node == node) {
                if vmid_filter.is_some_and(|v| v != ct.vmid) {
                    continue;
                }
                for (key, value) in &ct.config {
                    if key == "rootfs" || key.starts_with("mp") {
                        let volume = value.split(',').next().unwrap_or("");
                        if volume.starts_with(&format!("{}:", self.options.storage)) {
                            out.push(json!({ "volid": volume, "content": "rootdir", "format": "raw", "vmid": ct.vmid, "size": 4_294_967_296u64 }));
                        }
                    }
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn download(&mut self, p: &BTreeMap<String, String>, caller: &Caller) -> ApiResult {
        let node = p["node"].clone();
        self.check_storage(&p["storage"])?;
        let template = &p["template"];
        if !self.options.available.contains(template) {
            return Err(ApiError {
                status: 400,
                message: "Parameter verification failed.".into(),
                errors: Some(BTreeMap::from([("template".to_string(), "no such template".to_string())])),
            });
        }
        let volid = format!("{}:vztmpl/{template}", p["storage"]);
        let lines = vec![
            format!("starting template download from: http://download.proxmox.com/images/system/{template}"),
            format!("target file: /var/lib/vz/template/cache/{template}"),
            "download of 'http://download.proxmox.com/images/system/…' to '/var/lib/vz/template/cache/…' finished"
                .into(),
            "calculating checksum...OK, checksum verified".into(),
        ];
        let upid = self.start_task(
            &node,
            "download",
            template,
            caller.user(),
            Effect::Download { node: node.clone(), volid },
            lines,
        );
        Ok(json!(upid))
    }

    /// PVE's `check_ct_modify_config_perm`: what only root@pam may change.
    fn check_root_only(
        &self,
        caller: &Caller,
        new: &BTreeMap<String, String>,
        old: Option<&BTreeMap<String, String>>,
        deleted: &[String],
    ) -> Result<(), ApiError> {
        if caller.user() == "root@pam" {
            return Ok(());
        }
        let perm = |message: &str| fail(403, format!("Permission check failed ({message})"));
        let unprivileged =
            new.get("unprivileged").or_else(|| old.and_then(|o| o.get("unprivileged"))).and_then(|v| parse_boolean(v))
                == Some("1");
        let mut keys: Vec<&String> = new.keys().collect();
        keys.extend(deleted.iter());
        for key in keys {
            let value = new.get(key);
            if key.starts_with("dev") && key[3..].bytes().all(|b| b.is_ascii_digit()) && key.len() > 3 {
                return Err(perm("configuring device passthrough is only allowed for root@pam"));
            }
            if key == "hookscript" {
                return Err(perm("changing the hookscript is only allowed for root@pam"));
            }
            if key == "rootfs"
                || (key.starts_with("mp") && key[2..].bytes().all(|b| b.is_ascii_digit()) && key.len() > 2)
            {
                if let Some(value) = value {
                    let volume = property(value, "volume", true).unwrap_or_default();
                    if volume.starts_with('/') {
                        let ty = if volume.starts_with("/dev/") { "device" } else { "bind" };
                        return Err(perm(&format!("mount point type {ty} is only allowed for root@pam")));
                    }
                }
            }
            if key == "features" {
                if !unprivileged {
                    return Err(perm("changing feature flags for privileged container is only allowed for root@pam"));
                }
                let parse = |text: &str| -> BTreeMap<String, String> {
                    text.split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), parse_boolean(v).unwrap_or(v).to_string()))
                        .collect()
                };
                let features = value.map(|v| parse(v)).unwrap_or_default();
                let old_features = old.and_then(|o| o.get("features")).map(|v| parse(v)).unwrap_or_default();
                let (mut nesting_changed, mut other_changed) = (false, false);
                if !old_features.is_empty() {
                    for name in old_features.keys().chain(features.keys()) {
                        if old_features.get(name) != features.get(name) {
                            if name == "nesting" {
                                nesting_changed = true;
                            } else {
                                other_changed = true;
                            }
                        }
                    }
                } else if features.len() == 1 && features.get("nesting").is_some_and(|v| v == "1") {
                    nesting_changed = true;
                } else if !features.is_empty() {
                    other_changed = true;
                }
                if other_changed || (nesting_changed && !unprivileged) {
                    return Err(perm("changing feature flags (except nesting) is only allowed for root@pam"));
                }
            }
        }
        Ok(())
    }

    fn create(&mut self, p: &BTreeMap<String, String>, caller: &Caller) -> ApiResult {
        let node = p["node"].clone();
        let vmid: u32 = p["vmid"].parse().map_err(|_| fail(400, "bad vmid"))?;
        if self.faults.create_conflicts > 0 {
            self.faults.create_conflicts -= 1;
            return Err(fail(500, format!("CT {vmid} already exists on node '{node}'")));
        }
        if let Some(ct) = self.containers.get(&vmid) {
            return Err(fail(500, format!("CT {vmid} already exists on node '{}'", ct.node)));
        }
        let storage = p.get("storage").cloned().unwrap_or_else(|| "local".into());
        self.check_storage(&storage)?;
        let ostemplate = &p["ostemplate"];
        let installed = self.content.get(&node).is_some_and(|list| list.contains(ostemplate));
        if !installed {
            if let Some((store, _)) = ostemplate.split_once(':') {
                self.check_storage(store)?;
            }
            return Err(fail(500, format!("volume '{ostemplate}' does not exist")));
        }
        const NOT_CONFIG: &[&str] = &[
            "node",
            "vmid",
            "ostemplate",
            "password",
            "ssh-public-keys",
            "storage",
            "start",
            "restore",
            "unique",
            "force",
            "ignore-unpack-errors",
            "pool",
            "ha-managed",
            "bwlimit",
        ];
        let mut config: BTreeMap<String, String> =
            p.iter().filter(|(k, _)| !NOT_CONFIG.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        self.check_root_only(caller, &config, None, &[])?;

        config.entry("arch".into()).or_insert_with(|| "amd64".into());
        let file = ostemplate.rsplit('/').next().unwrap_or("");
        let ostype =
            ["debian", "ubuntu", "alpine", "centos", "fedora", "archlinux", "devuan", "opensuse", "gentoo", "nixos"]
                .into_iter()
                .find(|os| file.starts_with(os))
                .unwrap_or("unmanaged");
        config.entry("ostype".into()).or_insert_with(|| ostype.into());
        // Disks: `STORAGE:SIZE` allocates a new volume.
        let mut disk = 0;
        let mut keys: Vec<String> = config.keys().filter(|k| k.starts_with("mp")).cloned().collect();
        keys.insert(0, "rootfs".into());
        for key in keys {
            let value = config.get(&key).cloned().unwrap_or_else(|| format!("{storage}:4"));
            let mut parts: Vec<String> = value.split(',').map(str::to_string).collect();
            let volume_at = parts.iter().position(|p| !p.contains('=') || p.starts_with("volume="));
            if let Some(i) = volume_at {
                let volume = parts[i].trim_start_matches("volume=").to_string();
                if let Some((store, size)) = volume.split_once(':') {
                    if let Ok(gib) = size.parse::<f64>() {
                        self.check_storage(store)?;
                        parts[i] = format!("{store}:{vmid}/vm-{vmid}-disk-{disk}.raw");
                        disk += 1;
                        parts.retain(|p| !p.starts_with("size="));
                        parts.push(format!("size={}G", gib));
                    }
                }
            }
            config.insert(key, parts.join(","));
        }
        // Interfaces get a MAC address.
        let nets: Vec<String> = config.keys().filter(|k| k.starts_with("net")).cloned().collect();
        for (i, key) in nets.into_iter().enumerate() {
            let value = config[&key].clone();
            if property(&value, "hwaddr", false).is_none() {
                let mac = format!("BC:24:11:{:02X}:{:02X}:{:02X}", (vmid >> 8) as u8, vmid as u8, i as u8);
                config.insert(key, format!("{value},hwaddr={mac}"));
            }
        }
        config.insert("lock".into(), "create".into());
        let start = p.get("start").is_some_and(|v| v == "1");
        self.containers.insert(vmid, Ct { vmid, node: node.clone(), status: "stopped".into(), config, started_ms: 0 });
        let lines = vec![
            format!("extracting archive '/var/lib/vz/template/cache/{file}'"),
            "Total bytes read: 519045120 (495MiB, 160MiB/s)".into(),
            "Detected container architecture: amd64".into(),
            "Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ...".into(),
        ];
        let upid =
            self.start_task(&node, "vzcreate", &vmid.to_string(), caller.user(), Effect::Create { vmid, start }, lines);
        Ok(json!(upid))
    }

    /// The container named by `node` and `vmid`, which must live on that node.
    fn ct(&self, p: &BTreeMap<String, String>) -> Result<&Ct, ApiError> {
        let node = &p["node"];
        let vmid: u32 = p["vmid"].parse().unwrap_or(0);
        match self.containers.get(&vmid) {
            Some(ct) if &ct.node == node => Ok(ct),
            _ => Err(fail(500, format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"))),
        }
    }

    fn get_config(&self, shared: &Shared, p: &BTreeMap<String, String>) -> ApiResult {
        let ct = self.ct(p)?;
        let create = shared.schema.parameters("POST", "/nodes/{node}/lxc");
        let mut out = serde_json::Map::new();
        for (key, value) in &ct.config {
            let ty = create
                .and_then(|c| c.get("properties"))
                .and_then(|props| props.get(key.as_str()))
                .and_then(|prop| prop.get("type"))
                .and_then(Value::as_str);
            let value = match ty {
                Some("integer" | "boolean") => value.parse::<i64>().map(Value::from).unwrap_or(json!(value)),
                Some("number") => value.parse::<f64>().map(Value::from).unwrap_or(json!(value)),
                _ => json!(value),
            };
            out.insert(key.clone(), value);
        }
        out.insert("digest".into(), json!(digest(&ct.config)));
        Ok(Value::Object(out))
    }

    fn put_config(&mut self, p: &BTreeMap<String, String>, caller: &Caller) -> ApiResult {
        let ct = self.ct(p)?;
        if let Some(lock) = ct.config.get("lock") {
            return Err(fail(500, format!("CT {} is locked ({lock})", ct.vmid)));
        }
        if let Some(expected) = p.get("digest") {
            if expected != &digest(&ct.config) {
                return Err(fail(500, "detected modified configuration - file changed by other user? Try again."));
            }
        }
        let deleted: Vec<String> =
            p.get("delete").map(|d| formats::split_list(d).map(str::to_string).collect()).unwrap_or_default();
        let new: BTreeMap<String, String> = p
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "node" | "vmid" | "delete" | "revert" | "digest"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for key in &deleted {
            if new.contains_key(key) {
                return Err(fail(500, format!("you can't modify and delete option '{key}' at the same time")));
            }
        }
        self.check_root_only(caller, &new, Some(&ct.config), &deleted)?;
        let vmid = ct.vmid;
        let ct = self.containers.get_mut(&vmid).expect("checked above");
        for key in deleted {
            ct.config.remove(&key);
        }
        ct.config.extend(new);
        Ok(Value::Null)
    }

    fn ct_status(&self, ct: &Ct) -> Value {
        let running = ct.status == "running";
        let maxmem = config_u64(&ct.config, "memory", 512) * 1024 * 1024;
        let uptime = if running { self.now_ms().saturating_sub(ct.started_ms) / 1000 } else { 0 };
        let mut status = json!({
            "vmid": ct.vmid, "name": ct.config.get("hostname").cloned().unwrap_or_else(|| format!("CT{}", ct.vmid)),
            "status": ct.status, "type": "lxc", "template": 0,
            "maxmem": maxmem, "mem": if running { maxmem / 4 } else { 0 },
            "maxswap": config_u64(&ct.config, "swap", 512) * 1024 * 1024, "swap": 0,
            "maxdisk": 4_294_967_296u64, "disk": if running { 1_073_741_824u64 } else { 0 },
            "cpus": config_u64(&ct.config, "cores", 1), "cpu": if running { 0.002 } else { 0.0 },
            "uptime": uptime, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
            "ha": { "managed": 0 },
        });
        if let Some(lock) = ct.config.get("lock") {
            status["lock"] = json!(lock);
        }
        if let Some(tags) = ct.config.get("tags") {
            status["tags"] = json!(tags);
        }
        if running {
            status["pid"] = json!(100_000 + ct.vmid);
        }
        status
    }

    fn power(&mut self, p: &BTreeMap<String, String>, caller: &Caller, ty: &str) -> ApiResult {
        let ct = self.ct(p)?;
        let vmid = ct.vmid;
        if let Some(lock) = ct.config.get("lock") {
            if !(ty == "vzstop" && p.get("skiplock").is_some_and(|v| v == "1")) {
                return Err(fail(500, format!("CT {vmid} is locked ({lock})")));
            }
        }
        let running = ct.status == "running";
        let (effect, lines) = match ty {
            "vzstart" => {
                if running {
                    return Err(fail(500, format!("CT {vmid} already running")));
                }
                (Effect::Start { vmid }, vec![])
            }
            _ => {
                if !running {
                    return Err(fail(500, format!("CT {vmid} not running")));
                }
                (Effect::Stop { vmid }, vec![])
            }
        };
        let node = ct.node.clone();
        let upid = self.start_task(&node, ty, &vmid.to_string(), caller.user(), effect, lines);
        Ok(json!(upid))
    }

    fn destroy(&mut self, p: &BTreeMap<String, String>, caller: &Caller) -> ApiResult {
        let ct = self.ct(p)?;
        let vmid = ct.vmid;
        if let Some(lock) = ct.config.get("lock") {
            return Err(fail(500, format!("CT {vmid} is locked ({lock})")));
        }
        if ct.config.get("protection").is_some_and(|v| v == "1") {
            return Err(fail(500, format!("can't remove CT {vmid} - protection mode enabled")));
        }
        if ct.status == "running" && p.get("force").is_none_or(|v| v != "1") {
            return Err(fail(500, format!("unable to destroy CT {vmid} - container is running")));
        }
        let node = ct.node.clone();
        let mut lines = vec![format!("Removing image: 100% complete...done.")];
        if p.get("purge").is_some_and(|v| v == "1") {
            lines.push(format!("purging CT {vmid} from related configurations.."));
        }
        self.containers.get_mut(&vmid).expect("exists").config.insert("lock".into(), "destroyed".into());
        let upid =
            self.start_task(&node, "vzdestroy", &vmid.to_string(), caller.user(), Effect::Destroy { vmid }, lines);
        Ok(json!(upid))
    }

    fn interfaces(&self, p: &BTreeMap<String, String>) -> ApiResult {
        let ct = self.ct(p)?;
        if ct.status != "running" {
            return Err(fail(500, format!("CT {} not running", ct.vmid)));
        }
        let entry = |name: &str, hwaddr: &str, inet: &str, inet6: &str| {
            let addr = |cidr: &str, family: &str| {
                let (ip, prefix) = cidr.split_once('/').unwrap_or((cidr, "0"));
                json!({ "ip-address": ip, "ip-address-type": family, "prefix": prefix.parse::<u32>().unwrap_or(0) })
            };
            json!({
                "name": name, "hwaddr": hwaddr, "hardware-address": hwaddr, "inet": inet, "inet6": inet6,
                "ip-addresses": [addr(inet, "inet"), addr(inet6, "inet6")],
            })
        };
        let mut out = vec![entry("lo", "00:00:00:00:00:00", "127.0.0.1/8", "::1/128")];
        let mut index = 0u32;
        for (key, value) in &ct.config {
            if !(key.starts_with("net") && key[3..].bytes().all(|b| b.is_ascii_digit())) {
                continue;
            }
            let name = property(value, "name", false).unwrap_or_else(|| format!("eth{index}"));
            let hwaddr = property(value, "hwaddr", false).unwrap_or_default().to_ascii_lowercase();
            let real = if index == 0 { self.machines.as_ref().and_then(|m| m.address(ct.vmid)) } else { None };
            let inet = match (real, property(value, "ip", false)) {
                (Some(real), _) => real,
                (None, Some(ip)) if ip.contains('/') => ip,
                _ => format!("10.99.{}.{}/24", (ct.vmid / 250 + index * 40) % 256, ct.vmid % 250 + 2),
            };
            let mac: Vec<u8> = hwaddr
                .split(':')
                .map(|h| u8::from_str_radix(h, 16).unwrap_or(0))
                .chain(std::iter::repeat(0))
                .take(6)
                .collect();
            let inet6 = format!(
                "fe80::{:x}:{:x}:{:x}:{:x}/64",
                u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
                u16::from_be_bytes([mac[2], 0xff]),
                u16::from_be_bytes([0xfe, mac[3]]),
                u16::from_be_bytes([mac[4], mac[5]])
            );
            out.push(entry(&name, &hwaddr, &inet, &inet6));
            index += 1;
        }
        Ok(Value::Array(out))
    }

    fn task(&self, p: &BTreeMap<String, String>) -> Result<&Task, ApiError> {
        let upid = &p["upid"];
        if !upid.starts_with("UPID:") || upid.split(':').count() < 9 {
            return Err(fail(400, format!("unable to parse worker upid '{upid}'")));
        }
        self.tasks
            .iter()
            .find(|t| &t.upid == upid && t.node == p["node"])
            .ok_or_else(|| fail(500, format!("no such task '{upid}'")))
    }

    fn task_status(&self, p: &BTreeMap<String, String>) -> ApiResult {
        let task = self.task(p)?;
        let mut status = json!({
            "upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
            "starttime": task.starttime, "type": task.ty, "id": task.id, "user": task.user,
            "status": if task.done { "stopped" } else { "running" },
        });
        if task.done {
            status["exitstatus"] = json!(task.exitstatus);
        }
        Ok(status)
    }

    fn task_log(&self, p: &BTreeMap<String, String>) -> ApiResult {
        let task = self.task(p)?;
        let start: usize = p.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
        let limit: usize = p.get("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
        let visible = if task.done { task.log.len() } else { task.log.len().saturating_sub(1) };
        let lines: Vec<Value> = task.log[..visible]
            .iter()
            .enumerate()
            .skip(start)
            .take(if limit == 0 { usize::MAX } else { limit })
            .map(|(i, t)| json!({ "n": i + 1, "t": t }))
            .collect();
        Ok(Value::Array(lines))
    }
}

fn aplinfo_entry(template: &str) -> Value {
    let package = template.split('_').next().unwrap_or(template);
    let version = template.split('_').nth(1).unwrap_or("1.0");
    let os = package.split('-').next().unwrap_or("debian");
    json!({
        "template": template, "package": package, "version": version, "os": os, "type": "lxc",
        "section": "system", "architecture": "amd64", "headline": format!("{os} (standard)"),
        "description": format!("A small {os} system including all standard packages."),
        "source": format!("http://download.proxmox.com/images/system/{template}"),
        "location": format!("http://download.proxmox.com/images/system/{template}"),
        "infopage": "https://pve.proxmox.com/wiki/Linux_Container#pct_supported_distributions",
        "maintainer": "Proxmox Support Team <support@proxmox.com>",
        "sha512sum": "0".repeat(128),
    })
}

/// A key of a property string; `default` also takes a bare leading value.
fn property(text: &str, key: &str, default: bool) -> Option<String> {
    for part in text.split(',') {
        match part.split_once('=') {
            Some((k, v)) if k == key => return Some(v.to_string()),
            None if default => return Some(part.to_string()),
            _ => {}
        }
    }
    None
}

fn config_u64(config: &BTreeMap<String, String>, key: &str, default: u64) -> u64 {
    config.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The config digest: 40 hex digits over the config text.
fn digest(config: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let text: String = config.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..40].to_string()
}
