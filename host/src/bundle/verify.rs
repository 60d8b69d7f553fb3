//! Verifying a bundle against a trust policy, and unpacking a verified one.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use super::index::Index;
use super::keys::key_id;
use super::open::open;
use super::{BundleError, ReadLimits, TrustPolicy};
use crate::manifest::Manifest;

/// A bundle whose contents match its index and whose signers the policy accepts.
#[derive(Debug)]
pub struct VerifiedBundle {
    /// The bundle's identity: sha256 of `index.json`, hex.
    pub digest: String,
    pub index: Index,
    pub manifest: Manifest,
    /// In index order.
    pub entries: Vec<VerifiedEntry>,
    /// Sorted by key id.
    pub signers: Vec<Signer>,
    /// True when accepted only because the policy allows this digest.
    pub accepted_without_trust: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    pub path: String,
    pub sha256: String,
    pub data: Vec<u8>,
}

/// Who made a (valid) signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    pub key_id: String,
    /// The name the trusted key file gives; `None` for an untrusted key.
    pub trusted_name: Option<String>,
}

impl Signer {
    pub fn is_trusted(&self) -> bool {
        self.trusted_name.is_some()
    }
}

impl VerifiedBundle {
    pub fn entry(&self, path: &str) -> Option<&VerifiedEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}

/// Verifies a bundle with the default [`ReadLimits`].
pub fn verify(bytes: &[u8], trust: &TrustPolicy) -> Result<VerifiedBundle, BundleError> {
    verify_with_limits(bytes, trust, &ReadLimits::default())
}

/// Checks the bundle's structure, digests and signatures, then its signers:
/// at least one trusted key must have signed it, unless the policy allows this
/// digest.
pub fn verify_with_limits(
    bytes: &[u8],
    trust: &TrustPolicy,
    limits: &ReadLimits,
) -> Result<VerifiedBundle, BundleError> {
    let opened = open(bytes, limits)?;
    let digest = hex::encode(opened.digest);
    let signers: Vec<Signer> = opened
        .signatures
        .iter()
        .map(|s| Signer {
            key_id: key_id(&s.key),
            trusted_name: trust.trusted_key(&s.key).map(|k| k.name().to_owned()),
        })
        .collect();
    let trusted = signers.iter().any(Signer::is_trusted);
    let allowed = trust.allows_without_trust(&digest);
    if !trusted && !allowed {
        // Everything but trust was checked: the manifest is the bundle's own.
        let grants = opened.manifest.summary_lines();
        return Err(if signers.is_empty() {
            BundleError::Unsigned { digest, grants }
        } else {
            let signers = signers.iter().map(|s| format!("key {}", s.key_id)).collect();
            BundleError::Untrusted { digest, signers, grants }
        });
    }
    let entries = opened
        .index
        .entries
        .iter()
        .zip(opened.entries)
        .map(|(listed, raw)| VerifiedEntry { path: raw.name, sha256: listed.sha256.clone(), data: raw.data })
        .collect();
    Ok(VerifiedBundle {
        digest,
        index: opened.index,
        manifest: opened.manifest,
        entries,
        signers,
        accepted_without_trust: !trusted,
    })
}

/// Reads a bundle file, refusing one over the limit before reading it.
pub fn read_bundle_file(path: &Path, limits: &ReadLimits) -> Result<Vec<u8>, BundleError> {
    let file = fs::File::open(path).map_err(BundleError::io(path))?;
    let size = file.metadata().map_err(BundleError::io(path))?.len();
    if size > limits.max_bundle_bytes {
        return Err(BundleError::BundleTooLarge { size, limit: limits.max_bundle_bytes });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow while read: never read past the limit.
    file.take(limits.max_bundle_bytes + 1).read_to_end(&mut bytes).map_err(BundleError::io(path))?;
    if bytes.len() as u64 > limits.max_bundle_bytes {
        return Err(BundleError::BundleTooLarge { size: bytes.len() as u64, limit: limits.max_bundle_bytes });
    }
    Ok(bytes)
}

/// Writes a verified bundle's entries under `dir`, which must not exist: into
/// a temporary directory beside it first, renamed into place when complete,
/// so that `dir` either holds the whole bundle or does not exist.
pub fn unpack(verified: &VerifiedBundle, dir: &Path) -> Result<(), BundleError> {
    if dir.symlink_metadata().is_ok() {
        return Err(BundleError::AlreadyExists { path: dir.to_owned() });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new().prefix(".unpacking-").tempdir_in(parent).map_err(BundleError::io(parent))?;
    for entry in &verified.entries {
        // Names were checked when read: relative, plain components only.
        let path = staging.path().join(&entry.path);
        if let Some(sub) = path.parent() {
            fs::create_dir_all(sub).map_err(BundleError::io(sub))?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(BundleError::io(&path))?;
        std::io::Write::write_all(&mut file, &entry.data).map_err(BundleError::io(&path))?;
    }
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).map_err(BundleError::io(staging.path()))?;
    rename_no_replace(staging.path(), dir)?;
    // Renamed away: nothing is left for the guard to remove.
    let _ = staging.keep();
    Ok(())
}

/// `rename`, failing if `to` appeared meanwhile (a plain rename would replace
/// an empty directory).
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), BundleError> {
    renameat2(from, to, libc::RENAME_NOREPLACE).map_err(|err| match err.kind() {
        std::io::ErrorKind::AlreadyExists => BundleError::AlreadyExists { path: to.to_owned() },
        _ => BundleError::Io { path: to.to_owned(), source: err },
    })
}

/// Linux `renameat2(2)` with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
pub(super) fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::from);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
