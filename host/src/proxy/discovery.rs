//! Where the proxies of one service are: a [`Source`] says how to find them,
//! [`Discovery`] finds them, health-checks them and caches the result.
//!
//! # Sources
//!
//! In the server's configuration a source is one inline table, keyed by its kind:
//!
//! ```toml
//! discovery = { static = ["10.0.0.5:2222", "[fd00::5]:2222"] }
//! discovery = { dns = "proxy.lan", port = 2222 }                       # A and AAAA
//! discovery = { dns = "proxy.lan", port = 2222, nameserver = "10.0.0.1:53" }
//! discovery = { srv = "_nextcloud-proxy._tcp.lan" }                   # targets and ports
//! discovery = { swarm = "unix:///var/run/docker.sock", label = "service=nextcloud-proxy", port = 2222 }
//! discovery = { swarm = "tcp://10.0.0.2:2375", label = "service=nextcloud-proxy", port = 2222, addresses = "tasks" }
//! ```
//!
//! - `dns` and `srv` use `nameserver` (an address, port 53 unless given) or
//!   else the system's resolv.conf.
//! - `swarm` asks a manager's Engine API for services carrying `label`
//!   (`key=value` or `key`). With `addresses = "published"` (the default) the
//!   endpoint is the port the service publishes for target `port`, on the
//!   engine's host (127.0.0.1 for a unix socket, else the `tcp://` host;
//!   `host = "…"` overrides it). With `addresses = "tasks"` the endpoints are
//!   the running tasks' addresses on their (non-ingress) networks, with `port`:
//!   for a Proximity that shares an overlay network with the proxies.
//!
//! # Cache and health
//!
//! [`Discovery::endpoints`] queries the source at most once per `ttl`,
//! keeps the endpoints that accept a TCP connection within `health_timeout`,
//! and returns them in a stable order: static lists as written, DNS and Swarm
//! results sorted, SRV results by priority then weight. Callers report each
//! call's outcome; `max_errors` consecutive failures drop an endpoint and
//! invalidate the cache, so the next call asks the source again (and the
//! health check decides whether the endpoint comes back).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::docker::{Engine, EngineAddress, EngineError, SwarmState};

/// One proxy's address. `host` is a name or an IP address (IPv6 without brackets).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint { host: host.into(), port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint { host: addr.ip().to_string(), port: addr.port() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad endpoint `{text}`: {why}")]
pub struct EndpointError {
    pub text: String,
    pub why: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// `host:port`, `1.2.3.4:port` or `[v6]:port`.
    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        let bad = |why| EndpointError { text: text.to_string(), why };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, port) = rest.split_once("]:").ok_or_else(|| bad("expected [IPv6 address]:port"))?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address between the brackets"))?;
            (v6, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("expected host:port"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address needs brackets, as in [fd00::5]:2222"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
            return Err(bad("the host is not a host name or IP address"));
        }
        let port = port.parse::<u16>().map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        Ok(Endpoint { host: host.to_string(), port })
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Endpoint, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which addresses a Swarm service's proxies are reached at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwarmAddresses {
    /// The port the service publishes (ingress or host mode), on the engine's host.
    #[default]
    Published,
    /// Each running task's own address on its networks.
    Tasks,
}

/// How to find the proxies of one service. See the module docs for the TOML shape.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RawSource", into = "RawSource")]
pub enum Source {
    Static(Vec<Endpoint>),
    /// A and AAAA records of `name`, each with `port`.
    Dns {
        name: String,
        port: u16,
        nameserver: Option<SocketAddr>,
    },
    /// SRV records of `name` (`_service._tcp.domain`): targets resolved to addresses, with their ports.
    Srv {
        name: String,
        nameserver: Option<SocketAddr>,
    },
    /// Swarm services carrying `label`, through the Engine API at `engine`.
    Swarm {
        /// `unix:///path/docker.sock` or `tcp://host:port`.
        engine: String,
        /// `key=value` or `key`.
        label: String,
        /// The proxies' port inside each task.
        port: u16,
        addresses: SwarmAddresses,
        /// Where published ports are reached, instead of the engine's host.
        host: Option<String>,
    },
}

/// A source that cannot work, whatever the network says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("proxy discovery: {0}")]
pub struct SourceError(String);

const KINDS: [&str; 4] = ["static", "dns", "srv", "swarm"];

/// The inline table as written; [`Source`] is what it means once checked.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "static", skip_serializing_if = "Option::is_none")]
    static_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    srv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swarm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameserver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<SwarmAddresses>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
}

/// The table that reads back as the same source (the server's settings are
/// serialized as defaults before the file is merged over them).
impl From<Source> for RawSource {
    fn from(source: Source) -> RawSource {
        let empty = RawSource {
            static_list: None,
            dns: None,
            srv: None,
            swarm: None,
            port: None,
            nameserver: None,
            label: None,
            addresses: None,
            host: None,
        };
        match source {
            Source::Static(list) => {
                RawSource { static_list: Some(list.iter().map(ToString::to_string).collect()), ..empty }
            }
            Source::Dns { name, port, nameserver } => {
                RawSource { dns: Some(name), port: Some(port), nameserver: nameserver.map(|n| n.to_string()), ..empty }
            }
            Source::Srv { name, nameserver } => {
                RawSource { srv: Some(name), nameserver: nameserver.map(|n| n.to_string()), ..empty }
            }
            Source::Swarm { engine, label, port, addresses, host } => RawSource {
                swarm: Some(engine),
                label: Some(label),
                port: Some(port),
                addresses: Some(addresses),
                host,
                ..empty
            },
        }
    }
}

impl TryFrom<RawSource> for Source {
    type Error = SourceError;

    fn try_from(raw: RawSource) -> Result<Source, SourceError> {
        let given: Vec<&str> = [raw.static_list.is_some(), raw.dns.is_some(), raw.srv.is_some(), raw.swarm.is_some()]
            .iter()
            .zip(KINDS)
            .filter_map(|(set, kind)| set.then_some(kind))
            .collect();
        let kind = match given.as_slice() {
            [one] => *one,
            [] => {
                return Err(SourceError(
                    "say how to find the proxies with one of `static`, `dns`, `srv` or `swarm`, e.g. \
                     { dns = \"proxy.lan\", port = 2222 }"
                        .into(),
                ))
            }
            many => {
                return Err(SourceError(format!(
                    "give only one of `static`, `dns`, `srv` or `swarm` (found `{}`)",
                    many.join("` and `")
                )))
            }
        };
        // Each option belongs to some kinds only: say so rather than ignore it.
        let options: [(&str, bool, &[&str]); 5] = [
            ("port", raw.port.is_some(), &["dns", "swarm"]),
            ("nameserver", raw.nameserver.is_some(), &["dns", "srv"]),
            ("label", raw.label.is_some(), &["swarm"]),
            ("addresses", raw.addresses.is_some(), &["swarm"]),
            ("host", raw.host.is_some(), &["swarm"]),
        ];
        for (option, set, kinds) in options {
            if set && !kinds.contains(&kind) {
                return Err(SourceError(format!(
                    "`{option}` does not apply to `{kind}` discovery (only to `{}`)",
                    kinds.join("` and `")
                )));
            }
        }
        let nameserver = raw.nameserver.as_deref().map(parse_nameserver).transpose()?;
        let source = match kind {
            "static" => Source::Static(
                raw.static_list
                    .unwrap_or_default()
                    .iter()
                    .map(|text| text.parse::<Endpoint>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| SourceError(e.to_string()))?,
            ),
            "dns" => Source::Dns {
                name: raw.dns.unwrap_or_default(),
                port: raw.port.ok_or_else(|| {
                    SourceError("`dns` discovery needs `port`, the proxies' port (e.g. port = 2222)".into())
                })?,
                nameserver,
            },
            "srv" => Source::Srv { name: raw.srv.unwrap_or_default(), nameserver },
            _ => Source::Swarm {
                engine: raw.swarm.unwrap_or_default(),
                label: raw.label.ok_or_else(|| {
                    SourceError("`swarm` discovery needs `label`, e.g. label = \"service=nextcloud-proxy\"".into())
                })?,
                port: raw.port.ok_or_else(|| {
                    SourceError("`swarm` discovery needs `port`, the proxies' port inside each task".into())
                })?,
                addresses: raw.addresses.unwrap_or_default(),
                host: raw.host,
            },
        };
        source.validate()?;
        Ok(source)
    }
}

/// `10.0.0.1`, `10.0.0.1:5353`, `fd00::1` or `[fd00::1]:5353`.
fn parse_nameserver(text: &str) -> Result<SocketAddr, SourceError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        SourceError(format!("`nameserver = \"{text}\"` is not an IP address with an optional port (e.g. 10.0.0.1:53)"))
    })
}

impl Source {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SourceError> {
        let check_name = |kind: &str, name: &str| {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/' || c == ':') {
                return Err(SourceError(format!("`{kind} = \"{name}\"` is not a DNS name")));
            }
            Ok(())
        };
        let check_port = |kind: &str, port: u16| {
            if port == 0 {
                return Err(SourceError(format!("`{kind}` discovery: port 0 cannot be connected to")));
            }
            Ok(())
        };
        match self {
            Source::Static(list) if list.is_empty() => Err(SourceError("`static` lists no endpoints".into())),
            Source::Static(_) => Ok(()),
            Source::Dns { name, port, .. } => {
                check_name("dns", name)?;
                check_port("dns", *port)
            }
            Source::Srv { name, .. } => {
                check_name("srv", name)?;
                if !name.starts_with('_') {
                    return Err(SourceError(format!(
                        "`srv = \"{name}\"` is not a service name: expected one like _nextcloud-proxy._tcp.lan"
                    )));
                }
                Ok(())
            }
            Source::Swarm { engine, label, port, host, .. } => {
                engine.parse::<EngineAddress>().map_err(|e| SourceError(e.to_string()))?;
                if label.trim().is_empty() || label.starts_with('=') {
                    return Err(SourceError(format!(
                        "`label = \"{label}\"` is not a label: expected key=value or key, e.g. service=nextcloud-proxy"
                    )));
                }
                // A name or an IP address (IPv6 without brackets), as in an Endpoint.
                if let Some(host) = host {
                    let as_endpoint = if host.contains(':') { format!("[{host}]:1") } else { format!("{host}:1") };
                    if let Err(e) = as_endpoint.parse::<Endpoint>() {
                        return Err(SourceError(format!("`host = \"{host}\"`: {}", e.why)));
                    }
                }
                check_port("swarm", *port)
            }
        }
    }

    /// A short description, for errors and statistics.
    pub fn describe(&self) -> String {
        let via = |nameserver: &Option<SocketAddr>| nameserver.map(|ns| format!(" via {ns}")).unwrap_or_default();
        match self {
            Source::Static(list) => {
                format!("static {}", list.iter().map(Endpoint::to_string).collect::<Vec<_>>().join(", "))
            }
            Source::Dns { name, port, nameserver } => {
                format!("dns {}{}", Endpoint::new(name.as_str(), *port), via(nameserver))
            }
            Source::Srv { name, nameserver } => format!("srv {name}{}", via(nameserver)),
            Source::Swarm { engine, label, port, addresses, .. } => {
                let which = match addresses {
                    SwarmAddresses::Published => "published port",
                    SwarmAddresses::Tasks => "task addresses",
                };
                format!("swarm {label} on {engine} ({which} for {port})")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// How long a query's healthy endpoints are reused.
    pub ttl: Duration,
    /// How long a TCP health check waits for the connection to be accepted.
    pub health_timeout: Duration,
    /// Consecutive failed calls after which an endpoint is dropped.
    pub max_errors: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig { ttl: Duration::from_secs(60), health_timeout: Duration::from_secs(2), max_errors: 3 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    BadSource(#[from] SourceError),
    #[error("{discovery}: `{name}` does not exist in DNS (NXDOMAIN)")]
    NameNotFound { discovery: String, name: String },
    #[error("{discovery}: `{name}` has no {kind} records")]
    NoRecords { discovery: String, name: String, kind: &'static str },
    #[error("{discovery}: looking up `{name}` failed: {reason}")]
    Dns { discovery: String, name: String, reason: String },
    #[error("{discovery}: {source}")]
    Engine { discovery: String, source: EngineError },
    #[error(
        "{discovery}: the Docker engine at {engine} is not in Swarm mode (node state: {state}); \
         run `docker swarm init`, or point `swarm` at a manager's engine"
    )]
    NotSwarm { discovery: String, engine: String, state: String },
    #[error("{discovery}: the Docker engine at {engine} is a Swarm worker; point `swarm` at a manager's engine")]
    NotManager { discovery: String, engine: String },
    #[error("{discovery}: no Swarm service has the label `{label}` on {engine}")]
    NoService { discovery: String, label: String, engine: String },
    #[error(
        "{discovery}: Swarm service {services} publishes no TCP port for target port {port}; publish one \
         (docker service update --publish-add published=P,target={port}) or use addresses = \"tasks\""
    )]
    NoPublishedPort { discovery: String, services: String, port: u16 },
    #[error("{discovery}: Swarm service {services} has no running task with a network address")]
    NoRunningTasks { discovery: String, services: String },
    #[error("{discovery}: found no endpoints")]
    NoEndpoints { discovery: String },
    #[error("{discovery}: every endpoint failed its TCP health check: {}", list_failures(.failures))]
    AllUnhealthy { discovery: String, failures: Vec<(Endpoint, String)> },
}

fn list_failures(failures: &[(Endpoint, String)]) -> String {
    failures.iter().map(|(endpoint, why)| format!("{endpoint} ({why})")).collect::<Vec<_>>().join(", ")
}

/// What [`Discovery::stats`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiscoveryStats {
    pub source: String,
    /// The cached healthy endpoints (empty when the cache is stale or invalidated).
    pub endpoints: Vec<Endpoint>,
    /// Queries of the source so far.
    pub refreshes: u64,
    /// Endpoints dropped after `max_errors` consecutive failures.
    pub drops: u64,
    /// Consecutive failures per endpoint, where there are any.
    pub failures: BTreeMap<String, u32>,
}

/// Finds one service's proxies; share it through an `Arc`.
pub struct Discovery {
    source: Source,
    config: DiscoveryConfig,
    state: Mutex<State>,
    /// One refresh at a time: concurrent callers wait for it and share its result.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    cache: Option<Cached>,
    failures: HashMap<Endpoint, u32>,
    refreshes: u64,
    drops: u64,
}

struct Cached {
    endpoints: Vec<Endpoint>,
    fetched: Instant,
}

impl Discovery {
    pub fn new(source: Source, config: DiscoveryConfig) -> Discovery {
        Discovery { source, config, state: Mutex::new(State::default()), refreshing: tokio::sync::Mutex::new(()) }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    /// The healthy endpoints: cached for `ttl`; on refresh, the source is
    /// queried and each endpoint health-checked (concurrently).
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, DiscoveryError> {
        if let Some(endpoints) = self.fresh() {
            return Ok(endpoints);
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(endpoints) = self.fresh() {
            return Ok(endpoints);
        }
        let candidates = self.query_source().await?;
        let checks = candidates.iter().map(|endpoint| health_check(endpoint, self.config.health_timeout));
        let results = futures_util::future::join_all(checks).await;
        let mut healthy = Vec::new();
        let mut failures = Vec::new();
        for (endpoint, result) in candidates.into_iter().zip(results) {
            match result {
                Ok(()) => healthy.push(endpoint),
                Err(why) => failures.push((endpoint, why)),
            }
        }
        let mut state = self.state.lock().unwrap();
        state.refreshes += 1;
        if healthy.is_empty() {
            state.cache = None;
            return Err(DiscoveryError::AllUnhealthy { discovery: self.describe(), failures });
        }
        if !failures.is_empty() {
            tracing::warn!(discovery = %self.describe(), unhealthy = %list_failures(&failures), "left out proxies");
        }
        // Counts of endpoints that are gone no longer matter.
        let present: HashSet<&Endpoint> = healthy.iter().collect();
        state.failures.retain(|endpoint, _| present.contains(endpoint));
        state.cache = Some(Cached { endpoints: healthy.clone(), fetched: Instant::now() });
        Ok(healthy)
    }

    /// The source's answer as it is now: no cache, no health checks.
    pub async fn query_source(&self) -> Result<Vec<Endpoint>, DiscoveryError> {
        self.source.validate()?;
        let discovery = self.describe();
        let found = match &self.source {
            Source::Static(list) => list.clone(),
            Source::Dns { name, port, nameserver } => {
                let resolver = resolver(*nameserver, &discovery, name)?;
                let mut found = lookup_addresses(&resolver, &discovery, name, *port).await?;
                found.sort();
                found
            }
            Source::Srv { name, nameserver } => {
                let resolver = resolver(*nameserver, &discovery, name)?;
                lookup_srv(&resolver, &discovery, name).await?
            }
            Source::Swarm { engine, label, port, addresses, host } => {
                let mut found = query_swarm(&discovery, engine, label, *port, *addresses, host.as_deref()).await?;
                found.sort();
                found
            }
        };
        let mut seen = HashSet::new();
        let found: Vec<Endpoint> = found.into_iter().filter(|endpoint| seen.insert(endpoint.clone())).collect();
        if found.is_empty() {
            return Err(DiscoveryError::NoEndpoints { discovery });
        }
        Ok(found)
    }

    /// A call through `endpoint` failed. After `max_errors` consecutive
    /// failures it is dropped and the cache invalidated: the next call asks
    /// the source again, and the health check decides whether it comes back.
    pub fn report_failure(&self, endpoint: &Endpoint) {
        let mut state = self.state.lock().unwrap();
        let count = state.failures.entry(endpoint.clone()).or_insert(0);
        *count += 1;
        if *count >= self.config.max_errors.max(1) {
            state.failures.remove(endpoint);
            state.drops += 1;
            state.cache = None;
            tracing::warn!(discovery = %self.describe(), %endpoint, "dropped a proxy after repeated failures");
        }
    }

    pub fn report_success(&self, endpoint: &Endpoint) {
        self.state.lock().unwrap().failures.remove(endpoint);
    }

    /// Forget the cached endpoints: the next call asks the source again.
    pub fn invalidate(&self) {
        self.state.lock().unwrap().cache = None;
    }

    pub fn describe(&self) -> String {
        self.source.describe()
    }

    pub fn stats(&self) -> DiscoveryStats {
        let state = self.state.lock().unwrap();
        DiscoveryStats {
            source: self.describe(),
            endpoints: state.cache.as_ref().map(|c| c.endpoints.clone()).unwrap_or_default(),
            refreshes: state.refreshes,
            drops: state.drops,
            failures: state.failures.iter().map(|(endpoint, count)| (endpoint.to_string(), *count)).collect(),
        }
    }

    fn fresh(&self) -> Option<Vec<Endpoint>> {
        let state = self.state.lock().unwrap();
        let cached = state.cache.as_ref()?;
        (cached.fetched.elapsed() < self.config.ttl).then(|| cached.endpoints.clone())
    }
}

/// Whether `endpoint` accepts a TCP connection within `timeout`; why not, if it does not.
async fn health_check(endpoint: &Endpoint, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

fn resolver(nameserver: Option<SocketAddr>, discovery: &str, name: &str) -> Result<TokioResolver, DiscoveryError> {
    let builder = match nameserver {
        Some(address) => {
            let mut server = NameServerConfig::udp_and_tcp(address.ip());
            for connection in &mut server.connections {
                connection.port = address.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|e| DiscoveryError::Dns {
            discovery: discovery.to_string(),
            name: name.to_string(),
            reason: format!("cannot read the system's DNS configuration (/etc/resolv.conf): {e}"),
        })?,
    };
    let mut options = ResolverOpts::default();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    builder.with_options(options).build().map_err(|e| DiscoveryError::Dns {
        discovery: discovery.to_string(),
        name: name.to_string(),
        reason: format!("cannot set up the resolver: {e}"),
    })
}

fn dns_error(error: NetError, discovery: &str, name: &str, kind: &'static str) -> DiscoveryError {
    let (discovery, name) = (discovery.to_string(), name.to_string());
    if error.is_nx_domain() {
        DiscoveryError::NameNotFound { discovery, name }
    } else if error.is_no_records_found() {
        DiscoveryError::NoRecords { discovery, name, kind }
    } else {
        DiscoveryError::Dns { discovery, name, reason: error.to_string() }
    }
}

async fn lookup_addresses(
    resolver: &TokioResolver,
    discovery: &str,
    name: &str,
    port: u16,
) -> Result<Vec<Endpoint>, DiscoveryError> {
    let lookup = resolver.lookup_ip(name).await.map_err(|e| dns_error(e, discovery, name, "A or AAAA"))?;
    Ok(lookup.iter().map(|ip| Endpoint::from(SocketAddr::new(ip, port))).collect())
}

/// SRV targets as addresses, by priority (lowest first) then weight (highest first).
async fn lookup_srv(resolver: &TokioResolver, discovery: &str, name: &str) -> Result<Vec<Endpoint>, DiscoveryError> {
    let lookup = resolver.srv_lookup(name).await.map_err(|e| dns_error(e, discovery, name, "SRV"))?;
    let mut records: Vec<_> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        // A target of "." says the service is deliberately not offered there.
        .filter(|srv| !srv.target.is_root())
        .collect();
    records.sort_by(|a, b| {
        (a.priority, std::cmp::Reverse(a.weight), a.target.to_ascii()).cmp(&(
            b.priority,
            std::cmp::Reverse(b.weight),
            b.target.to_ascii(),
        ))
    });
    let mut found = Vec::new();
    let mut unresolved = Vec::new();
    for srv in records {
        let target = srv.target.to_ascii();
        match lookup_addresses(resolver, discovery, &target, srv.port).await {
            Ok(mut addresses) => {
                addresses.sort();
                found.extend(addresses);
            }
            Err(error) => unresolved.push(error),
        }
    }
    // Unresolvable targets are skipped while others resolve; when none
    // does, the first reason is the answer.
    match (found.is_empty(), unresolved.into_iter().next()) {
        (true, Some(error)) => Err(error),
        _ => Ok(found),
    }
}

async fn query_swarm(
    discovery: &str,
    engine: &str,
    label: &str,
    port: u16,
    addresses: SwarmAddresses,
    host: Option<&str>,
) -> Result<Vec<Endpoint>, DiscoveryError> {
    let engine_error = |source| DiscoveryError::Engine { discovery: discovery.to_string(), source };
    let engine = Engine::connect(engine).map_err(engine_error)?;
    let engine_name = engine.address().to_string();
    match engine.swarm_state().await.map_err(engine_error)? {
        SwarmState::Manager => {}
        SwarmState::Worker => {
            return Err(DiscoveryError::NotManager { discovery: discovery.to_string(), engine: engine_name })
        }
        SwarmState::Inactive(state) => {
            return Err(DiscoveryError::NotSwarm { discovery: discovery.to_string(), engine: engine_name, state })
        }
    }
    let services = engine.services_with_label(label).await.map_err(engine_error)?;
    if services.is_empty() {
        return Err(DiscoveryError::NoService {
            discovery: discovery.to_string(),
            label: label.to_string(),
            engine: engine_name,
        });
    }
    let names = services.iter().map(|s| format!("`{}`", s.spec.name)).collect::<Vec<_>>().join(", ");
    let mut found = Vec::new();
    match addresses {
        SwarmAddresses::Published => {
            let host = host.unwrap_or(engine.address().published_host());
            for service in &services {
                let published = service.endpoint.ports.iter().find(|p| {
                    p.target_port == port && p.published_port != 0 && (p.protocol.is_empty() || p.protocol == "tcp")
                });
                match published {
                    Some(p) => found.push(Endpoint::new(host, p.published_port)),
                    None => tracing::warn!(service = %service.spec.name, port, "Swarm service publishes no such port"),
                }
            }
            if found.is_empty() {
                return Err(DiscoveryError::NoPublishedPort {
                    discovery: discovery.to_string(),
                    services: names,
                    port,
                });
            }
        }
        SwarmAddresses::Tasks => {
            for service in &services {
                for task in engine.running_tasks(&service.id).await.map_err(engine_error)? {
                    for network in task.networks.iter().filter(|n| !n.network.spec.ingress) {
                        for cidr in &network.addresses {
                            let address = cidr.split('/').next().unwrap_or(cidr);
                            if let Ok(ip) = address.parse::<IpAddr>() {
                                found.push(Endpoint::from(SocketAddr::new(ip, port)));
                            }
                        }
                    }
                }
            }
            if found.is_empty() {
                return Err(DiscoveryError::NoRunningTasks { discovery: discovery.to_string(), services: names });
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Service {
        discovery: Source,
    }

    fn parse(text: &str) -> Result<Source, String> {
        toml::from_str::<Service>(text).map(|s| s.discovery).map_err(|e| e.to_string())
    }

    #[test]
    fn endpoints_parse_and_print() {
        for (text, host, port) in [
            ("10.0.0.5:2222", "10.0.0.5", 2222),
            ("proxy.lan:22", "proxy.lan", 22),
            ("[fd00::5]:2222", "fd00::5", 2222),
        ] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint, Endpoint::new(host, port));
            assert_eq!(endpoint.to_string(), text);
        }
        for (text, why) in [
            ("10.0.0.5", "expected host:port"),
            ("fd00::5:2222", "needs brackets"),
            ("[fd00::5]", "expected [IPv6"),
            ("[not-v6]:22", "not an IPv6"),
            (":2222", "host is empty"),
            ("proxy:0", "port 0"),
            ("proxy:70000", "1 to 65535"),
            ("proxy:ssh", "1 to 65535"),
            ("pro xy:22", "not a host name"),
        ] {
            let error = text.parse::<Endpoint>().unwrap_err().to_string();
            assert!(error.contains(text) && error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn every_kind_reads_back_as_written() {
        #[derive(serde::Serialize)]
        struct Written {
            discovery: Source,
        }
        for text in [
            r#"discovery = { static = ["10.0.0.5:2222", "[fd00::5]:2222"] }"#,
            r#"discovery = { dns = "proxy.lan", port = 2222, nameserver = "10.0.0.1:53" }"#,
            r#"discovery = { srv = "_nextcloud-proxy._tcp.lan" }"#,
            r#"discovery = { swarm = "tcp://10.0.0.2:2375", label = "service=x", port = 2222, addresses = "tasks" }"#,
        ] {
            let source = parse(text).unwrap();
            let written = toml::to_string(&Written { discovery: source.clone() }).unwrap();
            assert_eq!(parse(&written).unwrap(), source, "{text} -> {written}");
        }
    }

    #[test]
    fn every_kind_parses_from_toml() {
        assert_eq!(
            parse(r#"discovery = { static = ["10.0.0.5:2222", "[fd00::5]:2222"] }"#).unwrap(),
            Source::Static(vec![Endpoint::new("10.0.0.5", 2222), Endpoint::new("fd00::5", 2222)])
        );
        assert_eq!(
            parse(r#"discovery = { dns = "proxy.lan", port = 2222 }"#).unwrap(),
            Source::Dns { name: "proxy.lan".into(), port: 2222, nameserver: None }
        );
        assert_eq!(
            parse(r#"discovery = { dns = "proxy.lan", port = 2222, nameserver = "10.0.0.1" }"#).unwrap(),
            Source::Dns { name: "proxy.lan".into(), port: 2222, nameserver: Some("10.0.0.1:53".parse().unwrap()) }
        );
        assert_eq!(
            parse(r#"discovery = { srv = "_nc-proxy._tcp.lan", nameserver = "[::1]:5353" }"#).unwrap(),
            Source::Srv { name: "_nc-proxy._tcp.lan".into(), nameserver: Some("[::1]:5353".parse().unwrap()) }
        );
        assert_eq!(
            parse(r#"discovery = { swarm = "unix:///var/run/docker.sock", label = "service=nc-proxy", port = 2222 }"#)
                .unwrap(),
            Source::Swarm {
                engine: "unix:///var/run/docker.sock".into(),
                label: "service=nc-proxy".into(),
                port: 2222,
                addresses: SwarmAddresses::Published,
                host: None,
            }
        );
        let tasks = r#"[discovery]
            swarm = "tcp://10.0.0.2:2375"
            label = "service=nc-proxy"
            port = 2222
            addresses = "tasks"
            host = "10.0.0.3""#;
        assert_eq!(
            parse(tasks).unwrap(),
            Source::Swarm {
                engine: "tcp://10.0.0.2:2375".into(),
                label: "service=nc-proxy".into(),
                port: 2222,
                addresses: SwarmAddresses::Tasks,
                host: Some("10.0.0.3".into()),
            }
        );
    }

    #[test]
    fn bad_sources_are_explained() {
        for (text, why) in [
            ("discovery = {}", "one of `static`, `dns`, `srv` or `swarm`"),
            (r#"discovery = { dns = "a.lan", srv = "_b._tcp.lan", port = 1 }"#, "found `dns` and `srv`"),
            (r#"discovery = { dns = "proxy.lan" }"#, "`dns` discovery needs `port`"),
            (r#"discovery = { dns = "proxy.lan", port = 22, label = "x" }"#, "`label` does not apply to `dns`"),
            (r#"discovery = { srv = "_x._tcp.lan", port = 22 }"#, "`port` does not apply to `srv`"),
            (r#"discovery = { static = ["a:1"], nameserver = "10.0.0.1" }"#, "`nameserver` does not apply"),
            (r#"discovery = { static = [] }"#, "lists no endpoints"),
            (r#"discovery = { static = ["proxy.lan"] }"#, "bad endpoint `proxy.lan`"),
            (r#"discovery = { srv = "proxy.lan" }"#, "expected one like _nextcloud-proxy._tcp.lan"),
            (r#"discovery = { dns = "proxy lan", port = 22 }"#, "is not a DNS name"),
            (r#"discovery = { dns = "proxy.lan", port = 0 }"#, "port 0"),
            (r#"discovery = { dns = "a.lan", port = 22, nameserver = "dns.lan" }"#, "not an IP address"),
            (r#"discovery = { swarm = "/var/run/docker.sock", label = "a=b", port = 22 }"#, "unix:///"),
            (r#"discovery = { swarm = "unix:///d.sock", port = 22 }"#, "needs `label`"),
            (r#"discovery = { swarm = "unix:///d.sock", label = "a=b" }"#, "needs `port`"),
            (r#"discovery = { swarm = "unix:///d.sock", label = "", port = 22 }"#, "is not a label"),
            (
                r#"discovery = { swarm = "unix:///d.sock", label = "a", port = 22, addresses = "vip" }"#,
                "unknown variant",
            ),
            (r#"discovery = { dns = "proxy.lan", port = 22, ttl = 5 }"#, "unknown field `ttl`"),
            (r#"discovery = { swarm = "unix:///d.sock", label = "a", port = 22, host = "a b" }"#, "not a host name"),
            (r#"discovery = { swarm = "unix:///d.sock", label = "a", port = 22, host = "fd00::x" }"#, "not an IPv6"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn descriptions_name_the_source() {
        let dns = Source::Dns { name: "proxy.lan".into(), port: 2222, nameserver: None };
        assert_eq!(dns.describe(), "dns proxy.lan:2222");
        let srv = Source::Srv { name: "_p._tcp.lan".into(), nameserver: Some("127.0.0.1:5353".parse().unwrap()) };
        assert_eq!(srv.describe(), "srv _p._tcp.lan via 127.0.0.1:5353");
        let list = Source::Static(vec![Endpoint::new("a", 1), Endpoint::new("::1", 2)]);
        assert_eq!(list.describe(), "static a:1, [::1]:2");
    }

    /// Listeners on loopback that accept; the port of one that is closed.
    async fn listeners(count: usize) -> (Vec<tokio::net::TcpListener>, Vec<Endpoint>) {
        let mut listeners = Vec::new();
        let mut endpoints = Vec::new();
        for _ in 0..count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            endpoints.push(Endpoint::from(listener.local_addr().unwrap()));
            listeners.push(listener);
        }
        (listeners, endpoints)
    }

    async fn closed_port() -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Endpoint::from(listener.local_addr().unwrap())
    }

    #[tokio::test]
    async fn static_lists_keep_their_order_and_lose_the_unhealthy() {
        let (_listeners, up) = listeners(2).await;
        let down = closed_port().await;
        let list = vec![up[1].clone(), down.clone(), up[0].clone(), up[1].clone()];
        let discovery = Discovery::new(Source::Static(list), DiscoveryConfig::default());
        assert_eq!(discovery.endpoints().await.unwrap(), vec![up[1].clone(), up[0].clone()]);
        assert_eq!(discovery.stats().refreshes, 1);
    }

    #[tokio::test]
    async fn all_unhealthy_names_every_endpoint() {
        let down = [closed_port().await, closed_port().await];
        let discovery = Discovery::new(Source::Static(down.to_vec()), DiscoveryConfig::default());
        let error = discovery.endpoints().await.unwrap_err();
        assert!(matches!(error, DiscoveryError::AllUnhealthy { ref failures, .. } if failures.len() == 2));
        let text = error.to_string();
        assert!(text.contains(&down[0].to_string()) && text.contains(&down[1].to_string()), "{text}");
        assert!(text.contains("health check"), "{text}");
    }

    #[tokio::test]
    async fn the_cache_lasts_for_the_ttl() {
        let (listeners, up) = listeners(1).await;
        let config = DiscoveryConfig { ttl: Duration::from_secs(60), ..Default::default() };
        let discovery = Discovery::new(Source::Static(up.clone()), config);
        assert_eq!(discovery.endpoints().await.unwrap(), up);
        drop(listeners);
        // Time stands still from here on and moves only when told to.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(discovery.endpoints().await.unwrap(), up, "within the TTL the cached answer is reused");
        assert_eq!(discovery.stats().refreshes, 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        let error = discovery.endpoints().await.unwrap_err();
        assert!(matches!(error, DiscoveryError::AllUnhealthy { .. }), "after the TTL the source is asked: {error}");
        assert_eq!(discovery.stats().refreshes, 2);
    }

    #[tokio::test]
    async fn repeated_failures_drop_the_endpoint_and_invalidate() {
        let (mut listeners, up) = listeners(2).await;
        let discovery = Discovery::new(Source::Static(up.clone()), DiscoveryConfig::default());
        assert_eq!(discovery.endpoints().await.unwrap(), up);
        drop(listeners.remove(0));
        discovery.report_failure(&up[0]);
        discovery.report_failure(&up[0]);
        assert_eq!(discovery.stats().failures.get(&up[0].to_string()), Some(&2));
        assert_eq!(discovery.endpoints().await.unwrap(), up, "two failures of three: still cached");
        discovery.report_success(&up[0]);
        discovery.report_failure(&up[0]);
        discovery.report_failure(&up[0]);
        assert_eq!(discovery.endpoints().await.unwrap(), up, "a success starts the count again");
        discovery.report_failure(&up[0]);
        let stats = discovery.stats();
        assert_eq!((stats.drops, stats.endpoints.len()), (1, 0), "the third failure drops it and the cache");
        assert_eq!(discovery.endpoints().await.unwrap(), vec![up[1].clone()], "the refresh finds it down");
        assert_eq!(discovery.stats().refreshes, 2);
    }

    #[tokio::test]
    async fn invalidate_forces_a_query() {
        let (mut listeners, up) = listeners(2).await;
        let discovery = Discovery::new(Source::Static(up.clone()), DiscoveryConfig::default());
        assert_eq!(discovery.endpoints().await.unwrap(), up);
        drop(listeners.remove(1));
        assert_eq!(discovery.endpoints().await.unwrap(), up);
        discovery.invalidate();
        assert_eq!(discovery.endpoints().await.unwrap(), vec![up[0].clone()]);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let (_listeners, up) = listeners(3).await;
        let discovery = std::sync::Arc::new(Discovery::new(Source::Static(up.clone()), DiscoveryConfig::default()));
        let calls = (0..16).map(|_| {
            let discovery = discovery.clone();
            tokio::spawn(async move { discovery.endpoints().await.unwrap() })
        });
        for result in futures_util::future::join_all(calls).await {
            assert_eq!(result.unwrap(), up);
        }
        assert_eq!(discovery.stats().refreshes, 1);
    }

    #[tokio::test]
    async fn a_swarm_engine_that_is_not_there_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let engine = format!("unix://{}/docker.sock", dir.path().display());
        let source = Source::Swarm {
            engine: engine.clone(),
            label: "service=x-proxy".into(),
            port: 2222,
            addresses: SwarmAddresses::Published,
            host: None,
        };
        let error = Discovery::new(source, DiscoveryConfig::default()).endpoints().await.unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, DiscoveryError::Engine { source: EngineError::SocketMissing { .. }, .. }), "{text}");
        assert!(text.starts_with("swarm service=x-proxy on unix://") && text.contains("does not exist"), "{text}");
    }
}
