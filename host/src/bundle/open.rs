//! A bundle's structure, checked: every entry against the index, the manifest
//! against the index, every signature against the index digest. Who signed is
//! not judged here ([`super::verify`] does that with a trust policy).

use std::collections::BTreeMap;

use super::archive::{self, RawEntry};
use super::index::Index;
use super::signature::BundleSignature;
use super::{BundleError, ReadLimits, INDEX_NAME, MANIFEST_NAME, SIGNATURES_DIR};
use crate::manifest::Manifest;

/// A bundle whose bytes are consistent and whose signatures are valid.
pub struct OpenedBundle {
    /// `index.json` exactly as read: what the digest and signatures cover.
    pub index_bytes: Vec<u8>,
    pub index: Index,
    pub digest: [u8; 32],
    pub manifest: Manifest,
    /// In index order, each checked against its index line.
    pub entries: Vec<RawEntry>,
    /// Sorted by key id.
    pub signatures: Vec<BundleSignature>,
}

/// Checks a bundle's bytes; see the module docs.
pub fn open(bytes: &[u8], limits: &ReadLimits) -> Result<OpenedBundle, BundleError> {
    let mut raw = archive::read(bytes, limits)?.into_iter();
    let index_bytes = match raw.next() {
        Some(first) if first.name == INDEX_NAME => first.data,
        _ => return Err(BundleError::Malformed(format!("the first entry must be `{INDEX_NAME}`"))),
    };
    let index = Index::parse(&index_bytes)?;
    let digest = Index::digest_of(&index_bytes);

    let mut contents = BTreeMap::new();
    let mut signatures = Vec::new();
    for entry in raw {
        if entry.name.starts_with(&format!("{SIGNATURES_DIR}/")) {
            signatures.push(BundleSignature::parse_and_check(&entry.name, &entry.data, &digest)?);
        } else if index.entry(&entry.name).is_some() {
            contents.insert(entry.name.clone(), entry);
        } else {
            return Err(BundleError::UnlistedEntry(entry.name));
        }
    }
    signatures.sort_by_key(BundleSignature::key_id);

    let mut entries = Vec::with_capacity(index.entries.len());
    for listed in &index.entries {
        let entry = contents.remove(&listed.path).ok_or_else(|| BundleError::MissingEntry(listed.path.clone()))?;
        let actual = entry.data.len() as u64;
        if actual != listed.size {
            return Err(BundleError::SizeMismatch { name: listed.path.clone(), expected: listed.size, actual });
        }
        let sha256 = super::index::sha256_hex(&entry.data);
        if sha256 != listed.sha256 {
            return Err(BundleError::DigestMismatch {
                name: listed.path.clone(),
                expected: listed.sha256.clone(),
                actual: sha256,
            });
        }
        entries.push(entry);
    }

    let manifest = read_manifest(&index, &entries)?;
    Ok(OpenedBundle { index_bytes, index, digest, manifest, entries, signatures })
}

/// The manifest, which must describe the recipe version the index names.
fn read_manifest(index: &Index, entries: &[RawEntry]) -> Result<Manifest, BundleError> {
    let entry = entries.iter().find(|e| e.name == MANIFEST_NAME).expect("the index lists recipe.toml");
    let text = std::str::from_utf8(&entry.data).map_err(|_| BundleError::BadManifest("not UTF-8".into()))?;
    let manifest = Manifest::from_toml_str(text).map_err(|e| BundleError::BadManifest(e.to_string()))?;
    let (id, version) = (&manifest.recipe.id, manifest.recipe.version.to_string());
    if *id != index.recipe.id || version != index.recipe.version {
        return Err(BundleError::ManifestMismatch {
            manifest: format!("{id} {version}"),
            index: format!("{} {}", index.recipe.id, index.recipe.version),
        });
    }
    if let Some(icon) = &manifest.recipe.icon {
        if index.entry(icon).is_none() {
            return Err(BundleError::BadManifest(format!("the icon `{icon}` is not in the bundle")));
        }
    }
    Ok(manifest)
}

/// The bundle's bytes: the index, the entries in index order, the signatures
/// by key id. The one place that decides the layout, for packing and signing.
pub fn assemble(
    index_bytes: &[u8],
    entries: &[RawEntry],
    signatures: &[BundleSignature],
) -> Result<Vec<u8>, BundleError> {
    let mut sorted: Vec<&BundleSignature> = signatures.iter().collect();
    sorted.sort_by_key(|s| s.key_id());
    let mut all = Vec::with_capacity(1 + entries.len() + sorted.len());
    all.push(RawEntry { name: INDEX_NAME.into(), data: index_bytes.to_vec() });
    all.extend(entries.iter().cloned());
    all.extend(sorted.into_iter().map(|s| RawEntry { name: s.entry_name(), data: s.to_bytes() }));
    archive::write(&all)
}
