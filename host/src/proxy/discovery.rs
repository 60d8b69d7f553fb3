//! Placeholder until the discovery branch lands: static endpoints only.

use std::fmt;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
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

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Static(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    pub ttl: Duration,
    pub health_timeout: Duration,
    pub max_errors: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig { ttl: Duration::from_secs(60), health_timeout: Duration::from_secs(2), max_errors: 3 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DiscoveryError(String);

pub struct Discovery {
    source: Source,
}

impl Discovery {
    pub fn new(source: Source, _config: DiscoveryConfig) -> Discovery {
        Discovery { source }
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, DiscoveryError> {
        let Source::Static(list) = &self.source;
        list.iter()
            .map(|s| {
                let (host, port) = s.rsplit_once(':').ok_or_else(|| DiscoveryError(format!("bad endpoint {s}")))?;
                let port = port.parse().map_err(|_| DiscoveryError(format!("bad port in {s}")))?;
                Ok(Endpoint { host: host.trim_matches(['[', ']']).to_string(), port })
            })
            .collect()
    }

    pub fn report_failure(&self, _endpoint: &Endpoint) {}
    pub fn report_success(&self, _endpoint: &Endpoint) {}
    pub fn invalidate(&self) {}
    pub fn describe(&self) -> String {
        format!("{:?}", self.source)
    }
}
