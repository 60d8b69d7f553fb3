//! The whole flow on a recipe directory made here (the component is a stand-in:
//! a bundle does not run it), and the tampering corpus at the library level.
//! `host/tests/bundle.rs` does the same through the command line with a real
//! built recipe.

use std::fs;
use std::path::{Path, PathBuf};

use super::archive::{self, RawEntry};
use super::*;

const COMPONENT: &[u8] = b"\0asm stand-in component";

/// A recipe directory: nginx's manifest and icon, assets, sources, and things
/// that must not be packed.
fn recipe_dir(root: &Path) -> PathBuf {
    let repo_recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/nginx");
    let dir = root.join("nginx");
    fs::create_dir_all(dir.join("templates")).unwrap();
    fs::create_dir_all(dir.join("target")).unwrap();
    fs::create_dir_all(dir.join(".git")).unwrap();
    fs::copy(repo_recipe.join("recipe.toml"), dir.join("recipe.toml")).unwrap();
    fs::copy(repo_recipe.join("icon.svg"), dir.join("icon.svg")).unwrap();
    fs::write(dir.join("templates/site.conf"), "server { listen 80; }\n").unwrap();
    fs::write(dir.join("target/recipe.wasm"), COMPONENT).unwrap();
    fs::write(dir.join("target/junk.o"), "build output").unwrap();
    fs::write(dir.join(".git/HEAD"), "hidden").unwrap();
    dir
}

struct Fixture {
    _root: tempfile::TempDir,
    dir: PathBuf,
    key: SigningKeyFile,
    trust: TrustPolicy,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let dir = recipe_dir(root.path());
    let key = SigningKeyFile::generate("publisher").unwrap();
    let trust = TrustPolicy::trust_nobody().with_key(key.public_key());
    Fixture { _root: root, dir, key, trust }
}

fn signed(f: &Fixture) -> Vec<u8> {
    sign(&pack(&f.dir).unwrap().bytes, &f.key).unwrap()
}

fn entries_of(bytes: &[u8]) -> Vec<RawEntry> {
    archive::read(bytes, &ReadLimits::default()).unwrap()
}

#[test]
fn packing_is_deterministic_and_takes_only_what_belongs() {
    let f = fixture();
    let first = pack(&f.dir).unwrap();
    let second = pack(&f.dir).unwrap();
    assert_eq!(first.bytes, second.bytes);
    assert_eq!(first.file_name(), "nginx-0.1.0.prox");
    let names: Vec<_> = entries_of(&first.bytes).into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["index.json", "icon.svg", "recipe.toml", "recipe.wasm", "templates/site.conf"]);
    // Touching a file changes nothing; changing one changes the digest.
    let later = fs::read(f.dir.join("icon.svg")).unwrap();
    fs::write(f.dir.join("icon.svg"), &later).unwrap();
    assert_eq!(pack(&f.dir).unwrap().bytes, first.bytes);
    fs::write(f.dir.join("templates/site.conf"), "changed").unwrap();
    assert_ne!(pack(&f.dir).unwrap().digest, first.digest);
}

#[test]
fn an_unbuilt_recipe_or_a_symlink_is_not_packed() {
    let f = fixture();
    fs::remove_file(f.dir.join("target/recipe.wasm")).unwrap();
    let err = pack(&f.dir).unwrap_err().to_string();
    assert!(err.contains("not built") && err.contains("proximity recipe build"), "{err}");
    fs::write(f.dir.join("target/recipe.wasm"), COMPONENT).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.dir.join("templates/passwd")).unwrap();
    assert!(pack(&f.dir).unwrap_err().to_string().contains("symbolic link"));
}

#[test]
fn a_signed_bundle_verifies_and_unpacks() {
    let f = fixture();
    let bytes = signed(&f);
    let verified = verify(&bytes, &f.trust).unwrap();
    assert_eq!(verified.manifest.recipe.id, "nginx");
    assert_eq!(verified.digest, pack(&f.dir).unwrap().digest, "signing never changes the identity");
    assert_eq!(verified.signers.len(), 1);
    assert_eq!(verified.signers[0].trusted_name.as_deref(), Some("publisher"));
    assert!(!verified.accepted_without_trust);
    assert_eq!(verified.entry("recipe.wasm").unwrap().data, COMPONENT);

    let out = f.dir.parent().unwrap().join("unpacked");
    unpack(&verified, &out).unwrap();
    assert_eq!(fs::read(out.join("recipe.wasm")).unwrap(), COMPONENT);
    assert_eq!(fs::read(out.join("templates/site.conf")).unwrap(), b"server { listen 80; }\n");
    assert!(matches!(unpack(&verified, &out), Err(BundleError::AlreadyExists { .. })));
}

#[test]
fn signing_again_replaces_and_co_signing_adds() {
    let f = fixture();
    let once = signed(&f);
    assert_eq!(sign(&once, &f.key).unwrap(), once, "ed25519 signatures are deterministic");
    let other = SigningKeyFile::generate("co-signer").unwrap();
    let twice = sign(&once, &other).unwrap();
    let verified = verify(&twice, &f.trust).unwrap();
    assert_eq!(verified.signers.len(), 2);
    assert_eq!(verified.signers.iter().filter(|s| s.is_trusted()).count(), 1);
    let names: Vec<_> =
        entries_of(&twice).into_iter().map(|e| e.name).filter(|n| n.starts_with("signatures/")).collect();
    assert_eq!(names.len(), 2);
}

#[test]
fn unsigned_and_untrusted_bundles_need_an_explicit_allowance_for_their_digest() {
    let f = fixture();
    let packed = pack(&f.dir).unwrap();
    assert!(matches!(verify(&packed.bytes, &f.trust), Err(BundleError::Unsigned { .. })));
    let stranger = SigningKeyFile::generate("stranger").unwrap();
    let by_stranger = sign(&packed.bytes, &stranger).unwrap();
    let err = verify(&by_stranger, &f.trust).unwrap_err();
    assert!(matches!(err, BundleError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains(&stranger.public_key().id()));

    let other_digest = "0".repeat(64);
    assert!(verify(&packed.bytes, &f.trust.clone().allow_digest(&other_digest)).is_err());
    let allowed = f.trust.clone().allow_digest(&packed.digest);
    assert!(verify(&packed.bytes, &allowed).unwrap().accepted_without_trust);
    assert!(verify(&by_stranger, &allowed).unwrap().accepted_without_trust);
}

#[test]
fn trusted_keys_come_from_a_directory() {
    let f = fixture();
    let keys = f.dir.parent().unwrap().join("keys");
    let (_, public) = f.key.write_pair(&keys, false).unwrap();
    fs::write(keys.join("README"), "not a key").unwrap();
    let trust = TrustPolicy::from_dir(&keys).unwrap();
    assert_eq!(trust.trusted_keys().len(), 1);
    verify(&signed(&f), &trust).unwrap();
    fs::write(&public, "ed25519 broken publisher\n").unwrap();
    assert!(TrustPolicy::from_dir(&keys).unwrap_err().to_string().contains("publisher.pub"));
}

/// Rebuilds the archive from `entries` as given: a bundle some attacker made.
fn rewrite(entries: &[RawEntry]) -> Vec<u8> {
    archive::write(entries).unwrap()
}

#[test]
fn tampering_is_refused_with_the_cause() {
    let f = fixture();
    let good = signed(&f);
    let entries = entries_of(&good);
    let refused = |bytes: &[u8], expect: &str| {
        let err = verify(bytes, &f.trust).expect_err(expect).to_string();
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
    };

    for (i, entry) in entries.iter().enumerate() {
        let mut tampered = entries.clone();
        tampered[i].data[entry.data.len() / 2] ^= 0x01;
        let expect = match entry.name.as_str() {
            "index.json" => "",
            name if name.starts_with("signatures/") => "signature",
            name => name,
        };
        refused(&rewrite(&tampered), expect);
    }

    let mut extra = entries.clone();
    extra.push(RawEntry { name: "extra.sh".into(), data: b"echo".to_vec() });
    refused(&rewrite(&extra), "not listed in index.json");

    let mut renamed = entries.clone();
    renamed[2].name = "icon2.svg".into();
    refused(&rewrite(&renamed), "icon2.svg");

    let mut missing = entries.clone();
    missing.remove(2);
    refused(&rewrite(&missing), "missing from the bundle");

    let mut index_not_first = entries.clone();
    index_not_first.swap(0, 1);
    refused(&rewrite(&index_not_first), "first entry");

    let unsigned: Vec<_> = entries.iter().filter(|e| !e.name.starts_with("signatures/")).cloned().collect();
    refused(&rewrite(&unsigned), "not signed");
}

#[test]
fn an_index_that_lies_about_the_manifest_is_refused() {
    let f = fixture();
    let mut entries = entries_of(&pack(&f.dir).unwrap().bytes);
    let text = String::from_utf8(entries[0].data.clone()).unwrap().replace("\"0.1.0\"", "\"9.9.9\"");
    entries[0].data = text.into_bytes();
    let bytes = rewrite(&entries);
    let digest = hex::encode(index::Index::digest_of(&entries[0].data));
    let err = verify(&bytes, &TrustPolicy::trust_nobody().allow_digest(&digest)).unwrap_err();
    assert!(matches!(err, BundleError::ManifestMismatch { .. }), "{err}");
}

#[test]
fn a_signature_moved_to_another_bundle_is_refused() {
    let f = fixture();
    let first = entries_of(&signed(&f));
    fs::write(f.dir.join("templates/site.conf"), "other").unwrap();
    let mut second = entries_of(&pack(&f.dir).unwrap().bytes);
    second.push(first.last().unwrap().clone());
    let err = verify(&rewrite(&second), &f.trust).unwrap_err().to_string();
    assert!(err.contains("does not match this bundle's index"), "{err}");
}

/// Installed signers are matched to the trusted keys by key id: a new key
/// under the publisher's name is not the signer, and an older `bundle.json`
/// without key ids cannot vouch for anyone.
#[test]
fn installed_signers_are_matched_by_key_id() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let installer = RecipeInstaller::new(data.path(), f.trust.clone());
    let prepared = installer.prepare(signed(&f), None, &InstallOptions::default()).unwrap();
    installer.commit(prepared, &InstallOptions::default()).unwrap();
    let key_id = f.key.public_key().id();
    let signers = |installer: &RecipeInstaller| installer.installed().unwrap()[0].signers.clone();
    let trusted = crate::api::BundleSigner { name: "publisher".into(), key_id: Some(key_id.clone()), trusted: true };
    assert_eq!(signers(&installer), [trusted]);

    // Another key of the same name, trusted instead: not the signer.
    let impostor = SigningKeyFile::generate("publisher").unwrap();
    let other = RecipeInstaller::new(data.path(), TrustPolicy::trust_nobody().with_key(impostor.public_key()));
    let untrusted = crate::api::BundleSigner { name: "publisher".into(), key_id: Some(key_id), trusted: false };
    assert_eq!(signers(&other), [untrusted]);

    // A record from before key ids: not trusted, though the name matches.
    let path = install::catalog_root(data.path()).join("nginx").join(install::PROVENANCE_FILE);
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    record.as_object_mut().unwrap().remove("signed_by");
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    let old = crate::api::BundleSigner { name: "publisher".into(), key_id: None, trusted: false };
    assert_eq!(signers(&installer), [old]);
}
