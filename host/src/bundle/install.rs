//! Installing verified bundles into the catalog a server serves.
//!
//! Layout under the server's data directory:
//!
//! - `recipes/ID/`: the installed version of each recipe, unpacked (its
//!   `recipe.toml`, `recipe.wasm` and assets) with `bundle.json` beside them
//!   saying which bundle it came from. This is the catalog's root.
//! - `bundles/ID-VERSION.prox`: every bundle installed, as received.
//! - `bundles/.staging/`: where a bundle is unpacked before it replaces the
//!   installed version, so that the catalog never shows half a recipe.
//!
//! Nothing is written before the bundle is verified against the trust policy
//! and its grants are accepted: a version whose grants grew over the installed
//! one's needs the operator's confirmation for that very bundle (its digest).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::verify::{unpack, verify_with_limits, VerifiedBundle};
use super::{BundleError, ReadLimits, TrustPolicy};
use crate::api::{BundleReview, BundleSigner, InstalledBundle, InstalledRecipe as Installed};
use crate::manifest::Manifest;

/// Which bundle an installed recipe came from (`recipes/ID/bundle.json`).
pub const PROVENANCE_FILE: &str = "bundle.json";
const CATALOG_DIR: &str = "recipes";
const BUNDLES_DIR: &str = "bundles";
const STAGING_DIR: &str = ".staging";

/// Why an install was refused. Nothing was written for any of them.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error(
        "{id} {version} asks for more than the installed {installed} was granted: {}. \
         Confirm with accept_grants={digest}",
        added.join("; ")
    )]
    GrantsGrew { id: String, version: String, installed: String, digest: String, added: Vec<String> },
    #[error(
        "{id} {installed} is installed; {version} is older (to go back, stop the server, remove the installed \
         recipe's directory DATA_DIR/recipes/{id}, then install the older bundle)"
    )]
    Downgrade { id: String, version: String, installed: String },
    #[error(
        "{id} {version} is already installed from a different bundle ({installed_digest}); \
         a changed recipe needs a new version"
    )]
    VersionConflict { id: String, version: String, installed_digest: String },
    #[error("installing into {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// `recipes/ID/bundle.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub digest: String,
    pub version: String,
    /// The trusted signers' names (kept for older readers; see `signed_by`).
    pub signers: Vec<String>,
    /// The trusted signers with their key ids: what a signer is matched on
    /// later. Absent from files written before key ids were kept.
    #[serde(default)]
    pub signed_by: Vec<ProvenanceSigner>,
}

/// A trusted key that signed an installed bundle, as it was at install.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvenanceSigner {
    pub name: String,
    pub key_id: String,
}

/// A verified bundle that may be installed (see [`RecipeInstaller::prepare`]).
pub struct Prepared {
    verified: VerifiedBundle,
    /// The bundle as received, kept under `bundles/`.
    bytes: Vec<u8>,
}

impl Prepared {
    pub fn verified(&self) -> &VerifiedBundle {
        &self.verified
    }

    /// The component's bytes.
    pub fn component(&self) -> &[u8] {
        self.verified.entry(super::COMPONENT_NAME).map_or(&[], |e| e.data.as_slice())
    }
}

#[derive(Default)]
struct Decision {
    added_grants: Vec<String>,
    previous_version: Option<String>,
    unchanged: bool,
}

/// An install's inputs besides the bundle.
#[derive(Default)]
pub struct InstallOptions<'a> {
    /// The digest the operator confirmed new grants for, if any.
    pub accept_grants: Option<&'a str>,
}

/// The installed recipes of one data directory.
pub struct RecipeInstaller {
    catalog: PathBuf,
    bundles: PathBuf,
    trust: TrustPolicy,
    limits: ReadLimits,
    /// One install at a time: each compares with, then replaces, what is installed.
    lock: Mutex<()>,
}

impl RecipeInstaller {
    pub fn new(data_dir: &Path, trust: TrustPolicy) -> Self {
        RecipeInstaller {
            catalog: catalog_root(data_dir),
            bundles: data_dir.join(BUNDLES_DIR),
            trust,
            limits: ReadLimits::default(),
            lock: Mutex::new(()),
        }
    }

    /// The directory of installed recipes: a catalog root.
    pub fn catalog_root(&self) -> &Path {
        &self.catalog
    }

    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    pub fn limits(&self) -> ReadLimits {
        self.limits
    }

    /// The bundles the installed recipes came from (their `bundle.json`),
    /// sorted by id, with each signer matched against the trusted keys as
    /// they are now. A recipe directory without a readable `bundle.json` (put
    /// there by hand) is left out.
    pub fn installed(&self) -> Result<Vec<InstalledBundle>, InstallError> {
        let entries = match fs::read_dir(&self.catalog) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io(&self.catalog)(err)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let dir = entry.map_err(io(&self.catalog))?.path();
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            if id.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let (manifest, provenance) = match installed_manifest(&dir) {
                Ok(Some((manifest, Some(provenance)))) => (manifest, provenance),
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!("left out of the installed bundles: {err}");
                    continue;
                }
            };
            let signers = self.signers_now(&provenance);
            found.push(InstalledBundle {
                id: manifest.recipe.id.clone(),
                version: provenance.version,
                digest: provenance.digest,
                signers,
                grants: manifest.summary_lines(),
            });
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    /// An installed bundle's signers matched against the trusted keys as
    /// they are now, by key id: a new key under an old name is not the
    /// signer. A record without key ids (an older `bundle.json`) cannot be
    /// matched, so its signers show as not trusted.
    fn signers_now(&self, provenance: &Provenance) -> Vec<BundleSigner> {
        if provenance.signed_by.is_empty() {
            return provenance
                .signers
                .iter()
                .map(|name| BundleSigner { name: name.clone(), key_id: None, trusted: false })
                .collect();
        }
        provenance
            .signed_by
            .iter()
            .map(|signer| BundleSigner {
                name: signer.name.clone(),
                key_id: Some(signer.key_id.clone()),
                trusted: self.trust.trusted_keys().iter().any(|k| k.id() == signer.key_id),
            })
            .collect()
    }

    /// Every check that needs no writing: the bundle verified against the
    /// trust policy (`trust` may be wider than the installer's own: an
    /// operator allowing one unsigned bundle by its digest), then compared
    /// with the installed version. The caller may check more (load the
    /// component) before [`RecipeInstaller::commit`].
    pub fn prepare(
        &self,
        bytes: Vec<u8>,
        trust: Option<&TrustPolicy>,
        options: &InstallOptions<'_>,
    ) -> Result<Prepared, InstallError> {
        let verified = verify_with_limits(&bytes, trust.unwrap_or(&self.trust), &self.limits)?;
        self.decide(&verified, options)?;
        Ok(Prepared { verified, bytes })
    }

    /// What installing would do, after the same checks as
    /// [`RecipeInstaller::prepare`], except that grants which grew are
    /// reported rather than refused: the operator reviews them here.
    pub fn review(
        &self,
        bytes: Vec<u8>,
        trust: Option<&TrustPolicy>,
    ) -> Result<(Prepared, BundleReview), InstallError> {
        let verified = verify_with_limits(&bytes, trust.unwrap_or(&self.trust), &self.limits)?;
        let digest = verified.digest.clone();
        let decision = self.decide(&verified, &InstallOptions { accept_grants: Some(&digest) })?;
        let review = BundleReview {
            id: verified.manifest.recipe.id.clone(),
            version: verified.manifest.recipe.version.to_string(),
            digest,
            signers: verified
                .signers
                .iter()
                .map(|s| BundleSigner {
                    name: s.trusted_name.clone().unwrap_or_else(|| "a key this server does not trust".into()),
                    key_id: Some(s.key_id.clone()),
                    trusted: s.is_trusted(),
                })
                .collect(),
            grants: verified.manifest.summary_lines(),
            added_grants: decision.added_grants,
            previous_version: decision.previous_version,
            unchanged: decision.unchanged,
        };
        Ok((Prepared { verified, bytes }, review))
    }

    /// Stores a prepared bundle, deciding again against what is installed
    /// now (another install may have come first).
    pub fn commit(&self, prepared: Prepared, options: &InstallOptions<'_>) -> Result<Installed, InstallError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Also one process at a time: `recipe install` beside a running server.
        let _one_process = self.lock_data_dir()?;
        let Prepared { verified, bytes } = prepared;
        let decision = self.decide(&verified, options)?;
        if decision.unchanged {
            return Ok(describe(&verified, decision));
        }
        self.store(&verified, &bytes, &self.catalog.join(&verified.manifest.recipe.id))?;
        Ok(describe(&verified, decision))
    }

    /// An exclusive `flock` on `bundles/.lock`, held until dropped.
    fn lock_data_dir(&self) -> Result<fs::File, InstallError> {
        use std::os::fd::AsRawFd as _;
        fs::create_dir_all(&self.bundles).map_err(io(&self.bundles))?;
        let path = self.bundles.join(".lock");
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        // SAFETY: flock on a descriptor this function owns; the lock goes with the file.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(&path)(std::io::Error::last_os_error()));
        }
        Ok(file)
    }

    /// How `verified` relates to the installed version of its recipe.
    fn decide(&self, verified: &VerifiedBundle, options: &InstallOptions<'_>) -> Result<Decision, InstallError> {
        let id = verified.manifest.recipe.id.clone();
        let version = verified.manifest.recipe.version.clone();
        let Some((manifest, provenance)) = installed_manifest(&self.catalog.join(&id))? else {
            return Ok(Decision::default());
        };
        let installed = &manifest.recipe.version;
        if version < *installed {
            return Err(InstallError::Downgrade { id, version: version.to_string(), installed: installed.to_string() });
        }
        if version == *installed {
            if provenance.as_ref().is_some_and(|p| p.digest == verified.digest) {
                return Ok(Decision {
                    previous_version: Some(version.to_string()),
                    unchanged: true,
                    ..Decision::default()
                });
            }
            return Err(InstallError::VersionConflict {
                id,
                version: version.to_string(),
                installed_digest: provenance.map_or("unknown".into(), |p| p.digest),
            });
        }
        let added = verified.manifest.grants.added_since(&manifest.grants);
        let accepted = options.accept_grants.is_some_and(|digest| digest.eq_ignore_ascii_case(&verified.digest));
        if !added.is_empty() && !accepted {
            return Err(InstallError::GrantsGrew {
                id,
                version: version.to_string(),
                installed: installed.to_string(),
                digest: verified.digest.clone(),
                added,
            });
        }
        Ok(Decision { added_grants: added, previous_version: Some(installed.to_string()), unchanged: false })
    }

    /// Unpacks into staging, then swaps the staged directory with the
    /// installed one in a single `renameat2(RENAME_EXCHANGE)` (a reader sees
    /// the old version or the new, never neither), then keeps the bundle file.
    /// On any failure before the swap, the staged copy is removed and the
    /// installed version is untouched.
    fn store(&self, verified: &VerifiedBundle, bytes: &[u8], target: &Path) -> Result<(), InstallError> {
        let staging_root = self.bundles.join(STAGING_DIR);
        for dir in [&self.catalog, &staging_root] {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let staged = staging_root.join(format!("{}-{}", verified.digest, std::process::id()));
        remove_dir_if_present(&staged)?;
        let swapped = stage(verified, &staged).and_then(|()| swap_into_place(&staged, target));
        // After a swap, `staged` holds the old version; either way it goes.
        if let Err(err) = remove_dir_if_present(&staged) {
            tracing::warn!("could not remove {}: {err}", staged.display());
        }
        swapped?;
        let kept = self.bundles.join(verified.index.file_name());
        if let Err(err) = write_atomically(&kept, bytes) {
            // Installed all the same: the kept copy is for reference.
            tracing::warn!("{} is installed, but keeping its bundle failed: {err}", verified.manifest.recipe.id);
        }
        Ok(())
    }
}

/// Writes the verified entries and `bundle.json` into `staged`.
fn stage(verified: &VerifiedBundle, staged: &Path) -> Result<(), InstallError> {
    unpack(verified, staged)?;
    let provenance = Provenance {
        digest: verified.digest.clone(),
        version: verified.manifest.recipe.version.to_string(),
        signers: signer_names(verified),
        signed_by: verified
            .signers
            .iter()
            .filter_map(|s| s.trusted_name.clone().map(|name| ProvenanceSigner { name, key_id: s.key_id.clone() }))
            .collect(),
    };
    let provenance_path = staged.join(PROVENANCE_FILE);
    let json = serde_json::to_vec_pretty(&provenance).expect("provenance serializes");
    fs::write(&provenance_path, json).map_err(io(&provenance_path))
}

/// Puts `staged` at `target`: exchanged with the directory there, if any
/// (then `staged` holds the old one), else renamed without replacing.
fn swap_into_place(staged: &Path, target: &Path) -> Result<(), InstallError> {
    let flags = if target.exists() { libc::RENAME_EXCHANGE } else { libc::RENAME_NOREPLACE };
    super::verify::renameat2(staged, target, flags).map_err(io(target))
}

/// The catalog root of the installed recipes under `data_dir`.
pub fn catalog_root(data_dir: &Path) -> PathBuf {
    data_dir.join(CATALOG_DIR)
}

/// The installed version's manifest and provenance, if the recipe is installed.
fn installed_manifest(dir: &Path) -> Result<Option<(Manifest, Option<Provenance>)>, InstallError> {
    if !dir.join(crate::manifest::MANIFEST_FILE).is_file() {
        return Ok(None);
    }
    let manifest = Manifest::load(dir).map_err(|err| InstallError::Io {
        path: dir.to_owned(),
        source: std::io::Error::other(format!("the installed recipe's manifest is unreadable: {err:#}")),
    })?;
    let provenance = fs::read(dir.join(PROVENANCE_FILE)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    Ok(Some((manifest, provenance)))
}

fn describe(verified: &VerifiedBundle, decision: Decision) -> Installed {
    Installed {
        id: verified.manifest.recipe.id.clone(),
        version: verified.manifest.recipe.version.to_string(),
        digest: verified.digest.clone(),
        signers: signer_names(verified),
        grants: verified.manifest.summary_lines(),
        added_grants: decision.added_grants,
        previous_version: decision.previous_version,
        unchanged: decision.unchanged,
    }
}

fn signer_names(verified: &VerifiedBundle) -> Vec<String> {
    verified.signers.iter().filter_map(|s| s.trusted_name.clone()).collect()
}

fn remove_dir_if_present(dir: &Path) -> Result<(), InstallError> {
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(dir)(err)),
        _ => Ok(()),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let parent = path.parent().expect("a kept bundle has a directory");
    let mut temp = tempfile::NamedTempFile::new_in(parent).map_err(io(parent))?;
    std::io::Write::write_all(&mut temp, bytes).map_err(io(path))?;
    temp.persist(path).map_err(|err| io(path)(err.error))?;
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { path, source }
}

/// Loads and instantiates a prepared bundle's component with its own grants
/// and limits: a signed bundle can still hold a broken component, and it must
/// not replace a working version.
pub async fn check_component(runtime: &crate::runtime::Runtime, prepared: &Prepared) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let manifest = &prepared.verified.manifest;
    let id = &manifest.recipe.id;
    let loaded = runtime
        .load_bytes(prepared.component().to_vec())
        .await
        .with_context(|| format!("the bundle's component for `{id}` does not load"))?;
    runtime
        .instantiate_only(&loaded, manifest)
        .await
        .with_context(|| format!("the bundle's component for `{id}` does not start within its limits"))
}
