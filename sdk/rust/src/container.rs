//! Containers: creating them (`lxc` grant) and the handle type every other
//! capability acts on.

use core::cell::OnceCell;

use crate::bindings::proximity::recipe::lxc as wit;
use crate::context::Context;
use crate::error::Result;
use crate::os::OsFamily;

pub use crate::bindings::proximity::recipe::lxc::{Features, IpConfig, LxcSpec, Network};

/// A container this run created, or one the host handed over for an existing
/// app. Dropping it only releases the handle; the container keeps running.
///
/// Exec, file and probe helpers live in their own modules as further
/// `impl Container` blocks.
#[derive(Debug)]
pub struct Container {
    raw: wit::Container,
    /// Filled by the first `os_family()` call, so `/etc/os-release` is read once.
    pub(crate) os_family: OnceCell<OsFamily>,
}

impl Container {
    fn from_raw(raw: wit::Container) -> Self {
        Container { raw, os_family: OnceCell::new() }
    }

    /// Create a container from `spec` and start it.
    pub fn create(spec: &ContainerSpec) -> Result<Container> {
        create_container(spec.to_lxc_spec())
    }

    /// Wrap a raw handle number.
    ///
    /// # Safety
    /// `handle` must be a live `container` handle owned by this instance. The
    /// host traps on anything else; only sandbox tests have a reason to call this.
    pub unsafe fn from_handle(handle: u32) -> Container {
        Container::from_raw(unsafe { wit::Container::from_handle(handle) })
    }

    /// The handle number in this instance's resource table.
    pub fn handle(&self) -> u32 {
        self.raw.handle()
    }

    /// The generated resource, for calling bindings directly.
    pub fn raw(&self) -> &wit::Container {
        &self.raw
    }

    /// The backend's id for the container (a VMID on Proxmox).
    pub fn id(&self) -> String {
        self.raw.id()
    }

    pub fn hostname(&self) -> String {
        self.raw.hostname()
    }

    /// The container's IPv4 address; the host waits a bounded time for one.
    pub fn address(&self) -> Result<String> {
        Ok(self.raw.address()?)
    }

    pub fn start(&self) -> Result<()> {
        Ok(self.raw.start()?)
    }

    pub fn stop(&self) -> Result<()> {
        Ok(self.raw.stop()?)
    }
}

/// Create a container from a raw WIT spec and start it.
pub fn create_container(spec: LxcSpec) -> Result<Container> {
    Ok(Container::from_raw(wit::create_lxc(&spec)?))
}

/// The containers of the existing app this run acts on (uninstall, upgrade, health).
pub fn app_containers() -> Vec<Container> {
    wit::app_containers().into_iter().map(Container::from_raw).collect()
}

/// The first container of the existing app, or `not-found`.
pub fn app_container() -> Result<Container> {
    app_containers().into_iter().next().ok_or_else(|| crate::Error::not_found("this app has no container"))
}

/// Builder for an [`LxcSpec`] with defaults taken from the context: hostname =
/// app id, resources as the operator chose, DHCP on the default bridge,
/// unprivileged, no features, tagged `proximity`.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    spec: LxcSpec,
}

/// The tag every Proximity container carries, so operators can find them.
pub const PROXIMITY_TAG: &str = "proximity";

impl ContainerSpec {
    /// Defaults from `ctx` for the given OS template (`debian-12`, `alpine-3.20`, ...).
    pub fn new(ctx: &Context, os_template: impl Into<String>) -> Self {
        let resources = ctx.resources();
        ContainerSpec {
            spec: LxcSpec {
                hostname: ctx.app_id().to_string(),
                os_template: os_template.into(),
                cores: resources.cores,
                memory_mb: resources.memory_mb,
                swap_mb: resources.swap_mb,
                disk_gb: resources.disk_gb,
                features: Features { nesting: false, keyctl: false, fuse: false },
                unprivileged: true,
                network: Network { bridge: None, ip: IpConfig::Dhcp },
                tags: vec![PROXIMITY_TAG.to_string()],
            },
        }
    }

    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.spec.hostname = hostname.into();
        self
    }

    pub fn cores(mut self, cores: u32) -> Self {
        self.spec.cores = cores;
        self
    }

    pub fn memory_mb(mut self, memory_mb: u32) -> Self {
        self.spec.memory_mb = memory_mb;
        self
    }

    pub fn swap_mb(mut self, swap_mb: u32) -> Self {
        self.spec.swap_mb = swap_mb;
        self
    }

    pub fn disk_gb(mut self, disk_gb: u32) -> Self {
        self.spec.disk_gb = disk_gb;
        self
    }

    /// Allow nested containers (needed for Docker in LXC).
    pub fn nesting(mut self, on: bool) -> Self {
        self.spec.features.nesting = on;
        self
    }

    /// Allow keyctl (needed for Docker in an unprivileged LXC).
    pub fn keyctl(mut self, on: bool) -> Self {
        self.spec.features.keyctl = on;
        self
    }

    /// What Docker needs in an unprivileged container: nesting and keyctl.
    pub fn docker_host(self) -> Self {
        self.nesting(true).keyctl(true)
    }

    pub fn fuse(mut self, on: bool) -> Self {
        self.spec.features.fuse = on;
        self
    }

    pub fn unprivileged(mut self, on: bool) -> Self {
        self.spec.unprivileged = on;
        self
    }

    /// Attach to `bridge` instead of the backend's default.
    pub fn bridge(mut self, bridge: impl Into<String>) -> Self {
        self.spec.network.bridge = Some(bridge.into());
        self
    }

    /// A static address in CIDR form (`192.168.1.20/24`) and optional gateway.
    pub fn static_ip(mut self, cidr: impl Into<String>, gateway: Option<String>) -> Self {
        self.spec.network.ip = IpConfig::Static((cidr.into(), gateway));
        self
    }

    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.spec.tags.push(tag.into());
        self
    }

    /// The WIT record this builder describes.
    pub fn to_lxc_spec(&self) -> LxcSpec {
        self.spec.clone()
    }

    /// Create the container and start it.
    pub fn create(&self) -> Result<Container> {
        Container::create(self)
    }
}
