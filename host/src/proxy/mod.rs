//! The client side of `proxy-exec`: commands for apps that recipes cannot
//! reach directly, sent through SSH forced-command proxies
//! (`proximity proxy serve`, the `proximity-proxy` crate); finding a
//! service's proxies, and making the keys they accept.

pub mod breaker;
pub mod client;
pub mod config;
pub mod discovery;
pub mod docker;
pub mod keys;

pub use client::ProxyClient;
pub use config::ProxySettings;
