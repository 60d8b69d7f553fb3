//! Why a bundle was refused, or could not be made.

use std::path::PathBuf;

/// Every way packing, signing, reading or verifying a bundle can fail. The
/// messages name the entry and the rule, so that an operator sees the cause.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    // Packing.
    #[error(
        "the recipe in {} is not built: {} is missing (run `proximity recipe build {}`)",
        dir.display(), component.display(), dir.display()
    )]
    NotBuilt { dir: PathBuf, component: PathBuf },
    #[error("cannot pack {}: {reason}", path.display())]
    Unpackable { path: PathBuf, reason: String },
    #[error("the recipe's manifest is invalid: {0}")]
    InvalidRecipe(String),

    // The container.
    #[error("the bundle is {size} bytes, over the limit of {limit} bytes")]
    BundleTooLarge { size: u64, limit: u64 },
    #[error("the bundle has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("not a valid bundle: {0}")]
    Malformed(String),
    #[error("the bundle is truncated: {0}")]
    Truncated(String),
    #[error("entry name {name:?} is refused: {reason}")]
    BadEntryName { name: String, reason: &'static str },
    #[error("entry `{name}` is a {kind}; a bundle holds regular files only")]
    NotRegularFile { name: String, kind: String },
    #[error("entry `{name}` is {size} bytes, over the limit of {limit} bytes per entry")]
    EntryTooLarge { name: String, size: u64, limit: u64 },
    #[error("entry `{0}` appears more than once")]
    DuplicateEntry(String),
    #[error("entry `{0}` is in the bundle but not listed in index.json")]
    UnlistedEntry(String),
    #[error("entry `{0}` is listed in index.json but missing from the bundle")]
    MissingEntry(String),
    #[error("entry `{name}` is {actual} bytes, index.json says {expected}")]
    SizeMismatch { name: String, expected: u64, actual: u64 },
    #[error("entry `{name}` has sha256 {actual}, index.json says {expected}")]
    DigestMismatch { name: String, expected: String, actual: String },

    // What the entries say.
    #[error("index.json is invalid: {0}")]
    BadIndex(String),
    #[error("the bundle's recipe.toml is invalid: {0}")]
    BadManifest(String),
    #[error("recipe.toml is {manifest}, but index.json says {index}")]
    ManifestMismatch { manifest: String, index: String },

    // Signatures and trust.
    #[error("signature `{name}` is invalid: {reason}")]
    BadSignature { name: String, reason: String },
    #[error("bundle {digest} is not signed; an unsigned bundle is refused unless allowed for its digest")]
    Unsigned {
        digest: String,
        /// What the recipe would be allowed to do, in words: the operator's
        /// grounds for allowing the bundle anyway.
        grants: Vec<String>,
    },
    #[error(
        "bundle {digest} is signed only by keys that are not trusted ({}); refused unless allowed for its digest",
        signers.join(", ")
    )]
    Untrusted {
        digest: String,
        signers: Vec<String>,
        /// As for `Unsigned`.
        grants: Vec<String>,
    },
    #[error("{}: {reason}", path.display())]
    BadKeyFile { path: PathBuf, reason: String },

    // Writing.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },
}

impl BundleError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BundleError {
        let path = path.into();
        move |source| BundleError::Io { path, source }
    }
}
