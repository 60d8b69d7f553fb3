//! Write Proximity recipes in Rust.
//!
//! A recipe is a WebAssembly component that installs one app by calling the
//! host's capabilities (containers, exec, files, probes, progress). This crate
//! wraps the generated WIT bindings in plain Rust:
//!
//! ```ignore
//! use proximity_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Recipe for Hello {
//!     fn install(ctx: &Context) -> Result<AppInfo> {
//!         progress::step("Creating container");
//!         let c = ContainerSpec::new(ctx, "debian-12").create()?;
//!         c.install_packages(&["nginx"])?;
//!         c.wait_http(80, "/", Some(200), Duration::from_secs(60))?;
//!         let address = c.address()?;
//!         Ok(AppInfo::new().with_url(format!("http://{address}/")).with_address(address).with_port(80))
//!     }
//! }
//!
//! proximity_sdk::export_recipe!(Hello);
//! ```
//!
//! Module map (one WIT interface or one job each): `context` (parameters),
//! `container` (lxc), `exec`, `files`, `probe`, `progress` + `log`, `os`
//! (distribution, packages), `docker` + `compose`, `template` (assets), `proxy` (commands through
//! a forced-command proxy), `report` (what exports return), `recipe` (the trait and its export),
//! `error`.

pub mod bindings;

pub mod compose;
pub mod container;
pub mod context;
pub mod docker;
pub mod error;
pub mod exec;
pub mod files;
pub mod log;
pub mod os;
pub mod probe;
pub mod progress;
pub mod proxy;
pub mod recipe;
pub mod report;
pub mod template;

mod panic_hook;
mod text;

pub use compose::{Compose, ComposeCommand, ComposeTimeouts, RollOut};
pub use container::{app_container, app_containers, create_container, Container, ContainerSpec};
pub use context::Context;
pub use docker::Docker;
pub use error::{Error, Result, ResultExt};
pub use exec::{ExecOptions, ExecOutput};
pub use files::FileOptions;
pub use os::OsFamily;
#[doc(hidden)]
pub use recipe::Exported;
pub use recipe::Recipe;
pub use report::{http_url, https_url, AppInfo, HealthCheck, HealthReport};

/// Everything a typical recipe uses, in one import.
pub mod prelude {
    pub use crate::proxy;
    pub use crate::{
        app_container, app_containers, create_container, http_url, https_url, log, progress, AppInfo, Compose,
        ComposeTimeouts, Container, ContainerSpec, Context, Error, ExecOptions, ExecOutput, FileOptions, HealthCheck,
        HealthReport, OsFamily, Recipe, Result, ResultExt, RollOut,
    };
    pub use core::time::Duration;
}
