//! `lxc`: create containers and start or stop the ones this run holds.

use wasmtime::component::Resource;

use super::{CapabilityError, ContainerHandle, RunState};
use crate::backend::{ContainerSpec, Features, IpConfig, NetworkSpec};
use crate::bindings::lxc;
use crate::manifest::{Capability, ContainerRequest};

/// Tags every Proximity container carries, whatever the recipe asks for.
pub const PROXIMITY_TAG: &str = "proximity";

impl lxc::Host for RunState {
    async fn create_lxc(&mut self, spec: lxc::LxcSpec) -> Result<Resource<ContainerHandle>, CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Lxc)?;
        let spec = container_spec(spec, &run.owner.app_id)?;
        run.grants
            .check_container(&ContainerRequest {
                cores: spec.cores,
                memory_mb: spec.memory_mb,
                disk_gb: spec.disk_gb,
                nesting: spec.features.nesting,
                keyctl: spec.features.keyctl,
                fuse: spec.features.fuse,
            })
            .map_err(|denied| run.denied(denied))?;
        let container = run.bounded(run.backend.create(&run.owner, &spec)).await?;
        // Journal it before starting, so a failed start is still cleaned up.
        run.journal().created.push(container.clone());
        run.bounded(run.backend.start(&container)).await?;
        self.new_handle(container)
    }

    async fn app_containers(&mut self) -> wasmtime::Result<Vec<Resource<ContainerHandle>>> {
        let containers = self.run.app_containers.clone();
        let mut handles = Vec::with_capacity(containers.len());
        for container in containers {
            handles.push(self.table.push(ContainerHandle { container })?);
        }
        Ok(handles)
    }
}

impl lxc::HostContainer for RunState {
    async fn id(&mut self, handle: Resource<ContainerHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&handle)?.container.id.clone())
    }

    async fn hostname(&mut self, handle: Resource<ContainerHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&handle)?.container.hostname.clone())
    }

    async fn address(&mut self, handle: Resource<ContainerHandle>) -> Result<String, CapabilityError> {
        let container = self.container(&handle)?;
        let run = self.run.clone();
        run.bounded(run.backend.address(&container, run.remaining())).await
    }

    async fn start(&mut self, handle: Resource<ContainerHandle>) -> Result<(), CapabilityError> {
        let container = self.container(&handle)?;
        let run = self.run.clone();
        run.require(Capability::Lxc)?;
        run.bounded(run.backend.start(&container)).await
    }

    async fn stop(&mut self, handle: Resource<ContainerHandle>) -> Result<(), CapabilityError> {
        let container = self.container(&handle)?;
        let run = self.run.clone();
        run.require(Capability::Lxc)?;
        run.bounded(run.backend.stop(&container)).await
    }

    async fn drop(&mut self, handle: Resource<ContainerHandle>) -> wasmtime::Result<()> {
        // Dropping the handle forgets it; the container itself stays.
        self.table.delete(handle)?;
        Ok(())
    }
}

/// Check the recipe's spec for well-formedness and add the host's tags.
fn container_spec(spec: lxc::LxcSpec, app_id: &str) -> Result<ContainerSpec, CapabilityError> {
    let hostname_ok = !spec.hostname.is_empty()
        && spec.hostname.len() <= 63
        && spec.hostname.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !spec.hostname.starts_with('-')
        && !spec.hostname.ends_with('-');
    if !hostname_ok {
        return Err(CapabilityError::invalid_input(format!(
            "hostname `{}` must be 1-63 characters of a-z, 0-9 and `-`, not starting or ending with `-`",
            spec.hostname
        )));
    }
    if spec.cores == 0 || spec.memory_mb == 0 || spec.disk_gb == 0 {
        return Err(CapabilityError::invalid_input("cores, memory-mb and disk-gb must be at least 1"));
    }
    let template_ok = !spec.os_template.is_empty()
        && spec.os_template.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !template_ok {
        return Err(CapabilityError::invalid_input(format!(
            "os-template `{}` is not a template name",
            spec.os_template
        )));
    }
    let mut tags = vec![PROXIMITY_TAG.to_string(), format!("app-{app_id}")];
    for tag in spec.tags {
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(CapabilityError::invalid_input(format!(
                "tag `{tag}` may only hold letters, digits, `-`, `_` and `.`"
            )));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(ContainerSpec {
        hostname: spec.hostname,
        os_template: spec.os_template,
        cores: spec.cores,
        memory_mb: spec.memory_mb,
        swap_mb: spec.swap_mb,
        disk_gb: spec.disk_gb,
        features: Features { nesting: spec.features.nesting, keyctl: spec.features.keyctl, fuse: spec.features.fuse },
        unprivileged: spec.unprivileged,
        network: NetworkSpec {
            bridge: spec.network.bridge,
            ip: match spec.network.ip {
                lxc::IpConfig::Dhcp => IpConfig::Dhcp,
                lxc::IpConfig::Static((cidr, gateway)) => IpConfig::Static { cidr, gateway },
            },
        },
        tags,
    })
}
