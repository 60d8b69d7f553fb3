//! Getting this machine ready for the lxc backend: its Debian packages. The
//! bridge (lxc-net) is the backend's own business: it checks that lxc-net's
//! dnsmasq is alive and restarts it when a stale run left only its marks.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// What the lxc backend needs from Debian.
const PACKAGES: &[&str] =
    &["lxc", "lxc-templates", "debootstrap", "dnsmasq-base", "bridge-utils", "iptables", "uidmap", "rsync"];

/// Install the LXC packages when they are missing (as root).
pub fn ensure_ready() -> Result<()> {
    if !is_root() {
        bail!("the lxc backend needs root");
    }
    if !Path::new("/usr/bin/lxc-create").exists() || !Path::new("/usr/sbin/debootstrap").exists() {
        println!("xtask: installing LXC ({})", PACKAGES.join(" "));
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn run(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command.status().with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
