//! Recipe bundles: one signed file per recipe version (`ID-VERSION.prox`).
//!
//! A bundle is a plain ustar archive (readable with `tar tvf`), written
//! deterministically: entries in a fixed order, mode 0644, uid/gid 0, mtime 0,
//! no extended headers. It holds
//!
//! - `index.json` first: the format version, the recipe's id and version, and
//!   each entry's path, size and sha256 ([`index::Index`]);
//! - the entries, sorted by path: `recipe.toml`, `recipe.wasm` (the component)
//!   and the recipe directory's other files (assets such as compose files,
//!   templates and the icon, and the sources the component was built from);
//! - `signatures/KEYID.sig`, sorted by key id: detached ed25519 signatures over
//!   the sha256 of `index.json`'s exact bytes ([`signature`]).
//!
//! That digest is the bundle's identity. Reading is strict ([`archive`],
//! [`verify`]): anything that is not exactly what a writer makes is refused, and
//! nothing is written anywhere before verification succeeds.
//!
//! - [`pack`]: a built recipe directory into an unsigned bundle.
//! - [`keys`]: signing keys and the trusted public key format.
//! - [`signature`]: adding a signature to a bundle.
//! - [`trust`]: which signers the host accepts.
//! - [`verify`]: a bundle's bytes to a [`verify::VerifiedBundle`], and unpacking it.
//! - [`install`]: a verified bundle into the catalog a server serves; [`fetch`]: one from a URL.

pub mod archive;
pub mod error;
pub mod fetch;
pub mod index;
pub mod install;
pub mod keys;
pub mod open;
pub mod pack;
pub mod signature;
pub mod trust;
pub mod verify;

#[cfg(test)]
mod tests;

pub use error::BundleError;
pub use install::{InstallError, InstallOptions, RecipeInstaller};
pub use keys::{PublicKey, SigningKeyFile};
pub use pack::{pack, PackedBundle};
pub use signature::sign;
pub use trust::TrustPolicy;
pub use verify::{read_bundle_file, unpack, verify, Signer, VerifiedBundle, VerifiedEntry};

/// File name extension of a bundle.
pub const BUNDLE_EXTENSION: &str = "prox";
/// The index entry's name; always the first entry.
pub const INDEX_NAME: &str = "index.json";
/// The component's entry name.
pub const COMPONENT_NAME: &str = "recipe.wasm";
/// The manifest's entry name.
pub const MANIFEST_NAME: &str = crate::manifest::MANIFEST_FILE;
/// The directory of signature entries.
pub const SIGNATURES_DIR: &str = "signatures";

/// How much a reader accepts, checked before anything is read into memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest single entry (the component is the big one: an embedded Python
    /// interpreter makes ~18 MB).
    pub max_entry_bytes: u64,
    /// Largest bundle file.
    pub max_bundle_bytes: u64,
    /// Most entries, signatures included.
    pub max_entries: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_entry_bytes: 64 << 20, max_bundle_bytes: 128 << 20, max_entries: 4096 }
    }
}
