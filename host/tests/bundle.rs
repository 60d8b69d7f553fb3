//! Recipe bundles through the `proximity` binary, with the repository's built
//! nginx recipe: keygen, pack, sign, verify, unpack, and a tampering corpus
//! that must each be refused with a clear error and nothing written.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn nginx() -> PathBuf {
    let dir = repo().join("recipes/nginx");
    let component = dir.join("target/recipe.wasm");
    assert!(component.is_file(), "{} is not built: run `cargo xtask build-recipes`", component.display());
    dir
}

fn proximity(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proximity"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PROXIMITY_TRUSTED_KEYS")
        // No default trusted-keys or keys directory from the person running the tests.
        .env("XDG_CONFIG_HOME", cwd.join("config"))
        .output()
        .expect("the proximity binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

/// A scratch directory with a publisher key pair, its public key trusted (in
/// `trusted/`), and a packed and signed nginx bundle.
struct Setup {
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        ok(proximity(cwd, &["recipe", "keygen", "--name", "publisher", "--dir", "keys"]));
        let trusted = cwd.join("trusted");
        fs::create_dir(&trusted).unwrap();
        fs::copy(cwd.join("keys/publisher.pub"), trusted.join("publisher.pub")).unwrap();
        ok(proximity(cwd, &["recipe", "pack", nginx().to_str().unwrap()]));
        let bundle = cwd.join("nginx-0.1.0.prox");
        ok(proximity(cwd, &["recipe", "sign", "nginx-0.1.0.prox", "--key", "keys/publisher.key"]));
        Setup { dir, bundle }
    }

    fn cwd(&self) -> &Path {
        self.dir.path()
    }

    fn verify(&self, bundle: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["recipe", "verify", bundle.to_str().unwrap(), "--trusted-keys", "trusted"];
        args.extend_from_slice(extra);
        proximity(self.cwd(), &args)
    }

    /// Verifying `bytes` with `--unpack` fails, says `expect`, and writes nothing.
    fn refused(&self, case: &str, bytes: &[u8], expect: &str) {
        let scratch = self.cwd().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let bundle = scratch.join("tampered.prox");
        fs::write(&bundle, bytes).unwrap();
        let out = self.verify(&bundle, &["--unpack", scratch.join("out").to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{case}: accepted\n{}", text(&out.stdout));
        assert!(stderr.contains("is refused") && stderr.contains(expect), "{case}: expected {expect:?} in:\n{stderr}");
        let left: Vec<_> = fs::read_dir(&scratch).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["tampered.prox"], "{case}: something was written");
        fs::remove_dir_all(&scratch).unwrap();
    }
}

/// Entries of a bundle: name, where its data starts, the data.
fn entries(bytes: &[u8]) -> Vec<(String, usize, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut found = Vec::new();
    for entry in archive.entries().unwrap().raw(true) {
        let mut entry = entry.unwrap();
        let name = text(&entry.path_bytes());
        let start = entry.raw_file_position() as usize;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        found.push((name, start, data));
    }
    found
}

/// A ustar archive written by hand, so that names, types and sizes can be
/// what no honest writer would put there.
#[derive(Clone)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> RawTar {
        RawTar(Vec::new())
    }

    fn entry(mut self, name: &str, kind: u8, data: &[u8]) -> RawTar {
        self.header(name, kind, data.len() as u64, b"");
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn header(&mut self, name: &str, kind: u8, size: u64, link: &[u8]) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:07o}\0").as_bytes());
        self.0.extend_from_slice(&h);
    }

    /// A link or device entry (no data).
    fn link(mut self, name: &str, kind: u8, target: &str) -> RawTar {
        self.header(name, kind, 0, target.as_bytes());
        self
    }

    fn oversized(mut self, name: &str, claimed: u64) -> RawTar {
        self.header(name, b'0', claimed, b"");
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

/// The bundle rebuilt from `entries` (name, data) by the hand-written writer.
fn rebuild<'a>(list: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    list.into_iter().fold(RawTar::new(), |tar, (name, data)| tar.entry(name, b'0', data)).finish()
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(proximity(dir.path(), &["recipe", "keygen", "--name", "alice", "--dir", "k"]));
    assert!(out.contains("alice.key") && out.contains("alice.pub"), "{out}");
    let mode = fs::metadata(dir.path().join("k/alice.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = fs::read_to_string(dir.path().join("k/alice.pub")).unwrap();
    assert!(public.starts_with("ed25519 ") && public.ends_with(" alice\n"), "{public}");
    let before = fs::read(dir.path().join("k/alice.key")).unwrap();
    let again = proximity(dir.path(), &["recipe", "keygen", "--name", "alice", "--dir", "k"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    assert_eq!(fs::read(dir.path().join("k/alice.key")).unwrap(), before);
}

#[test]
fn packing_twice_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = nginx();
    ok(proximity(dir.path(), &["recipe", "pack", nginx.to_str().unwrap(), "--out", "a.prox"]));
    ok(proximity(dir.path(), &["recipe", "pack", nginx.to_str().unwrap(), "--out", "b.prox"]));
    let (a, b) = (fs::read(dir.path().join("a.prox")).unwrap(), fs::read(dir.path().join("b.prox")).unwrap());
    assert!(a == b, "two packs of the same recipe differ");
    assert_eq!(fs::metadata(dir.path().join("a.prox")).unwrap().permissions().mode() & 0o777, 0o644);
    let names: Vec<String> = entries(&a).into_iter().map(|(name, ..)| name).collect();
    assert_eq!(names[0], "index.json");
    for expected in ["recipe.toml", "recipe.wasm", "icon.svg", "site.conf", "index.html"] {
        assert!(names.iter().any(|n| n == expected), "{expected} is not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("target/")), "{names:?}");
}

#[test]
fn a_signed_bundle_verifies_shows_its_grants_and_unpacks() {
    let s = Setup::new();
    let stdout = ok(s.verify(&s.bundle, &["--unpack", "unpacked"]));
    assert!(stdout.contains("nginx 0.1.0"), "{stdout}");
    assert!(stdout.contains("digest: "), "{stdout}");
    assert!(stdout.contains("signed by: publisher") && stdout.contains("trusted"), "{stdout}");
    assert!(stdout.contains("recipe.wasm") && stdout.contains("recipe.toml"), "{stdout}");
    assert!(stdout.contains("Grants:") && stdout.to_lowercase().contains("container"), "{stdout}");
    let unpacked = s.cwd().join("unpacked");
    assert_eq!(fs::read(unpacked.join("recipe.wasm")).unwrap(), fs::read(nginx().join("target/recipe.wasm")).unwrap());
    assert_eq!(fs::read(unpacked.join("recipe.toml")).unwrap(), fs::read(nginx().join("recipe.toml")).unwrap());

    // Signing again with the same key changes nothing.
    let before = fs::read(&s.bundle).unwrap();
    ok(proximity(s.cwd(), &["recipe", "sign", "nginx-0.1.0.prox", "--key", "keys/publisher.key"]));
    assert_eq!(fs::read(&s.bundle).unwrap(), before);
}

#[test]
fn unsigned_and_untrusted_bundles_are_refused_unless_allowed() {
    let s = Setup::new();
    ok(proximity(s.cwd(), &["recipe", "pack", nginx().to_str().unwrap(), "--out", "unsigned.prox"]));
    let unsigned = fs::read(s.cwd().join("unsigned.prox")).unwrap();
    s.refused("no signature", &unsigned, "not signed");

    ok(proximity(s.cwd(), &["recipe", "keygen", "--name", "stranger", "--dir", "other"]));
    ok(proximity(s.cwd(), &["recipe", "sign", "unsigned.prox", "--key", "other/stranger.key", "--out", "x.prox"]));
    let by_stranger = fs::read(s.cwd().join("x.prox")).unwrap();
    s.refused("wrong key", &by_stranger, "not trusted");

    let stdout = ok(s.verify(&s.cwd().join("x.prox"), &["--allow-untrusted"]));
    assert!(stdout.contains("NOT trusted"), "{stdout}");
    let wrong = format!("--allow-untrusted={}", "0".repeat(64));
    assert!(!s.verify(&s.cwd().join("x.prox"), &[&wrong]).status.success());
    let digest = stdout.lines().find_map(|l| l.trim().strip_prefix("digest: ")).unwrap().to_owned();
    ok(s.verify(&s.cwd().join("unsigned.prox"), &[&format!("--allow-untrusted={digest}")]));
}

#[test]
fn tampered_bundles_are_refused_and_nothing_is_written() {
    let s = Setup::new();
    let good = fs::read(&s.bundle).unwrap();
    let list = entries(&good);
    // The hand-written writer makes the same bytes: what differs below is the tampering only.
    assert!(rebuild(list.iter().map(|(n, _, d)| (n.as_str(), d.as_slice()))) == good);

    for (name, start, data) in &list {
        let mut bytes = good.clone();
        bytes[start + data.len() / 2] ^= 0x20;
        let expect = if name.starts_with("signatures/") { "signature" } else { "" };
        s.refused(&format!("a byte flipped in {name}"), &bytes, expect);
    }
    for cut in [1, 100, 512, 700, good.len() / 2, good.len() - 1100, good.len() - 1024, good.len() - 1] {
        s.refused(&format!("truncated at {cut}"), &good[..cut], "truncated");
    }

    let renamed = |from: &str, to: &str| {
        rebuild(list.iter().map(|(n, _, d)| (if n == from { to } else { n.as_str() }, d.as_slice())))
    };
    let extra = [&good[..good.len() - 1024], &RawTar::new().entry("x.sh", b'0', b"id").finish()].concat();
    s.refused("an extra entry", &extra, "x.sh");
    s.refused("a renamed entry", &renamed("site.conf", "site2.conf"), "site2.conf");
    let mut twice: Vec<(&str, &[u8])> = list.iter().map(|(n, _, d)| (n.as_str(), d.as_slice())).collect();
    twice.insert(2, twice[2]);
    s.refused("a duplicate entry", &rebuild(twice), "more than once");
    for evil in ["../x", "/abs", "a/../../b", "a\\b", "a\u{1}b", "./site.conf"] {
        s.refused(&format!("entry named {evil:?}"), &renamed("site.conf", evil), "entry name");
    }

    let index = RawTar::new().entry("index.json", b'0', &list[0].2);
    s.refused("a symlink entry", &index.clone().link("site.conf", b'2', "/etc/passwd").finish(), "symbolic link");
    s.refused("a hard link entry", &index.clone().link("site.conf", b'1', "/etc/passwd").finish(), "hard link");
    s.refused("a device entry", &index.clone().link("site.conf", b'3', "").finish(), "character device");
    s.refused("an oversized entry", &index.oversized("recipe.wasm", 65 << 20).finish(), "over the limit");
}
