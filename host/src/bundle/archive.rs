//! The container: a deterministic ustar writer and a strict reader.
//!
//! Why tar: it is a format every system can list and extract by hand
//! (`tar tvf wordpress-1.2.0.prox`), and the `tar` crate is well kept. The
//! reader takes the archive raw (no GNU long names, no PAX headers are
//! interpreted) and refuses anything but plain ustar regular files, so the
//! format's many extensions cannot change what a name or a size means.

use std::collections::HashSet;

use super::index::check_entry_name;
use super::{BundleError, ReadLimits};

const BLOCK: u64 = 512;
/// Two zero blocks end an archive.
const END_MARKER: usize = 1024;

/// One file in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    pub name: String,
    pub data: Vec<u8>,
}

/// Writes `entries` in the order given, with fixed metadata: the same entries
/// always give the same bytes.
pub fn write(entries: &[RawEntry]) -> Result<Vec<u8>, BundleError> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        check_entry_name(&entry.name)?;
        let mut header = tar::Header::new_ustar();
        header.set_path(&entry.name).map_err(|e| BundleError::Unpackable {
            path: entry.name.clone().into(),
            reason: format!("the name does not fit a ustar header: {e}"),
        })?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(entry.data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, entry.data.as_slice()).map_err(BundleError::io(&entry.name))?;
    }
    builder.into_inner().map_err(BundleError::io("bundle"))
}

/// Reads every entry, refusing anything [`write`] would not have made: other
/// entry types, bad names, duplicates, oversized entries, truncation and
/// trailing data. Sizes are checked against `limits` before data is copied.
pub fn read(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<RawEntry>, BundleError> {
    let total = bytes.len() as u64;
    if total > limits.max_bundle_bytes {
        return Err(BundleError::BundleTooLarge { size: total, limit: limits.max_bundle_bytes });
    }
    let mut archive = tar::Archive::new(bytes);
    let iter = archive.entries().map_err(|e| BundleError::Malformed(e.to_string()))?.raw(true);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    // Where the data of the entries read so far ends, padding included.
    let mut end: u64 = 0;
    for item in iter {
        let entry = item.map_err(|e| {
            if total.saturating_sub(end) < BLOCK + END_MARKER as u64 {
                BundleError::Truncated(format!("it ends inside an entry header ({e})"))
            } else {
                BundleError::Malformed(format!("bad entry header after byte {end}: {e}"))
            }
        })?;
        if entries.len() == limits.max_entries {
            return Err(BundleError::TooManyEntries { limit: limits.max_entries });
        }
        let header = entry.header();
        let raw_name = header.path_bytes().into_owned();
        let name = String::from_utf8(raw_name).map_err(|e| BundleError::BadEntryName {
            name: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            reason: "it is not UTF-8",
        })?;
        if header.as_ustar().is_none() {
            return Err(BundleError::Malformed(format!("entry `{name}` does not have a plain ustar header")));
        }
        let kind = header.entry_type();
        if kind != tar::EntryType::Regular {
            return Err(BundleError::NotRegularFile { name, kind: describe(kind) });
        }
        check_entry_name(&name)?;
        let size = header.entry_size().map_err(|e| BundleError::Malformed(format!("entry `{name}`: {e}")))?;
        if size > limits.max_entry_bytes {
            return Err(BundleError::EntryTooLarge { name, size, limit: limits.max_entry_bytes });
        }
        let start = entry.raw_file_position();
        if start + size > total {
            return Err(BundleError::Truncated(format!(
                "entry `{name}` should have {size} bytes, {} are there",
                total.saturating_sub(start)
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(BundleError::DuplicateEntry(name));
        }
        let data = bytes[start as usize..(start + size) as usize].to_vec();
        end = start + size.div_ceil(BLOCK) * BLOCK;
        entries.push(RawEntry { name, data });
    }
    check_trailer(bytes.get(end as usize..).unwrap_or_default())?;
    Ok(entries)
}

/// After the last entry: the end marker, then nothing but zero padding.
fn check_trailer(rest: &[u8]) -> Result<(), BundleError> {
    if rest.iter().any(|&b| b != 0) {
        return Err(BundleError::Malformed("data follows the end of the archive".into()));
    }
    if rest.len() < END_MARKER {
        return Err(BundleError::Truncated("the end-of-archive marker is missing".into()));
    }
    Ok(())
}

fn describe(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Directory => "directory".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => "PAX extended header".into(),
        tar::EntryType::GNULongName | tar::EntryType::GNULongLink => "GNU long-name header".into(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8]) -> RawEntry {
        RawEntry { name: name.into(), data: data.to_vec() }
    }

    #[test]
    fn what_is_written_reads_back_and_is_deterministic() {
        let entries = vec![entry("index.json", b"{}"), entry("a/b.txt", &[7; 1000]), entry("empty", b"")];
        let bytes = write(&entries).unwrap();
        assert_eq!(bytes, write(&entries).unwrap());
        assert_eq!(read(&bytes, &ReadLimits::default()).unwrap(), entries);
    }

    #[test]
    fn truncation_anywhere_is_refused() {
        let bytes = write(&[entry("a", &[1; 700]), entry("b", b"x")]).unwrap();
        for cut in [1, 100, 511, 512, 600, 1024, 1535, 1536, bytes.len() - 1024, bytes.len() - 1] {
            let err = read(&bytes[..cut], &ReadLimits::default()).unwrap_err();
            assert!(matches!(err, BundleError::Truncated(_)), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn limits_are_checked_before_reading() {
        let bytes = write(&[entry("a", &[1; 2000])]).unwrap();
        let small = ReadLimits { max_entry_bytes: 1999, ..ReadLimits::default() };
        assert!(matches!(read(&bytes, &small), Err(BundleError::EntryTooLarge { size: 2000, .. })));
        let tiny = ReadLimits { max_bundle_bytes: 1000, ..ReadLimits::default() };
        assert!(matches!(read(&bytes, &tiny), Err(BundleError::BundleTooLarge { .. })));
        let few = ReadLimits { max_entries: 1, ..ReadLimits::default() };
        let two = write(&[entry("a", b""), entry("b", b"")]).unwrap();
        assert!(matches!(read(&two, &few), Err(BundleError::TooManyEntries { limit: 1 })));
    }

    #[test]
    fn trailing_data_and_duplicates_are_refused() {
        let mut bytes = write(&[entry("a", b"1")]).unwrap();
        bytes.extend_from_slice(&write(&[entry("b", b"2")]).unwrap());
        assert!(matches!(read(&bytes, &ReadLimits::default()), Err(BundleError::Malformed(_))));
        let twice = write(&[entry("a", b"1"), entry("a", b"1")]).unwrap();
        assert!(matches!(read(&twice, &ReadLimits::default()), Err(BundleError::DuplicateEntry(_))));
    }
}
