//! The Rust toolchain that compiles recipes to `wasm32-unknown-unknown`.
//!
//! Two routes:
//! - **rustup** (preferred): the machine's toolchain plus the target's prebuilt std,
//!   added with `rustup target add` when missing.
//! - **debian**: Debian's `rustc-web` compiler building std from `rust-web-src` with
//!   `-Zbuild-std`, linked by `wasm-ld-19`. For machines where rustup is absent or
//!   cannot download the target. (The rustup compiler cannot use Debian's std source.)
//!
//! `PROXIMITY_WASM_TOOLCHAIN=rustup|debian` forces a route; otherwise rustup is
//! tried first and Debian's toolchain is the fallback.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};

use crate::command::{output_of, run_captured};

/// The wasm target every recipe is compiled for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Environment variable that forces a route: `rustup` or `debian`.
pub const TOOLCHAIN_ENV: &str = "PROXIMITY_WASM_TOOLCHAIN";

const DEBIAN_PACKAGES: [&str; 4] = ["rustc-web", "cargo-web", "rust-web-src", "lld-19"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Debian's `/usr/bin/rust-lld` is a dangling link, so the linker is named explicitly.
const DEBIAN_WASM_LINKER: &str = "wasm-ld-19";
/// The Rust SDK's wit-bindgen 0.61.1 needs Rust 1.85.
const MIN_RUST: (u32, u32) = (1, 85);

/// How recipes get compiled to wasm on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmRoute {
    Rustup,
    Debian,
}

/// A toolchain checked to be able to build `wasm32-unknown-unknown` crates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub route: WasmRoute,
    /// What `rustc --version` printed, e.g. `rustc 1.95.0 (59807616e 2026-04-14)`.
    pub rustc_version: String,
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            WasmRoute::Rustup => write!(f, "rustup, {}", self.rustc_version),
            WasmRoute::Debian => write!(f, "Debian rustc-web, {} with -Zbuild-std", self.rustc_version),
        }
    }
}

impl Toolchain {
    /// `cargo build --release --target wasm32-unknown-unknown`, set up for this route.
    pub(crate) fn cargo_build(&self) -> Command {
        let mut cmd;
        match self.route {
            WasmRoute::Rustup => {
                cmd = Command::new("cargo");
                cmd.args(["build", "--release", "--target", WASM_TARGET]);
            }
            WasmRoute::Debian => {
                cmd = Command::new(DEBIAN_CARGO);
                cmd.env("RUSTC", DEBIAN_RUSTC)
                    // -Zbuild-std is unstable; Debian ships no nightly.
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", DEBIAN_WASM_LINKER)
                    .args(["build", "--release", "--target", WASM_TARGET])
                    .arg("-Zbuild-std=std,panic_abort");
            }
        }
        cmd
    }
}

/// Finds (and, where it can, installs) a toolchain that builds wasm recipes.
pub fn ensure_wasm_toolchain() -> Result<Toolchain> {
    // One setup at a time in this process: two threads must not both run
    // `rustup target add` or `apt-get install` (the second would find dpkg locked).
    static SETUP: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());

    match forced_route(std::env::var(TOOLCHAIN_ENV).ok().as_deref())? {
        Some(WasmRoute::Rustup) => {
            ensure_rustup().with_context(|| format!("the rustup route ({TOOLCHAIN_ENV}=rustup) cannot build recipes"))
        }
        Some(WasmRoute::Debian) => {
            ensure_debian().with_context(|| format!("the Debian route ({TOOLCHAIN_ENV}=debian) cannot build recipes"))
        }
        None => ensure_rustup().or_else(|rustup_err| {
            eprintln!(
                "proximity-builder: rustup cannot provide {WASM_TARGET} ({rustup_err:#}); \
                 falling back to Debian's rustc-web"
            );
            ensure_debian().map_err(|debian_err| {
                anyhow!(
                    "no toolchain here can build wasm recipes:\n  \
                     rustup: {rustup_err:#}\n  Debian rustc-web: {debian_err:#}"
                )
            })
        }),
    }
}

/// Reads the route forced by `PROXIMITY_WASM_TOOLCHAIN`, if any.
fn forced_route(value: Option<&str>) -> Result<Option<WasmRoute>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some("rustup") => Ok(Some(WasmRoute::Rustup)),
        Some("debian") => Ok(Some(WasmRoute::Debian)),
        Some(other) => bail!("{TOOLCHAIN_ENV}={other} is not a route: use `rustup` or `debian`"),
    }
}

fn ensure_rustup() -> Result<Toolchain> {
    let installed =
        output_of(Command::new("rustup").args(["target", "list", "--installed"])).context("rustup is not installed")?;
    if !installed.status.success() {
        bail!("`rustup target list --installed` failed: {}", String::from_utf8_lossy(&installed.stderr).trim());
    }
    let has_target = String::from_utf8_lossy(&installed.stdout).lines().any(|line| line.trim() == WASM_TARGET);
    if !has_target {
        eprintln!("proximity-builder: adding the {WASM_TARGET} target: rustup target add {WASM_TARGET}");
        run_captured(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    let rustc_version = rustc_version(Command::new("rustc").arg("--version"))?;
    Ok(Toolchain { route: WasmRoute::Rustup, rustc_version })
}

fn ensure_debian() -> Result<Toolchain> {
    let missing = missing_debian_packages()?;
    if !missing.is_empty() {
        install_debian_packages(&missing)?;
    }
    let rustc_version = rustc_version(Command::new(DEBIAN_RUSTC).arg("--version"))?;
    let (major, minor) =
        parse_rust_version(&rustc_version).ok_or_else(|| anyhow!("cannot read a version from `{rustc_version}`"))?;
    if (major, minor) < MIN_RUST {
        bail!(
            "Debian's rustc-web is {major}.{minor}, older than the {}.{} that the Rust SDK's \
             wit-bindgen needs, so this route cannot build recipes on this machine: \
             use rustup (`rustup target add {WASM_TARGET}`)",
            MIN_RUST.0,
            MIN_RUST.1
        );
    }
    Ok(Toolchain { route: WasmRoute::Debian, rustc_version })
}

fn missing_debian_packages() -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for package in DEBIAN_PACKAGES {
        let query = output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
            .context("this is not a Debian system (no dpkg-query); use rustup instead")?;
        let installed =
            query.status.success() && String::from_utf8_lossy(&query.stdout).trim_end().ends_with(" installed");
        if !installed {
            missing.push(package);
        }
    }
    Ok(missing)
}

fn install_debian_packages(packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    if !is_root()? {
        bail!("Debian packages {list} are missing; install them with:\n  sudo apt-get install -y {list}");
    }
    eprintln!("proximity-builder: installing Debian's Rust toolchain for wasm: apt-get install -y {list}");
    let install = || run_captured(apt_get().args(["install", "-y", "--no-install-recommends"]).args(packages));
    if install().is_err() {
        // A fresh machine has no package lists yet.
        run_captured(apt_get().arg("update"))?;
        install()?;
    }
    if Path::new(DEBIAN_RUSTC).exists() {
        Ok(())
    } else {
        bail!("apt-get installed {list} but {DEBIAN_RUSTC} is still missing")
    }
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        // Wait for another process's apt or dpkg run instead of failing at once.
        .args(["-o", "DPkg::Lock::Timeout=600"]);
    cmd
}

fn is_root() -> Result<bool> {
    let output = run_captured(Command::new("id").arg("-u"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn rustc_version(cmd: &mut Command) -> Result<String> {
    let output = run_captured(cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `rustc 1.96.0 (abc 2026-01-01)` → `(1, 96)`.
fn parse_rust_version(version_line: &str) -> Option<(u32, u32)> {
    let version = version_line.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_comes_from_the_environment_value() {
        assert_eq!(forced_route(None).unwrap(), None);
        assert_eq!(forced_route(Some("")).unwrap(), None);
        assert_eq!(forced_route(Some("rustup")).unwrap(), Some(WasmRoute::Rustup));
        assert_eq!(forced_route(Some("debian")).unwrap(), Some(WasmRoute::Debian));
        let err = forced_route(Some("nix")).unwrap_err().to_string();
        assert!(err.contains("PROXIMITY_WASM_TOOLCHAIN=nix"), "{err}");
    }

    #[test]
    fn reads_rustc_versions() {
        assert_eq!(parse_rust_version("rustc 1.95.0 (59807616e 2026-04-14)"), Some((1, 95)));
        assert_eq!(
            parse_rust_version("rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)"),
            Some((1, 85))
        );
        assert_eq!(parse_rust_version("rustc"), None);
    }

    #[test]
    fn debian_route_builds_std_and_names_the_linker() {
        let toolchain = Toolchain { route: WasmRoute::Debian, rustc_version: "rustc 1.96.0".into() };
        let cmd = toolchain.cargo_build();
        assert_eq!(cmd.get_program(), DEBIAN_CARGO);
        assert!(cmd.get_args().any(|arg| arg == "-Zbuild-std=std,panic_abort"));
        assert!(cmd.get_envs().any(|(key, value)| key == "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER"
            && value == Some(DEBIAN_WASM_LINKER.as_ref())));
    }
}
