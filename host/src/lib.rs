//! Proximity: a self-hosted app store for Proxmox VE whose apps are sandboxed
//! WebAssembly recipes.
//!
//! - [`manifest`]: `recipe.toml`, parameters and grants.
//! - [`runtime`]: loads recipe components and runs them in a sandbox.
//! - [`capabilities`]: what a recipe may call, checked against its grants.
//! - [`backend`]: the infrastructure behind the capabilities (`sim`, ...).
//! - [`deploy`]: one deployment from catalog entry to result.
//! - [`bundle`]: recipe bundles: pack, sign, verify, unpack; trusted keys.
//! - [`cli`]: the `proximity` command.

pub mod api;
pub mod backend;
pub mod bindings;
pub mod bundle;
pub mod capabilities;
pub mod catalog;
pub mod cli;
pub mod deploy;
pub mod events;
pub mod jobs;
pub mod manifest;
pub mod plan;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod ssh;
pub mod store;
