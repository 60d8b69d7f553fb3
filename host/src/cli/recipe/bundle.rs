//! `proximity recipe pack | sign | verify`: recipe bundles.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::bundle::{self, BundleError, ReadLimits, SigningKeyFile, TrustPolicy};

#[derive(Args)]
pub struct PackArgs {
    /// A built recipe directory.
    dir: PathBuf,
    /// Where to write the bundle [default: ./ID-VERSION.prox].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct SignArgs {
    /// The bundle to sign; rewritten in place unless --out is given.
    bundle: PathBuf,
    /// The signing key file (from `proximity keys generate --signing`).
    #[arg(long)]
    key: PathBuf,
    /// Write the signed bundle here instead.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    bundle: PathBuf,
    /// Directory of trusted publisher keys, one `ed25519 BASE64 NAME` per `*.pub` file
    /// [default: $XDG_CONFIG_HOME/proximity/trusted-keys or ~/.config/proximity/trusted-keys].
    #[arg(long, env = "PROXIMITY_TRUSTED_KEYS")]
    trusted_keys: Option<PathBuf>,
    /// Accept this bundle although it is unsigned or no trusted key signed it. With
    /// `=DIGEST`, only if the bundle's digest is DIGEST.
    #[arg(long, value_name = "DIGEST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    allow_untrusted: Option<String>,
    /// After verifying, write the bundle's files into this directory (which must not exist).
    #[arg(long, value_name = "DIR")]
    unpack: Option<PathBuf>,
}

pub fn pack(args: PackArgs) -> Result<()> {
    let packed = bundle::pack(&args.dir)?;
    let component = proximity_builder::component_path(&args.dir);
    if let Some(newer) = super::newer_source(&args.dir, &component) {
        eprintln!(
            "warning: {} changed after the component was built; the bundle holds the old build \
             (run `proximity recipe build {}` first)",
            newer.display(),
            args.dir.display()
        );
    }
    let out = args.out.unwrap_or_else(|| PathBuf::from(packed.file_name()));
    write_replacing(&out, &packed.bytes)?;
    println!("{} {} -> {} (unsigned)", packed.index.recipe.id, packed.index.recipe.version, out.display());
    println!("digest: {}", packed.digest);
    Ok(())
}

pub fn sign(args: SignArgs) -> Result<()> {
    let key = SigningKeyFile::load(&args.key)?;
    let bytes = bundle::read_bundle_file(&args.bundle, &ReadLimits::default())?;
    let signed = bundle::sign(&bytes, &key)?;
    let out = args.out.unwrap_or(args.bundle);
    write_replacing(&out, &signed)?;
    println!("{} signed by {} (key {})", out.display(), key.name(), key.public_key().id());
    Ok(())
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let mut trust = trust_policy(args.trusted_keys.as_deref())?;
    let bytes = bundle::read_bundle_file(&args.bundle, &ReadLimits::default())?;
    if let Some(digest) = &args.allow_untrusted {
        // A bare flag allows the bundle named on this command line, whatever its digest.
        let digest = if digest.is_empty() { bundle_digest(&bytes)? } else { digest.clone() };
        trust = trust.allow_digest(&digest);
    }
    let verified = bundle::verify(&bytes, &trust).map_err(|err| {
        let hint = match &err {
            BundleError::Unsigned { digest, .. } | BundleError::Untrusted { digest, .. } => format!(
                "\nhint: add the publisher's public key to the trusted-keys directory ({}), or accept this very \
                 bundle with --allow-untrusted={digest}",
                trust.trusted_keys_dir.as_deref().map_or("none given".into(), |d| d.display().to_string())
            ),
            _ => String::new(),
        };
        anyhow::anyhow!("{} is refused: {err}{hint}", args.bundle.display())
    })?;
    let m = &verified.manifest;
    println!("{} {} — {}", m.recipe.id, m.recipe.version, m.recipe.name);
    println!("  digest: {}", verified.digest);
    if verified.signers.is_empty() {
        println!("  signers: none (accepted because allowed for this digest)");
    }
    for signer in &verified.signers {
        match &signer.trusted_name {
            Some(name) => println!("  signed by: {name} (key {}, trusted)", signer.key_id),
            None => println!("  signed by: key {} (NOT trusted)", signer.key_id),
        }
    }
    println!("Entries:");
    for entry in &verified.entries {
        println!("  {:>10}  {}  {}", entry.data.len(), &entry.sha256[..16], entry.path);
    }
    println!("Grants:");
    for line in m.summary_lines() {
        println!("  - {line}");
    }
    if let Some(dir) = &args.unpack {
        bundle::unpack(&verified, dir)?;
        println!("unpacked into {}", dir.display());
    }
    Ok(())
}

/// The trusted keys: from the directory given, else from the default one if it exists.
fn trust_policy(dir: Option<&Path>) -> Result<TrustPolicy> {
    if let Some(dir) = dir {
        return Ok(TrustPolicy::from_dir(dir)?);
    }
    match config_dir().map(|c| c.join("trusted-keys")) {
        Some(default) if default.is_dir() => Ok(TrustPolicy::from_dir(&default)?),
        _ => Ok(TrustPolicy::trust_nobody()),
    }
}

/// The digest of a bundle that is consistent but not yet trusted.
pub(super) fn bundle_digest(bytes: &[u8]) -> Result<String, BundleError> {
    Ok(hex::encode(bundle::open::open(bytes, &ReadLimits::default())?.digest))
}

pub(crate) fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|base| base.join("proximity"))
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a
/// reader never sees half a bundle.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        bail!("{} is a directory", path.display());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp =
        tempfile::NamedTempFile::new_in(parent).with_context(|| format!("writing into {}", parent.display()))?;
    std::io::Write::write_all(&mut temp, bytes).with_context(|| format!("writing {}", path.display()))?;
    // A bundle is public: readable like any file, not 0600 as temporary files are made.
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
