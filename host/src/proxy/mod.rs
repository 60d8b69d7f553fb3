//! The host side of `proxy-exec`: finding a service's SSH proxies and making
//! the keys they accept.

pub mod discovery;
pub mod docker;
pub mod keys;
