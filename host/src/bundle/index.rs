//! `index.json`: what a bundle holds, and the rules for entry names.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BundleError, COMPONENT_NAME, INDEX_NAME, MANIFEST_NAME, SIGNATURES_DIR};

/// The one format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Longest entry name: what a ustar header holds without extensions.
pub const MAX_NAME_BYTES: usize = 255;

/// The bundle's table of contents. Its exact bytes are what signatures cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub format: u32,
    pub recipe: IndexRecipe,
    /// Sorted by path, each path once.
    pub entries: Vec<IndexEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRecipe {
    pub id: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl IndexEntry {
    pub fn describe(path: &str, bytes: &[u8]) -> IndexEntry {
        IndexEntry { path: path.to_owned(), size: bytes.len() as u64, sha256: sha256_hex(bytes) }
    }
}

impl Index {
    /// The bytes written into the bundle: pretty JSON with a final newline, so
    /// that `tar xOf b.prox index.json` reads well. Signatures cover these bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("an index always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses and checks an index read from a bundle.
    pub fn parse(bytes: &[u8]) -> Result<Index, BundleError> {
        let index: Index = serde_json::from_slice(bytes).map_err(|e| BundleError::BadIndex(e.to_string()))?;
        if index.format != FORMAT_VERSION {
            return Err(BundleError::BadIndex(format!(
                "format {} is not supported (this host reads format {FORMAT_VERSION})",
                index.format
            )));
        }
        if !crate::manifest::is_recipe_id(&index.recipe.id) {
            return Err(BundleError::BadIndex(format!("`{}` is not a recipe id", index.recipe.id)));
        }
        if semver::Version::parse(&index.recipe.version).is_err() {
            return Err(BundleError::BadIndex(format!("`{}` is not a semver version", index.recipe.version)));
        }
        for pair in index.entries.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(BundleError::DuplicateEntry(pair[0].path.clone()));
            }
            if pair[0].path > pair[1].path {
                return Err(BundleError::BadIndex(format!("entries are not sorted (`{}`)", pair[1].path)));
            }
        }
        for entry in &index.entries {
            check_content_name(&entry.path)?;
            if entry.sha256.len() != 64
                || !entry.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(BundleError::BadIndex(format!("`{}`: sha256 is not 64 lowercase hex digits", entry.path)));
            }
        }
        for required in [MANIFEST_NAME, COMPONENT_NAME] {
            if index.entry(required).is_none() {
                return Err(BundleError::BadIndex(format!("no `{required}` entry")));
            }
        }
        check_no_file_is_a_directory(index.entries.iter().map(|e| e.path.as_str()))?;
        Ok(index)
    }

    pub fn entry(&self, path: &str) -> Option<&IndexEntry> {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).ok().map(|i| &self.entries[i])
    }

    /// The bundle's identity: sha256 of the index's exact bytes.
    pub fn digest_of(index_bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(index_bytes).into()
    }

    /// The file name a bundle of this recipe version gets.
    pub fn file_name(&self) -> String {
        format!("{}-{}.{}", self.recipe.id, self.recipe.version, super::BUNDLE_EXTENSION)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Rules for any entry name: a relative path of plain components separated by
/// `/`, printable, at most [`MAX_NAME_BYTES`]. Stricter than any filesystem
/// needs, so that a name means the same thing everywhere it is written.
pub fn check_entry_name(name: &str) -> Result<(), BundleError> {
    let refuse = |reason| Err(BundleError::BadEntryName { name: name.to_owned(), reason });
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return refuse("it is longer than 255 bytes");
    }
    if name.starts_with('/') {
        return refuse("it is an absolute path");
    }
    if name.contains("..") {
        return refuse("it contains `..`");
    }
    if name.contains('\\') {
        return refuse("it contains a backslash");
    }
    if name.chars().any(char::is_control) {
        return refuse("it contains a NUL or control character");
    }
    if name.split('/').any(|part| part.is_empty() || part == ".") {
        return refuse("it has an empty or `.` path component");
    }
    Ok(())
}

/// An entry listed in the index: a valid name outside the names the format
/// reserves for itself.
pub fn check_content_name(name: &str) -> Result<(), BundleError> {
    check_entry_name(name)?;
    if name == INDEX_NAME || name == SIGNATURES_DIR || name.starts_with(&format!("{SIGNATURES_DIR}/")) {
        return Err(BundleError::BadEntryName { name: name.to_owned(), reason: "the name is reserved by the format" });
    }
    Ok(())
}

/// `a` and `a/b` cannot both be files when unpacked.
fn check_no_file_is_a_directory<'a>(sorted_paths: impl Iterator<Item = &'a str>) -> Result<(), BundleError> {
    let paths: Vec<&str> = sorted_paths.collect();
    for path in &paths {
        for (slash, _) in path.match_indices('/') {
            let dir = &path[..slash];
            if paths.binary_search(&dir).is_ok() {
                return Err(BundleError::BadIndex(format!("`{dir}` is both a file and the directory of `{path}`")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_plain_relative_paths() {
        for good in ["recipe.toml", "templates/site.conf", "a/b/c.txt", "icon.svg", "x.y-z_1"] {
            check_content_name(good).unwrap();
        }
        let bad = [
            "",
            "/abs",
            "../x",
            "a/../../b",
            "a/..",
            "a..b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\u{7f}b",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "index.json",
            "signatures",
            "signatures/x.sig",
        ];
        for name in bad {
            assert!(check_content_name(name).is_err(), "{name:?} was accepted");
        }
        assert!(check_entry_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn an_index_round_trips_and_rejects_what_a_writer_never_makes() {
        let index = Index {
            format: FORMAT_VERSION,
            recipe: IndexRecipe { id: "nginx".into(), version: "0.1.0".into() },
            entries: vec![IndexEntry::describe("recipe.toml", b"t"), IndexEntry::describe("recipe.wasm", b"w")],
        };
        assert_eq!(Index::parse(&index.to_bytes()).unwrap(), index);

        let mut unsorted = index.clone();
        unsorted.entries.reverse();
        assert!(Index::parse(&unsorted.to_bytes()).unwrap_err().to_string().contains("not sorted"));
        let mut duplicate = index.clone();
        duplicate.entries.insert(0, duplicate.entries[0].clone());
        assert!(matches!(Index::parse(&duplicate.to_bytes()), Err(BundleError::DuplicateEntry(_))));
        let mut nested = index.clone();
        nested.entries.push(IndexEntry::describe("recipe.wasm/x", b""));
        assert!(Index::parse(&nested.to_bytes()).unwrap_err().to_string().contains("both a file and"));
        let mut future = index.clone();
        future.format = 2;
        assert!(Index::parse(&future.to_bytes()).unwrap_err().to_string().contains("not supported"));
        let extra = String::from_utf8(index.to_bytes()).unwrap().replacen("{", "{\"extra\": 1,", 1);
        assert!(Index::parse(extra.as_bytes()).is_err());
    }
}
