//! Which bundles the host accepts: those signed by a trusted publisher key,
//! and, only when the operator says so for that exact bundle digest, unsigned
//! or untrusted ones.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::keys::PublicKey;
use super::BundleError;

/// File name extension of trusted key files in a trusted-keys directory.
pub const PUBLIC_KEY_EXTENSION: &str = "pub";

#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    /// Where the keys came from, if from a directory.
    pub trusted_keys_dir: Option<PathBuf>,
    trusted: Vec<PublicKey>,
    /// Bundle digests (hex) the operator accepts without a trusted signature.
    allowed_digests: BTreeSet<String>,
}

impl TrustPolicy {
    /// Trusts no key and allows no bundle.
    pub fn trust_nobody() -> TrustPolicy {
        TrustPolicy::default()
    }

    /// Trusts every key in `dir`: each regular, non-hidden `*.pub` file holds
    /// one key ([`PublicKey`]). A malformed key file is an error, not skipped:
    /// a trust list should never be quietly smaller than the operator thinks.
    pub fn from_dir(dir: &Path) -> Result<TrustPolicy, BundleError> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(dir).map_err(BundleError::io(dir))? {
            let path = entry.map_err(BundleError::io(dir))?.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            let is_key = path.extension().is_some_and(|e| e == PUBLIC_KEY_EXTENSION);
            if !hidden && is_key && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut policy = TrustPolicy { trusted_keys_dir: Some(dir.to_owned()), ..TrustPolicy::default() };
        for path in paths {
            policy = policy.with_key(PublicKey::load(&path)?);
        }
        Ok(policy)
    }

    pub fn with_key(mut self, key: PublicKey) -> TrustPolicy {
        if self.trusted_key(key.verifying_key()).is_none() {
            self.trusted.push(key);
        }
        self
    }

    /// Accepts the bundle with this digest even if unsigned or signed by
    /// untrusted keys. Its contents are still checked in full, and a signature
    /// that does not match is still refused.
    pub fn allow_digest(mut self, digest: &str) -> TrustPolicy {
        self.allowed_digests.insert(digest.to_ascii_lowercase());
        self
    }

    pub fn trusted_keys(&self) -> &[PublicKey] {
        &self.trusted
    }

    pub fn trusted_key(&self, key: &VerifyingKey) -> Option<&PublicKey> {
        self.trusted.iter().find(|k| k.verifying_key() == key)
    }

    pub fn allows_without_trust(&self, digest: &str) -> bool {
        self.allowed_digests.contains(digest)
    }
}
