//! Mapping a [`ContainerSpec`] and its [`Ownership`] to LXC config lines,
//! and finding Proximity's own containers again from those lines.

use std::path::Path;

use super::super::{BackendError, ContainerSpec, IpConfig, Ownership};

/// Prefix of the comment lines that hold the ownership labels.
const LABEL_PREFIX: &str = "# proximity.";
/// The line that marks the settings Proximity wrote.
const MANAGED_MARK: &str = "# proximity: settings below are managed by Proximity";

/// Which memory controller the host's LXC can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cgroups {
    /// `lxc.cgroup.*` keys; `memsw` tells whether swap can be limited too.
    V1 { memsw: bool },
    /// `lxc.cgroup2.*` keys.
    V2,
}

impl Cgroups {
    /// Detect from `/sys/fs/cgroup`. A hybrid host whose v2 hierarchy lacks
    /// the memory controller (this machine) counts as v1.
    pub fn detect(root: &Path) -> Result<Self, BackendError> {
        if root.join("memory/memory.limit_in_bytes").is_file() {
            return Ok(Cgroups::V1 { memsw: root.join("memory/memory.memsw.limit_in_bytes").is_file() });
        }
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Ok(Cgroups::V2);
        }
        // Refuse rather than run containers whose memory limit nobody enforces.
        Err(BackendError::Failed(format!(
            "no cgroup memory controller under {}: container memory limits could not be enforced",
            root.display()
        )))
    }
}

/// The subordinate id range root may map into unprivileged containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub start: u64,
    pub count: u64,
}

/// What the host contributes to every container's config.
#[derive(Clone, Debug)]
pub struct HostSettings {
    pub cgroups: Cgroups,
    pub host_cpus: u32,
    pub bridge: String,
    pub uid_range: IdRange,
    pub gid_range: IdRange,
}

/// Hostnames become `lxc.uts.name`; only RFC 1123 labels are accepted.
/// The hostname a container config sets (`lxc.uts.name`).
pub fn hostname(config: &str) -> Option<String> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "lxc.uts.name").then(|| value.trim().to_string())
    })
}

pub fn check_hostname(hostname: &str) -> Result<(), BackendError> {
    let ok = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !hostname.starts_with('-')
        && !hostname.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!(
            "hostname `{hostname}` must be 1-63 lowercase letters, digits and inner hyphens"
        )))
    }
}

/// Config keys this module owns: lines with these keys are dropped from the
/// cloned base config before Proximity's own are appended.
const OWNED_KEYS: &[&str] = &["lxc.uts.name", "lxc.net.", "lxc.idmap", "lxc.rootfs.options", "lxc.cgroup"];

/// The clone's config `base` (as `lxc-copy` wrote it) with the spec applied.
pub fn render(
    base: &str,
    owner: &Ownership,
    spec: &ContainerSpec,
    host: &HostSettings,
    mac: &str,
) -> Result<String, BackendError> {
    check_hostname(&spec.hostname)?;
    if spec.memory_mb == 0 || spec.cores == 0 {
        return Err(BackendError::InvalidInput("a container needs at least 1 core and 1 MiB of memory".into()));
    }
    let mut out: String = base
        .lines()
        .take_while(|line| line.trim() != MANAGED_MARK)
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            let owned_include =
                key == "lxc.include" && (line.ends_with("/userns.conf") || line.ends_with("/nesting.conf"));
            !line.starts_with(LABEL_PREFIX) && !owned_include && !OWNED_KEYS.iter().any(|owned| key.starts_with(owned))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let mut add = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    add(MANAGED_MARK.to_string());
    // Labels as JSON strings: a value can never break out of its comment line.
    for (key, value) in
        [("recipe-id", &owner.recipe_id), ("app-id", &owner.app_id), ("deployment-id", &owner.deployment_id)]
    {
        add(format!("{LABEL_PREFIX}{key} = {}", json(value)));
    }
    add(format!("{LABEL_PREFIX}tags = {}", serde_json::to_string(&spec.tags).expect("strings serialize")));
    add(format!("lxc.uts.name = {}", spec.hostname));

    let bridge = spec.network.bridge.as_deref().unwrap_or(&host.bridge);
    check_iface_name(bridge)?;
    add("lxc.net.0.type = veth".into());
    add(format!("lxc.net.0.link = {bridge}"));
    add("lxc.net.0.flags = up".into());
    add(format!("lxc.net.0.hwaddr = {mac}"));
    if let IpConfig::Static { cidr, gateway } = &spec.network.ip {
        check_plain("ip", cidr)?;
        add(format!("lxc.net.0.ipv4.address = {cidr}"));
        if let Some(gateway) = gateway {
            check_plain("gateway", gateway)?;
            add(format!("lxc.net.0.ipv4.gateway = {gateway}"));
        }
    }

    let cpus = spec.cores.min(host.host_cpus).max(1);
    let cpuset = if cpus == 1 { "0".to_string() } else { format!("0-{}", cpus - 1) };
    let memory = u64::from(spec.memory_mb) * 1024 * 1024;
    let swap = u64::from(spec.swap_mb) * 1024 * 1024;
    match host.cgroups {
        Cgroups::V1 { memsw } => {
            add(format!("lxc.cgroup.memory.limit_in_bytes = {memory}"));
            if memsw {
                add(format!("lxc.cgroup.memory.memsw.limit_in_bytes = {}", memory + swap));
            }
            add(format!("lxc.cgroup.cpuset.cpus = {cpuset}"));
            add(format!("lxc.cgroup.cpu.shares = {}", 1024 * cpus));
        }
        Cgroups::V2 => {
            add(format!("lxc.cgroup2.memory.max = {memory}"));
            add(format!("lxc.cgroup2.memory.swap.max = {swap}"));
            add(format!("lxc.cgroup2.cpuset.cpus = {cpuset}"));
            add(format!("lxc.cgroup2.cpu.weight = {}", 100 * cpus));
        }
    }

    if spec.unprivileged {
        add("lxc.include = /usr/share/lxc/config/userns.conf".into());
        add(format!("lxc.idmap = u 0 {} {}", host.uid_range.start, host.uid_range.count.min(65536)));
        add(format!("lxc.idmap = g 0 {} {}", host.gid_range.start, host.gid_range.count.min(65536)));
        // No `idmap=container` rootfs option: LXC allows idmapped rootfs
        // mounts only with the dir driver, so unprivileged clones come from a
        // base already shifted into the range (see `base`).
    }
    if spec.features.nesting {
        add("lxc.include = /usr/share/lxc/config/nesting.conf".into());
    }
    if spec.features.fuse {
        add("lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file,optional 0 0".into());
    }
    // `keyctl` is a Proxmox notion; plain LXC's seccomp policy already allows it.
    Ok(out)
}

fn json(value: &str) -> String {
    serde_json::to_string(value).expect("strings serialize")
}

fn check_iface_name(name: &str) -> Result<(), BackendError> {
    if !name.is_empty() && name.len() < 16 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!("`{name}` is not a valid bridge name")))
    }
}

fn check_plain(what: &str, value: &str) -> Result<(), BackendError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit() || b"./:".contains(&b)) {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!("{what} `{value}` is not an address")))
    }
}

/// The ownership labels in a container's config, if Proximity made it.
pub fn labels(config: &str) -> Option<Ownership> {
    let get = |key: &str| {
        let prefix = format!("{LABEL_PREFIX}{key} = ");
        config.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|v| serde_json::from_str::<String>(v).ok())
    };
    Some(Ownership { recipe_id: get("recipe-id")?, app_id: get("app-id")?, deployment_id: get("deployment-id")? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Features, NetworkSpec};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            hostname: "web-1".into(),
            os_template: "debian-12".into(),
            cores: 4,
            memory_mb: 128,
            swap_mb: 64,
            disk_gb: 2,
            features: Features { nesting: true, ..Default::default() },
            unprivileged: true,
            network: NetworkSpec { bridge: None, ip: IpConfig::Dhcp },
            tags: vec!["proximity".into()],
        }
    }

    fn host(cgroups: Cgroups) -> HostSettings {
        let range = IdRange { start: 100000, count: 65536 };
        HostSettings { cgroups, host_cpus: 2, bridge: "lxcbr0".into(), uid_range: range, gid_range: range }
    }

    #[test]
    fn spec_maps_to_v1_or_v2_keys_and_labels_round_trip() {
        let owner = Ownership { recipe_id: "nginx".into(), app_id: "a\n lxc.x = 1".into(), deployment_id: "d1".into() };
        let base = "lxc.uts.name = old\nlxc.net.0.type = empty\nlxc.rootfs.path = overlay:/b:/c\n";
        let v1 = render(base, &owner, &spec(), &host(Cgroups::V1 { memsw: true }), "00:16:3e:00:00:01").unwrap();
        assert!(v1.contains("lxc.cgroup.memory.limit_in_bytes = 134217728\n"), "{v1}");
        assert!(v1.contains("lxc.cgroup.memory.memsw.limit_in_bytes = 201326592\n"), "{v1}");
        assert!(v1.contains("lxc.cgroup.cpuset.cpus = 0-1\n"), "{v1}");
        assert!(
            v1.contains("lxc.rootfs.path = overlay:/b:/c\n") && !v1.contains("old") && !v1.contains("empty"),
            "{v1}"
        );
        assert!(v1.contains("lxc.idmap = u 0 100000 65536") && v1.contains("nesting.conf"), "{v1}");
        assert!(!v1.lines().any(|l| l.starts_with("lxc.x")), "a label cannot inject a key: {v1}");
        assert_eq!(labels(&v1), Some(owner.clone()));
        // Rendering again (a restart) replaces, never duplicates.
        let again = render(&v1, &owner, &spec(), &host(Cgroups::V2), "00:16:3e:00:00:01").unwrap();
        assert_eq!(again.matches("lxc.uts.name").count(), 1, "{again}");
        assert!(again.contains("lxc.cgroup2.memory.max = 134217728\n") && !again.contains("limit_in_bytes"), "{again}");
    }

    #[test]
    fn bad_hostnames_are_refused() {
        for bad in ["", "-a", "a b", "A", "x\nlxc.y=1"] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
