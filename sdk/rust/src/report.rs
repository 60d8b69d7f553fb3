//! What lifecycle exports return: `AppInfo` and `HealthReport`.
//!
//! These are the generated WIT records, with constructors so recipes can
//! build them in one expression.

pub use crate::bindings::proximity::recipe::types::{AppInfo, HealthCheck, HealthReport};

impl AppInfo {
    /// Nothing known yet; add fields with the builder methods.
    pub fn new() -> Self {
        AppInfo { url: None, address: None, ports: Vec::new(), outputs: Vec::new() }
    }

    /// Where a person reaches the app, e.g. `http://10.0.3.12/`.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The main container's address.
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// A port the app listens on.
    pub fn with_port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }

    /// A named value for the operator. Never a secret: those stay in parameters.
    pub fn with_output(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.push((name.into(), value.into()));
        self
    }
}

impl Default for AppInfo {
    fn default() -> Self {
        AppInfo::new()
    }
}

impl HealthCheck {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        HealthCheck { name: name.into(), ok: true, detail: detail.into() }
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        HealthCheck { name: name.into(), ok: false, detail: detail.into() }
    }

    /// A check from a step's result: `Ok` passes with `detail`, `Err` fails
    /// with the error's text.
    pub fn from_result<T>(name: impl Into<String>, result: &crate::Result<T>, detail: impl Into<String>) -> Self {
        match result {
            Ok(_) => HealthCheck::pass(name, detail),
            Err(e) => HealthCheck::fail(name, e.to_string()),
        }
    }
}

impl HealthReport {
    /// Healthy, with no checks: the default for recipes without a health probe.
    pub fn healthy() -> Self {
        HealthReport { healthy: true, checks: Vec::new() }
    }

    /// Healthy exactly when every check passed.
    pub fn from_checks(checks: Vec<HealthCheck>) -> Self {
        HealthReport { healthy: checks.iter().all(|c| c.ok), checks }
    }
}

/// `http://ADDRESS/`, with `:PORT` unless it is 80.
pub fn http_url(address: &str, port: u16) -> String {
    if port == 80 {
        format!("http://{address}/")
    } else {
        format!("http://{address}:{port}/")
    }
}

/// `https://ADDRESS/`, with `:PORT` unless it is 443.
pub fn https_url(address: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{address}/")
    } else {
        format!("https://{address}:{port}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_leave_out_default_ports() {
        assert_eq!(http_url("10.0.3.5", 80), "http://10.0.3.5/");
        assert_eq!(http_url("10.0.3.5", 3000), "http://10.0.3.5:3000/");
        assert_eq!(https_url("10.0.3.5", 443), "https://10.0.3.5/");
        assert_eq!(https_url("10.0.3.5", 9443), "https://10.0.3.5:9443/");
    }
}
