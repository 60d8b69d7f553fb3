//! The Debian packages this machine needs, installed when missing (as root).
//! The LXC bridge (lxc-net) is not set up here: the lxc backend checks that
//! lxc-net's dnsmasq is alive and restarts it when a stale run left only its
//! marks.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// What the lxc backend needs: LXC, the Debian template's debootstrap,
/// lxc-net's DHCP/NAT, subordinate id tools, and rsync for base image copies.
pub const LXC: &[&str] =
    &["lxc", "lxc-templates", "debootstrap", "dnsmasq-base", "bridge-utils", "iptables", "uidmap", "rsync"];

/// The proxmox backend's SSH tests start a private OpenSSH server on loopback;
/// the proxy's interop tests use the stock `ssh` client.
pub const SSH_SERVER: &[&str] = &["openssh-server", "openssh-client"];

/// The proxy discovery tests start a private Docker engine in Swarm mode.
pub const DOCKER: &[&str] = &["docker.io"];

/// The PostgreSQL recipe's real-container test signs in from the host with `psql`.
pub const DATABASE_CLIENTS: &[&str] = &["postgresql-client"];

/// The browser tests (host/tests/web.rs) drive Debian's Chromium, headless.
pub const BROWSER: &[&str] = &["chromium"];

/// node and npm for the browser tests' Playwright script, when no node is
/// installed at all (a node from elsewhere, with its own npm, is used as it is).
pub const NODE: &[&str] = &["nodejs", "npm"];

/// Python recipes: componentize-py is installed into a venv, which Debian's
/// python3 can make only with its venv module (pip comes from ensurepip).
pub const PYTHON_VENV: &[&str] = &["python3-venv"];

/// Install those of `packages` that dpkg does not report as installed.
/// `why` names what they are for in the messages.
pub fn ensure(packages: &[&str], why: &str) -> Result<()> {
    let missing = missing(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("{why} needs {}: as root, `apt-get install -y {}`", missing.join(" "), missing.join(" "));
    }
    println!("xtask: installing {} for {why}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The packages dpkg does not know as installed.
fn missing<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query exits non-zero when a package is unknown to it, yet still
    // prints the known ones: the output alone decides.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\\n"])
        .args(packages)
        .output()
        .context("could not run dpkg-query (is this a Debian machine?)")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.strip_suffix(" installed"))
        .map(|name| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(packages.iter().copied().filter(|p| !installed.contains(p)).collect())
}

pub fn is_root() -> bool {
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
