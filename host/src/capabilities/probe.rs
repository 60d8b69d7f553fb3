//! `probe`: wait until a port or URL in a container answers.

use std::time::Duration;

use wasmtime::component::Resource;

use super::{CapabilityError, ContainerHandle, RunState};
use crate::backend::HttpProbe;
use crate::bindings::probe;
use crate::manifest::Capability;

impl probe::Host for RunState {
    async fn wait_tcp(
        &mut self,
        handle: Resource<ContainerHandle>,
        port: u16,
        timeout_ms: u32,
    ) -> Result<(), CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Probe)?;
        let container = self.container(&handle)?;
        let timeout = run.call_timeout(Some(timeout_ms));
        run.bounded(run.backend.wait_tcp(&container, port, timeout)).await
    }

    async fn wait_http(
        &mut self,
        handle: Resource<ContainerHandle>,
        port: u16,
        path: String,
        expect_status: Option<u16>,
        timeout_ms: u32,
    ) -> Result<u16, CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Probe)?;
        let container = self.container(&handle)?;
        if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(CapabilityError::invalid_input(format!(
                "probe path {path:?} must start with `/` and hold no spaces"
            )));
        }
        let probe = HttpProbe { port, path, expect_status };
        let timeout: Duration = run.call_timeout(Some(timeout_ms));
        run.bounded(run.backend.wait_http(&container, &probe, timeout)).await
    }
}
