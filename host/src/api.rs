//! The HTTP API's wire types, shared by the server (`server`) and its client
//! (`cli::client`). Everything under `/api/v1` speaks these shapes as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path prefix of every API route.
pub const PREFIX: &str = "/api/v1";

/// The one error shape: `{"error": {"code", "message", "details"}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `not-found`, `invalid-params`, `unauthorized`, ...
    pub code: String,
    pub message: String,
    /// Per-field problems for `invalid-params`; otherwise usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldProblem>,
    /// The bundle a `POST /recipes` refusal is about (`grants-grew`,
    /// `untrusted-bundle`): the value to confirm it with, `?accept_grants=`
    /// or `?allow_untrusted=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

/// One catalog entry, as listed by `GET /catalog`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecipeSummary {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// sha256 of the recipe's component: what runs.
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogList {
    pub recipes: Vec<RecipeSummary>,
}

/// `GET /recipes/{id}`: the summary, the whole manifest, and its grants in words.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecipeDetail {
    #[serde(flatten)]
    pub summary: RecipeSummary,
    /// The validated `recipe.toml` (parameters with types and defaults, resources, ports, grants, limits).
    pub manifest: serde_json::Value,
    /// One line per granted capability, for a person to read before deploying.
    pub grants: Vec<String>,
    /// Versions this server can deploy.
    pub versions: Vec<String>,
}

/// Where and how to run a deployment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Proxmox node (or the backend's own notion of one); the server picks when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Resource choices within the recipe's min/max.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u32>,
}

/// `POST /deployments`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub recipe: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Parameter values; JSON strings, numbers and booleans are all accepted.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub target: Target,
    /// Run against the simulator and return the plan; nothing is created.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /apps/{id}/upgrade`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The version to move to; the catalog's current one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `202 Accepted` for anything that starts a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobAccepted {
    pub id: String,
    pub app_id: String,
    /// `GET` this for the job's state.
    pub url: String,
    /// Server-Sent Events of the job's progress.
    pub events_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Install,
    Uninstall,
    Upgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The server stopped (crash, kill) while the job ran; see its events for the cleanup.
    Interrupted,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled, Self::Interrupted]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// `GET /deployments/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub recipe: String,
    pub version: String,
    pub app_id: String,
    pub state: JobState,
    pub dry_run: bool,
    /// RFC 3339 times.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// What the recipe returned (app info, health report, the plan of a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why it failed, with the step and what was cleaned up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// One entry of a job's event stream. Sent as an SSE message whose `id` is
/// `seq` and whose `event` is `kind`; the data is this JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobEvent {
    /// 1, 2, 3, ... within the job.
    pub seq: u64,
    /// Milliseconds since the job started.
    pub elapsed_ms: u64,
    /// `step`, `log`, `host`, or `end` (the last one: its `job` holds the final state).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<Job>>,
}

impl Job {
    /// A job just accepted: queued, nothing run yet.
    pub fn queued(id: &str, kind: JobKind, recipe: &str, version: &str, app_id: &str, dry_run: bool) -> Self {
        Job {
            id: id.to_string(),
            kind,
            recipe: recipe.to_string(),
            version: version.to_string(),
            app_id: app_id.to_string(),
            state: JobState::Queued,
            dry_run,
            created_at: crate::store::now_rfc3339(),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
        }
    }
}

impl JobEvent {
    /// An event with only its number, time and kind set.
    pub fn new(seq: u64, elapsed_ms: u64, kind: &str) -> Self {
        JobEvent { seq, elapsed_ms, kind: kind.to_string(), name: None, level: None, message: None, job: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    Running,
    Stopped,
    /// An install or upgrade job is working on it.
    Deploying,
    /// An uninstall job is working on it.
    Removing,
    /// Its last job failed; containers may need attention.
    Failed,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Running => "running",
            AppState::Stopped => "stopped",
            AppState::Deploying => "deploying",
            AppState::Removing => "removing",
            AppState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Stopped, Self::Deploying, Self::Removing, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// `GET /apps/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct App {
    pub id: String,
    pub recipe: String,
    pub version: String,
    pub digest: String,
    pub state: AppState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub ports: Vec<u16>,
    /// Named values the recipe reported (never secrets).
    pub outputs: BTreeMap<String, String>,
    /// Backend container ids.
    pub containers: Vec<String>,
    /// Parameter values, with secret ones shown as `«secret:NAME»`.
    pub params: BTreeMap<String, String>,
    /// Names of the secret parameters, readable through `GET /apps/{id}/secrets`.
    pub secrets: Vec<String>,
    pub node: Option<String>,
    /// The job that last installed or upgraded it.
    pub deployment_id: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppList {
    pub apps: Vec<App>,
}

/// `GET /apps/{id}/secrets`: the app's secret parameter values, in clear.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppSecrets {
    pub secrets: BTreeMap<String, String>,
}

/// `GET /apps/{id}/logs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppLogs {
    /// The recipe's health report, when its `health` export answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<serde_json::Value>,
    /// Lines from the app's main container (its journal) or, failing that, its jobs' events.
    pub lines: Vec<String>,
}

/// `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub backend: String,
}

/// `GET /proxy/stats`: the `proxy-exec` client, one entry per configured
/// proxy service (none when no proxy is configured).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyStats {
    pub services: Vec<ProxyServiceStats>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyServiceStats {
    /// The service name recipes' grants use.
    pub service: String,
    /// Where its proxies are found, e.g. `static 10.0.0.5:2222`.
    pub discovery: String,
    /// The proxies discovery holds as healthy now; empty until the next
    /// lookup once a failing proxy was dropped.
    pub endpoints: Vec<String>,
    /// `closed`, `open` or `half-open`.
    pub breaker: String,
    /// Failed calls since the last success.
    pub failures_in_a_row: u32,
    /// Calls made, and how they ended.
    pub calls: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Calls refused at once because the breaker was open.
    pub fast_failed: u64,
    /// Further attempts after a connection failure.
    pub retries: u64,
    /// SSH connections opened, commands run on an already open one,
    /// connection failures, and connections open now.
    pub connections: u64,
    pub reuses: u64,
    pub connection_failures: u64,
    pub open_connections: u64,
}

/// `POST /recipes` with a JSON body: the server fetches the bundle itself.
/// (The other form of the request is the bundle's bytes as `application/octet-stream`.)
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InstallFromUrl {
    /// `http://` or `https://`; the download is bounded in size and time.
    pub url: String,
}

/// `POST /recipes` (and `recipe install`): the bundle installed, as the catalog now serves it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledRecipe {
    pub id: String,
    pub version: String,
    /// sha256 of the bundle's index: the bundle's identity.
    pub digest: String,
    /// Trusted keys that signed it; empty when allowed by digest without one.
    pub signers: Vec<String>,
    /// What the recipe may do, in plain words.
    pub grants: Vec<String>,
    /// What it may do that the version it replaced could not (confirmed with `accept_grants`).
    pub added_grants: Vec<String>,
    /// The version it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// This very bundle was already installed; nothing changed.
    pub unchanged: bool,
}

/// `GET /bundles`: the recipe bundles installed into the served catalog, and
/// the trust policy they were checked against.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleList {
    /// Whether this server installs bundles (`POST /recipes`); false when it
    /// serves a directory of recipe sources (`--catalog`).
    pub installs: bool,
    /// Whether `POST /recipes?allow_untrusted=DIGEST` is honoured (`--api-allow-untrusted`).
    pub allow_untrusted: bool,
    /// The publisher keys the server trusts, read when it started.
    pub trusted_keys: Vec<TrustedKey>,
    /// One per installed recipe: the bundle its current version came from, sorted by id.
    pub bundles: Vec<InstalledBundle>,
}

/// `POST /recipes?review=true`: what installing the bundle would do. Every
/// check of an install ran; nothing was written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleReview {
    pub id: String,
    pub version: String,
    /// sha256 of the bundle's index: the value for `accept_grants` and `allow_untrusted`.
    pub digest: String,
    /// Every valid signature's key; `trusted` says whether the server trusts it.
    pub signers: Vec<BundleSigner>,
    /// What the recipe may do, in plain words.
    pub grants: Vec<String>,
    /// What it may do that the installed version cannot: installing needs `accept_grants`.
    pub added_grants: Vec<String>,
    /// The installed version it would replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// This very bundle is installed already: installing would change nothing.
    pub unchanged: bool,
}

/// A publisher key from the server's trusted-keys directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrustedKey {
    /// The name in its `.pub` file.
    pub name: String,
    /// First 8 bytes of the sha256 of the public key, hex (as in `signatures/KEYID.sig`).
    pub key_id: String,
}

/// The bundle an installed recipe came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledBundle {
    pub id: String,
    pub version: String,
    /// sha256 of the bundle's index: the bundle's identity.
    pub digest: String,
    /// The trusted keys that signed it when it was installed; empty when the
    /// operator allowed it by digest without one.
    pub signers: Vec<BundleSigner>,
    /// The recipe's grants, in plain words.
    pub grants: Vec<String>,
}

/// Who signed an installed bundle.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleSigner {
    /// The trusted key's name, as recorded at install.
    pub name: String,
    /// The id of the key that signed, as recorded at install (absent from
    /// records made before key ids were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Whether the key with that id is still among the trusted keys (a
    /// record without an id: false).
    pub trusted: bool,
}
