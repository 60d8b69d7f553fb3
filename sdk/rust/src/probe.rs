//! Waiting for services in a container to answer (`probe` grant).

use core::time::Duration;

use crate::bindings::proximity::recipe::probe as wit;
use crate::container::Container;
use crate::error::{Result, ResultExt};
use crate::report::HealthCheck;
use crate::text::duration_ms;

impl Container {
    /// Wait until TCP `port` accepts connections, at most `timeout`.
    pub fn wait_port(&self, port: u16, timeout: Duration) -> Result<()> {
        wit::wait_tcp(self.raw(), port, duration_ms(timeout)).context(format_args!("waiting for TCP port {port}"))
    }

    /// A health check named `name` that passes when TCP `port` accepts
    /// connections within `timeout`.
    pub fn port_check(&self, name: &str, port: u16, timeout: Duration) -> HealthCheck {
        HealthCheck::from_result(name, &self.wait_port(port, timeout), format!("port {port} accepts connections"))
    }

    /// Wait for an HTTP answer on `port` and `path`, at most `timeout`, and
    /// return its status. With `expect_status`, other codes keep waiting.
    pub fn wait_http(&self, port: u16, path: &str, expect_status: Option<u16>, timeout: Duration) -> Result<u16> {
        wit::wait_http(self.raw(), port, path, expect_status, duration_ms(timeout))
            .context(format_args!("waiting for HTTP on port {port} {path}"))
    }
}
