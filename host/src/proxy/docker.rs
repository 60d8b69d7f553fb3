//! A small Docker Engine API client: the few Swarm calls that proxy discovery
//! and `proximity keys generate --docker-secret` need, over the engine's unix
//! socket or TCP. Paths are pinned to API 1.41, which Debian 12's daemon
//! (20.10) and newer clients agree on.
//!
//! reqwest (already used by the host) speaks HTTP over a unix socket itself
//! (`ClientBuilder::unix_socket`), so no extra HTTP stack is needed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

const API: &str = "/v1.41";
/// How long one Engine API call may take: these are small metadata queries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the engine listens: `unix:///var/run/docker.sock` or `tcp://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineAddress {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

impl EngineAddress {
    /// The host that the engine's published ports are reachable on, seen from
    /// here: loopback for a local socket, the engine's own host for TCP.
    pub fn published_host(&self) -> &str {
        match self {
            EngineAddress::Unix(_) => "127.0.0.1",
            EngineAddress::Tcp { host, .. } => host,
        }
    }
}

impl fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineAddress::Unix(path) => write!(f, "unix://{}", path.display()),
            EngineAddress::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            EngineAddress::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl FromStr for EngineAddress {
    type Err = EngineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| EngineError::BadAddress { address: text.to_string(), why: why.to_string() };
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("the socket path must be absolute, as in unix:///var/run/docker.sock"));
            }
            return Ok(EngineAddress::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            let endpoint: super::discovery::Endpoint =
                rest.trim_end_matches('/').parse().map_err(|e| bad(&format!("{e}")))?;
            return Ok(EngineAddress::Tcp { host: endpoint.host, port: endpoint.port });
        }
        Err(bad("expected unix:///path/to/docker.sock or tcp://host:port"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("bad Docker engine address `{address}`: {why}")]
    BadAddress { address: String, why: String },
    #[error("the Docker engine socket {} does not exist (is dockerd running?)", path.display())]
    SocketMissing { path: PathBuf },
    #[error("permission denied on the Docker engine socket {} (run as root or as a member of the docker group)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot reach the Docker engine at {engine}: {reason}")]
    Unreachable { engine: String, reason: String },
    #[error("the Docker engine at {engine} answered {status} to {request}: {message}")]
    Api { engine: String, request: String, status: u16, message: String },
    #[error("unexpected answer from the Docker engine at {engine} to {request}: {reason}")]
    BadAnswer { engine: String, request: String, reason: String },
}

/// The engine's Swarm membership, from `GET /info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwarmState {
    /// Not part of a swarm (or joining, or in error): `LocalNodeState` as given.
    Inactive(String),
    /// In a swarm, as a worker: it cannot list services or create secrets.
    Worker,
    Manager,
}

/// One Swarm service, as much of it as discovery uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Spec")]
    pub spec: ServiceSpec,
    #[serde(rename = "Endpoint", default)]
    pub endpoint: ServiceEndpoint,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServiceSpec {
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceEndpoint {
    #[serde(rename = "Ports", default)]
    pub ports: Vec<PortConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PortConfig {
    #[serde(rename = "Protocol", default)]
    pub protocol: String,
    #[serde(rename = "TargetPort", default)]
    pub target_port: u16,
    #[serde(rename = "PublishedPort", default)]
    pub published_port: u16,
    #[serde(rename = "PublishMode", default)]
    pub publish_mode: String,
}

/// One task of a service: its state and the addresses it has on its networks.
#[derive(Clone, Debug, Deserialize)]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Status", default)]
    pub status: TaskStatus,
    #[serde(rename = "DesiredState", default)]
    pub desired_state: String,
    #[serde(rename = "NetworksAttachments", default)]
    pub networks: Vec<NetworkAttachment>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskStatus {
    #[serde(rename = "State", default)]
    pub state: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NetworkAttachment {
    #[serde(rename = "Network", default)]
    pub network: AttachedNetwork,
    /// CIDR notation, e.g. `10.0.1.5/24`.
    #[serde(rename = "Addresses", default)]
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AttachedNetwork {
    #[serde(rename = "Spec", default)]
    pub spec: NetworkSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetworkSpec {
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The routing-mesh network: its addresses are of no use to a client.
    #[serde(rename = "Ingress", default)]
    pub ingress: bool,
}

/// One Swarm secret's metadata (the engine never returns a secret's data).
#[derive(Clone, Debug, Deserialize)]
pub struct Secret {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Spec")]
    pub spec: SecretSpec,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SecretSpec {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
}

/// A client for one engine.
#[derive(Clone, Debug)]
pub struct Engine {
    address: EngineAddress,
    client: reqwest::Client,
    /// `http://host:port` (TCP) or a placeholder authority (unix socket).
    base: String,
}

impl Engine {
    pub fn new(address: EngineAddress) -> Result<Engine, EngineError> {
        let builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        let (builder, base) = match &address {
            EngineAddress::Unix(path) => (builder.unix_socket(path.clone()), "http://docker".to_string()),
            EngineAddress::Tcp { host, port } if host.contains(':') => (builder, format!("http://[{host}]:{port}")),
            EngineAddress::Tcp { host, port } => (builder, format!("http://{host}:{port}")),
        };
        let client = builder.build().map_err(|e| EngineError::Unreachable {
            engine: address.to_string(),
            reason: format!("cannot set up the HTTP client: {e}"),
        })?;
        Ok(Engine { address, client, base })
    }

    pub fn connect(address: &str) -> Result<Engine, EngineError> {
        Engine::new(address.parse()?)
    }

    pub fn address(&self) -> &EngineAddress {
        &self.address
    }

    pub async fn swarm_state(&self) -> Result<SwarmState, EngineError> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "Swarm", default)]
            swarm: SwarmInfo,
        }
        #[derive(Default, Deserialize)]
        struct SwarmInfo {
            #[serde(rename = "LocalNodeState", default)]
            local_node_state: String,
            #[serde(rename = "ControlAvailable", default)]
            control_available: bool,
        }
        let info: Info = self.get("/info", &[]).await?;
        Ok(match (info.swarm.local_node_state.as_str(), info.swarm.control_available) {
            ("active", true) => SwarmState::Manager,
            ("active", false) => SwarmState::Worker,
            (other, _) => SwarmState::Inactive(if other.is_empty() { "inactive".into() } else { other.into() }),
        })
    }

    /// Services carrying `label` (`key` or `key=value`), sorted by name.
    pub async fn services_with_label(&self, label: &str) -> Result<Vec<Service>, EngineError> {
        let filters = serde_json::json!({ "label": [label] }).to_string();
        let mut services: Vec<Service> = self.get("/services", &[("filters", &filters)]).await?;
        services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(services)
    }

    /// Tasks of `service_id` that are running and meant to keep running.
    pub async fn running_tasks(&self, service_id: &str) -> Result<Vec<Task>, EngineError> {
        let filters = serde_json::json!({ "service": [service_id], "desired-state": ["running"] }).to_string();
        let tasks: Vec<Task> = self.get("/tasks", &[("filters", &filters)]).await?;
        Ok(tasks.into_iter().filter(|t| t.status.state == "running").collect())
    }

    /// The secret named exactly `name`, if any (the engine's name filter
    /// also matches prefixes).
    pub async fn secret(&self, name: &str) -> Result<Option<Secret>, EngineError> {
        let filters = serde_json::json!({ "name": [name] }).to_string();
        let secrets: Vec<Secret> = self.get("/secrets", &[("filters", &filters)]).await?;
        Ok(secrets.into_iter().find(|s| s.spec.name == name))
    }

    /// Creates a secret; returns its id.
    pub async fn create_secret(
        &self,
        name: &str,
        data: &[u8],
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let body = serde_json::json!({
            "Name": name,
            "Labels": labels,
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        let created: Created = self.post("/secrets/create", &body).await?;
        Ok(created.id)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, EngineError> {
        let request = self.client.get(format!("{}{API}{path}", self.base)).query(query);
        self.send(format!("GET {path}"), request).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T, EngineError> {
        let request = self.client.post(format!("{}{API}{path}", self.base)).json(body);
        self.send(format!("POST {path}"), request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        what: String,
        request: reqwest::RequestBuilder,
    ) -> Result<T, EngineError> {
        let engine = self.address.to_string();
        let response = request.send().await.map_err(|e| self.connect_error(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| EngineError::Unreachable {
            engine: engine.clone(),
            reason: format!("reading the answer to {what}: {e}"),
        })?;
        if !status.is_success() {
            // The engine explains errors as {"message": "..."}.
            #[derive(Deserialize)]
            struct Message {
                message: String,
            }
            let message = serde_json::from_slice::<Message>(&body)
                .map(|m| m.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
            return Err(EngineError::Api { engine, request: what, status: status.as_u16(), message });
        }
        serde_json::from_slice(&body).map_err(|e| EngineError::BadAnswer {
            engine,
            request: what,
            reason: e.to_string(),
        })
    }

    /// A failed connection, told apart by its cause: a missing socket or a
    /// permission problem each get their own message.
    fn connect_error(&self, error: reqwest::Error) -> EngineError {
        if let EngineAddress::Unix(path) = &self.address {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(current) = cause {
                if let Some(io) = current.downcast_ref::<std::io::Error>() {
                    match io.kind() {
                        std::io::ErrorKind::NotFound => return EngineError::SocketMissing { path: path.clone() },
                        std::io::ErrorKind::PermissionDenied => {
                            return EngineError::PermissionDenied { path: path.clone() }
                        }
                        _ => {}
                    }
                }
                cause = current.source();
            }
        }
        EngineError::Unreachable { engine: self.address.to_string(), reason: error_chain(&error) }
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "unix:///var/run/docker.sock".parse::<EngineAddress>().unwrap(),
            EngineAddress::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            "tcp://10.0.0.9:2375".parse::<EngineAddress>().unwrap(),
            EngineAddress::Tcp { host: "10.0.0.9".into(), port: 2375 }
        );
        let v6: EngineAddress = "tcp://[fd00::9]:2375".parse().unwrap();
        assert_eq!(v6, EngineAddress::Tcp { host: "fd00::9".into(), port: 2375 });
        assert_eq!(v6.to_string(), "tcp://[fd00::9]:2375");
        assert_eq!(v6.published_host(), "fd00::9");
        assert_eq!(EngineAddress::Unix("/x.sock".into()).published_host(), "127.0.0.1");
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for (text, hint) in [
            ("/var/run/docker.sock", "expected unix:///"),
            ("unix://docker.sock", "must be absolute"),
            ("tcp://host", "port"),
            ("http://host:2375", "expected unix:///"),
        ] {
            let error = text.parse::<EngineAddress>().unwrap_err().to_string();
            assert!(error.contains(text) && error.contains(hint), "{text}: {error}");
        }
    }

    #[tokio::test]
    async fn a_missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let engine = Engine::new(EngineAddress::Unix(path.clone())).unwrap();
        let error = engine.swarm_state().await.unwrap_err();
        assert!(matches!(&error, EngineError::SocketMissing { path: p } if *p == path), "{error}");
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn task_json_parses() {
        let tasks: Vec<Task> = serde_json::from_str(
            r#"[{"ID":"t1","DesiredState":"running","Status":{"State":"running","PortStatus":{}},
                "NetworksAttachments":[{"Network":{"Spec":{"Name":"ingress","Ingress":true}},"Addresses":["10.0.0.4/24"]},
                                       {"Network":{"Spec":{"Name":"proxies"}},"Addresses":["10.0.1.3/24"]}]}]"#,
        )
        .unwrap();
        assert_eq!(tasks[0].networks.len(), 2);
        assert!(tasks[0].networks[0].network.spec.ingress);
        assert!(!tasks[0].networks[1].network.spec.ingress);
    }
}
